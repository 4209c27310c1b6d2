"""The RTC port's UDP socket: non-blocking, with large kernel buffers, and the RFC 7983 first-byte demux.

`open_socket` binds the socket and asks the kernel for `rcvbuf`/`sndbuf` bytes (with SO_RCVBUFFORCE/SO_SNDBUFFORCE
first, which only a process with CAP_NET_ADMIN may use). Otherwise Linux silently caps the request at
``net.core.rmem_max`` / ``wmem_max`` (and reports double the granted size); when the grant is lower than asked, a
warning names the sysctl to run. A small receive buffer is the first cause of loss under bursts of video.

`classify(first_byte)` is the demux of RFC 7983 §7: 0–3 STUN, 20–63 DTLS, 128–191 RTP/RTCP (RTCP when the second
byte, the packet type, is 192–223: RFC 5761 §4), everything else is dropped as malformed.
"""

from __future__ import annotations

import logging
import socket

__all__ = ["open_socket", "BufferSizes", "KIND_STUN", "KIND_DTLS", "KIND_RTP", "KIND_OTHER", "CLASSIFY"]

log = logging.getLogger("callsd.media.udp")

KIND_OTHER, KIND_STUN, KIND_DTLS, KIND_RTP = 0, 1, 2, 3
# First byte -> kind, a 256-entry tuple: one index on the hot path instead of range comparisons.
CLASSIFY: tuple[int, ...] = tuple(
    KIND_STUN if b <= 3 else KIND_DTLS if 20 <= b <= 63 else KIND_RTP if 128 <= b <= 191 else KIND_OTHER
    for b in range(256)
)


class BufferSizes:
    """What the kernel granted, in bytes as Linux reports them (twice the usable size)."""

    __slots__ = ("rcvbuf", "sndbuf", "rcvbuf_asked", "sndbuf_asked")

    def __init__(self, rcvbuf: int, sndbuf: int, rcvbuf_asked: int, sndbuf_asked: int) -> None:
        self.rcvbuf, self.sndbuf, self.rcvbuf_asked, self.sndbuf_asked = rcvbuf, sndbuf, rcvbuf_asked, sndbuf_asked

    def __repr__(self) -> str:
        return f"BufferSizes(rcvbuf={self.rcvbuf}, sndbuf={self.sndbuf})"


def _set_buffer(sock: socket.socket, option: int, force: int | None, size: int) -> None:
    """Ask for `size` bytes; with CAP_NET_ADMIN the FORCE variant ignores the sysctl cap, so try it first."""
    if force is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, force, size)
            return
        except OSError:
            pass
    sock.setsockopt(socket.SOL_SOCKET, option, size)


def open_socket(host: str, port: int, *, rcvbuf: int, sndbuf: int) -> tuple[socket.socket, BufferSizes]:
    """Bind a non-blocking UDP socket on (host, port) with the requested buffer sizes; warn if capped."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        if family == socket.AF_INET6 and host == "::":
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)  # dual-stack: IPv4 peers as ::ffff:a.b.c.d
        _set_buffer(sock, socket.SO_RCVBUF, getattr(socket, "SO_RCVBUFFORCE", None), rcvbuf)
        _set_buffer(sock, socket.SO_SNDBUF, getattr(socket, "SO_SNDBUFFORCE", None), sndbuf)
        sock.bind((host, port))
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    got_r = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
    got_s = sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
    # Linux doubles the value for bookkeeping overhead: the usable size is half what getsockopt reports.
    if got_r < 2 * rcvbuf:
        log.warning("UDP receive buffer capped at %d bytes (asked %d): run `sysctl -w net.core.rmem_max=%d` "
                    "to avoid loss under bursts", got_r // 2, rcvbuf, rcvbuf)
    if got_s < 2 * sndbuf:
        log.warning("UDP send buffer capped at %d bytes (asked %d): run `sysctl -w net.core.wmem_max=%d`",
                    got_s // 2, sndbuf, sndbuf)
    return sock, BufferSizes(got_r, got_s, rcvbuf, sndbuf)
