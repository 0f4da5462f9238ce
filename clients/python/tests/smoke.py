"""Smoke test of the Python SDK against a real control plane.

Needs TANDEM_SDK_ENDPOINT (http://host:port), TANDEM_SDK_TOKEN and
TANDEM_SDK_CLUSTER_URL (a real Elasticsearch 7.x node to register). Run by
clients/python/test.sh; prints one line per check and "smoke: N passed, M
failed" at the end.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from concurrent import futures
from pathlib import Path
from typing import Callable

import grpc

import tandem
import tandem.aio
from tandem import v1

ENDPOINT = os.environ["TANDEM_SDK_ENDPOINT"]
TOKEN = os.environ["TANDEM_SDK_TOKEN"]
CLUSTER_URL = os.environ["TANDEM_SDK_CLUSTER_URL"]
NAME = f"sdk-python-{int(time.time())}-{os.getpid()}"


def expect_error(call: Callable[[], object], code: grpc.StatusCode) -> tandem.ErrorStatus:
    try:
        call()
    except grpc.RpcError as error:
        status = tandem.error_status(error)
        assert status.code == code, f"expected {code.name}, got {status.code.name}: {status.message}"
        return status
    raise AssertionError(f"expected {code.name}, the call succeeded")


def endpoint_parsing_rejects_what_grpc_cannot_reach() -> None:
    for bad in ["127.0.0.1:50051", "ftp://host:1", "http://host:1/path", "http://host:x"]:
        try:
            tandem.connect(bad, TOKEN, connect_timeout=None)
        except ValueError as error:
            assert str(error).startswith("endpoint: "), error
        else:
            raise AssertionError(f"{bad!r} was accepted")
    try:
        tandem.connect(ENDPOINT, "tok\nen", connect_timeout=None)
    except ValueError as error:
        assert str(error).startswith("token: "), error
    else:
        raise AssertionError("a token with a newline was accepted")


def unreachable_control_plane_fails_connect() -> None:
    try:
        tandem.connect("http://127.0.0.1:1", TOKEN, connect_timeout=0.5)
    except ConnectionError as error:
        assert "http://127.0.0.1:1" in str(error), error
    else:
        raise AssertionError("connect to a closed port succeeded")


def https_with_a_ca_file_verifies_and_sends_the_token() -> None:
    """TLS against a local grpc server with a self-signed certificate (the
    control plane under test listens on plain http)."""

    class Echo(v1.ClusterServiceServicer):
        def ListClusters(
            self, request: v1.ListClustersRequest, context: grpc.ServicerContext
        ) -> v1.ListClustersResponse:
            authorization = dict(context.invocation_metadata()).get("authorization", "")
            return v1.ListClustersResponse(clusters=[v1.Cluster(name=str(authorization))])

    with tempfile.TemporaryDirectory() as tmp:
        key, cert = Path(tmp, "key.pem"), Path(tmp, "cert.pem")
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=localhost",
             "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
            check=True, capture_output=True,
        )
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        # Only ListClusters is served; the typed servicer declares every RPC abstract.
        v1.add_ClusterServiceServicer_to_server(Echo(), server)  # type: ignore[abstract]
        port = server.add_secure_port(
            "127.0.0.1:0", grpc.ssl_server_credentials([(key.read_bytes(), cert.read_bytes())])
        )
        server.start()
        try:
            with tandem.connect(f"https://localhost:{port}", "tls-token", ca_file=cert) as client:
                names = [c.name for c in client.clusters.ListClusters(v1.ListClustersRequest()).clusters]
                assert names == ["Bearer tls-token"], names
            try:
                tandem.connect(f"https://localhost:{port}", "tls-token", connect_timeout=0.5)
            except ConnectionError:
                pass
            else:
                raise AssertionError("a self-signed certificate was trusted without ca_file")
        finally:
            server.stop(None)


def wrong_or_missing_token_is_unauthenticated() -> None:
    for token in [TOKEN + "-wrong", ""]:
        with tandem.connect(ENDPOINT, token) as client:
            expect_error(
                lambda: client.clusters.ListClusters(v1.ListClustersRequest()),
                grpc.StatusCode.UNAUTHENTICATED,
            )


def default_deadline_applies_to_unary_calls_only() -> None:
    from tandem._client import _AuthInterceptor

    seen: list[grpc.ClientCallDetails] = []

    def capture(details: grpc.ClientCallDetails, request: object) -> None:
        seen.append(details)

    class Details(grpc.ClientCallDetails):
        method = "/tandem.v1.ClusterService/ListClusters"
        timeout = None
        metadata = (("x-trace", "1"),)
        credentials = None
        wait_for_ready = None
        compression = None

    interceptor = _AuthInterceptor("t0ken", 12.5)
    interceptor.intercept_unary_unary(capture, Details(), None)
    interceptor.intercept_unary_stream(capture, Details(), None)
    unary, stream = seen
    assert unary.timeout == 12.5 and stream.timeout is None, (unary.timeout, stream.timeout)
    assert unary.metadata == (("x-trace", "1"), ("authorization", "Bearer t0ken")), unary.metadata


def token_set_on_a_call_wins(client: tandem.Client) -> None:
    expect_error(
        lambda: client.clusters.ListClusters(
            v1.ListClustersRequest(), metadata=(("authorization", "Bearer wrong"),)
        ),
        grpc.StatusCode.UNAUTHENTICATED,
    )


def bad_endpoint_is_invalid_argument_naming_the_field(client: tandem.Client) -> None:
    status = expect_error(
        lambda: client.clusters.RegisterCluster(
            v1.RegisterClusterRequest(name=NAME, endpoints=["ftp://x"])
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert status.message.startswith("endpoints[0]"), status.message
    assert status.field == "endpoints[0]", status


def register_probes_the_real_cluster(client: tandem.Client) -> v1.Cluster:
    response = client.clusters.RegisterCluster(
        v1.RegisterClusterRequest(name=NAME, endpoints=[CLUSTER_URL], labels={"sdk": "python"})
    )
    cluster = response.cluster
    assert cluster.id, "no id assigned"
    assert cluster.name == NAME, cluster.name
    probe = cluster.last_probe
    assert probe.reachable, probe
    assert probe.version.distribution == v1.DISTRIBUTION_ELASTICSEARCH, probe.version
    assert probe.version.number.startswith("7."), probe.version.number
    assert probe.version.major == 7, probe.version
    assert probe.HasField("probed_at"), probe
    return cluster


def get_and_list_find_it(client: tandem.Client, cluster: v1.Cluster) -> None:
    got = client.clusters.GetCluster(v1.GetClusterRequest(cluster_id=cluster.id)).cluster
    assert got.name == NAME and got.id == cluster.id, got
    assert got.last_probe.version.number == cluster.last_probe.version.number
    assert dict(got.labels) == {"sdk": "python"}, got.labels
    ids: list[str] = []
    token = ""
    while True:
        page = client.clusters.ListClusters(
            v1.ListClustersRequest(page_size=50, page_token=token, name_contains="sdk-python-")
        )
        ids += [c.id for c in page.clusters]
        token = page.next_page_token
        if not token:
            break
    assert cluster.id in ids, f"{cluster.id} not in {ids}"


def gateways_and_queue_stats_answer(client: tandem.Client) -> None:
    gateways = client.gateways.ListGateways(v1.ListGatewaysRequest(page_size=10))
    assert isinstance(gateways, v1.ListGatewaysResponse), gateways
    assert all(g.id for g in gateways.gateways), gateways
    stats = client.queues.GetQueueStats(v1.GetQueueStatsRequest())
    assert isinstance(stats, v1.GetQueueStatsResponse), stats
    if not gateways.gateways:
        assert stats.fleet.lag_records == 0, stats


def asyncio_client_sees_the_same(cluster: v1.Cluster) -> None:
    async def run() -> None:
        async with await tandem.aio.connect(ENDPOINT, TOKEN) as client:
            got = await client.clusters.GetCluster(v1.GetClusterRequest(cluster_id=cluster.id))
            assert got.cluster.name == NAME, got
        async with await tandem.aio.connect(ENDPOINT, "wrong") as client:
            try:
                await client.clusters.ListClusters(v1.ListClustersRequest())
            except grpc.RpcError as error:
                status = tandem.error_status(error)
                assert status.code == grpc.StatusCode.UNAUTHENTICATED, status
            else:
                raise AssertionError("a wrong token was accepted")

    asyncio.run(run())


def delete_then_get_is_not_found(client: tandem.Client, cluster: v1.Cluster) -> None:
    client.clusters.DeleteCluster(v1.DeleteClusterRequest(cluster_id=cluster.id))
    expect_error(
        lambda: client.clusters.GetCluster(v1.GetClusterRequest(cluster_id=cluster.id)),
        grpc.StatusCode.NOT_FOUND,
    )


def main() -> int:
    passed = failed = 0

    def check(name: str, run: Callable[[], object]) -> object:
        nonlocal passed, failed
        started = time.monotonic()
        try:
            result = run()
        except Exception:
            failed += 1
            print(f"FAIL {name}", flush=True)
            traceback.print_exc()
            return None
        passed += 1
        print(f"ok   {name} ({time.monotonic() - started:.2f}s)", flush=True)
        return result

    check("endpoint_parsing_rejects_what_grpc_cannot_reach", endpoint_parsing_rejects_what_grpc_cannot_reach)
    check("unreachable_control_plane_fails_connect", unreachable_control_plane_fails_connect)
    if shutil.which("openssl"):
        check(
            "https_with_a_ca_file_verifies_and_sends_the_token",
            https_with_a_ca_file_verifies_and_sends_the_token,
        )
    else:
        print("skip https_with_a_ca_file_verifies_and_sends_the_token (no openssl)")
    check("wrong_or_missing_token_is_unauthenticated", wrong_or_missing_token_is_unauthenticated)
    check("default_deadline_applies_to_unary_calls_only", default_deadline_applies_to_unary_calls_only)
    with tandem.connect(ENDPOINT, TOKEN) as client:
        check("token_set_on_a_call_wins", lambda: token_set_on_a_call_wins(client))
        check(
            "bad_endpoint_is_invalid_argument_naming_the_field",
            lambda: bad_endpoint_is_invalid_argument_naming_the_field(client),
        )
        cluster = check("register_probes_the_real_cluster", lambda: register_probes_the_real_cluster(client))
        try:
            if isinstance(cluster, v1.Cluster):
                check("get_and_list_find_it", lambda: get_and_list_find_it(client, cluster))
                check("asyncio_client_sees_the_same", lambda: asyncio_client_sees_the_same(cluster))
            check("gateways_and_queue_stats_answer", lambda: gateways_and_queue_stats_answer(client))
        finally:
            if isinstance(cluster, v1.Cluster):
                check("delete_then_get_is_not_found", lambda: delete_then_get_is_not_found(client, cluster))
    print(f"smoke: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
