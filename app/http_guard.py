"""The HTTP listener: hypercorn's connection handler, with the guards callsd needs around it (docs/adr/0008).

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
  ``ClosedResourceError`` (which hypercorn handles).
- **Bytes are checked where they arrive** (app/http_inbound.py): an oversized WebSocket message is refused at its
  frame header, before its payload is read or buffered (hypercorn 0.18 would buffer all of it first), and the
  socket is closed at once: a close frame (1009, or 1002 for a malformed frame) if it can be sent within a second,
  then the socket, and no more reading.
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
from hypercorn.trio.worker_context import WorkerContext
from hypercorn.typing import ConnectionState
from hypercorn.utils import repr_socket_addr, wrap_app
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from .http_inbound import InboundGuard, Refusal

__all__ = ["GuardCounters", "GuardCollector", "GuardedTCPServer", "serve_http"]

log = logging.getLogger("callsd.http")

CLOSE_SEND_TIMEOUT = 1.0  # a close frame to a peer that does not read is not worth waiting for



class GuardCounters:
    """Plain integers bumped by the listener, read by ``GuardCollector`` at scrape time."""

    __slots__ = ("connection_errors", "refused", "open")

    def __init__(self) -> None:
        self.connection_errors: Counter[str] = Counter()  # exception type -> connections it ended
        self.refused: Counter[str] = Counter()  # reason -> connections cut by a guard
        self.open = 0


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
        refused = CounterMetricFamily("callsd_http_refused", "HTTP connections cut by a guard, by reason",
                                      labels=["reason"])
        for name, value in sorted(self.counters.refused.items()):
            refused.add_metric([name], value)
        yield refused
        yield GaugeMetricFamily("callsd_http_connections_open", "HTTP connections open now",
                                value=self.counters.open)


class GuardedTCPServer(TCPServer):
    """hypercorn's per-connection server with serialised sends and inbound checks (see the module docstring)."""

    def __init__(self, app: Any, config: hypercorn.config.Config, context: WorkerContext, state: ConnectionState,
                 stream: Any, *, inbound: InboundGuard, counters: GuardCounters) -> None:
        super().__init__(app, config, context, state, stream)
        self.inbound = inbound
        self.counters = counters

    async def protocol_send(self, event: Event) -> None:
        if isinstance(event, RawData):
            refusal = self.inbound.response_started(event.data)
            if refusal is not None:
                await self.refuse(refusal)
                return
        await super().protocol_send(event)

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

    async def _read_data(self) -> None:
        while True:
            try:
                with trio.fail_after(self.config.read_timeout or inf):
                    data = await self.stream.receive_some(MAX_RECV)
            except (trio.ClosedResourceError, trio.BrokenResourceError, trio.TooSlowError):
                break
            checked = self.inbound.feed(bytes(data))
            if checked.forward:
                await self.protocol.handle(RawData(checked.forward))
            if checked.refusal is not None:
                await self.refuse(checked.refusal)
                break
            if data == b"":
                await self.protocol.handle(RawData(b""))
                break
        await self.protocol.handle(Closed())

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
    max_message_bytes: int
    counters: GuardCounters
    logged: set[tuple[str, str]]

    async def handle(self, stream: Any) -> None:
        self.counters.open += 1
        try:
            await self._contained(stream)
        finally:
            self.counters.open -= 1

    async def _contained(self, stream: Any) -> None:
        """Run one connection; whatever it raises ends it alone (Cancelled and KeyboardInterrupt still propagate)."""
        server = GuardedTCPServer(self.app, self.config, self.context, ConnectionState({}), stream,
                                  inbound=InboundGuard(max_message_bytes=self.max_message_bytes),
                                  counters=self.counters)
        try:
            await server.run()
        except* Exception as group:
            self._failed(group)
            with trio.CancelScope(shield=True):
                await stream.aclose()

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


def _leaves(group: BaseException) -> Iterator[BaseException]:
    if isinstance(group, BaseExceptionGroup):
        for inner in group.exceptions:
            yield from _leaves(inner)
    else:
        yield group


async def serve_http(
    app: Callable[..., Awaitable[None]],
    config: hypercorn.config.Config,
    counters: GuardCounters,
    *,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the ASGI ``app`` on ``config.bind`` until cancelled; report the bound URLs like hypercorn does."""
    config.set_statsd_logger_class(StatsdLogger)
    wrapped = wrap_app(app, config.wsgi_max_body_size, "asgi")
    lifespan = Lifespan(wrapped, config, {})
    context = WorkerContext(None)
    listener = _Listener(wrapped, config, context, config.websocket_max_message_size, counters, set())
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
