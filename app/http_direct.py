"""A connection whose first request head upgrades the app's direct path, served without hypercorn at all.

Why (docs/performance.md, "Joins at the end of session 7" and "Session 8: the socket open"): the signaling socket
already skipped hypercorn's HTTP and ASGI stack (app/ws_direct.py, ADR 0027), but every connection was still
accepted into hypercorn's ``TCPServer``: its task group (a nursery), its ``ProtocolWrapper`` and ``H11Protocol``
(an ``h11.Connection``, a context, a keep-alive timer), plus a join-deadline task of the guard's own, all built,
started and torn down for a socket that never speaks HTTP after its first head. The listener (app/http_guard.py)
now reads the first request head itself and builds hypercorn's objects only for plain HTTP; a direct upgrade is
served here, by one reader and one session task.

Theory of operation
-------------------
``DirectConnection.serve`` runs in the listener's own task, after the first head was read and fed to the
connection's ``InboundGuard`` (so every frame check still holds: message size at the header, opcodes, masking,
control frames, early frames before the 101). It asks the app's ``check`` (an HTTP refusal: host, origin, token),
answers ``101``, starts the app's session on a ``DirectSocket`` in a nursery of its own and becomes the reader:

- **Frames**: each chunk read is fed to the guard, and what it forwards to the ``DirectSocket``; a refusal sends
  its close frame (at most ``CLOSE_SEND_TIMEOUT`` s) and closes the socket.
- **The join deadline**, folded into the reader's wait (as the pings already were): until the app lifts the ticket,
  the read (and a feed that waits on a full inbox) is bounded by the connection's join deadline; when it passes,
  the socket gets 1008 "join timeout" and is closed, as the guard's deadline task did. After the join it costs
  nothing: no task per socket waits for it.
- **Pings**: after ``ping_interval`` s of silence the reader pings (a live peer answers, a vanished one meets the
  read timeout).
- **The end**: when the reader stops, the session is told (``feed_eof``) and given ``LINGER_AFTER_CLOSE`` s to
  finish; then the socket is half-closed (never racing an in-flight send) and closed.

Sends (the app's frames, the reader's pongs and pings) share one ``FrameSender``: serialised by one lock, written
at once when nothing is in flight, otherwise shielded and bounded by the write timeout.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from functools import partial
from math import inf

import trio

from .http_inbound import Inbound, InboundGuard
from .http_refusal import Refusal
from .ws_direct import (
    DirectSocket,
    DirectUpgrades,
    FrameSender,
    UpgradeRequest,
    accept_response,
    refusal_response,
)
from .ws_frames import close_frame

__all__ = ["DirectConnection", "ConnectionTicket", "DirectTimeouts", "close_frame", "refusal_reply", "send_then_close", "close_stream",
           "count_refusal",
           "MAX_RECV", "CLOSE_SEND_TIMEOUT", "LINGER_AFTER_CLOSE"]

MAX_RECV = 2**16  # bytes per read, as hypercorn's
CLOSE_SEND_TIMEOUT = 1.0  # a close frame to a peer that does not read is not worth waiting for
LINGER_AFTER_CLOSE = 3.0  # seconds the app has to finish after its socket closed (its own sends are bounded)


def refusal_reply(refusal: Refusal, upgraded: bool) -> bytes:
    """What a refused connection is told before it is closed: a close frame once upgraded, else an HTTP status."""
    if refusal.close_code is not None and upgraded:
        return close_frame(refusal.close_code, refusal.detail)
    if refusal.http_status is not None and not upgraded:
        return (f"HTTP/1.1 {refusal.http_status} Refused\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                .encode("ascii"))
    return b""


def count_refusal(refused: Counter[str], reason: str) -> None:
    """One more connection cut by a guard for ``reason`` (a callback that holds the counter, never its connection)."""
    refused[reason] += 1


async def send_then_close(stream: trio.abc.Stream, lock: trio.Lock, reply: bytes) -> None:
    """Send ``reply`` after any send in flight (waiting at most ``CLOSE_SEND_TIMEOUT``), then close."""
    if reply:
        with trio.move_on_after(CLOSE_SEND_TIMEOUT):
            async with lock:
                with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                    await stream.send_all(reply)
    await stream.aclose()


async def close_stream(stream: trio.abc.Stream, lock: trio.Lock) -> None:
    """Half-close then close, without racing an in-flight send (the lock is taken without waiting): with a send in
    flight, closing ends it with ``ClosedResourceError``; trio would see two senders on a half-close."""
    if not lock.locked():
        lock.acquire_nowait()
        try:
            await stream.send_eof()  # type: ignore[attr-defined]  # a SocketStream's; an SSL stream has none
        except (trio.BrokenResourceError, trio.BusyResourceError, trio.ClosedResourceError, AttributeError):
            pass  # already gone, or an SSL stream (no half-close)
        finally:
            lock.release()
    await stream.aclose()


class ConnectionTicket:
    """One connection's join deadline as the app sees it (``JoinTicket``; the app finds it in the ASGI scope's
    ``state`` under ``TICKET_KEY`` on hypercorn's path): ``joined()`` (a WebSocket whose session joined a call, or a
    plain HTTP request once its head is in) lifts it, also from under a reader waiting to hand bytes on (whose
    cancel scope it relaxes, so that no message is cut off by a deadline that no longer applies). The deadline is
    enforced by the connection's reader, not by a task."""

    __slots__ = ("is_joined", "feed_scope")

    def __init__(self) -> None:
        self.is_joined = False
        self.feed_scope: trio.CancelScope | None = None  # the reader's scope around a hand-off, while unjoined

    def joined(self) -> None:
        self.is_joined = True
        if self.feed_scope is not None:
            self.feed_scope.deadline = inf


class DirectTimeouts:
    """The connection's bounds, in s (``inf``: none): ``join_at`` is absolute (trio time, from the accept)."""

    __slots__ = ("join_at", "read", "ping_interval", "write")

    def __init__(self, *, join_at: float, read: float, ping_interval: float, write: float) -> None:
        self.join_at = join_at
        self.read = read
        self.ping_interval = ping_interval
        self.write = write


class DirectConnection:
    """One connection served directly (module docstring). ``refused`` counts the guard's refusals by reason
    (``callsd_http_refused_total``)."""

    __slots__ = ("stream", "inbound", "ticket", "timeouts", "refused", "send_lock", "frame_sender", "socket")

    def __init__(self, stream: trio.abc.Stream, inbound: InboundGuard, timeouts: DirectTimeouts,
                 refused: Counter[str]) -> None:
        self.stream = stream
        self.inbound = inbound
        self.ticket = ConnectionTicket()
        self.timeouts = timeouts
        self.refused = refused
        self.send_lock = trio.Lock()
        # The sender's timeout callback counts into ``refused``, not through a method of this connection: a bound
        # method would close a cycle (connection -> sender -> method -> connection), and a closed connection must
        # be freed by reference counting alone (ADR 0048, addendum "A closed connection leaves no cycle").
        self.frame_sender = FrameSender(stream, self.send_lock, write_timeout=timeouts.write,
                                        timed_out=partial(count_refusal, refused, "write_timeout"))
        self.socket = DirectSocket(self.frame_sender.send, stream.aclose)

    async def serve(self, direct: DirectUpgrades, request: UpgradeRequest, first: Inbound, ended: bool) -> None:
        """Answer the upgrade ``request`` (or refuse it), run the app's session and read until the socket ends.
        ``first``: what the guard forwarded with the head (the head itself first, then any frames sent with it)
        and its refusal, if any; ``ended``: the peer had already closed its side."""
        try:
            refusal = direct.check(request)
            if refusal is not None:
                await send_then_close(self.stream, self.send_lock, refusal_response(*refusal))
                return
            reply = accept_response(request)
            unexpected = self.inbound.response_started(reply)  # marks the upgrade answered
            if unexpected is not None:  # cannot happen for a head the guard rewrote; refused all the same
                await self.refuse(unexpected)
                return
            try:
                await self.frame_sender.send(reply)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._session, direct, request)
                await self._read(first, ended)
                # The app has been told; give it a moment to finish, then end its task.
                nursery.cancel_scope.deadline = trio.current_time() + LINGER_AFTER_CLOSE
        finally:
            await close_stream(self.stream, self.send_lock)

    async def _session(self, direct: DirectUpgrades, request: UpgradeRequest) -> None:
        try:
            await direct.serve(request, self.socket, self.ticket)
        finally:
            if self.socket.open:  # the app ended without closing: a close frame, then the stream
                with trio.CancelScope(shield=True), trio.move_on_after(CLOSE_SEND_TIMEOUT):
                    await self.socket.close(1000, "")
            else:  # the close frames went already: the stream ends, and the reader with it
                await self.stream.aclose()

    async def _read(self, checked: Inbound, ended: bool) -> None:
        """Feed the socket what the guard lets through until the peer ends, a guard refuses, the join deadline or
        the read timeout passes, or the stream is closed."""
        socket = self.socket
        rest = checked.forward[checked.forward.find(b"\r\n\r\n") + 4:]  # the frames after the head answered above
        while True:
            if rest:
                if self.ticket.is_joined:
                    await socket.feed(rest)
                else:  # a feed waiting on a full inbox must not outlive the join deadline either
                    try:
                        with trio.CancelScope(deadline=self.timeouts.join_at) as self.ticket.feed_scope:
                            await socket.feed(rest)
                    finally:
                        self.ticket.feed_scope = None  # the ticket outlives the read; the scope must not
                    if self._join_timed_out():
                        await self._refuse_join()
                        break
            if checked.refusal is not None:
                await self.refuse(checked.refusal)
                break
            if ended:
                break
            del checked, rest  # not kept alive by this frame while the next read waits (~2 x 4 KiB a connection)
            data = await self._receive()
            if data is None:
                break
            checked, ended = self.inbound.feed(data), data == b""
            rest = checked.forward
        socket.feed_eof()

    async def _receive(self) -> bytes | None:
        """The next bytes from the peer (b"" at its end), or None: silent for the read timeout, past the join
        deadline unjoined (the socket is then refused), or the stream broke. After ``ping_interval`` s of
        silence the peer is pinged."""
        silent_since = trio.current_time()
        read_deadline = silent_since + self.timeouts.read
        while True:
            ping_at = silent_since + self.timeouts.ping_interval
            join_at = inf if self.ticket.is_joined else self.timeouts.join_at
            with trio.CancelScope(deadline=min(read_deadline, ping_at, join_at)):
                try:
                    return bytes(await self.stream.receive_some(MAX_RECV))
                except (trio.ClosedResourceError, trio.BrokenResourceError):
                    return None
            now = trio.current_time()
            if self._join_timed_out():
                await self._refuse_join()
                return None
            if now >= read_deadline:
                return None
            if now >= ping_at:
                if not await self.socket.ping_once():
                    return None
                silent_since = now
            # else: woken by a join deadline the app has lifted since the wait began; wait again without it

    def _join_timed_out(self) -> bool:
        return not self.ticket.is_joined and trio.current_time() >= self.timeouts.join_at

    async def _refuse_join(self) -> None:
        self.refused["join_timeout"] += 1
        await send_then_close(self.stream, self.send_lock, close_frame(1008, "join timeout"))

    async def refuse(self, refusal: Refusal) -> None:
        """Cut the connection now: its close frame if it can be sent within a second, then the socket."""
        self.refused[refusal.reason.value] += 1
        await send_then_close(self.stream, self.send_lock, refusal_reply(refusal, self.inbound.upgraded))

