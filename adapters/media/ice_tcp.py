"""ICE over TCP (RFC 6544 passive candidates, RFC 4571 framing): media for clients whose UDP is blocked.

Theory of operation
-------------------
A client that cannot send UDP to the RTC port may still open a TCP connection to ``rtc.ice_port_tcp``: the SDP
advertises a ``tcptype passive`` host candidate per advertised address, the browser connects (its candidate is
``active``), and sends the same STUN, DTLS and SRTP it would send over UDP, each packet preceded by a 16-bit length
(RFC 4571).

Rather than teach the UDP endpoint (the hot path: one socket, drain-then-wait, no awaits per packet) a second kind
of address, each TCP connection gets its own *relay socket*: a UDP socket on the loopback interface that exchanges
unframed datagrams with the endpoint's own UDP port. To the endpoint, a TCP client is one more UDP peer at
127.0.0.1:<relay port>; ICE-lite authentication, DTLS, SRTP and forwarding are the very same code. The cost (one
loopback datagram each way) is paid only by TCP sessions.

TCP must not slow UDP sessions down. The endpoint never blocks on a relay socket (a full one drops the datagram,
as a full UDP send buffer does), and each connection's write side is bounded: datagrams for the client wait in a
queue of at most ``max_buffered`` bytes; a client that reads so slowly that the queue fills is disconnected
(``slow_reader``) rather than allowed to buffer without limit. A connection that sends nothing for ``idle_timeout``
seconds, or a frame longer than ``MAX_FRAME``, is closed. ``client_address(relay_address)`` tells the log which TCP
client a relay address stands for.
"""

from __future__ import annotations

import contextlib
import logging
import socket
from collections import deque
from dataclasses import dataclass
from typing import Any

import trio

__all__ = ["IceTcpListener", "IceTcpCounters", "MAX_FRAME", "frame"]

log = logging.getLogger("callsd.media.ice_tcp")

MAX_FRAME = 1500  # a media datagram is at most ~1200 bytes; anything longer is not ours


def frame(datagram: bytes) -> bytes:
    """RFC 4571: a 16-bit big-endian length, then the packet."""
    return len(datagram).to_bytes(2, "big") + datagram


class IceTcpCounters:
    """Plain ints: connections accepted / open now, frames each way, and why connections were dropped."""

    __slots__ = ("connections", "open", "frames_in", "frames_out", "slow_reader", "idle", "bad_frame")

    def __init__(self) -> None:
        self.connections = self.open = self.frames_in = self.frames_out = 0
        self.slow_reader = self.idle = self.bad_frame = 0

    def as_dict(self) -> dict[str, int]:
        return {f"ice_tcp_{name}": getattr(self, name) for name in self.__slots__}


@dataclass(frozen=True, slots=True, kw_only=True)
class _Relay:
    client: tuple[str, int]


class IceTcpListener:
    """See the module docstring. ``await nursery.start(listener.serve)`` reports the bound TCP port."""

    def __init__(self, *, host: str, port: int, udp_address: tuple[str, int], max_buffered: int = 256 * 1024,
                 idle_timeout: float = 30.0, max_connections: int = 1000) -> None:
        self.host = host
        self.port = port
        self.udp_target = (_loopback_for(udp_address[0]), udp_address[1])
        self.max_buffered = max_buffered
        self.idle_timeout = idle_timeout
        self.max_connections = max_connections
        self.counters = IceTcpCounters()
        self._relays: dict[tuple[str, int], _Relay] = {}

    def client_address(self, relay_address: Any) -> str | None:
        """``"198.51.100.2:40312 over TCP"`` when ``relay_address`` is one of this listener's relay sockets."""
        key = (str(relay_address[0]), int(relay_address[1])) if isinstance(relay_address, tuple) else None
        relay = self._relays.get(key) if key else None
        return f"{relay.client[0]}:{relay.client[1]} over TCP" if relay else None

    async def serve(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        # "::" (dual-stack RTC socket): trio binds IPv4 and IPv6 listeners separately for host=None
        try:
            listeners = await trio.open_tcp_listeners(self.port, host=None if self.host == "::" else self.host)
        except OSError as exc:  # the server must not run without the transport its candidates advertise
            raise OSError(exc.errno, f"ICE-TCP port tcp {self.host}:{self.port} (rtc.ice_port_tcp): {exc.strerror}; "
                                     "free it, choose another port, or set rtc.ice_port_tcp = 0 to turn ICE-TCP off"
                          ) from exc
        bound = listeners[0].socket.getsockname()[1]
        log.info("media: ICE-TCP on tcp %s:%d", self.host, bound)
        task_status.started(bound)
        await trio.serve_listeners(self._handle, listeners)

    async def _handle(self, stream: trio.SocketStream) -> None:
        peer = stream.socket.getpeername()
        client = (str(peer[0]), int(peer[1]))
        if self.counters.open >= self.max_connections:
            await stream.aclose()
            return
        family = socket.AF_INET6 if ":" in self.udp_target[0] else socket.AF_INET
        udp = socket.socket(family, socket.SOCK_DGRAM)
        udp.setblocking(False)
        self.counters.connections += 1
        self.counters.open += 1
        relay_key: tuple[str, int] | None = None
        try:
            udp.bind((self.udp_target[0], 0))
            udp.connect(self.udp_target)
            name = udp.getsockname()
            relay_key = (str(name[0]), int(name[1]))
            self._relays[relay_key] = _Relay(client=client)
            async with trio.open_nursery() as nursery:
                queue = _BoundedQueue(self.max_buffered)
                nursery.start_soon(self._from_client, stream, udp, nursery.cancel_scope, client)
                nursery.start_soon(self._to_client_queue, udp, queue, nursery.cancel_scope, client)
                nursery.start_soon(self._to_client_send, stream, queue)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass
        finally:
            self.counters.open -= 1
            if relay_key is not None:
                self._relays.pop(relay_key, None)
            udp.close()
            with trio.CancelScope(shield=True):
                await stream.aclose()

    async def _from_client(self, stream: trio.SocketStream, udp: socket.socket, scope: trio.CancelScope,
                           client: tuple[str, int]) -> None:
        buf = bytearray()
        while True:
            with trio.move_on_after(self.idle_timeout) as idle:
                data = await stream.receive_some(65536)
            if idle.cancelled_caught:
                self.counters.idle += 1
                scope.cancel()
                return
            if not data:
                scope.cancel()
                return
            buf += data
            while len(buf) >= 2:
                size = int.from_bytes(buf[:2], "big")
                if size == 0 or size > MAX_FRAME:
                    self.counters.bad_frame += 1
                    log.info("media: ICE-TCP %s:%d sent a %d-byte frame; closed", client[0], client[1], size)
                    scope.cancel()
                    return
                if len(buf) < 2 + size:
                    break
                datagram = bytes(buf[2:2 + size])
                del buf[:2 + size]
                self.counters.frames_in += 1
                with contextlib.suppress(OSError):  # non-blocking: a full loopback socket drops, as UDP would
                    udp.send(datagram)
            await trio.lowlevel.checkpoint()

    async def _to_client_queue(self, udp: socket.socket, queue: _BoundedQueue, scope: trio.CancelScope,
                               client: tuple[str, int]) -> None:
        while True:
            await trio.lowlevel.wait_readable(udp)
            try:
                datagram = udp.recv(2048)
            except (BlockingIOError, ConnectionRefusedError):
                continue
            if not queue.put(frame(datagram)):
                self.counters.slow_reader += 1
                log.warning("media: ICE-TCP client %s:%d reads too slowly (%d bytes waiting); disconnected",
                            client[0], client[1], queue.size)
                scope.cancel()
                return

    async def _to_client_send(self, stream: trio.SocketStream, queue: _BoundedQueue) -> None:
        while True:
            chunk = await queue.get()
            await stream.send_all(chunk)
            self.counters.frames_out += 1


class _BoundedQueue:
    """Frames waiting for a TCP client, at most ``limit`` bytes; ``put`` says False instead of growing past it."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.size = 0
        self._items: deque[bytes] = deque()
        self._ready = trio.Event()

    def put(self, item: bytes) -> bool:
        if self.size + len(item) > self.limit:
            return False
        self._items.append(item)
        self.size += len(item)
        self._ready.set()
        return True

    async def get(self) -> bytes:
        while not self._items:
            self._ready = trio.Event()
            await self._ready.wait()
        # hand over everything queued at once: one send for a burst
        chunk = b"".join(self._items)
        self._items.clear()
        self.size = 0
        return chunk


def _loopback_for(host: str) -> str:
    """Where a relay socket reaches the endpoint: its own address, or loopback for a wildcard bind."""
    if host in ("0.0.0.0", ""):
        return "127.0.0.1"
    if host == "::":
        return "::1"
    return host
