"""The signaling pump: WebSocket sessions in, core inputs through the recorder, events out (docs/protocol.md).

Theory of operation
-------------------
``SignalingHub`` owns the session table and nothing else of the call state: every change goes through
``recorder.handle(input)`` (the event-sourced ``CallsMachine``), and the hub only acts on the outputs:

- fact outputs (``ParticipantJoined``, ``Muted``...) are encoded once and fanned out to the sessions of the call,
  the leavers of the same batch included (they learn why they left);
- ``Rejected`` becomes one ``error`` event (code = the reason) to the session that asked;
- routing outputs go to the media plane (``plane.apply``), ``ScreenStarted``/``ScreenStopped`` tell the plane the
  screen stream id, and ``StartTimer``/``CancelTimer`` arm the hub's single timer task, which answers with
  ``TimerFired`` on the wall clock.

Serialisation: ``recorder.handle`` is synchronous and the hub never awaits between feeding an input and planning
its effects, so the single Trio thread already orders every input; no lock is needed.

Durability: with a group-commit recorder the record of an input is written later, in a batch, off the event loop.
Every effect (WebSocket events, ``plane`` calls, replies such as ``join_ack``, ``error`` or ``pong``) is therefore
planned at once, with the machine queries it needs answered right after its input, and handed to
``DurableFanOut.do`` (adapters/signaling_fanout.py), which runs it only once that input's record is durable, in seq
order. The hub's own tables (sessions' calls, timers, speaking flags) follow the machine synchronously: they are not
observed by clients, and what they cause (a later input) is recorded after the input that caused it. Each connection has a
bounded outbox drained by its own writer task; a client too slow to drain 1024 events is disconnected (close code
1008) rather than allowed to stall the others. Media-plane callbacks (``emit``) go through an unbounded channel to the
hub's media task, so the plane is never re-entered from inside its own call.

A dropped socket feeds ``Disconnect``; ``reconnect {session_id}`` on a new socket feeds ``Reconnect`` and moves the
session to it (an old socket still open is closed with 4001 "replaced"). During shutdown (``drain``) new joins get
``shutting_down`` and every client a ``server_shutdown`` event.
"""

from __future__ import annotations

import logging
import math
import secrets
import time
from collections.abc import Callable
from typing import Any

import trio
from callsd.core import events as ev
from callsd.core import outputs as out
from callsd.core.errors import LocalProtocolError

from .signaling_fanout import DurableFanOut
from .signaling_names import check_channel_id, clean_display_name
from .signaling_protocol import (
    PROTOCOL_VERSION,
    ClientMessage,
    SignalingError,
    TokenBucket,
    encode,
    event_for,
    field_id,
    field_str,
    parse_message,
)
from .signaling_session import (
    ROUTING_OUTPUTS,
    Connection,
    HubCounters,
    HubSettings,
    MediaPlaneLike,
    NullMediaPlane,
    Recorder,
    Transport,
)

__all__ = ["SignalingHub", "HubSettings", "HubCounters", "Transport", "MediaPlaneLike", "NullMediaPlane"]

log = logging.getLogger("callsd.signaling")

OUTBOX_SIZE = 1024
_ROUTING = ROUTING_OUTPUTS


def _wall_ms() -> int:
    return int(time.time() * 1000)


def _new_id(prefix: str = "") -> str:
    return prefix + secrets.token_urlsafe(12)


class SignalingHub:
    """Every signaling session of one server. Public API: ``serve_connection``, ``run``, ``drain``, queries."""

    def __init__(
        self,
        recorder: Recorder,
        machine: Any,
        *,
        plane: MediaPlaneLike | None = None,
        settings: HubSettings | None = None,
        clock_ms: Callable[[], int] = _wall_ms,
        new_id: Callable[[str], str] = _new_id,
    ) -> None:
        self._recorder = recorder
        self.machine = machine
        self.plane: MediaPlaneLike = plane if plane is not None else NullMediaPlane()
        self.settings = settings or HubSettings()
        self._clock_ms = clock_ms
        self._new_id = new_id
        self.counters = HubCounters()
        self._conns: dict[str, Connection] = {}  # session id -> its current socket
        self._speaking: set[str] = set()
        self._timers: dict[str, int] = {}  # key -> deadline (wall ms)
        self._timers_changed = trio.Event()
        self._media_send, self._media_recv = trio.open_memory_channel[Any](math.inf)
        self._calls_changed = trio.Event()
        self.draining = False
        self.drain_timeout = 0.0
        self.fatal: BaseException | None = None
        self.on_fatal: Callable[[BaseException], None] | None = None
        self._out = DurableFanOut(recorder)
        self._asker: Connection | None = None  # the connection whose frame is being handled
        self._handlers: dict[str, Callable[[Connection, dict[str, Any]], None]] = {
            "join": self._on_join,
            "reconnect": self._on_reconnect,
            "leave": self._simple(ev.LeaveCall),
            "sdp": self._on_sdp,
            "ice": self._on_ice,
            "mute": self._simple(ev.Mute),
            "unmute": self._simple(ev.Unmute),
            "screen_on": self._on_screen_on,
            "screen_off": self._simple(ev.ScreenOff),
            "video_on": self._simple(ev.VideoOn),
            "video_off": self._simple(ev.VideoOff),
            "raise_hand": self._simple(ev.RaiseHand),
            "lower_hand": self._simple(ev.LowerHand),
            "react": self._on_react,
            "host_make": self._targeted(ev.MakeHost),
            "host_mute": self._targeted(ev.HostMute),
            "host_mute_others": self._simple(ev.HostMuteOthers),
            "host_screen_off": self._simple(ev.HostStopScreen),
            "host_lower_hand": self._targeted(ev.HostLowerHand),
            "host_remove": self._targeted(ev.HostRemove),
            "host_end": self._simple(ev.HostEndCall),
            "get_state": self._on_get_state,
            "ping": lambda conn, data: self._send(conn, "pong", {}),
        }

    # ------------------------------------------------------------------ public API

    @property
    def open_connections(self) -> int:
        return self.counters.ws_connections_open

    def emit(self, media_event: Any) -> None:
        """The media plane's callback: queue the event for the hub's media task (never re-enters the plane)."""
        self._media_send.send_nowait(media_event)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """The hub's background tasks: the timer wheel, the media-event pump, the durable fan-out and, for a
        group-commit recorder, its commit loop. Runs until cancelled."""
        async with trio.open_nursery() as nursery:
            commit_loop = getattr(self._recorder, "commit_loop", None)
            if commit_loop is not None and getattr(self._recorder, "group_commit", False):
                await nursery.start(commit_loop)
            nursery.start_soon(self._out.run, self._commit_failed)
            nursery.start_soon(self._timer_task)
            nursery.start_soon(self._media_task)
            task_status.started()

    async def flush(self) -> None:
        """Wait until every input fed so far is durable and its effects have run (returns early if the log
        failed)."""
        await self._out.flush()

    async def serve_connection(self, transport: Transport, *, query_token: str | None = None) -> None:
        """Run one client socket until it closes: hello, then read → feed → fan out. Returns after cleanup."""
        send, recv = trio.open_memory_channel[str](OUTBOX_SIZE)
        conn = Connection(self._new_id(""), query_token, TokenBucket(self.settings.rate, self.settings.burst,
                                                                      trio.current_time()), send)
        self._conns[conn.session_id] = conn
        self.counters.ws_connections_total += 1
        self.counters.ws_connections_open += 1
        try:
            self._send(conn, "hello", {
                "session_id": conn.session_id, "protocol": PROTOCOL_VERSION,
                "server_version": self.settings.server_version, "auth_mode": self.settings.auth_mode,
            })
            if self.draining:
                self._send(conn, "server_shutdown", {"drain_timeout_seconds": self.drain_timeout})
            async with trio.open_nursery() as nursery:
                conn.scope = nursery.cancel_scope
                nursery.start_soon(self._writer, conn, transport, recv)
                while True:
                    try:
                        frame = await transport.receive()
                    except Exception as exc:  # a transport error is a closed socket
                        log.debug("receive from %s failed: %r", conn.session_id, exc)
                        break
                    if frame is None:
                        break
                    self._on_frame(conn, frame)
                nursery.cancel_scope.cancel()
            if conn.close_code != 1000 or conn.replaced:
                with trio.move_on_after(2) as scope:
                    scope.shield = True
                    await transport.close(conn.close_code, conn.close_reason)
        finally:
            self.counters.ws_connections_open -= 1
            self._connection_gone(conn)

    def feed(self, event: ev.InputEvent) -> list[out.OutputEvent]:
        """Feed one server-side input (configuration, recovery) through the recorder and act on its outputs."""
        return self._feed(event)

    def recover(self) -> None:
        """After a restart from the log: re-arm the machine's timers and mark sessions that were connected when the
        previous process stopped as disconnected, so their clients get the reconnect window."""
        for key, deadline in self.machine.timers().items():
            self._timers[key] = deadline
        for view in self.machine.calls():
            for p in view.participants:
                if p.connected:
                    self._feed(ev.Disconnect(at=self._clock_ms(), session_id=p.session_id))
        self._timers_changed.set()

    def close_all(self, code: int, reason: str) -> None:
        """Close every client socket with ``code`` (their sessions are disconnected as for a dropped socket)."""
        for conn in list(self._conns.values()):
            conn.kill(code, reason)

    async def drain(self, timeout: float) -> bool:
        """Refuse new joins, tell every client, wait up to ``timeout`` s for all calls to end; True if they did."""
        self.draining = True
        self.drain_timeout = timeout
        for conn in list(self._conns.values()):
            self._send(conn, "server_shutdown", {"drain_timeout_seconds": timeout})
        with trio.move_on_after(timeout):
            while self.machine.calls():
                await self._calls_changed.wait()
            return True
        return False

    # ------------------------------------------------------------------ reading

    async def _writer(self, conn: Connection, transport: Transport, recv: trio.MemoryReceiveChannel[str]) -> None:
        try:
            async for text in recv:
                await transport.send(text)
        except Exception as exc:  # the socket broke under us: end this connection, not the server
            log.debug("send to %s failed: %r", conn.session_id, exc)
            if conn.scope is not None:
                conn.scope.cancel()

    def _on_frame(self, conn: Connection, frame: str | bytes) -> None:
        conn.action = None
        self._asker = conn
        try:
            if not conn.bucket.allow(trio.current_time()):
                self.counters.ws_events["in", "rate_limited"] += 1
                raise SignalingError("rate_limited", "too many messages: at most 10/s (bursts of 100)")
            msg: ClientMessage = parse_message(frame)
            conn.action = msg.type
            self.counters.ws_events["in", msg.type] += 1
            self._handlers[msg.type](conn, msg.data)
        except SignalingError as exc:
            if exc.code in ("bad_message", "unknown_type"):
                self.counters.ws_events["in", exc.code] += 1
            self._error(conn, exc.code, exc.message, exc.action or conn.action)
        except LocalProtocolError as exc:  # an event field the core refused: the client's value was bad
            self._error(conn, "bad_request", str(exc), conn.action)
        except Exception:  # a bug or a failing store: report it, keep this socket and the server up
            log.exception("handling %s from %s failed", conn.action, conn.session_id)
            self.counters.ws_events["in", "internal_error"] += 1
            self._error(conn, "internal_error", "the server failed to handle this message", conn.action)
        finally:
            self._asker = None

    # ------------------------------------------------------------------ action handlers

    def _require_joined(self, conn: Connection, action: str) -> str:
        if conn.channel_id is None:
            raise SignalingError("not_joined", f"{action} needs a joined session: send join first", action)
        return conn.session_id

    def _simple(self, cls: type[ev.SessionInput]) -> Callable[[Connection, dict[str, Any]], None]:
        def handler(conn: Connection, data: dict[str, Any]) -> None:
            sid = self._require_joined(conn, conn.action or "")
            self._feed(cls(at=self._clock_ms(), session_id=sid))

        return handler

    def _targeted(self, cls: Callable[..., ev.InputEvent]) -> Callable[[Connection, dict[str, Any]], None]:
        def handler(conn: Connection, data: dict[str, Any]) -> None:
            action = conn.action or ""
            sid = self._require_joined(conn, action)
            target = field_id(data, "session_id", action)
            self._feed(cls(at=self._clock_ms(), session_id=sid, target=target))

        return handler

    def _authorize(self, conn: Connection, data: dict[str, Any], channel_id: str, action: str) -> str:
        """The user id of this join: from the token in token mode, from ``display_name`` in open mode."""
        if self.settings.auth_mode == "token":
            from callsd.app.auth import TokenError, verify_token

            token = data.get("token") or conn.query_token
            try:
                claims = verify_token(token, secret=self.settings.auth_secret, now=self._clock_ms() / 1000,
                                      channel_id=channel_id)
            except TokenError as exc:
                raise SignalingError(exc.code, exc.message, action) from None
            return claims.user_id
        raw = data.get("display_name")
        if raw is None or raw == "":
            return "guest-" + secrets.token_hex(2)
        if not isinstance(raw, str):
            raise SignalingError("bad_request", f"{action}: \"display_name\" must be a string", action)
        return clean_display_name(raw, action)

    def _on_join(self, conn: Connection, data: dict[str, Any]) -> None:
        if conn.channel_id is not None:
            raise SignalingError("already_joined", f"already in the call of {conn.channel_id!r}; leave first", "join")
        channel_id = check_channel_id(field_id(data, "channel_id", "join"), "join")
        if self.draining:
            raise SignalingError("shutting_down", "the server is shutting down; try again later", "join")
        user_id = self._authorize(conn, data, channel_id, "join")
        outputs = self._record(
            ev.JoinCall(at=self._clock_ms(), channel_id=channel_id, session_id=conn.session_id, user_id=user_id,
                        call_id=self._new_id("c_"))
        )
        self.counters.store_ops["append"] += 1
        if self._rejected(conn, outputs):
            return
        conn.channel_id, conn.user_id = channel_id, user_id
        self._send_join_ack(conn, reconnected=False)
        self._open_media(conn)
        self._dispatch(outputs)

    def _on_reconnect(self, conn: Connection, data: dict[str, Any]) -> None:
        if conn.channel_id is not None:
            raise SignalingError("already_joined", f"already in the call of {conn.channel_id!r}", "reconnect")
        old_sid = field_id(data, "session_id", "reconnect")
        channel_id = field_id(data, "channel_id", "reconnect")
        user_id = self._authorize(conn, data, channel_id, "reconnect")
        who = self.machine.participant(old_sid)
        if who is None or who.channel_id != channel_id:
            raise SignalingError("unknown_session", f"session {old_sid!r} is not in the call of {channel_id!r} "
                                 "(the reconnect window may have passed): join again", "reconnect")
        if self.settings.auth_mode == "token" and who.user_id != user_id:
            raise SignalingError("unauthorized", "that session belongs to another user", "reconnect")
        old = self._conns.get(old_sid)
        if old is not None and old is not conn:
            old.replaced = True
            old.channel_id = None
            old.kill(4001, "replaced")
        if who.connected:
            self._feed(ev.Disconnect(at=self._clock_ms(), session_id=old_sid))
        outputs = self._record(ev.Reconnect(at=self._clock_ms(), session_id=old_sid))
        self.counters.store_ops["append"] += 1
        if self._rejected(conn, outputs):
            return
        if self._conns.get(conn.session_id) is conn:
            del self._conns[conn.session_id]
        conn.session_id, conn.channel_id, conn.user_id = old_sid, channel_id, who.user_id
        self._conns[old_sid] = conn
        self._send_join_ack(conn, reconnected=True)
        self._dispatch(outputs)
        # The old peer connection is gone with the old page: unpublish its tracks, start a fresh media session and
        # give it the routes the core still has towards this session (the client's new offer publishes again).
        self._unpublish_all(old_sid)
        self._out.do(self._plane_close, old_sid)
        self._open_media(conn)
        incoming = [r for r in self.machine.routes(channel_id) if r.receiver_id == old_sid]
        if incoming:
            self._out.do(self._plane_restore, incoming)

    def _plane_restore(self, incoming: list[Any]) -> None:
        restore = getattr(self.plane, "restore_routes", None)
        if restore is not None:
            restore(incoming)
        else:
            self.plane.apply([
                out.RouteAdded(channel_id=r.channel_id, track_id=r.track_id, kind=r.kind,
                               publisher_id=r.publisher_id, receiver_id=r.receiver_id, paused=r.paused)
                for r in incoming
            ])

    def _on_sdp(self, conn: Connection, data: dict[str, Any]) -> None:
        sid = self._require_joined(conn, "sdp")
        kind = data.get("type")
        if kind not in ("offer", "answer"):
            raise SignalingError("bad_request", "sdp: \"type\" must be \"offer\" or \"answer\"", "sdp")
        sdp = field_str(data, "sdp", "sdp", max_len=1 << 20)
        self._out.do(self._to_plane, conn, sid, {"type": kind, "sdp": sdp}, "sdp")

    def _on_ice(self, conn: Connection, data: dict[str, Any]) -> None:
        sid = self._require_joined(conn, "ice")
        candidate = data.get("candidate")
        if candidate is not None and not isinstance(candidate, dict | str):
            raise SignalingError("bad_request", "ice: \"candidate\" must be an object, a string or null", "ice")
        self._out.do(self._to_plane, conn, sid, {"type": "candidate", "candidate": candidate}, "ice")

    def _to_plane(self, conn: Connection, sid: str, msg: dict[str, Any], action: str) -> None:
        """A fan-out effect (it must follow the join that opened the media session): errors go to ``conn``."""
        try:
            self.plane.handle_signal(sid, msg)
        except SignalingError as exc:
            self._error_now(conn, exc.code, exc.message, exc.action or action)
        except Exception as exc:  # the plane refused the SDP (or failed): tell the client, keep the server up
            self._signal_rejected(conn, sid, action, str(exc))

    def _signal_rejected(self, conn: Connection | None, sid: str, action: str, reason: str) -> None:
        """The one answer to a refused ``sdp``/``ice``, whether the plane raised in-process or a media worker
        reported it (``SignalRejected``)."""
        log.info("media plane refused %s from %s: %s", action, sid, reason)
        self.counters.rtc_errors["sdp"] += 1
        if conn is not None:
            self._error_now(conn, "sdp_rejected", f"the media plane could not use this {action}: {reason}"[:300],
                            action)

    def _on_screen_on(self, conn: Connection, data: dict[str, Any]) -> None:
        sid = self._require_joined(conn, "screen_on")
        stream_id = field_id(data, "stream_id", "screen_on")
        self._feed(ev.ScreenOn(at=self._clock_ms(), session_id=sid, stream_id=stream_id))

    def _on_react(self, conn: Connection, data: dict[str, Any]) -> None:
        sid = self._require_joined(conn, "react")
        emoji = field_str(data, "emoji", "react", max_len=32)
        self._feed(ev.React(at=self._clock_ms(), session_id=sid, emoji=emoji))

    def _on_get_state(self, conn: Connection, data: dict[str, Any]) -> None:
        self._require_joined(conn, "get_state")
        view = self.machine.call(conn.channel_id)
        if view is not None:
            self._send(conn, "call_state", self.state_of(view))

    # ------------------------------------------------------------------ feeding the core, acting on outputs

    def _record(self, event: ev.InputEvent) -> list[out.OutputEvent]:
        """``recorder.handle`` — a failure there (store I/O, a core bug) leaves the machine ahead of its log, so it
        is fatal: ``on_fatal`` is told (the server stops, and recovers from the log on restart) and it re-raises."""
        try:
            outputs = self._recorder.handle(event)
            self._out.recorded_input(self._asker)
            return outputs
        except LocalProtocolError:
            raise
        except Exception as exc:
            if self.fatal is None:
                self.fatal = exc
                log.critical("the event log cannot record %s: %r; stopping so a restart recovers from the log",
                             type(event).__name__, exc)
                if self.on_fatal is not None:
                    self.on_fatal(exc)
            raise

    def _commit_failed(self, exc: BaseException, askers: list[Connection]) -> None:
        """The fan-out's answer to a failed commit: nothing of the lost batch was acted upon; its askers get
        ``internal_error``, and the server stops (``on_fatal``) as for a synchronous failure."""
        told: set[int] = set()
        for conn in askers:
            if id(conn) not in told:
                told.add(id(conn))
                self.counters.ws_events["in", "internal_error"] += 1
                self._error_now(conn, "internal_error", "the server failed to handle this message", conn.action)
        if self.fatal is None:
            self.fatal = exc
            log.critical("the event log cannot commit: %r (%r); stopping so a restart recovers from the log", exc,
                         exc.__cause__)
            if self.on_fatal is not None:
                self.on_fatal(exc)

    def _feed(self, event: ev.InputEvent) -> list[out.OutputEvent]:
        outputs = self._record(event)
        self.counters.store_ops["append"] += 1
        self._dispatch(outputs)
        return outputs

    def _rejected(self, conn: Connection, outputs: list[out.OutputEvent]) -> bool:
        for o in outputs:
            if isinstance(o, out.Rejected):
                self._error(conn, str(o.reason), f"{conn.action}: refused ({o.reason})", conn.action)
                return True
        return False

    def _dispatch(self, outputs: list[out.OutputEvent]) -> None:
        """Act on one batch of core outputs, in order (module docstring)."""
        if not outputs:
            return
        by_channel: dict[str, list[tuple[str, dict[str, Any]]]] = {}
        left: dict[str, set[str]] = {}
        routing: list[out.OutputEvent] = []
        for o in outputs:
            if isinstance(o, out.Rejected):
                conn = self._conns.get(o.session_id)
                if conn is not None:
                    self._error(conn, str(o.reason), f"{o.command}: refused ({o.reason})", conn.action)
                else:
                    log.warning("core rejected %s for %s: %s", o.command, o.session_id, o.reason)
                continue
            if isinstance(o, _ROUTING):
                routing.append(o)
                continue
            if isinstance(o, out.StartTimer):  # the hub's timer table follows the machine (module docstring)
                self._timers[o.key] = o.deadline
                self._timers_changed.set()
                continue
            if isinstance(o, out.CancelTimer):
                self._timers.pop(o.key, None)
                self._timers_changed.set()
                continue
            if isinstance(o, out.ScreenStarted):
                self._out.do(self._plane_screen, o.session_id, o.stream_id)
            elif isinstance(o, out.ScreenStopped):
                self._out.do(self._plane_screen, o.session_id, None)
            elif isinstance(o, out.ParticipantLeft):
                left.setdefault(o.channel_id, set()).add(o.session_id)
            event = event_for(o)
            if event is not None:
                by_channel.setdefault(o.channel_id, []).append(event)  # type: ignore[attr-defined]
        if routing:
            self._out.do(self._plane_apply, routing)
        for channel_id, events in by_channel.items():
            gone = left.get(channel_id, set())
            recipients = list(self.machine.sessions(channel_id)) + sorted(gone)
            texts = [(kind, encode(kind, data)) for kind, data in events]
            for sid in recipients:
                conn = self._conns.get(sid)
                if conn is not None and (conn.channel_id == channel_id or sid in gone):
                    for kind, text in texts:
                        self._queue(conn, kind, text)
        for channel_id, gone in left.items():
            for sid in gone:
                self._speaking.discard(sid)
                self._out.do(self._plane_close, sid)
                conn = self._conns.get(sid)
                if conn is not None and conn.channel_id == channel_id:
                    conn.channel_id = None
        self._calls_changed.set()
        self._calls_changed = trio.Event()

    # Plane effects read ``self.plane`` when they run (the server may set the plane after recovery fed inputs).
    def _plane_apply(self, routing: list[out.OutputEvent]) -> None:
        self.plane.apply(routing)

    def _plane_screen(self, session_id: str, stream_id: str | None) -> None:
        self.plane.set_screen_stream(session_id, stream_id)

    def _plane_close(self, session_id: str) -> None:
        self.plane.close_session(session_id)

    def _plane_open(self, session_id: str, channel_id: str) -> None:
        self.plane.open_session(session_id, channel_id)

    def _unpublish_all(self, sid: str) -> None:
        who = self.machine.participant(sid)
        if who is None:
            return
        for track_id, _kind in who.tracks:
            self._feed(ev.UnpublishTrack(at=self._clock_ms(), session_id=sid, track_id=track_id))

    def _open_media(self, conn: Connection) -> None:
        assert conn.channel_id is not None
        self.counters.rtc_sessions_total += 1
        self._out.do(self._plane_open, conn.session_id, conn.channel_id)

    def _connection_gone(self, conn: Connection) -> None:
        """The socket closed (client, network, server shutdown): feed Disconnect if it was in a call."""
        if self._conns.get(conn.session_id) is conn:
            del self._conns[conn.session_id]
        if conn.replaced or conn.channel_id is None or self.fatal is not None:
            return
        who = self.machine.participant(conn.session_id)
        if who is not None and who.connected:
            try:
                self._feed(ev.Disconnect(at=self._clock_ms(), session_id=conn.session_id))
            except Exception:  # never let cleanup raise into hypercorn
                log.exception("feeding Disconnect for %s failed", conn.session_id)

    # ------------------------------------------------------------------ sending

    def _queue(self, conn: Connection, kind: str, text: str) -> None:
        """Queue ``text`` for ``conn`` once everything recorded so far is durable (``DurableFanOut.do``)."""
        self._out.do(self._queue_now, conn, kind, text)

    def _queue_now(self, conn: Connection, kind: str, text: str) -> None:
        try:
            conn.outbox.send_nowait(text)
            self.counters.ws_events["out", kind] += 1
        except trio.WouldBlock:
            if conn.close_code == 1000:  # count (and close) once
                self.counters.ws_closed_slow += 1
                conn.kill(1008, "too slow: outbox full")
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass

    def _send(self, conn: Connection, kind: str, data: dict[str, Any]) -> None:
        self._queue(conn, kind, encode(kind, data))

    def _error(self, conn: Connection, code: str, message: str, action: str | None) -> None:
        if self.fatal is not None:  # the log failed: no later effect will run, but the asker should hear why
            self._error_now(conn, code, message, action)
        else:
            self._send(conn, "error", {"code": code, "message": message, "action": action})

    def _error_now(self, conn: Connection, code: str, message: str, action: str | None) -> None:
        self._queue_now(conn, "error", encode("error", {"code": code, "message": message, "action": action}))

    def _send_join_ack(self, conn: Connection, *, reconnected: bool) -> None:
        assert conn.channel_id is not None
        view = self.machine.call(conn.channel_id)
        self._send(conn, "join_ack", {
            "session_id": conn.session_id, "call_id": view.call_id if view else None, "channel_id": conn.channel_id,
            "user_id": conn.user_id, "ice_servers": self.ice_servers_for(conn.session_id),
            "state": self.state_of(view) if view else None, "reconnected": reconnected,
        })

    def ice_servers_for(self, session_id: str) -> list[dict[str, Any]]:
        """Configured ICE servers; TURN entries without credentials get TURN REST ones when a secret is set."""
        servers = [dict(s) for s in self.settings.ice_servers]
        if self.settings.turn_secret:
            from callsd.app.auth import turn_credentials

            username, password = turn_credentials(secret=self.settings.turn_secret, session_id=session_id,
                                                  now=self._clock_ms() / 1000, ttl_seconds=self.settings.turn_ttl_seconds)
            for s in servers:
                urls = s.get("urls", [])
                if any(u.startswith(("turn:", "turns:")) for u in urls) and not s.get("username"):
                    s["username"], s["credential"] = username, password
        return servers

    def state_of(self, view: Any) -> dict[str, Any]:
        """The call state object of docs/protocol.md from a core ``CallView``."""
        return {
            "channel_id": view.channel_id, "call_id": view.call_id, "start_at": view.started_at,
            "host_id": view.host_id,
            "screen": {"session_id": view.screen_sharer, "stream_id": view.screen_stream_id}
            if view.screen_sharer else None,
            "participants": [
                {"session_id": p.session_id, "user_id": p.user_id, "muted": p.muted,
                 "raised_hand": p.hand_raised_at or 0, "video": p.video, "screen": p.screen,
                 "speaking": p.session_id in self._speaking, "connected": p.connected}
                for p in view.participants
            ],
        }

    # ------------------------------------------------------------------ timers and media events

    async def _timer_task(self) -> None:
        while True:
            self._timers_changed = trio.Event()
            now = self._clock_ms()
            due = sorted((deadline, key) for key, deadline in self._timers.items() if deadline <= now)
            for _deadline, key in due:
                if key in self._timers:
                    del self._timers[key]
                    try:
                        self._feed(ev.TimerFired(at=max(now, _deadline), key=key))
                    except Exception:
                        log.exception("timer %s failed", key)
            if due:
                continue
            wait = min(self._timers.values(), default=None)
            with trio.move_on_after(60 if wait is None else max(0.0, (wait - now) / 1000) + 0.001):
                await self._timers_changed.wait()

    async def _media_task(self) -> None:
        handlers: dict[str, Callable[[Any], None]] = {
            "SendSignal": self._on_media_signal,
            "TrackPublished": self._on_track_published,
            "TrackUnpublished": self._on_track_unpublished,
            "SessionConnected": lambda e: self.counters.rtc_conn_states.update(["connected"]),
            "SessionClosed": self._on_media_closed,
            "VoiceActivity": self._on_voice,
            "SignalRejected": lambda e: self._signal_rejected(self._conns.get(e.session_id), e.session_id,
                                                              e.action, e.reason),
        }
        async for event in self._media_recv:
            handler = handlers.get(type(event).__name__)
            if handler is None:
                log.warning("unknown media event %r", event)
                continue
            try:
                handler(event)
            except Exception:
                log.exception("handling media event %r failed", event)

    def _on_media_signal(self, e: Any) -> None:
        conn = self._conns.get(e.session_id)
        if conn is not None:
            self._send(conn, "signal", dict(e.msg))

    def _on_track_published(self, e: Any) -> None:
        if self.machine.participant(e.session_id) is not None:
            self._feed(ev.PublishTrack(at=self._clock_ms(), session_id=e.session_id, track_id=e.track_id,
                                       kind=ev.TrackKind(e.kind)))

    def _on_track_unpublished(self, e: Any) -> None:
        who = self.machine.participant(e.session_id)
        if who is not None and any(t == e.track_id for t, _k in who.tracks):
            self._feed(ev.UnpublishTrack(at=self._clock_ms(), session_id=e.session_id, track_id=e.track_id))

    def _on_media_closed(self, e: Any) -> None:
        self.counters.rtc_conn_states["closed"] += 1
        self._unpublish_all(e.session_id)

    def _on_voice(self, e: Any) -> None:
        who = self.machine.participant(e.session_id)
        if who is None:
            return
        if e.speaking == (e.session_id in self._speaking):
            return
        (self._speaking.add if e.speaking else self._speaking.discard)(e.session_id)
        kind = "user_voice_on" if e.speaking else "user_voice_off"
        text = encode(kind, {"channel_id": who.channel_id, "session_id": e.session_id})
        for sid in self.machine.sessions(who.channel_id):
            conn = self._conns.get(sid)
            if conn is not None:
                self._queue(conn, kind, text)
