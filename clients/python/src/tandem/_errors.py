"""Reading the control plane's errors: a gRPC status whose message starts
with the offending field, for example ``endpoints[0]: unsupported scheme``."""

from __future__ import annotations

import re
from dataclasses import dataclass

import grpc

# A field path as the control plane writes it: names joined by dots, each
# optionally indexed (`endpoints[0]`, `labels["team"]`, `primary.cluster_id`).
_FIELD = re.compile(r"^([a-z_][a-z0-9_]*(?:\[[^\]]*\])*(?:\.[a-z_][a-z0-9_]*(?:\[[^\]]*\])*)*): ")


@dataclass(frozen=True)
class ErrorStatus:
    """The status of a failed call."""

    #: The gRPC status code, for example ``grpc.StatusCode.NOT_FOUND``.
    code: grpc.StatusCode
    #: The status message.
    message: str

    @property
    def field(self) -> str | None:
        """The request field the message starts with (``"endpoints[0]"``),
        or None when the error is not about one field."""
        match = _FIELD.match(self.message)
        return match.group(1) if match else None


def error_status(error: grpc.RpcError) -> ErrorStatus:
    """The code and message of an error raised by a call, sync or asyncio.

    ``grpc.RpcError`` itself is not typed as having ``code()`` and
    ``details()``; the errors calls raise have them."""
    code = getattr(error, "code", None)
    details = getattr(error, "details", None)
    return ErrorStatus(
        code=code() if callable(code) else grpc.StatusCode.UNKNOWN,
        message=(details() if callable(details) else None) or "",
    )
