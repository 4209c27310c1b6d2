"""One UDP socket for every simulated user of a load process, each user a loopback address of its own.

Why: with a socket per user, the load tool pays a receive syscall for every packet or two (a user's socket holds
one or two packets when it is read) and a send syscall per packet (each user sends one packet per 20 ms tick), and
a core of the tool cannot load a core of the server (issue 13). Here every user has its own source address on
loopback (``127.X.Y.Z``, all on one port), so the server still sees one address per user, but the process reads
and writes all users' datagrams through one socket: one ``recvmmsg`` and one ``sendmmsg`` carry up to 64 packets
of many users (peer/_fastpeer.c). ``IP_PKTINFO`` says, on receive, which user a datagram is for (its destination
address) and sets, on send, the user's source address.

Only for a server on loopback (the source addresses are loopback addresses); the engine falls back to a socket
per user otherwise. The socket is bound to the wildcard address on an ephemeral port, so no other process can
bind that port on any address while it is open; datagrams for destinations outside 127/8 are dropped by the C
receiver.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import struct
from typing import Any

from callsd.adapters.media.udp import stamp_arrivals  # the server's socket asks for the same stamps

__all__ = ["SharedPort", "LegSocket", "is_loopback"]

IP_PKTINFO = getattr(socket, "IP_PKTINFO", 8)
SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)
_PKTINFO = struct.Struct("=I4s4s")  # struct in_pktinfo: ifindex, spec_dst (our source), addr


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback and ":" not in host
    except ValueError:
        return False


class SharedPort:
    """The process's one media socket and the loopback addresses handed to its users."""

    def __init__(self, rcvbuf: int = 32 << 20) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setblocking(False)
        self.sock.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
        stamp_arrivals(self.sock)  # arrival times for the delay (_fastpeer.c)
        for option in (SO_RCVBUFFORCE, socket.SO_RCVBUF):  # FORCE needs CAP_NET_ADMIN; else rmem_max caps it
            try:
                self.sock.setsockopt(socket.SOL_SOCKET, option, rcvbuf)
                break
            except OSError:
                continue
        self.sock.bind(("0.0.0.0", 0))
        self.port: int = self.sock.getsockname()[1]
        # 127.<64..127>.<random>.<n>: away from the 127.0.0.x addresses tests and servers bind
        seed = int.from_bytes(os.urandom(2), "big")
        self._base = (127 << 24) | ((64 + seed % 64) << 16) | ((seed >> 6) % 256 << 8)
        self._next = 1

    def fileno(self) -> int:
        return self.sock.fileno()

    def new_socket(self) -> LegSocket:
        """A socket-like handle for one user, with the next free loopback address."""
        n = self._next
        self._next += 1
        key = self._base + (n // 254) * 256 + n % 254 + 1
        return LegSocket(self, key)

    def close(self) -> None:
        self.sock.close()


class LegSocket:
    """What `PeerTransport` uses of a socket, for one user of a `SharedPort`: its address is ``(host, port)``,
    ``fileno()`` is the address as an integer (the engine's key for the user, not a file descriptor)."""

    __slots__ = ("shared", "key", "host", "peer", "route", "_src")

    def __init__(self, shared: SharedPort, key: int) -> None:
        self.shared = shared
        self.key = key
        self.host = socket.inet_ntoa(struct.pack("!I", key))
        self.peer: tuple[str, int] | None = None
        self.route: tuple[int, int, int] = (key, 0, 0)  # (source, destination address, destination port)
        self._src = _PKTINFO.pack(0, struct.pack("!I", key), bytes(4))

    def setblocking(self, flag: bool) -> None:
        """Always non-blocking (the shared socket is)."""

    def setsockopt(self, *args: Any) -> None:
        """Options belong to the shared socket."""

    def bind(self, address: tuple[str, int]) -> None:
        """The address was assigned when this handle was made."""

    def getsockname(self) -> tuple[str, int]:
        return (self.host, self.shared.port)

    def connect(self, address: tuple[str, int]) -> None:
        host = socket.gethostbyname(address[0])
        self.peer = (host, int(address[1]))
        self.route = (self.key, struct.unpack("!I", socket.inet_aton(host))[0], int(address[1]))

    def getpeername(self) -> tuple[str, int]:
        if self.peer is None:
            raise OSError("not connected")
        return self.peer

    def send(self, data: bytes) -> int:
        if self.peer is None:
            raise OSError("not connected")
        return self.shared.sock.sendmsg([data], [(socket.IPPROTO_IP, IP_PKTINFO, self._src)], 0, self.peer)

    def fileno(self) -> int:
        return self.key

    def close(self) -> None:
        self.peer = None
