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
  upgraded on a later keep-alive request (a proxy reusing the connection) gets a new ticket and deadline of its
  own. The app says "joined" through the ``ConnectionTicket`` it finds in the ASGI scope's ``state`` under
  ``TICKET_KEY``. The deadline is kept by the connection's reader (its reads, and its hand-offs while hypercorn or
  the direct socket is full, are bounded by it until the ticket is lifted), not by a task per connection.
- **The signaling socket skips hypercorn entirely** (``direct``, app/http_direct.py, app/ws_direct.py): the
  listener reads each connection's first request head itself (bounded by the join deadline) and builds hypercorn's
  ``TCPServer`` only when it is not an upgrade of the path the app serves directly. A direct upgrade is answered
  and served by a ``DirectConnection``, whose reader also keeps its join deadline and pings; every check above
  still applies, since the bytes still pass ``InboundGuard``.
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

from .http_direct import (
    LINGER_AFTER_CLOSE,
    ConnectionTicket,
    DirectConnection,
    DirectTimeouts,
    close_frame,
    close_stream,
    refusal_reply,
    send_then_close,
)
from .http_inbound import Inbound, InboundGuard, Phase, Refusal
from .ws_direct import DirectUpgrades, UpgradeRequest, upgrade_request

__all__ = ["GuardSettings", "GuardCounters", "GuardCollector", "ConnectionTicket", "GuardedTCPServer", "serve_http",
           "TICKET_KEY"]

log = logging.getLogger("callsd.http")

DEFAULT_WRITE_TIMEOUT = 45.0  # seconds one send may wait for the peer to read (http.idle_timeout when set)
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


class _KeepAliveTimer(TrioSingleTask):
    """hypercorn's keep-alive timer, not started for the wait before a connection's first request: the listener has
    already read that head (``_Listener._first_read``, bounded by the join deadline) before it builds the server, and
    the head is handed to hypercorn at once, which stops the timer again. Starting it would be a task started and
    cancelled per HTTP connection for nothing. From the first request on, hypercorn restarts and stops it as
    before."""

    def __init__(self) -> None:
        super().__init__()
        self._first = True

    async def restart(self, task_group: Any, action: Callable[..., Any]) -> None:
        if self._first:  # the wait for the first head: the join deadline's, not keep-alive's
            self._first = False
            return
        await super().restart(task_group, action)


@dataclass(frozen=True, slots=True)
class FirstRead:
    """What the listener read of a connection before choosing its server (``_Listener._first_read``): the guard's
    answer to the bytes up to the first complete request head (or its refusal), and whether the peer had ended."""

    checked: Inbound
    ended: bool


class GuardedTCPServer(TCPServer):
    """hypercorn's per-connection server with serialised sends and inbound checks (see the module docstring), for
    connections that speak HTTP: ``first`` is what the listener already read and checked."""

    def __init__(self, app: Any, config: hypercorn.config.Config, context: WorkerContext, state: ConnectionState,
                 stream: Any, *, inbound: InboundGuard, counters: GuardCounters,
                 ticket: ConnectionTicket | None = None, first: FirstRead | None = None, join_at: float = inf,
                 join_timeout: float = inf) -> None:
        super().__init__(app, config, context, state, stream)
        self.idle_task = _KeepAliveTimer()
        self.inbound = inbound
        self.counters = counters
        self.ticket = ticket or ConnectionTicket()
        self.first = first or FirstRead(Inbound(forward=b""), False)
        self.join_at = join_at  # the ticket's deadline (trio time): the first one's runs from the accept
        self.join_timeout = join_timeout  # a WebSocket upgraded on a later keep-alive request gets this much

    async def run(self) -> None:
        """Serve the connection (hypercorn's ``run``), then let go of its protocol: hypercorn's ``ProtocolWrapper``
        and ``H11Protocol`` hold ``protocol_send``, a method of this server, so while the server holds them the
        connection is a reference cycle that only the cyclic collector could free, and one frozen by
        ``gc.freeze()`` never would be (ADR 0048, addendum "A closed connection leaves no cycle"). Every task of
        the connection has ended when ``run`` returns (its task group has exited), so nothing reads it again."""
        try:
            await super().run()
        finally:
            with contextlib.suppress(AttributeError):  # not built when the connection failed before its protocol
                del self.protocol

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

    @property
    def _write_timeout(self) -> float:
        return float(self.config.read_timeout or DEFAULT_WRITE_TIMEOUT)

    async def _close(self) -> None:
        """Half-close then close, without racing an in-flight send (the lock is taken without waiting)."""
        await close_stream(self.stream, self.send_lock)

    async def _receive(self) -> bytes | None:
        """The next bytes from the peer (b"" at its end), or None: silent for ``read_timeout``, past the join
        deadline with the ticket not lifted (the connection is then refused), or the stream broke."""
        read_at = trio.current_time() + (self.config.read_timeout or inf)
        while True:
            join_at = inf if self.ticket.is_joined else self.join_at
            with trio.CancelScope(deadline=min(read_at, join_at)):
                try:
                    return bytes(await self.stream.receive_some(MAX_RECV))
                except (trio.ClosedResourceError, trio.BrokenResourceError):
                    return None
            if self._join_timed_out():
                await self._refuse_join()
                return None
            if trio.current_time() >= read_at:
                return None
            # else: woken by a join deadline the app has lifted since the wait began; wait again without it

    async def _hand_on(self, data: bytes) -> bool:
        """Give hypercorn ``data``; until the ticket is lifted, within the join deadline (hypercorn waits when the
        app's queue is full). False: the deadline passed and the connection was refused."""
        if self.ticket.is_joined:
            await self.protocol.handle(RawData(data))
            return True
        try:
            with trio.CancelScope(deadline=self.join_at) as self.ticket.feed_scope:
                await self.protocol.handle(RawData(data))
        finally:
            self.ticket.feed_scope = None  # the ticket outlives the hand-off; the scope must not
        if self._join_timed_out():
            await self._refuse_join()
            return False
        return True

    def _join_timed_out(self) -> bool:
        return not self.ticket.is_joined and trio.current_time() >= self.join_at

    async def _refuse_join(self) -> None:
        self.counters.refused["join_timeout"] += 1
        await self.send_then_close(close_frame(1008, "join timeout") if self.inbound.upgraded else b"")

    async def _read_data(self) -> None:
        checked, ended, was_http = self.first.checked, self.first.ended, False
        while True:
            if was_http and self.inbound.phase is Phase.FRAMES:
                # The first ticket was lifted by a plain request; the WebSocket gets a join deadline of its own,
                # in the connection state before hypercorn copies it into the upgrade's scope.
                self.ticket = ConnectionTicket()
                self.state[TICKET_KEY] = self.ticket
                self.join_at = trio.current_time() + self.join_timeout
            if self.inbound.phase is Phase.HTTP:
                self.ticket.joined()  # plain HTTP: hypercorn's keep-alive and read timeouts take over
            if checked.forward and not await self._hand_on(checked.forward):
                break
            if checked.refusal is not None:
                await self.refuse(checked.refusal)
                break
            if ended:
                await self.protocol.handle(RawData(b""))
                break
            del checked  # not kept alive by this frame while the next read waits
            data = await self._receive()
            if data is None:
                break
            was_http = self.inbound.phase is Phase.HTTP
            checked, ended = self.inbound.feed(data), data == b""
            del data
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
        await self.send_then_close(refusal_reply(refusal, self.inbound.upgraded))

    async def send_then_close(self, reply: bytes) -> None:
        """Send ``reply`` after any send in flight (waiting at most ``CLOSE_SEND_TIMEOUT``), then close."""
        await send_then_close(self.stream, self.send_lock, reply)


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
        """Run one connection; whatever it raises ends it alone (Cancelled and KeyboardInterrupt still propagate).
        Its first request head is read here: a direct upgrade is served by a ``DirectConnection``, anything else by
        hypercorn (``GuardedTCPServer``)."""
        inbound = InboundGuard(max_message_bytes=self.settings.max_message_bytes)
        join_at = trio.current_time() + self.settings.join_timeout
        try:
            first = await self._first_read(stream, inbound, join_at)
            if first is None:
                return
            request = self._direct_request(first, inbound)
            if request is not None:
                assert self.direct is not None
                timeouts = DirectTimeouts(join_at=join_at, read=self.config.read_timeout or inf,
                                          ping_interval=self.config.websocket_ping_interval or inf,
                                          write=float(self.config.read_timeout or DEFAULT_WRITE_TIMEOUT))
                connection = DirectConnection(stream, inbound, timeouts, self.counters.refused)
                await connection.serve(self.direct, request, first.checked, first.ended)
                return
            ticket = ConnectionTicket()
            server = GuardedTCPServer(self.app, self.config, self.context, ConnectionState({TICKET_KEY: ticket}),
                                      stream, inbound=inbound, counters=self.counters, ticket=ticket, first=first,
                                      join_at=join_at, join_timeout=self.settings.join_timeout)
            await server.run()
        except* Exception as group:
            self._failed(group)
            with trio.CancelScope(shield=True):
                await stream.aclose()

    async def _first_read(self, stream: Any, inbound: InboundGuard, join_at: float) -> FirstRead | None:
        """Read until the first request head is complete (or refused, or the peer ends), within the join deadline
        and the read timeout. None: neither came in time (past the join deadline the connection is refused, as
        ``join_timeout``) or the stream broke; the stream is then closed."""
        read_at = trio.current_time() + (self.config.read_timeout or inf)
        forward: list[bytes] = []
        while True:
            data: bytes | None = None
            with (trio.CancelScope(deadline=min(join_at, read_at)),
                  contextlib.suppress(trio.ClosedResourceError, trio.BrokenResourceError)):
                data = bytes(await stream.receive_some(MAX_RECV))
            if data is None:
                if trio.current_time() >= join_at:
                    self.counters.refused["join_timeout"] += 1
                await stream.aclose()
                return None
            checked = inbound.feed(data)
            forward.append(checked.forward)
            if inbound.phase is not Phase.HEAD or checked.refusal is not None or data == b"":
                return FirstRead(Inbound(forward=b"".join(forward), refusal=checked.refusal), data == b"")

    def _direct_request(self, first: FirstRead, inbound: InboundGuard) -> UpgradeRequest | None:
        """The upgrade the app serves directly, if the first head is one (else hypercorn serves the connection)."""
        if self.direct is None or inbound.phase is not Phase.FRAMES:  # refused after the head: hypercorn's
            return None
        forward = first.checked.forward
        end = forward.find(b"\r\n\r\n") + 4
        return upgrade_request(forward[:end], self.direct.path) if end > 3 else None

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
