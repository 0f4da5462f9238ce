"""Python SDK for the Tandem control plane.

:func:`connect` returns a :class:`Client` with a typed stub for each
``tandem.v1`` service; every call carries the control plane's bearer token
and unary calls get a default deadline. The request and response messages
are in :mod:`tandem.v1` (generated from ``proto/tandem/v1``); the asyncio
flavour is :mod:`tandem.aio`.

.. code-block:: python

    import tandem
    from tandem import v1

    with tandem.connect("http://127.0.0.1:50051", token="...") as client:
        for cluster in client.clusters.ListClusters(v1.ListClustersRequest()).clusters:
            print(cluster.name, cluster.last_probe.version.number)

Failed calls raise :class:`grpc.RpcError`; :func:`error_status` gives its
code, message and the offending request field.
"""

from tandem import v1
from tandem._channel import DEFAULT_CONNECT_TIMEOUT, DEFAULT_TIMEOUT
from tandem._client import Client, connect
from tandem._errors import ErrorStatus, error_status

__all__ = [
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_TIMEOUT",
    "Client",
    "ErrorStatus",
    "connect",
    "error_status",
    "v1",
]
__version__ = "0.1.0"
