"""``MediaBridge``: the media plane's events (adapters/media/events.py) into the hub, one typed handler each.

The plane calls ``emit(event)`` from inside its own work (an answer being built, a packet being read); the bridge
only queues it on an unbounded channel, and its task (``run``) handles the events one by one, so the plane is never
re-entered from inside its own call. Each event type has one handler, chosen with ``match`` on the type:

- ``SendSignal`` -> the ``signal`` event to the session's client;
- ``TrackPublished``/``TrackUnpublished`` -> core ``PublishTrack``/``UnpublishTrack`` (their routing outputs go back
  to the plane through the dispatcher);
- ``SessionConnected``/``SessionClosed`` -> counters; a closed media path unpublishes the session's tracks;
- ``VoiceActivity`` -> ``user_voice_on``/``user_voice_off`` to the call (on a change only; ignored while the
  session is muted: ``mute`` ends speaking, see the dispatcher);
- ``MediaStateChanged`` -> ``user_media_state`` to the call (connected, failed with a reason, disconnected);
- ``SignalRejected`` -> the ``sdp_rejected`` error (``PlaneEffects.signal_refused``);
- ``SessionMoved`` -> ``restore_routes`` with the routes the core has towards the session.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

import trio
from callsd.core.calls import events as ev
from callsd.core.calls import outputs as out
from callsd.core.calls.machine import CallsMachine

from .media.events import (
    MediaEvent,
    MediaStateChanged,
    SendSignal,
    SessionClosed,
    SessionConnected,
    SessionMoved,
    SignalRejected,
    TrackPublished,
    TrackUnpublished,
    VoiceActivity,
)
from .signaling_outbox import Outbox
from .signaling_plane import PlaneEffects, routes_towards
from .signaling_session import HubCounters
from .signaling_state import LiveStatus

__all__ = ["MediaBridge", "unpublish_all"]

log = logging.getLogger("callsd.signaling")

DRAIN_PER_STEP = 16  # media events handled in one task step at most (a handler is ~10-100 µs: the loop is not held)

Feed = Callable[[ev.InputEvent], list[out.OutputEvent]]


def unpublish_all(machine: CallsMachine, feed: Feed, session_id: str, at: int) -> None:
    """Feed ``UnpublishTrack`` for every track the core has for the session (its media path is gone)."""
    who = machine.participant(session_id)
    if who is None:
        return
    for track_id, _kind in who.tracks:
        feed(ev.UnpublishTrack(at=at, session_id=session_id, track_id=track_id))


class MediaBridge:
    """See the module docstring. ``live`` is the hub's speaking set and media states (shared with the state)."""

    def __init__(self, machine: CallsMachine, feed: Feed, outbox: Outbox, plane: PlaneEffects,
                 counters: HubCounters, clock_ms: Callable[[], int], live: LiveStatus) -> None:
        self._machine = machine
        self._feed = feed
        self._outbox = outbox
        self._plane = plane
        self._counters = counters
        self._clock_ms = clock_ms
        self._live = live
        self._send, self._recv = trio.open_memory_channel[MediaEvent](math.inf)

    def emit(self, event: MediaEvent) -> None:
        """The media plane's callback: queue the event for ``run`` (never re-enters the plane)."""
        self._send.send_nowait(event)

    async def run(self) -> None:
        """Handle queued events until cancelled; one failing handler is logged and the others go on. The events
        queued behind the one that woke the task are handled in the same step, up to ``DRAIN_PER_STEP`` (one plane
        call emits several: an answer and the slot updates of the call's other members), where ``async for`` took
        one task step (a yield) per event."""
        while True:
            self._handle_logged(await self._recv.receive())
            for _ in range(DRAIN_PER_STEP - 1):
                try:
                    event = self._recv.receive_nowait()
                except trio.WouldBlock:
                    break
                self._handle_logged(event)

    def _handle_logged(self, event: MediaEvent) -> None:
        try:
            self.handle(event)
        except Exception:
            log.exception("handling media event %r failed", event)

    def handle(self, event: MediaEvent) -> None:
        match event:
            case SendSignal():
                conn = self._outbox.get(event.session_id)
                answer = event.msg.get("type") == "answer"
                request_id = self._plane.answer_id(event.session_id) if answer else None
                if conn is not None:
                    # a slots change only labels audio that already flows: it may wait for company (LAZY_EVENTS)
                    self._outbox.send(conn, "signal", dict(event.msg), request_id,
                                      lazy=event.msg.get("type") == "slots")
            case TrackPublished():
                if self._machine.participant(event.session_id) is not None:
                    self._feed(ev.PublishTrack(at=self._clock_ms(), session_id=event.session_id,
                                               track_id=event.track_id, kind=event.kind))
            case TrackUnpublished():
                who = self._machine.participant(event.session_id)
                if who is not None and any(t == event.track_id for t, _k in who.tracks):
                    self._feed(ev.UnpublishTrack(at=self._clock_ms(), session_id=event.session_id,
                                                 track_id=event.track_id))
            case SessionConnected():
                self._counters.rtc_conn_states["connected"] += 1
            case SessionClosed():
                self._counters.rtc_conn_states["closed"] += 1
                unpublish_all(self._machine, self._feed, event.session_id, self._clock_ms())
            case VoiceActivity():
                self._on_voice(event)
            case MediaStateChanged():
                self._on_media_state(event)
            case SignalRejected():
                request_id = self._plane.answer_id(event.session_id) if event.action == "sdp" else None
                self._plane.signal_refused(self._outbox.get(event.session_id), event.session_id, event.action,
                                           event.reason, request_id)
            case SessionMoved():
                self._plane.restore(routes_towards(self._machine, event.session_id))
            case _:
                log.warning("unknown media event %r", event)

    def _on_voice(self, event: VoiceActivity) -> None:
        who = self._machine.participant(event.session_id)
        if who is None or event.speaking == (event.session_id in self._live.speaking):
            return
        if event.speaking and who.muted:  # a muted session is never speaking (its audio is not forwarded either)
            return
        if event.speaking:
            self._live.speaking.add(event.session_id)
        else:
            self._live.speaking.discard(event.session_id)
        kind = "user_voice_on" if event.speaking else "user_voice_off"
        self._outbox.to_sessions(self._machine.sessions(who.channel_id), kind,
                                 {"channel_id": who.channel_id, "session_id": event.session_id})

    def _on_media_state(self, event: MediaStateChanged) -> None:
        """Tell the call that a participant's media connected, failed or dropped (``user_media_state``)."""
        who = self._machine.participant(event.session_id)
        if who is None:
            return
        self._live.media[event.session_id] = event.state
        self._outbox.to_sessions(self._machine.sessions(who.channel_id), "user_media_state",
                                 {"channel_id": who.channel_id, "session_id": event.session_id,
                                  "state": event.state, "reason": event.reason})
