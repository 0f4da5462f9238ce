"""What the sync and asyncio clients share: reading the endpoint and the
token, building channel credentials, and adding the token and the default
deadline to each call."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Tuple, Union
from urllib.parse import urlsplit

import grpc

#: Deadline of unary calls that set none, in seconds. Streaming calls
#: (``Watch*``, ``AgentStream``) get no default deadline: they are meant to
#: stay open.
DEFAULT_TIMEOUT = 30.0
#: How long :func:`tandem.connect` waits for the control plane to answer.
DEFAULT_CONNECT_TIMEOUT = 5.0

Metadatum = Tuple[str, Union[str, bytes]]


@dataclass(frozen=True)
class Target:
    """Where and how to reach the control plane."""

    #: ``host:port`` for grpc.
    address: str
    #: Channel credentials for https endpoints, None for plain http.
    credentials: grpc.ChannelCredentials | None
    #: The endpoint as given, for messages.
    endpoint: str


def resolve_endpoint(endpoint: str | None) -> str:
    """The endpoint argument, else ``$TANDEM_ENDPOINT``."""
    value = endpoint if endpoint is not None else os.environ.get("TANDEM_ENDPOINT", "")
    if not value.strip():
        raise ValueError("endpoint: required (argument or TANDEM_ENDPOINT)")
    return value.strip()


def resolve_token(token: str | None) -> str | None:
    """The token argument, else ``$TANDEM_TOKEN``; empty means none.

    The value is checked here so that a bad token fails at connect time and
    not on every call."""
    value = token if token is not None else os.environ.get("TANDEM_TOKEN", "")
    value = value.strip()
    if not value:
        return None
    if not value.isascii() or not value.isprintable():
        raise ValueError("token: must be printable ASCII")
    return value


def target(
    endpoint: str,
    *,
    ca_file: str | os.PathLike[str] | None,
    credentials: grpc.ChannelCredentials | None,
) -> Target:
    """Parses ``http://host:port`` or ``https://host:port`` (default ports 80
    and 443). https uses gRPC's default root certificates unless `ca_file`
    (a PEM bundle) or explicit `credentials` are given."""
    url = urlsplit(endpoint)
    if url.scheme not in ("http", "https") or not url.hostname:
        raise ValueError(
            f"endpoint: expected http://host:port or https://host:port, got {endpoint!r}"
        )
    if url.path not in ("", "/") or url.query or url.fragment:
        raise ValueError(f"endpoint: must not have a path or query, got {endpoint!r}")
    try:
        port = url.port or (443 if url.scheme == "https" else 80)
    except ValueError:
        raise ValueError(f"endpoint: invalid port in {endpoint!r}") from None
    host = f"[{url.hostname}]" if ":" in url.hostname else url.hostname
    address = f"{host}:{port}"
    if url.scheme == "http":
        if ca_file is not None or credentials is not None:
            raise ValueError(f"ca_file: TLS settings need an https:// endpoint, got {endpoint!r}")
        return Target(address, None, endpoint)
    if credentials is None:
        roots = Path(ca_file).read_bytes() if ca_file is not None else None
        credentials = grpc.ssl_channel_credentials(root_certificates=roots)
    return Target(address, credentials, endpoint)


def call_metadata(
    metadata: Iterable[Metadatum] | None, authorization: str | None
) -> tuple[Metadatum, ...]:
    """`metadata` plus the authorization header, unless the call set one."""
    merged = tuple(metadata or ())
    if authorization is not None and not any(k.lower() == "authorization" for k, _ in merged):
        merged += (("authorization", authorization),)
    return merged
