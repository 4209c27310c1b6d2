"""The signaling pump: WebSocket sessions in, core inputs through the recorder, events out (docs/protocol.md).

Theory of operation
-------------------
``SignalingHub`` is the lifecycle of connections and the one place inputs are fed; each other job has its own module,
small enough to read alone (docs/adr/0010-thin-hub.md walks one join through them):

- ``signaling_protocol``  the wire format: parse a frame, read fields, encode events, which fact is which event;
- ``signaling_handlers``  one handler per client message type, as a table (``MessageHandlers``);
- ``signaling_dispatch``  what to do with each kind of core output (``OutputDispatcher``);
- ``signaling_outbox``    the session table and every send (``Outbox``);
- ``signaling_plane``     the calls into the media plane, and the one reconnect mechanism (``PlaneEffects``);
- ``signaling_media``     the media plane's events back into the hub, typed (``MediaBridge``);
- ``signaling_timers``    the core's timers on an injected clock (``TimerService``);
- ``signaling_state``     the call state and ICE server objects (pure);
- ``signaling_fanout``    effects in log order, only once durable (``DurableFanOut``);
- ``signaling_session``   the interfaces the hub depends on (``Transport``, ``MediaPlaneLike``, ``Recorder``,
  ``Authorize``), its settings, counters and the per-socket ``Connection``.

Every change goes through ``recorder.handle(input)`` (the event-sourced ``CallsMachine``); the hub only acts on the
outputs. Serialisation: ``recorder.handle`` is synchronous and the hub never awaits between feeding an input and
planning its effects, so the single Trio thread already orders every input; no lock is needed.

Durability: with a group-commit recorder the record of an input is written later, in a batch, off the event loop.
Every effect (WebSocket events, plane calls, replies such as ``join_ack``, ``error`` or ``pong``) is therefore
planned at once, with the machine queries it needs answered right after its input, and run by the durable fan-out
only once that input's record is durable, in seq order. The hub's own tables (sessions' calls, timers, speaking
flags) follow the machine synchronously: they are not observed by clients, and what they cause (a later input) is
recorded after the input that caused it. Each connection has a bounded outbox drained by its own writer task.

A dropped socket feeds ``Disconnect``; ``reconnect {session_id}`` on a new socket feeds ``Reconnect`` and moves the
session to it (an old socket still open is closed with 4001 "replaced"). During shutdown (``drain``) new joins get
``shutting_down`` and every client a ``server_shutdown`` event.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable
from typing import Any

import trio
from callsd.core.calls import events as ev
from callsd.core.calls import outputs as out
from callsd.core.calls.machine import CallsMachine, CallView
from callsd.core.errors import LocalProtocolError

from .loop_holds import yield_if_pass_over
from .media.events import MediaEvent
from .media.random_pool import POOL
from .signaling_dispatch import OutputDispatcher
from .signaling_fanout import DurableFanOut
from .signaling_handlers import MessageHandlers
from .signaling_linger import FLUSH, LingerClock, take_batch
from .signaling_media import MediaBridge
from .signaling_outbox import Outbox
from .signaling_plane import PlaneEffects
from .signaling_protocol import (
    PROTOCOL_MINOR,
    PROTOCOL_VERSION,
    ClientMessage,
    SignalingError,
    TokenBucket,
    batch_frame,
    parse_message,
    peek,
)
from .signaling_reconnect import ReconnectSecrets
from .signaling_session import (
    Authorize,
    Connection,
    HubCounters,
    HubSettings,
    MediaPlaneLike,
    NullMediaPlane,
    OutboxItem,
    Recorder,
    Transport,
    TurnCredentials,
    open_authorize,
)
from .signaling_state import LiveStatus, call_state, ice_servers
from .signaling_timers import TimerService

__all__ = ["SignalingHub", "HubSettings", "HubCounters", "Transport", "MediaPlaneLike", "NullMediaPlane",
           "Authorize", "open_authorize"]

log = logging.getLogger("callsd.signaling")

OUTBOX_SIZE = 1024


async def _next_item(conn: Connection, recv: trio.MemoryReceiveChannel[OutboxItem]) -> OutboxItem:
    """The writer's next item. One already queued is taken with one yield, as ``async for`` did (a long outbox
    does not hold the loop); on an empty outbox the writer waits as ``idle`` (``Connection.writer_idle``: lazy
    events are then deferred rather than wake it). Raises ``trio.EndOfChannel`` once the outbox is closed and
    empty."""
    try:
        item = recv.receive_nowait()
    except trio.WouldBlock:
        conn.writer_idle = True
        try:
            return await recv.receive()
        finally:
            conn.writer_idle = False
    await trio.lowlevel.checkpoint()
    return item


def _wall_ms() -> int:
    return int(time.time() * 1000)


def _new_id(prefix: str = "") -> str:
    """A session or call id: 12 random bytes in base64url, from the process's pool (one ``getrandom`` per 4 KiB,
    not one per id)."""
    return prefix + POOL.token_urlsafe(12)


class SignalingHub:
    """Every signaling session of one server. Public API: ``serve_connection``, ``run``, ``drain``, ``feed``,
    ``recover``, ``emit`` (the plane's callback), ``plane`` (settable before serving), queries."""

    def __init__(
        self,
        recorder: Recorder,
        machine: CallsMachine,
        *,
        plane: MediaPlaneLike | None = None,
        settings: HubSettings | None = None,
        authorize: Authorize = open_authorize,
        turn_credentials: TurnCredentials | None = None,
        reconnect_key: bytes | None = None,
        clock_ms: Callable[[], int] = _wall_ms,
        new_id: Callable[[str], str] = _new_id,
    ) -> None:
        self._recorder = recorder
        self._machine = machine
        self._settings = settings or HubSettings()
        self._authorize = authorize
        self._turn_credentials = turn_credentials
        # A key of this process only, unless the server passes its kept key (then secrets survive a restart).
        self._reconnect_secrets = ReconnectSecrets(reconnect_key or secrets.token_bytes(32))
        self._clock_ms = clock_ms
        self._new_id = new_id
        self.counters = HubCounters()
        self.draining = False
        self.drain_timeout = 0.0
        self.fatal: BaseException | None = None
        self.on_fatal: Callable[[BaseException], None] | None = None
        self._live = LiveStatus()
        self._fanout = DurableFanOut(recorder)
        self.linger = LingerClock()  # every batch frame's linger, on one timer (adapters/signaling_linger.py)
        self._outbox = Outbox(self._fanout, self.counters, self.linger)
        self._plane = PlaneEffects(plane if plane is not None else NullMediaPlane(), self._fanout, self._outbox,
                                   self.counters, simulcast=self._settings.simulcast)
        self.timers = TimerService(clock_ms, self._fire_timer)
        self._dispatcher = OutputDispatcher(machine, self._outbox, self._plane, self.timers, self._live)
        self._media = MediaBridge(machine, self.feed, self._outbox, self._plane, self.counters, clock_ms,
                                  self._live)
        self._handlers = MessageHandlers(self).table
        self._asker: Connection | None = None  # the connection whose frame is being handled

    # ------------------------------------------------------------------ the ports the handlers use (HubPorts)

    @property
    def machine(self) -> CallsMachine:
        return self._machine

    @property
    def settings(self) -> HubSettings:
        return self._settings

    @property
    def outbox(self) -> Outbox:
        return self._outbox

    @property
    def plane_effects(self) -> PlaneEffects:
        return self._plane

    @property
    def reconnect_secrets(self) -> ReconnectSecrets:
        return self._reconnect_secrets

    def now_ms(self) -> int:
        return self._clock_ms()

    def new_id(self, prefix: str) -> str:
        return self._new_id(prefix)

    def dispatch(self, outputs: list[out.OutputEvent]) -> None:
        self._dispatcher.dispatch(outputs)

    def rejected(self, conn: Connection, outputs: list[out.OutputEvent]) -> bool:
        return self._dispatcher.rejected(conn, outputs)

    def authorize(self, conn: Connection, data: dict[str, Any], channel_id: str, action: str) -> str:
        return self._authorize(channel_id=channel_id, data=data, query_token=conn.query_token,
                               now_s=self._clock_ms() / 1000, action=action)

    def send_join_ack(self, conn: Connection, *, reconnected: bool) -> None:
        assert conn.channel_id is not None
        view = self._machine.call(conn.channel_id)
        self._outbox.reply(conn, "join_ack", {
            "session_id": conn.session_id, "call_id": view.call_id if view else None, "channel_id": conn.channel_id,
            "user_id": conn.user_id, "ice_servers": self.ice_servers_for(conn.session_id),
            "state": self.state_of(view) if view else None, "reconnected": reconnected,
            "reconnect_secret": self._reconnect_secrets.issue(conn.session_id),
            "simulcast": self._settings.simulcast,
        })

    def send_call_state(self, conn: Connection, channel_id: str) -> None:
        view = self._machine.call(channel_id)
        if view is not None:
            self._outbox.reply(conn, "call_state", self.state_of(view))

    # ------------------------------------------------------------------ public API

    @property
    def plane(self) -> MediaPlaneLike:
        return self._plane.plane

    @plane.setter
    def plane(self, plane: MediaPlaneLike) -> None:
        self._plane.plane = plane

    @property
    def open_connections(self) -> int:
        return self.counters.ws_connections_open

    def emit(self, media_event: MediaEvent) -> None:
        """The media plane's callback: queue the event for the hub's media task (never re-enters the plane)."""
        self._media.emit(media_event)

    def state_of(self, view: CallView) -> dict[str, Any]:
        """The call state object of docs/protocol.md from a core ``CallView``."""
        return call_state(view, self._live)

    def ice_servers_for(self, session_id: str) -> list[dict[str, Any]]:
        """Configured ICE servers, with TURN REST credentials for this session when the server has a secret."""
        return ice_servers(self._settings.ice_servers, session_id, self._clock_ms() / 1000, self._turn_credentials)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """The hub's background tasks: the timers, the media-event pump, the durable fan-out and, for a
        group-commit recorder, its commit loop. Runs until cancelled."""
        async with trio.open_nursery() as nursery:
            if self._recorder.group_commit:
                await nursery.start(self._recorder.commit_loop)
            nursery.start_soon(self._fanout.run, self._commit_failed)
            nursery.start_soon(self.timers.run)
            nursery.start_soon(self._media.run)
            nursery.start_soon(self.linger.run)
            task_status.started()

    async def flush(self) -> None:
        """Wait until every input fed so far is durable and its effects have run (returns early if the log
        failed)."""
        await self._fanout.flush()

    def hello(self, session_id: str) -> dict[str, Any]:
        """The data of the ``hello`` a new socket gets first (a cluster's front node sends it itself)."""
        return {"session_id": session_id, "protocol": PROTOCOL_VERSION, "protocol_minor": PROTOCOL_MINOR,
                "server_version": self._settings.server_version, "auth_mode": self._settings.auth_mode}

    async def serve_connection(self, transport: Transport, *, query_token: str | None = None,
                               session_id: str | None = None, greet: bool = True, batch_allowed: bool = False) -> None:
        """Run one client socket until it closes: hello, then read → feed → fan out. Returns after cleanup.

        A cluster node relaying a client here (adapters/cluster) has greeted it already: it passes the
        ``session_id`` its ``hello`` named and ``greet=False``. ``batch_allowed``: the transport is the client's own
        socket, so the events waiting for it may go out as one ``batch`` frame once the client asks (protocol 1.3);
        a relay reads each frame it forwards and leaves this off."""
        send, recv = trio.open_memory_channel[OutboxItem](OUTBOX_SIZE)
        conn = Connection(session_id or self._new_id(""), query_token,
                          TokenBucket(self._settings.rate, self._settings.burst, trio.current_time()), send,
                          batch_allowed=batch_allowed)
        self._outbox.conns[conn.session_id] = conn
        self.counters.ws_connections_total += 1
        self.counters.ws_connections_open += 1
        try:
            if greet:
                self._outbox.send(conn, "hello", self.hello(conn.session_id))
            if self.draining:
                self._outbox.send(conn, "server_shutdown", {"drain_timeout_seconds": self.drain_timeout})
            async with trio.open_nursery() as nursery:
                conn.scope = nursery.cancel_scope
                nursery.start_soon(self._writer, conn, transport, recv)
                while True:
                    if conn.backlog >= conn.backlog_high:  # back-pressure: see ``Connection``
                        await conn.drained()
                    try:
                        frame = await transport.receive()
                    except Exception as exc:  # a transport error is a closed socket
                        log.debug("receive from %s failed: %r", conn.session_id, exc)
                        break
                    if frame is None:
                        break
                    await yield_if_pass_over()  # a burst of frames must not hold the media socket (ADR 0043)
                    self._on_frame(conn, frame)
                    del frame  # the last message (an SDP is ~4 KB) is not kept alive while the next one is awaited
                nursery.cancel_scope.cancel()
            if conn.close_code != 1000 or conn.replaced:
                with trio.move_on_after(2) as scope:
                    scope.shield = True
                    await transport.close(conn.close_code, conn.close_reason)
        finally:
            self.counters.ws_connections_open -= 1
            self._connection_gone(conn)

    def feed(self, event: ev.InputEvent) -> list[out.OutputEvent]:
        """Feed one input through the recorder and act on its outputs (also for server-side inputs)."""
        outputs = self.record(event)
        self._dispatcher.dispatch(outputs)
        return outputs

    def recover(self) -> None:
        """After a restart from the log: re-arm the machine's timers and mark sessions that were connected when the
        previous process stopped as disconnected, so their clients get the reconnect window."""
        self.timers.load(self._machine.timers())
        for view in self._machine.calls():
            for p in view.participants:
                if p.connected:
                    self.feed(ev.Disconnect(at=self._clock_ms(), session_id=p.session_id))

    def close_all(self, code: int, reason: str) -> None:
        """Close every client socket with ``code`` once what is queued for it is sent (their sessions are
        disconnected as for a dropped socket)."""
        self._outbox.close_all(code, reason)

    async def drain(self, timeout: float) -> bool:
        """Refuse new joins, tell every client, wait up to ``timeout`` s for all calls to end; True if they did."""
        self.draining = True
        self.drain_timeout = timeout
        for conn in list(self._outbox.conns.values()):
            self._outbox.send(conn, "server_shutdown", {"drain_timeout_seconds": timeout})
        with trio.move_on_after(timeout):
            while self._machine.calls():
                await self._dispatcher.calls_changed.wait()
            return True
        return False

    # ------------------------------------------------------------------ reading

    async def _writer(self, conn: Connection, transport: Transport,
                      recv: trio.MemoryReceiveChannel[OutboxItem]) -> None:
        """Send the connection's outbox in order. With batches on, every event already waiting when the writer
        wakes goes out in the same frame: what one input produces for a client (``join_ack`` and the broadcasts
        of its join, an answer and the offer after it) costs one WebSocket send instead of one each; presence
        events wait a little for the rest of a join (``take_batch``, on the hub's one ``LingerClock``), and those
        that reach an idle writer are deferred without waking it (``Deferred``): they go first when it wakes."""
        try:
            while True:
                try:
                    item: OutboxItem | None = await _next_item(conn, recv)
                except trio.EndOfChannel:
                    item = None
                deferred = conn.deferred.take() if conn.deferred is not None else []
                if item is None:  # the outbox was closed (``Connection.finish``): what was deferred, then the end
                    if deferred:
                        await self._send(conn, transport, deferred)
                    break
                if item is FLUSH:  # the end of a linger: the deferred events', or one whose batch was already sent
                    if not deferred:
                        continue
                    item = (deferred.pop(), False)  # the linger is over: send what is there, wait for no more
                texts = (await take_batch(item, recv, self.linger, conn.outbox, deferred) if conn.batches
                         else [*deferred, item[0]])
                del item
                await self._send(conn, transport, texts)
                del texts  # nor are the last messages sent
            if conn.scope is not None:  # the outbox was closed (``Connection.finish``) and all of it is sent
                conn.scope.cancel()
        except Exception as exc:  # the socket broke under us: end this connection, not the server
            log.debug("send to %s failed: %r", conn.session_id, exc)
            if conn.scope is not None:
                conn.scope.cancel()

    async def _send(self, conn: Connection, transport: Transport, texts: list[str]) -> None:
        """``texts`` as one batch frame, or one frame each on a socket without batches (they were turned off while
        some were deferred)."""
        for frame in [batch_frame(texts)] if conn.batches else texts:
            await transport.send(frame)
            self.counters.ws_frames_out += 1
        conn.sent(len(texts))

    def _on_frame(self, conn: Connection, frame: str | bytes) -> None:
        conn.action, conn.request_id = None, None
        self._asker = conn
        try:
            if not conn.bucket.allow(trio.current_time()):
                self.counters.ws_events["in", "rate_limited"] += 1
                conn.action, conn.request_id = peek(frame)
                raise SignalingError("rate_limited", "too many messages: at most 10/s (bursts of 100)")
            msg: ClientMessage = parse_message(frame)
            conn.action, conn.request_id = msg.type, msg.id
            self.counters.ws_events["in", msg.type] += 1
            self._handlers[msg.type](conn, msg.data)
        except SignalingError as exc:
            if exc.code in ("bad_message", "unknown_type"):
                self.counters.ws_events["in", exc.code] += 1
                conn.request_id = peek(frame)[1]  # a message that did not parse still had its id echoed
            self._outbox.error(conn, exc.code, exc.message, exc.action or conn.action)
        except LocalProtocolError as exc:  # an event field the core refused: the client's value was bad
            self._outbox.error(conn, "bad_request", str(exc), conn.action)
        except Exception:  # a bug or a failing store: report it, keep this socket and the server up
            log.exception("handling %s from %s failed", conn.action, conn.session_id)
            self.counters.ws_events["in", "internal_error"] += 1
            self._outbox.error(conn, "internal_error", "the server failed to handle this message", conn.action)
        finally:
            self._asker = None
            conn.request_id = None

    # ------------------------------------------------------------------ recording

    def record(self, event: ev.InputEvent) -> list[out.OutputEvent]:
        """``recorder.handle`` — a failure there (store I/O, a core bug) leaves the machine ahead of its log, so it
        is fatal: ``on_fatal`` is told (the server stops, and recovers from the log on restart) and it re-raises."""
        try:
            outputs = self._recorder.handle(event)
        except LocalProtocolError:
            raise
        except Exception as exc:
            self._log_failed(exc, f"the event log cannot record {type(event).__name__}: {exc!r}")
            raise
        self._fanout.recorded_input(self._asker)
        self.counters.store_ops["append"] += 1
        return outputs

    def _log_failed(self, exc: BaseException, what: str) -> None:
        if self.fatal is None:
            self.fatal = exc
            self._outbox.log_failed = True
            log.critical("%s; stopping so a restart recovers from the log", what)
            if self.on_fatal is not None:
                self.on_fatal(exc)

    def _commit_failed(self, exc: BaseException, askers: list[Any]) -> None:
        """The fan-out's answer to a failed commit: nothing of the lost batch was acted upon; its askers get
        ``internal_error``, and the server stops (``on_fatal``) as for a synchronous failure."""
        told: set[int] = set()
        for conn in askers:
            if id(conn) not in told:
                told.add(id(conn))
                self.counters.ws_events["in", "internal_error"] += 1
                self._outbox.error_now(conn, "internal_error", "the server failed to handle this message",
                                       conn.action)
        self._log_failed(exc, f"the event log cannot commit: {exc!r} ({exc.__cause__!r})")

    def _fire_timer(self, key: str, at: int) -> None:
        self.feed(ev.TimerFired(at=at, key=key))

    def _connection_gone(self, conn: Connection) -> None:
        """The socket closed (client, network, server shutdown): feed Disconnect if it was in a call."""
        if self._outbox.conns.get(conn.session_id) is conn:
            del self._outbox.conns[conn.session_id]
        if conn.replaced or conn.channel_id is None or self.fatal is not None:
            return
        who = self._machine.participant(conn.session_id)
        if who is not None and who.connected:
            try:
                self.feed(ev.Disconnect(at=self._clock_ms(), session_id=conn.session_id))
            except Exception:  # never let cleanup raise into hypercorn
                log.exception("feeding Disconnect for %s failed", conn.session_id)
