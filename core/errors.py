"""The core's two error types, after h11: misuse by the local program versus bad input from the remote side.

A remote party's mistake inside a well-formed command (joining a full call, a second screen share) is not an
exception at all: it becomes a ``Rejected`` output with a machine-readable reason.
"""

from __future__ import annotations

__all__ = ["CallsdError", "LocalProtocolError", "RemoteProtocolError"]


class CallsdError(Exception):
    """Base of the core's errors."""


class LocalProtocolError(CallsdError):
    """The embedding program misused the core: an invalid event field, an impossible request."""


class RemoteProtocolError(CallsdError):
    """Bytes or documents from a remote party could not be parsed (a codec's one declared error)."""
