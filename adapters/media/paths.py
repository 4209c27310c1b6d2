"""How the UDP endpoint runs its per-packet work: the pure-Python path (the reference) or the native one.

`rtc.fast_path` picks one ``ReceivePath``; the endpoint calls it and never asks which it is. A path does three
things the endpoint otherwise hard-wires:

* ``drain(sock, batch)`` reads and handles up to ``batch`` datagrams (fewer returned: the socket is empty);
* ``srtp_context(keys)`` builds the SRTP contexts of a peer whose DTLS handshake finished;
* ``peer_type`` is the ``Peer`` class whose ``send_rtp`` protects with those contexts;
* ``send_rtcp(sock, packets)`` sends a tick's RTCP reports (Python: one ``Peer.send_rtcp`` each; native: SRTCP in C
  and one ``sendmmsg``, docs/adr/0042).

``PythonPath`` is today's loop (transport.py ``UdpEndpoint._drain``): ``recvmsg`` until it would block (the
ancillary data carries the kernel's arrival time, udp.kernel_arrival), each datagram through
``UdpEndpoint.handle_datagram``. ``native.NativePath`` hands the socket to the C step
(adapters/media/native/_engine.c), which does the same per datagram for established SRTP sessions and returns
everything else to ``handle_datagram``. tests/media/test_native_diff.py requires byte-identical output and
identical counters from both. docs/adr/0009-native-fast-path.md has the decision.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Protocol

from .dtls import SrtpKeys
from .srtp import SrtpContext

if TYPE_CHECKING:
    from .forwarder import Forwarder
    from .simulcast_fwd import SimulcastForwarder
    from .transport import Peer, UdpEndpoint

__all__ = ["ReceivePath", "PythonPath", "SrtpContextLike", "FAST_PATHS", "make_path", "native_available"]

log = logging.getLogger("callsd.media.paths")

FAST_PATHS = ("auto", "native", "python")


class SrtpContextLike(Protocol):
    """A peer's SRTP/SRTCP contexts as the endpoint uses them (srtp.SrtpContext, native.NativeSrtpContext)."""

    profile: bytes  # the OpenSSL profile name
    last_error: int  # libsrtp status of the last refusal

    @property
    def tx(self) -> Any: ...  # the outbound session, the path's Peer.send_rtp protects with it

    def protect_rtcp(self, packet: bytes) -> bytes | None: ...
    def unprotect_rtp(self, packet: bytes) -> bytes | None: ...
    def unprotect_rtcp(self, packet: bytes) -> bytes | None: ...


class ReceivePath(Protocol):
    """The per-packet machinery of one endpoint (see the module docstring)."""

    name: str

    @property
    def peer_type(self) -> type[Peer]: ...

    def bind(self, endpoint: UdpEndpoint) -> None:
        """Called once by the endpoint that owns this path, before any other method."""

    def srtp_context(self, keys: SrtpKeys) -> SrtpContextLike: ...

    def drain(self, sock: socket.socket, batch: int) -> int: ...

    def send_rtcp(self, sock: socket.socket | None, packets: list[tuple[Peer, bytes]]) -> None:
        """Protect and send each (peer, plain RTCP compound packet), counting as ``Peer.send_rtcp`` does; ``sock``:
        the endpoint's socket (None before it is bound)."""


class RtcpSender(Protocol):
    """What sends one plain RTCP compound packet to its peer (``Peer.send_rtcp``: SRTCP, one ``sendto``)."""

    def send_rtcp(self, plain: bytes) -> bool: ...


def send_each(packets: Iterable[tuple[RtcpSender, bytes]]) -> None:
    """Originated RTCP, packet by packet through each peer's ``send_rtcp``: the Python path's way to send a round
    (``PythonPath.send_rtcp``), and what a round is sent with where no endpoint batches it."""
    for peer, plain in packets:
        peer.send_rtcp(plain)


class PythonPath:
    """The reference: everything per packet in Python (pylibsrtp's libsrtp, one ``recvmsg``/``sendto`` each)."""

    name = "python"

    def __init__(self) -> None:
        self._endpoint: UdpEndpoint | None = None

    @property
    def peer_type(self) -> type[Peer]:
        from .transport import Peer

        return Peer

    def bind(self, endpoint: UdpEndpoint) -> None:
        self._endpoint = endpoint

    def srtp_context(self, keys: SrtpKeys) -> SrtpContext:
        return SrtpContext(keys)

    def drain(self, sock: socket.socket, batch: int) -> int:
        assert self._endpoint is not None, "bind() first"
        return self._endpoint._drain(sock.recvmsg, batch)  # noqa: SLF001 - the endpoint's own loop

    def send_rtcp(self, sock: socket.socket | None, packets: list[tuple[Peer, bytes]]) -> None:
        send_each(packets)


def native_available() -> str | None:
    """None when the native extension imports, else why not (one line)."""
    try:
        from .native import _engine  # noqa: F401
    except ImportError as exc:
        return str(exc)
    return None


def make_path(fast_path: str, forwarder: Forwarder | None,
              simulcast: SimulcastForwarder | None = None) -> ReceivePath:
    """The path `rtc.fast_path` asks for: "python", "native" (ImportError if the extension is not built) or
    "auto" (native when it is built, else python with a warning). ``simulcast``: the plane's simulcast forwarder,
    whose layers the native step then forwards too (ADR 0024)."""
    if fast_path not in FAST_PATHS:
        raise ValueError(f"fast_path must be one of {', '.join(FAST_PATHS)}, not {fast_path!r}")
    if fast_path == "python":
        return PythonPath()
    missing = native_available()
    if missing is not None:
        if fast_path == "native":
            raise ImportError(f"rtc.fast_path = 'native' but the extension is not built: {missing}")
        log.warning("native fast path not available (%s); forwarding in Python", missing)
        return PythonPath()
    from .native.path import NativePath

    return NativePath(forwarder, simulcast)
