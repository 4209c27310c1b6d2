"""The signaling WebSocket served straight from the guarded connection, without hypercorn's HTTP/ASGI stack.

Why (docs/adr/0027-batch-frames-and-direct-signaling-socket.md): opening and closing one signaling socket through
hypercorn (h11, its WebSocket stream, an ASGI queue, a task group per request and a ping task), quart-trio (a
request context, a nursery, a reader task, a channel, signals) and our shielded ASGI ``send`` cost ~2.8 ms of server
CPU on this machine; served here, ~2.0 ms (``python -m bench.ws_stack``; per message the two are within the noise:
Trio's wake-ups and the syscalls dominate). The signaling socket needs none of that machinery: one upgrade, then
text frames both ways.

Theory of operation
-------------------
The listener (app/http_guard.py) reads every byte and feeds ``InboundGuard`` (app/http_inbound.py), so every frame
check (message size at the header, opcodes, masking, control frames, the join deadline, connection caps) holds as
before. When the *first* request head of a connection is a WebSocket upgrade whose path a ``DirectUpgrades``
serves, the listener does not build hypercorn's server at all: it parses the head (``upgrade_request``), and a
``DirectConnection`` (app/http_direct.py) asks ``check`` (the app's refusals: host, origin, token: an HTTP status
and body), answers ``101`` itself, and from then on hands the frames the guard forwards to a ``DirectSocket``.
``serve`` (the app: the hub) runs on that socket. Any other request, and an upgrade on a later keep-alive request
(a proxy reusing a connection), goes through hypercorn and Quart as before.

``DirectSocket`` is the hub's ``Transport``: a frame codec of its own (app/ws_frames.py: unmasking, fragments,
UTF-8, ping/pong, the close handshake; the guard has checked every header), one bounded inbox of whole messages (the reader waits when it is
full, as hypercorn's app queue made it), sends serialised by the guarded server's lock with its write deadline, and
a ping after ``ping_interval`` s of silence (sent by the guard's reader, ``ping_once``) so that a vanished peer is found
by the read timeout, as hypercorn's pings did.

The inbox is where the hub's back-pressure lands (``Connection.backlog``, adapters/signaling_session.py): while
too much waits to be sent to this socket the hub takes nothing from it, the inbox fills, the guard stops reading
and TCP slows the client's sends. Nothing here waits on another socket, so this cannot close a cycle between
clients (docs/adr/0027, addendum of 2026-11-29 16:40).
"""

from __future__ import annotations

import base64
import contextlib
import enum
import hashlib
import os
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import parse_qs, urlsplit

import trio

from .ws_frames import PING_FRAME, Close, FrameReader, Ping, close_frame, pong_frame, text_frame

__all__ = ["UpgradeRequest", "JoinTicket", "DirectUpgrades", "DirectSocket", "FrameSender", "upgrade_request",
           "accept_response", "refusal_response"]

INBOX_SIZE = 16  # whole messages waiting for the app; the reader stops reading while it is full
_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 section 1.3


@dataclass(frozen=True, slots=True, kw_only=True)
class UpgradeRequest:
    """A WebSocket upgrade head: what the app's checks read."""

    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-case names; a repeated header keeps its last value
    key: str  # Sec-WebSocket-Key

    def arg(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[0] if values else None


class JoinTicket(Protocol):
    """The connection's join deadline (app/http_guard.py ``ConnectionTicket``): the app lifts it on a join."""

    def joined(self) -> None: ...

    @property
    def is_joined(self) -> bool: ...


class DirectUpgrades(Protocol):
    """The app's side: which path it serves directly, its refusals, and the session on an accepted socket."""

    @property
    def path(self) -> str: ...

    def check(self, request: UpgradeRequest) -> tuple[int, str] | None: ...  # (HTTP status, body) to refuse

    async def serve(self, request: UpgradeRequest, socket: DirectSocket, ticket: JoinTicket) -> None: ...


# A request head as RFC 9112 writes it, in the one shape a WebSocket upgrade takes (``GET``, origin-form target,
# HTTP/1.1); fields as ``token ":" OWS value OWS``. Anything else is left to hypercorn (``upgrade_request``: None).
_REQUEST_LINE = re.compile(rb"GET (/[\x21-\x7e]*) HTTP/1\.1")
_FIELD = re.compile(rb"([-!#$%&'*+.^_`|~0-9A-Za-z]+):[ \t]*((?:[\x21-\x7e\x80-\xff]+(?:[ \t]+[\x21-\x7e\x80-\xff]+)*)?)[ \t]*")
_BODY_FIELDS = frozenset({"content-length", "transfer-encoding"})  # an upgrade has no body (the guard refuses one)


def upgrade_request(head: bytes, path: str) -> UpgradeRequest | None:
    """The upgrade ``head`` (one complete request head, ending with its blank line) if it is a WebSocket upgrade of
    ``path``, else None (then it goes to hypercorn, which answers whatever it is).

    Parsed here rather than by a fresh ``h11.Connection`` (28 µs of a socket's open, docs/performance.md, "Session
    8: the socket open"): the guard (app/http_requests.py) has already delimited the head and refused bare LFs,
    folded framing fields and whitespace before a colon, and anything this strict parser does not accept (another
    method or target form, a field h11 would reject, a missing or repeated Host) simply goes to hypercorn, so it
    can never accept a head h11 refuses (tests/server/test_ws_direct.py checks it against h11)."""
    lines = head.split(b"\r\n")
    if len(lines) < 3 or lines[-2:] != [b"", b""]:
        return None
    line = _REQUEST_LINE.fullmatch(lines[0])
    if line is None:
        return None
    headers: dict[str, str] = {}
    hosts = 0
    for raw in lines[1:-2]:
        field = _FIELD.fullmatch(raw)
        if field is None:
            return None
        name = field[1].decode("ascii").lower()
        hosts += name == "host"
        if name in _BODY_FIELDS:
            return None
        headers[name] = field[2].decode("latin-1")
    if hosts != 1:  # h11 refuses an HTTP/1.1 request without one Host
        return None
    target = urlsplit(line[1].decode("ascii"))
    if target.path != path:
        return None
    connection = {token.strip() for token in headers.get("connection", "").lower().split(",")}
    key = headers.get("sec-websocket-key", "")
    if (headers.get("upgrade", "").lower() != "websocket" or "upgrade" not in connection
            or headers.get("sec-websocket-version") != "13" or not key):
        return None
    return UpgradeRequest(path=target.path, query=parse_qs(target.query), headers=headers, key=key)


def accept_response(request: UpgradeRequest) -> bytes:
    """The ``101 Switching Protocols`` answer (no extension, no subprotocol)."""
    accept = base64.b64encode(hashlib.sha1(request.key.encode("ascii") + _GUID).digest()).decode("ascii")
    return (f"HTTP/1.1 101 Switching Protocols\r\nupgrade: WebSocket\r\nconnection: Upgrade\r\n"
            f"sec-websocket-accept: {accept}\r\n\r\n").encode("ascii")


def refusal_response(status: int, body: str) -> bytes:
    """An HTTP answer refusing the upgrade; the connection is closed after it."""
    payload = body.encode("utf-8")
    content_type = "application/json" if body.startswith("{") else "text/plain; charset=utf-8"
    return (f"HTTP/1.1 {status} Refused\r\ncontent-type: {content_type}\r\ncontent-length: {len(payload)}\r\n"
            f"connection: close\r\n\r\n").encode("ascii") + payload


class _State(enum.Enum):
    OPEN = "open"
    LOCAL_CLOSING = "local closing"  # this side sent its close frame, the peer's answer is awaited
    CLOSED = "closed"  # both close frames went (or the peer's was answered)


class DirectSocket:
    """One accepted signaling WebSocket (the hub's ``Transport``). ``send_bytes`` is the guarded connection's
    serialised, deadline-bounded send; ``close_stream`` closes the TCP stream (the reader then ends). Frames are
    read by ``FrameReader`` and written by app/ws_frames.py (the guard has checked every frame header first)."""

    __slots__ = ("_frames", "_state", "_send_bytes", "_close_stream", "_inbox_send", "_inbox")

    def __init__(self, send_bytes: Callable[[bytes], Awaitable[None]],
                 close_stream: Callable[[], Awaitable[None]]) -> None:
        self._frames = FrameReader()
        self._state = _State.OPEN
        self._send_bytes = send_bytes
        self._close_stream = close_stream
        self._inbox_send, self._inbox = trio.open_memory_channel[str | bytes | None](INBOX_SIZE)

    # -- the reader's side (the guarded connection's read loop)

    async def feed(self, data: bytes) -> None:
        """Bytes the guard let through: whole messages go to the inbox; pings are answered; a close is answered
        and ends the inbox; a frame that breaks a rule (bad UTF-8, a bad close frame) is answered with its close
        code and ends the inbox."""
        try:
            for event in self._frames.receive(data):
                if isinstance(event, str | bytes):
                    await self._deliver(event)
                elif isinstance(event, Ping):
                    if self._state is _State.OPEN:
                        await self._send_bytes(pong_frame(event.payload))
                elif isinstance(event, Close):
                    if self._state is _State.OPEN:  # the peer's close: answer it
                        self._state = _State.CLOSED
                        await self._send_bytes(close_frame(event.code, event.reason))
                    self._state = _State.CLOSED
                    self.feed_eof()
                else:  # Broken
                    await self._send_close(event.code, "protocol error")
                    self.feed_eof()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self.feed_eof()

    async def _deliver(self, message: str | bytes) -> None:
        """``send`` to the inbox without its closing checkpoint when the inbox has room: the reader yields at its
        next read anyway (a socket read always ends in one), so the extra yield was one more task step per message
        in, ~1.7 per join (``bench.joins --counts``). A cancelled reader still raises first, and a full inbox still
        waits, exactly as ``send``."""
        await trio.lowlevel.checkpoint_if_cancelled()
        try:
            self._inbox_send.send_nowait(message)
        except trio.WouldBlock:
            await self._inbox_send.send(message)

    def feed_eof(self) -> None:
        """The peer closed or the stream ended: ``receive`` returns None from now on."""
        self._inbox_send.close()

    # -- the app's side (``Transport``)

    async def receive(self) -> str | bytes | None:
        try:
            return await self._inbox.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            return None

    async def send(self, text: str) -> None:
        if self._state is not _State.OPEN:
            raise trio.ClosedResourceError("the WebSocket is closing")
        await self._send_bytes(text_frame(text))

    async def close(self, code: int, reason: str) -> None:
        await self._send_close(code, reason)
        await self._close_stream()

    @property
    def open(self) -> bool:
        """This side has not sent its close frame yet (one could still be sent)."""
        return self._state is _State.OPEN

    async def ping_once(self) -> bool:
        """Send a ping (the guard's reader does, after ``websocket_ping_interval`` of silence: a live peer answers,
        a vanished one meets the read timeout). False if the socket is no longer open or the send failed."""
        if self._state is not _State.OPEN:
            return False
        try:
            await self._send_bytes(PING_FRAME)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return False
        return True

    async def _send_close(self, code: int, reason: str) -> None:
        if self._state is _State.OPEN:
            self._state = _State.LOCAL_CLOSING
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                await self._send_bytes(close_frame(code, reason))


class FrameSender:
    """The sends of one connection: serialised by its ``lock`` (hypercorn's send lock, which every other send of the
    connection takes), each shielded (a cancelled send would cut a frame in half) and bounded by ``write_timeout``
    (a peer that stops reading would hold it forever; then ``timed_out()`` is told, the stream closed and
    ``trio.ClosedResourceError`` raised).

    Fast path: when no send is in flight on a plain TCP stream, the bytes are written at once (one ``write``: no
    lock to wait for, no cancel scope, no checkpoint). A frame almost always fits the socket's buffer; what it did
    not take goes the slow way, under the lock taken before anything else could run, so frames never interleave.
    A send cost ~33 µs of CPU through the lock, the scope and ``send_all``, ~12 µs this way (docs/performance.md,
    "Joins at the end of session 7"). Callers (the hub's writer, ``DirectSocket.feed``) reach a checkpoint at
    their next read, so a fast send that does not yield starves nobody."""

    def __init__(self, stream: trio.abc.Stream, lock: trio.Lock, *, write_timeout: float,
                 timed_out: Callable[[], None]) -> None:
        self._stream = stream
        self._tcp = stream.socket if isinstance(stream, trio.SocketStream) else None  # None: e.g. TLS
        self._lock = lock
        self._write_timeout = write_timeout
        self._timed_out = timed_out

    async def send(self, data: bytes) -> None:
        fd = self._tcp.fileno() if self._tcp is not None else -1  # -1 once the socket is closed: never a stale fd
        if fd >= 0 and not self._lock.locked():
            try:
                sent = os.write(fd, data)
            except BlockingIOError:
                sent = 0
            except OSError as exc:  # reset, broken pipe: as ``send_all`` reports them
                raise trio.BrokenResourceError(f"the socket failed: {exc!r}") from exc
            if sent == len(data):
                return
            self._lock.acquire_nowait()  # free: nothing ran since the check; held before the rest is awaited
            try:
                await self._send_bounded(data[sent:])
            finally:
                self._lock.release()
            return
        async with self._lock:
            await self._send_bounded(data)

    async def _send_bounded(self, data: bytes) -> None:
        with trio.CancelScope(shield=True, deadline=trio.current_time() + self._write_timeout) as scope:
            await self._stream.send_all(data)
        if scope.cancelled_caught:
            self._timed_out()
            await self._stream.aclose()
            raise trio.ClosedResourceError("the peer did not read within the write timeout")

