"""``OutputDispatcher``: what the hub does with one batch of the core's outputs, by kind.

The core's outputs come in four kinds (core/calls/outputs.py), and each has one consumer here:

- ``CallFact`` (``ParticipantJoined``, ``Muted``...): encoded once (``signaling_protocol.event_for``) and sent to the
  sessions of its call, the leavers of the same batch included (they learn why they left); screen facts also tell
  the plane the screen stream id, a leaver's media session is closed, and ``Muted`` ends the session's speaking
  (``user_voice_off`` right after ``user_muted``: a muted session is never speaking);
- ``Rejection``: one ``error`` event (code = the reason) to the session that was refused;
- ``RoutingChange``: one ``plane.apply`` per batch;
- ``TimerRequest``: the timer service's table.

Everything that reaches a client or the plane is a durable fan-out effect (``Outbox``, ``PlaneEffects``).
"""

from __future__ import annotations

import logging
from typing import Any

import trio
from callsd.core.calls import outputs as out
from callsd.core.calls.machine import CallsMachine

from .signaling_outbox import Outbox
from .signaling_plane import PlaneEffects
from .signaling_protocol import encode, event_for
from .signaling_session import Connection
from .signaling_state import LiveStatus
from .signaling_timers import TimerService

__all__ = ["OutputDispatcher"]

log = logging.getLogger("callsd.signaling")


class OutputDispatcher:
    """Acts on output batches (module docstring); ``calls_changed`` wakes a drain waiting for calls to end."""

    def __init__(self, machine: CallsMachine, outbox: Outbox, plane: PlaneEffects, timers: TimerService,
                 live: LiveStatus) -> None:
        self._machine = machine
        self._outbox = outbox
        self._plane = plane
        self._timers = timers
        self._live = live
        self.calls_changed = trio.Event()

    def rejected(self, conn: Connection, outputs: list[out.OutputEvent]) -> bool:
        """If the core refused ``conn``'s input, tell it (the first reason) and say so."""
        for o in outputs:
            if isinstance(o, out.Rejection):
                self._outbox.error(conn, str(o.reason), f"{conn.action}: refused ({o.reason})", conn.action)
                return True
        return False

    def dispatch(self, outputs: list[out.OutputEvent]) -> None:
        """Act on one batch of outputs, in order (module docstring)."""
        if not outputs:
            return
        by_channel: dict[str, list[tuple[str, dict[str, Any]]]] = {}
        left: dict[str, set[str]] = {}
        routing: list[out.RoutingChange] = []
        for o in outputs:
            match o:
                case out.Rejected():
                    self._tell_rejected(o)
                case out.RoutingChange():
                    routing.append(o)
                case out.TimerRequest():  # the timer table follows the machine synchronously
                    self._timers.follow(o)
                case out.CallFact():
                    match o:
                        case out.ScreenStarted():
                            self._plane.screen(o.session_id, o.stream_id)
                        case out.ScreenStopped():
                            self._plane.screen(o.session_id, None)
                        case out.ParticipantLeft():
                            left.setdefault(o.channel_id, set()).add(o.session_id)
                    event = event_for(o)
                    if event is not None:
                        by_channel.setdefault(o.channel_id, []).append(event)
                    if isinstance(o, out.Muted) and o.session_id in self._live.speaking:  # a muted session never speaks
                        self._live.speaking.discard(o.session_id)
                        by_channel[o.channel_id].append(
                            ("user_voice_off", {"channel_id": o.channel_id, "session_id": o.session_id}))
        if routing:
            self._plane.apply(routing)
        for channel_id, events in by_channel.items():
            self._broadcast(channel_id, events, left.get(channel_id, set()))
        for channel_id, gone in left.items():
            for sid in gone:
                self._live.forget(sid)
                self._plane.close(sid)
                conn = self._outbox.get(sid)
                if conn is not None and conn.channel_id == channel_id:
                    conn.channel_id = None
        self.calls_changed.set()
        self.calls_changed = trio.Event()

    def _tell_rejected(self, rejected: out.Rejected) -> None:
        conn = self._outbox.get(rejected.session_id)
        if conn is not None:
            self._outbox.error(conn, str(rejected.reason), f"{rejected.command}: refused ({rejected.reason})",
                               conn.action)
        else:
            log.warning("core rejected %s for %s: %s", rejected.command, rejected.session_id, rejected.reason)

    def _broadcast(self, channel_id: str, events: list[tuple[str, dict[str, Any]]], gone: set[str]) -> None:
        recipients = list(self._machine.sessions(channel_id)) + sorted(gone)
        texts = [(kind, encode(kind, data)) for kind, data in events]
        for sid in recipients:
            conn = self._outbox.get(sid)
            if conn is not None and (conn.channel_id == channel_id or sid in gone):
                for kind, text in texts:
                    self._outbox.queue(conn, kind, text)
