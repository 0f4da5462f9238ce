"""The blocking client: one grpc channel with the token interceptor and a
typed stub per service."""

from __future__ import annotations

import os
from types import TracebackType
from typing import Any, Callable, Iterator, Sequence, Tuple

import grpc

from tandem import _channel
from tandem.v1 import (
    ClusterServiceStub,
    CompareServiceStub,
    GatewayServiceStub,
    MigrationServiceStub,
    QueueServiceStub,
    ReplicationServiceStub,
)

class _CallDetails(grpc.ClientCallDetails):
    def __init__(self, base: grpc.ClientCallDetails, metadata: tuple[_channel.Metadatum, ...], timeout: float | None):
        self.method = base.method
        self.timeout = timeout
        self.metadata = metadata
        self.credentials = base.credentials
        self.wait_for_ready = base.wait_for_ready
        self.compression = base.compression


class _AuthInterceptor(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
    grpc.StreamStreamClientInterceptor,
):
    """Adds ``authorization: Bearer <token>`` to every call, and the default
    deadline to unary-response calls that set none."""

    def __init__(self, token: str | None, timeout: float | None):
        self._authorization = f"Bearer {token}" if token else None
        self._timeout = timeout

    def _details(self, details: grpc.ClientCallDetails, unary_response: bool) -> _CallDetails:
        timeout = details.timeout
        if timeout is None and unary_response:
            timeout = self._timeout
        metadata = _channel.call_metadata(details.metadata, self._authorization)
        return _CallDetails(details, metadata, timeout)

    def intercept_unary_unary(self, continuation: Callable[..., Any], client_call_details: grpc.ClientCallDetails, request: Any) -> Any:
        return continuation(self._details(client_call_details, True), request)

    def intercept_unary_stream(self, continuation: Callable[..., Any], client_call_details: grpc.ClientCallDetails, request: Any) -> Any:
        return continuation(self._details(client_call_details, False), request)

    def intercept_stream_unary(self, continuation: Callable[..., Any], client_call_details: grpc.ClientCallDetails, request_iterator: Iterator[Any]) -> Any:
        return continuation(self._details(client_call_details, True), request_iterator)

    def intercept_stream_stream(self, continuation: Callable[..., Any], client_call_details: grpc.ClientCallDetails, request_iterator: Iterator[Any]) -> Any:
        return continuation(self._details(client_call_details, False), request_iterator)


class Client:
    """A connection to the Tandem control plane, with a typed stub for each
    ``tandem.v1`` service. Every call carries the bearer token.

    Build it with :func:`tandem.connect`; close it with :meth:`close` or use
    it as a context manager. Stub methods take the request message and the
    usual grpc keyword arguments (``timeout=``, ``metadata=``, ...) and raise
    :class:`grpc.RpcError` on failure (see :func:`tandem.error_status`).
    """

    #: ClusterService: register, probe and remove clusters.
    clusters: ClusterServiceStub
    #: GatewayService: the gateway fleet.
    gateways: GatewayServiceStub
    #: ReplicationService: replication tasks, cutover and rollback.
    replication: ReplicationServiceStub
    #: QueueService: queue statistics, records and dead letters.
    queues: QueueServiceStub
    #: MigrationService: full-copy migration jobs.
    migrations: MigrationServiceStub
    #: CompareService: comparison jobs between two clusters.
    compare: CompareServiceStub

    def __init__(self, channel: grpc.Channel, endpoint: str):
        self.channel = channel
        self.endpoint = endpoint
        self.clusters = ClusterServiceStub(channel)
        self.gateways = GatewayServiceStub(channel)
        self.replication = ReplicationServiceStub(channel)
        self.queues = QueueServiceStub(channel)
        self.migrations = MigrationServiceStub(channel)
        self.compare = CompareServiceStub(channel)

    def close(self) -> None:
        """Closes the channel; calls in flight are cancelled."""
        self.channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"tandem.Client({self.endpoint!r})"


def connect(
    endpoint: str | None = None,
    token: str | None = None,
    *,
    ca_file: str | os.PathLike[str] | None = None,
    credentials: grpc.ChannelCredentials | None = None,
    timeout: float | None = _channel.DEFAULT_TIMEOUT,
    connect_timeout: float | None = _channel.DEFAULT_CONNECT_TIMEOUT,
    options: Sequence[Tuple[str, Any]] = (),
) -> Client:
    """Connects to the control plane and returns a :class:`Client`.

    Args:
        endpoint: ``http://host:port`` or ``https://host:port``; defaults to
            ``$TANDEM_ENDPOINT``.
        token: the control plane's bearer token; defaults to
            ``$TANDEM_TOKEN``. Empty sends no token (a control plane run with
            ``--insecure-no-auth``).
        ca_file: PEM bundle to verify an https endpoint with, instead of
            gRPC's default roots.
        credentials: channel credentials for an https endpoint (client
            certificates, ...); overrides `ca_file`.
        timeout: deadline in seconds of unary calls that pass no
            ``timeout=``; None for no default deadline.
        connect_timeout: seconds to wait for the control plane to answer
            before returning; None returns at once and connects lazily.
        options: extra grpc channel options.

    Raises:
        ValueError: an argument is malformed (the message names it).
        ConnectionError: the control plane did not answer within
            `connect_timeout`.
    """
    resolved = _channel.target(
        _channel.resolve_endpoint(endpoint), ca_file=ca_file, credentials=credentials
    )
    interceptor = _AuthInterceptor(_channel.resolve_token(token), timeout)
    if resolved.credentials is None:
        raw = grpc.insecure_channel(resolved.address, options=list(options))
    else:
        raw = grpc.secure_channel(resolved.address, resolved.credentials, options=list(options))
    if connect_timeout is not None:
        try:
            grpc.channel_ready_future(raw).result(timeout=connect_timeout)
        except grpc.FutureTimeoutError:
            raw.close()
            raise ConnectionError(
                f"cannot connect to the control plane at {resolved.endpoint} "
                f"(no answer within {connect_timeout:g}s)"
            ) from None
    return Client(grpc.intercept_channel(raw, interceptor), resolved.endpoint)
