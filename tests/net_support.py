"""The one free-port helper of the tests (loopback only)."""

from __future__ import annotations

import socket


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A port the kernel just handed out on 127.0.0.1 for ``kind`` (a TCP port by default), already released.

    For processes that must be told their port up front (a ``callsd serve`` subprocess, a TURN server); servers run
    in-process bind port 0 themselves instead."""
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
