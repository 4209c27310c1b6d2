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
import struct
import time
from collections.abc import Sequence

__all__ = ["open_socket", "kernel_drops", "stamp_arrivals", "kernel_arrival", "SO_TIMESTAMPNS", "STAMP_SPACE", "BufferSizes",
           "KIND_STUN", "KIND_DTLS", "KIND_RTP", "KIND_OTHER", "CLASSIFY"]

log = logging.getLogger("callsd.media.udp")

KIND_OTHER, KIND_STUN, KIND_DTLS, KIND_RTP = 0, 1, 2, 3
# First byte -> kind, a 256-entry tuple: one index on the hot path instead of range comparisons.
CLASSIFY: tuple[int, ...] = tuple(
    KIND_STUN if b <= 3 else KIND_DTLS if 20 <= b <= 63 else KIND_RTP if 128 <= b <= 191 else KIND_OTHER
    for b in range(256)
)


# Linux's value; Python's socket module lacks the name on some builds. The kernel then stamps each datagram's arrival
# (wall clock, ns) for recvmsg/recvmmsg's ancillary data (SCM_TIMESTAMPNS).
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)


def stamp_arrivals(sock: socket.socket) -> None:
    """Have the kernel stamp each datagram's arrival: transport-cc feedback reports when a publisher's packet reached
    the host, not when a late or batched drain read it (twcc_recv.py, docs/adr/0035)."""
    sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)


STAMP_SPACE = socket.CMSG_SPACE(16)  # recvmsg's ancillary room for one SCM_TIMESTAMPNS (a struct timespec)
_TIMESPEC = struct.Struct("@qq")


def kernel_arrival(ancillary: Sequence[tuple[int, int, bytes]]) -> float | None:
    """A datagram's arrival on ``time.monotonic``'s clock from recvmsg's ancillary data (the kernel's wall-clock
    SCM_TIMESTAMPNS, mapped with the monotonic - wall offset read now), never later than now; None without one.
    The Python path's twin of the native step's ``arrival_times`` (native/arrival_step.h), one datagram a batch."""
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(data) >= _TIMESPEC.size:
            read_ns = time.monotonic_ns()
            sec, nsec = _TIMESPEC.unpack_from(data)
            at_ns: int = sec * 1_000_000_000 + nsec + read_ns - time.time_ns()
            return min(at_ns, read_ns) / 1e9
    return None


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
        stamp_arrivals(sock)
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


_SO_MEMINFO = 55  # Linux >= 4.12 (asm-generic/socket.h); not in Python's socket module
_MEMINFO = struct.Struct("=9I")  # SK_MEMINFO_RMEM_ALLOC ... SK_MEMINFO_DROPS (linux/sock_diag.h)


def kernel_drops(sock: socket.socket) -> int:
    """Datagrams the kernel dropped at this socket since it was opened: its receive buffer was full (or the
    checksum was bad): the "drops" column of /proc/net/udp, read for this socket alone with one getsockopt.

    This is where a held event loop loses packets (adapters/loop_holds.py); 0 where the kernel cannot tell."""
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, _SO_MEMINFO, _MEMINFO.size)
    except OSError:
        return 0
    if len(raw) < _MEMINFO.size:
        return 0
    return int(_MEMINFO.unpack(raw)[8])
