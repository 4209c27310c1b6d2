"""The HTTP listener: hypercorn's connection handler, with the guards callsd needs around it (docs/adr/0008-http-guard.md).

This is the one place where callsd works around hypercorn 0.18; everything here is about connections, nothing about
calls. ``serve_http`` replaces ``hypercorn.trio.serve`` (same sockets, lifespan and ``TCPServer``) so that:

- **One connection's failure never ends the server.** hypercorn starts every connection handler in the server's
  nursery, so an exception in any of a connection's tasks (its reader, its ASGI app, its ping task) climbs to
  ``trio.run`` and ends the process with every call in it (issue 8, item 0). Here each connection runs in
  ``_contained``: an error is logged once per kind (then only counted), counted in
  ``callsd_http_connection_errors_total{error}``, and the connection is closed.
- **A stream's sends are serialised.** hypercorn sends data under ``TCPServer.send_lock`` but half-closes the
  socket (``send_eof``) without it; when a WebSocket ping holds the lock while the connection closes, trio sees two
  senders and raises ``BusyResourceError`` in the ping task. ``GuardedTCPServer._close`` half-closes only when no
  send is in flight (holding the lock), and otherwise just closes the socket, which ends the in-flight send with
  ``ClosedResourceError`` (which hypercorn handles). A send that the peer does not read within ``http.idle_timeout``
  seconds closes the connection (hypercorn's send has no deadline, so a client that never reads held it forever).
- **Bytes are checked where they arrive** (app/http_inbound.py): an oversized WebSocket message is refused at its
  frame header, before its payload is read or buffered (hypercorn 0.18 would buffer all of it first), and the
  socket is closed at once: a close frame (1009, or 1002 for a malformed frame) if it can be sent within a second,
  then the socket, and no more reading.
- **Connections are bounded** (``GuardSettings``): at most ``http.max_connections`` open in all and
  ``http.max_connections_per_address`` from one client address (0 = no limit; a connection over a limit is closed
  as soon as it is accepted), and a connection must finish its first request head, and a WebSocket must join a
  call, within ``http.join_timeout`` seconds, or it is closed (1008 "join timeout" on a WebSocket). A WebSocket
  upgraded on a later keep-alive request (a proxy reusing the connection) gets a new ticket and deadline of its own. The app says
  "joined" through the ``ConnectionTicket`` it finds in the ASGI scope's ``state`` under ``TICKET_KEY``.
- **The signaling socket may skip hypercorn** (``direct``, app/ws_direct.py): when the first request head of a
  connection upgrades a path the app serves directly, the guard answers the upgrade and hands the frames it
  forwards to a ``DirectSocket``; every check above still applies, since the bytes still pass ``InboundGuard``.
"""

from __future__ import annotations

import contextlib
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from functools import partial
from math import inf
from typing import Any

import hypercorn.config
import trio
from hypercorn.events import Closed, Event, RawData
from hypercorn.trio.lifespan import Lifespan
from hypercorn.trio.statsd import StatsdLogger
from hypercorn.trio.tcp_server import MAX_RECV, TCPServer
from hypercorn.trio.worker_context import TrioSingleTask, WorkerContext
from hypercorn.typing import ConnectionState
from hypercorn.utils import repr_socket_addr, wrap_app
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from .http_inbound import InboundGuard, Phase, Refusal
from .ws_direct import (
    DirectSocket,
    DirectUpgrades,
    FrameSender,
    UpgradeRequest,
    accept_response,
    refusal_response,
    upgrade_request,
)

__all__ = ["GuardSettings", "GuardCounters", "GuardCollector", "ConnectionTicket", "GuardedTCPServer", "serve_http",
           "TICKET_KEY"]

log = logging.getLogger("callsd.http")

CLOSE_SEND_TIMEOUT = 1.0  # a close frame to a peer that does not read is not worth waiting for
DEFAULT_WRITE_TIMEOUT = 45.0  # seconds one send may wait for the peer to read (http.idle_timeout when set)
LINGER_AFTER_CLOSE = 3.0  # seconds the app has to finish after its socket closed (its own sends are bounded)
TICKET_KEY = "callsd.connection"  # where the app finds its ConnectionTicket in the ASGI scope's "state"


@dataclass(frozen=True, slots=True, kw_only=True)
class GuardSettings:
    max_message_bytes: int  # the largest WebSocket message accepted (longer ones: close 1009 at the header)
    join_timeout: float = 10.0  # seconds to finish the first request head, and for a WebSocket to join a call
    max_connections: int = 0  # open connections in all (0 = no limit)
    max_connections_per_address: int = 0  # open connections from one client address (0 = no limit)



class GuardCounters:
    """Plain integers bumped by the listener, read by ``GuardCollector`` at scrape time."""

    __slots__ = ("connection_errors", "refused", "open", "by_address")

    def __init__(self) -> None:
        self.connection_errors: Counter[str] = Counter()  # exception type -> connections it ended
        self.refused: Counter[str] = Counter()  # reason -> connections cut by a guard
        self.open = 0
        self.by_address: Counter[str] = Counter()  # client address -> its open connections


class GuardCollector(Collector):
    """``callsd_http_connection_errors_total{error}``, ``callsd_http_refused_total{reason}`` and the gauge
    ``callsd_http_connections_open``."""

    def __init__(self, counters: GuardCounters) -> None:
        self.counters = counters

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        errors = CounterMetricFamily("callsd_http_connection_errors",
                                     "HTTP connections ended by an unexpected error in one of their tasks",
                                     labels=["error"])
        for name, value in sorted(self.counters.connection_errors.items()):
            errors.add_metric([name], value)
        yield errors
        refused = CounterMetricFamily("callsd_http_refused", "HTTP connections (or requests) refused by a guard",
                                      labels=["reason"])
        for name, value in sorted(self.counters.refused.items()):
            refused.add_metric([name], value)
        yield refused
        yield GaugeMetricFamily("callsd_http_connections_open", "HTTP connections open now",
                                value=self.counters.open)


class ConnectionTicket:
    """One connection's join deadline: ``joined()`` (a WebSocket whose session joined a call, or a plain HTTP
    request once its head is in) lifts it."""

    __slots__ = ("_done",)

    def __init__(self) -> None:
        self._done = trio.Event()

    def joined(self) -> None:
        self._done.set()

    @property
    def is_joined(self) -> bool:
        return self._done.is_set()

    async def wait(self) -> None:
        await self._done.wait()


class _KeepAliveTimer(TrioSingleTask):
    """hypercorn's keep-alive timer, not started for the wait before a connection's first request: until its first
    request head arrives, the connection's join deadline bounds it (``http.join_timeout``, ``_Listener._join_deadline``),
    and a connection whose first head is a direct upgrade never goes back to HTTP. hypercorn starts the timer with
    ``nursery.start`` and the direct upgrade cancelled it at once: a task started and cancelled per signaling socket
    for nothing (~60 µs of its ~1 ms, docs/performance.md, "Joins at the end of session 7"). From the first request
    on, hypercorn restarts and stops it as before."""

    def __init__(self) -> None:
        super().__init__()
        self._first = True

    async def restart(self, task_group: Any, action: Callable[..., Any]) -> None:
        if self._first:  # the wait for the first head: the join deadline's, not keep-alive's
            self._first = False
            return
        await super().restart(task_group, action)


class GuardedTCPServer(TCPServer):
    """hypercorn's per-connection server with serialised sends and inbound checks (see the module docstring)."""

    def __init__(self, app: Any, config: hypercorn.config.Config, context: WorkerContext, state: ConnectionState,
                 stream: Any, *, inbound: InboundGuard, counters: GuardCounters,
                 ticket: ConnectionTicket | None = None, direct: DirectUpgrades | None = None) -> None:
        super().__init__(app, config, context, state, stream)
        self.idle_task = _KeepAliveTimer()
        self.inbound = inbound
        self.counters = counters
        self.ticket = ticket or ConnectionTicket()
        self.later_upgrade = trio.Event()  # a WebSocket upgrade on a later keep-alive request got its own ticket
        self.direct = direct  # the app's directly served upgrade path, if any (app/ws_direct.py)
        self.direct_socket: DirectSocket | None = None  # set once this connection's upgrade was served directly
        self.frame_sender = FrameSender(stream, self.send_lock, write_timeout=self._write_timeout,
                                        timed_out=self._write_timed_out)

    async def protocol_send(self, event: Event) -> None:
        if not isinstance(event, RawData):
            await super().protocol_send(event)
            return
        refusal = self.inbound.response_started(event.data)
        if refusal is not None:
            await self.refuse(refusal)
            return
        async with self.send_lock:
            # Shielded like hypercorn's own send (a cancelled send would cut a frame in half), but with a deadline:
            # a peer that stops reading would otherwise hold this send, and the connection, forever.
            with trio.CancelScope(shield=True, deadline=trio.current_time() + self._write_timeout) as scope:
                try:
                    await self.stream.send_all(event.data)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    await self.protocol.handle(Closed())
            if scope.cancelled_caught:
                self.counters.refused["write_timeout"] += 1
                await self.stream.aclose()
                await self.protocol.handle(Closed())

    async def send_frames(self, data: bytes) -> None:
        """A direct socket's send: serialised, shielded and bounded like ``protocol_send``; a stream that broke or a
        peer that did not read in time raises ``trio.ClosedResourceError`` to the sender (the socket is closed).
        ``FrameSender`` (app/ws_direct.py) writes at once when it can."""
        await self.frame_sender.send(data)

    def _write_timed_out(self) -> None:
        self.counters.refused["write_timeout"] += 1

    async def _serve_direct(self, forward: bytes) -> bool:
        """The first request head (and any bytes after it) is an upgrade the app serves itself: refuse it or answer
        101 and start its session. False: not such an upgrade (hypercorn gets the bytes)."""
        assert self.direct is not None
        end = forward.find(b"\r\n\r\n") + 4
        request = upgrade_request(forward[:end], self.direct.path) if end > 3 else None
        if request is None:
            return False
        refusal = self.direct.check(request)
        if refusal is not None:
            await self.send_then_close(refusal_response(*refusal))
            return True
        reply = accept_response(request)
        if self.inbound.response_started(reply) is not None:  # marks the upgrade answered; cannot refuse a 101 here
            return False
        await self.idle_task.stop()  # hypercorn's keep-alive timer: this connection never goes back to HTTP
        socket = self.direct_socket = DirectSocket(self.send_frames, self.stream.aclose)
        await self.send_frames(reply)
        nursery = self._task_group._nursery
        assert nursery is not None  # the connection's task group is open while its reader runs
        nursery.start_soon(self._direct_session, request, socket)
        if end < len(forward):
            await socket.feed(forward[end:])
        return True

    async def _direct_session(self, request: UpgradeRequest, socket: DirectSocket) -> None:
        assert self.direct is not None
        try:
            await self.direct.serve(request, socket, self.ticket)
        finally:
            with trio.CancelScope(shield=True):
                with trio.move_on_after(CLOSE_SEND_TIMEOUT):
                    await socket.close(1000, "")  # nothing if the app closed it already or the peer did

    @property
    def _write_timeout(self) -> float:
        return float(self.config.read_timeout or DEFAULT_WRITE_TIMEOUT)

    async def _close(self) -> None:
        """Half-close then close, without racing an in-flight send (the lock is taken without waiting)."""
        if not self.send_lock.locked():
            self.send_lock.acquire_nowait()
            try:
                await self.stream.send_eof()
            except (trio.BrokenResourceError, trio.BusyResourceError, trio.ClosedResourceError, AttributeError):
                pass  # already gone, or an SSL stream (no half-close)
            finally:
                self.send_lock.release()
        await self.stream.aclose()

    async def _receive(self) -> bytes | None:
        """The next bytes from the peer (b"" at its end), or None when it was silent for ``read_timeout`` or the
        stream broke. A direct WebSocket that has been silent for ``websocket_ping_interval`` is pinged from here,
        so that a live peer answers (browsers pong by themselves) and a vanished one meets the read timeout, as
        hypercorn's pings do; the reader does it rather than a ping task per socket (a task and a nursery started
        and cancelled per signaling socket, docs/performance.md, "Joins at the end of session 7")."""
        silent_since = trio.current_time()
        read_deadline = silent_since + (self.config.read_timeout or inf)
        interval = self.config.websocket_ping_interval or inf
        while True:
            ping_at = silent_since + interval if self.direct_socket is not None else inf
            with trio.CancelScope(deadline=min(read_deadline, ping_at)):
                try:
                    return bytes(await self.stream.receive_some(MAX_RECV))
                except (trio.ClosedResourceError, trio.BrokenResourceError):
                    return None
            if trio.current_time() >= read_deadline or self.direct_socket is None:
                return None
            if not await self.direct_socket.ping_once():
                return None
            silent_since = trio.current_time()

    async def _read_data(self) -> None:
        while True:
            data = await self._receive()
            if data is None:
                break
            was_http = self.inbound.phase is Phase.HTTP
            first_head = self.inbound.phase is Phase.HEAD
            checked = self.inbound.feed(data)
            if was_http and self.inbound.phase is Phase.FRAMES:
                # The first ticket was lifted by a plain request; the WebSocket gets a join deadline of its own,
                # in the connection state before hypercorn copies it into the upgrade's scope.
                self.ticket = ConnectionTicket()
                self.state[TICKET_KEY] = self.ticket
                self.later_upgrade.set()
            if checked.forward:
                if self.direct_socket is not None:
                    await self.direct_socket.feed(checked.forward)
                elif not (first_head and self.direct is not None and self.inbound.phase is Phase.FRAMES
                          and await self._serve_direct(checked.forward)):
                    await self.protocol.handle(RawData(checked.forward))
            if self.inbound.phase is Phase.HTTP:
                self.ticket.joined()  # plain HTTP: hypercorn's keep-alive and read timeouts take over
            if checked.refusal is not None:
                await self.refuse(checked.refusal)
                break
            if data == b"":
                if self.direct_socket is None:
                    await self.protocol.handle(RawData(b""))
                break
            del data, checked  # not kept alive by this frame while the next read waits (~2 x 4 KiB a connection)
        if self.direct_socket is not None:
            self.direct_socket.feed_eof()
        await self.protocol.handle(Closed())
        # The socket is done; the app has been told. hypercorn would now wait for the connection's ping task to
        # wake (every idle_timeout/3 s) before the connection ends, holding its place under the connection caps:
        # give the app a moment to finish, then end the connection's tasks.
        nursery = self._task_group._nursery
        if nursery is not None:
            nursery.cancel_scope.deadline = trio.current_time() + LINGER_AFTER_CLOSE

    async def refuse(self, refusal: Refusal) -> None:
        """Cut the connection now: a close frame (or an HTTP status) if it can be sent within a second, then the
        socket. The reader stops; hypercorn then tells the app the socket is gone."""
        self.counters.refused[refusal.reason.value] += 1
        log.debug("refused a connection: %s", refusal.detail)
        reply = b""
        if refusal.close_code is not None and self.inbound.upgraded:
            reply = _close_frame(refusal.close_code, refusal.detail)
        elif refusal.http_status is not None and not self.inbound.upgraded:
            reply = (f"HTTP/1.1 {refusal.http_status} Refused\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                     .encode("ascii"))
        await self.send_then_close(reply)

    async def send_then_close(self, reply: bytes) -> None:
        """Send ``reply`` after any send in flight (waiting at most ``CLOSE_SEND_TIMEOUT``), then close."""
        if reply:
            with trio.move_on_after(CLOSE_SEND_TIMEOUT):
                async with self.send_lock:
                    with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                        await self.stream.send_all(reply)
        await self.stream.aclose()


def _close_frame(code: int, reason: str) -> bytes:
    payload = code.to_bytes(2, "big") + reason.encode("utf-8")[:123]
    return bytes([0x88, len(payload)]) + payload


@dataclass(slots=True)
class _Listener:
    """What every connection of one ``serve_http`` shares."""

    app: Any
    config: hypercorn.config.Config
    context: WorkerContext
    settings: GuardSettings
    counters: GuardCounters
    logged: set[tuple[str, str]]
    direct: DirectUpgrades | None = None

    async def handle(self, stream: Any) -> None:
        address = _peer_host(stream)
        over = self._over_limit(address)
        if over:
            if not self.counters.refused[over]:  # the first time only: a limit set too low is easy to diagnose
                log.warning("refused a connection from %s: %s (http.%s; further refusals are only counted in "
                            "callsd_http_refused_total)", address, over.replace("_", " "), over.removeprefix("over_"))
            self.counters.refused[over] += 1
            await stream.aclose()
            return
        self.counters.open += 1
        self.counters.by_address[address] += 1
        try:
            await self._contained(stream)
        finally:
            self.counters.open -= 1
            self.counters.by_address[address] -= 1
            if not self.counters.by_address[address]:
                del self.counters.by_address[address]

    def _over_limit(self, address: str) -> str:
        limits, counters = self.settings, self.counters
        if limits.max_connections and counters.open >= limits.max_connections:
            return "over_max_connections"
        if limits.max_connections_per_address and counters.by_address[address] >= limits.max_connections_per_address:
            return "over_max_connections_per_address"
        return ""

    async def _contained(self, stream: Any) -> None:
        """Run one connection; whatever it raises ends it alone (Cancelled and KeyboardInterrupt still propagate)."""
        ticket = ConnectionTicket()
        server = GuardedTCPServer(self.app, self.config, self.context, ConnectionState({TICKET_KEY: ticket}), stream,
                                  inbound=InboundGuard(max_message_bytes=self.settings.max_message_bytes),
                                  counters=self.counters, ticket=ticket, direct=self.direct)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._join_deadline, server)
                await server.run()
                nursery.cancel_scope.cancel()
        except* Exception as group:
            self._failed(group)
            with trio.CancelScope(shield=True):
                await stream.aclose()

    async def _join_deadline(self, server: GuardedTCPServer) -> None:
        for _ in range(2):  # the connection's first request, then a WebSocket upgrade on a later one, if any
            ticket = server.ticket
            with trio.move_on_after(self.settings.join_timeout):
                await ticket.wait()
            if not ticket.is_joined:
                break
            await server.later_upgrade.wait()
        else:
            return
        self.counters.refused["join_timeout"] += 1
        await server.send_then_close(_close_frame(1008, "join timeout") if server.inbound.upgraded else b"")

    def _failed(self, group: BaseExceptionGroup[Exception]) -> None:
        for error in _leaves(group):
            kind = type(error).__name__
            self.counters.connection_errors[kind] += 1
            frame = error.__traceback__
            while frame is not None and frame.tb_next is not None:
                frame = frame.tb_next
            where = f"{frame.tb_frame.f_code.co_filename}:{frame.tb_lineno}" if frame is not None else "?"
            if (kind, where) not in self.logged:
                self.logged.add((kind, where))
                log.error("an HTTP connection failed and was closed (the server goes on; further %s at %s are "
                          "only counted in callsd_http_connection_errors_total)", kind, where, exc_info=error)


def _peer_host(stream: Any) -> str:
    """The client's address (the TCP peer; behind a reverse proxy, the proxy's)."""
    transport = stream.transport_stream if isinstance(stream, trio.SSLStream) else stream
    try:
        peer = transport.socket.getpeername()
    except OSError:
        return "?"
    return str(peer[0]) if isinstance(peer, tuple) else str(peer)


def _leaves(group: BaseException) -> Iterator[BaseException]:
    if isinstance(group, BaseExceptionGroup):
        for inner in group.exceptions:
            yield from _leaves(inner)
    else:
        yield group


async def serve_http(
    app: Callable[..., Awaitable[None]],
    config: hypercorn.config.Config,
    settings: GuardSettings,
    counters: GuardCounters,
    *,
    direct: DirectUpgrades | None = None,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the ASGI ``app`` on ``config.bind`` until cancelled; report the bound URLs like hypercorn does.
    ``direct``: the upgrade path the app serves without hypercorn (app/ws_direct.py), if any."""
    config.set_statsd_logger_class(StatsdLogger)
    wrapped = wrap_app(app, config.wsgi_max_body_size, "asgi")
    lifespan = Lifespan(wrapped, config, {})
    context = WorkerContext(None)
    listener = _Listener(wrapped, config, context, settings, counters, set(), direct)
    async with trio.open_nursery() as lifespan_nursery:
        await lifespan_nursery.start(lifespan.handle_lifespan)
        await lifespan.wait_for_startup()
        sockets = config.create_sockets()
        listeners: list[Any] = []
        binds: list[str] = []
        ssl_context = config.create_ssl_context()
        for sock in sockets.secure_sockets:
            sock.listen(config.backlog)
            listeners.append(trio.SSLListener(trio.SocketListener(trio.socket.from_stdlib_socket(sock)),
                                              ssl_context, https_compatible=True))  # type: ignore[arg-type]
            binds.append(f"https://{repr_socket_addr(sock.family, sock.getsockname())}")
        for sock in sockets.insecure_sockets:
            sock.listen(config.backlog)
            listeners.append(trio.SocketListener(trio.socket.from_stdlib_socket(sock)))
            binds.append(f"http://{repr_socket_addr(sock.family, sock.getsockname())}")
        for bind in binds:
            log.info("listening on %s", bind)
        async with trio.open_nursery() as connections:
            task_status.started(binds)
            await trio.serve_listeners(partial(_serve_one, listener), listeners, handler_nursery=connections)


async def _serve_one(listener: _Listener, stream: Any) -> None:
    await listener.handle(stream)
