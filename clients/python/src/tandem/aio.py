"""The asyncio client: like :mod:`tandem`, on ``grpc.aio``.

.. code-block:: python

    async with await tandem.aio.connect("http://127.0.0.1:50051", token) as client:
        response = await client.clusters.ListClusters(tandem.v1.ListClustersRequest())
        async for update in client.replication.WatchTask(
            tandem.v1.WatchTaskRequest(task_id=task_id)
        ):
            ...
"""

from __future__ import annotations

import asyncio
import os
from types import TracebackType
from typing import TYPE_CHECKING, Any, Callable, Sequence, Tuple

import grpc
from grpc import aio

from tandem import _channel
from tandem.v1 import (
    ClusterServiceStub,
    CompareServiceStub,
    GatewayServiceStub,
    MigrationServiceStub,
    QueueServiceStub,
    ReplicationServiceStub,
)

if TYPE_CHECKING:
    # Only in the type stubs: ``XServiceStub(aio_channel)`` is typed as one.
    from tandem.v1.cluster_pb2_grpc import ClusterServiceAsyncStub
    from tandem.v1.compare_pb2_grpc import CompareServiceAsyncStub
    from tandem.v1.gateway_pb2_grpc import GatewayServiceAsyncStub
    from tandem.v1.migration_pb2_grpc import MigrationServiceAsyncStub
    from tandem.v1.queue_pb2_grpc import QueueServiceAsyncStub
    from tandem.v1.replication_pb2_grpc import ReplicationServiceAsyncStub

__all__ = ["AsyncClient", "connect"]


class _AuthInterceptor:
    """Adds the bearer token to every call and the default deadline to
    unary-response calls that set none (see tandem._client)."""

    def __init__(self, token: str | None, timeout: float | None):
        self._authorization = f"Bearer {token}" if token else None
        self._timeout = timeout

    def details(self, details: aio.ClientCallDetails, unary_response: bool) -> aio.ClientCallDetails:
        timeout = details.timeout
        if timeout is None and unary_response:
            timeout = self._timeout
        metadata = aio.Metadata(*_channel.call_metadata(details.metadata, self._authorization))
        return aio.ClientCallDetails(
            details.method, timeout, metadata, details.credentials, details.wait_for_ready
        )


class _UnaryUnary(aio.UnaryUnaryClientInterceptor):
    def __init__(self, auth: _AuthInterceptor):
        self._auth = auth

    async def intercept_unary_unary(self, continuation: Callable[..., Any], client_call_details: aio.ClientCallDetails, request: Any) -> Any:
        return await continuation(self._auth.details(client_call_details, True), request)


class _UnaryStream(aio.UnaryStreamClientInterceptor):
    def __init__(self, auth: _AuthInterceptor):
        self._auth = auth

    async def intercept_unary_stream(self, continuation: Callable[..., Any], client_call_details: aio.ClientCallDetails, request: Any) -> Any:
        return await continuation(self._auth.details(client_call_details, False), request)


class _StreamUnary(aio.StreamUnaryClientInterceptor):
    def __init__(self, auth: _AuthInterceptor):
        self._auth = auth

    async def intercept_stream_unary(self, continuation: Callable[..., Any], client_call_details: aio.ClientCallDetails, request_iterator: Any) -> Any:
        return await continuation(self._auth.details(client_call_details, True), request_iterator)


class _StreamStream(aio.StreamStreamClientInterceptor):
    def __init__(self, auth: _AuthInterceptor):
        self._auth = auth

    async def intercept_stream_stream(self, continuation: Callable[..., Any], client_call_details: aio.ClientCallDetails, request_iterator: Any) -> Any:
        return await continuation(self._auth.details(client_call_details, False), request_iterator)


class AsyncClient:
    """Like :class:`tandem.Client`, on an asyncio channel: stub methods
    return awaitables (unary) or async iterators (streams)."""

    clusters: ClusterServiceAsyncStub
    gateways: GatewayServiceAsyncStub
    replication: ReplicationServiceAsyncStub
    queues: QueueServiceAsyncStub
    migrations: MigrationServiceAsyncStub
    compare: CompareServiceAsyncStub

    def __init__(self, channel: aio.Channel, endpoint: str):
        self.channel = channel
        self.endpoint = endpoint
        self.clusters = ClusterServiceStub(channel)
        self.gateways = GatewayServiceStub(channel)
        self.replication = ReplicationServiceStub(channel)
        self.queues = QueueServiceStub(channel)
        self.migrations = MigrationServiceStub(channel)
        self.compare = CompareServiceStub(channel)

    async def close(self) -> None:
        """Closes the channel; calls in flight are cancelled."""
        await self.channel.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"tandem.aio.AsyncClient({self.endpoint!r})"


async def connect(
    endpoint: str | None = None,
    token: str | None = None,
    *,
    ca_file: str | os.PathLike[str] | None = None,
    credentials: grpc.ChannelCredentials | None = None,
    timeout: float | None = _channel.DEFAULT_TIMEOUT,
    connect_timeout: float | None = _channel.DEFAULT_CONNECT_TIMEOUT,
    options: Sequence[Tuple[str, Any]] = (),
) -> AsyncClient:
    """Connects to the control plane; the arguments are those of
    :func:`tandem.connect`. Must be awaited inside a running event loop."""
    resolved = _channel.target(
        _channel.resolve_endpoint(endpoint), ca_file=ca_file, credentials=credentials
    )
    auth = _AuthInterceptor(_channel.resolve_token(token), timeout)
    interceptors = [_UnaryUnary(auth), _UnaryStream(auth), _StreamUnary(auth), _StreamStream(auth)]
    if resolved.credentials is None:
        channel = aio.insecure_channel(resolved.address, options=list(options), interceptors=interceptors)
    else:
        channel = aio.secure_channel(
            resolved.address, resolved.credentials, options=list(options), interceptors=interceptors
        )
    if connect_timeout is not None:
        try:
            await asyncio.wait_for(channel.channel_ready(), connect_timeout)
        except asyncio.TimeoutError:
            await channel.close()
            raise ConnectionError(
                f"cannot connect to the control plane at {resolved.endpoint} "
                f"(no answer within {connect_timeout:g}s)"
            ) from None
    return AsyncClient(channel, resolved.endpoint)
