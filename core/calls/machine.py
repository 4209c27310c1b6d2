"""The call machine: every call of one server, driven by ``handle(event) -> list[OutputEvent]``.

Theory of operation
===================

One ``CallsMachine`` holds every call of a server. A call lives in a channel (at most one call per channel) and is
a set of participants, each a *session* (one browser tab; a user may have several). The machine is a pure function
of its inputs: it never reads a clock or draws an id, so a log of its inputs replays to the same state and the
same outputs (docs/adr/0001, 0002).

Every input goes through the same three steps, in ``handle``:

1. Look up the input's type in ``TRANSITIONS``. A type that is not there is misuse by the embedding program and
   raises ``LocalProtocolError`` naming the type.
2. Check the row's *guards*, in order. Guards are data (the ``Guard`` enum): ``IN_CALL`` (the session is a
   participant of some call), ``CONNECTED`` (it is not inside its reconnect window), ``HOST`` (it holds the host role
   of its call), ``TARGET`` (the event's ``target`` is a participant of the same call). The first failing guard
   yields exactly one ``Rejected`` output with the guard's reason and the machine does not change.
3. Run the row's handler. A handler first finishes every check that needs more than a guard (a full call, a second
   screen share, a duplicate track) and only then mutates; so a rejection never leaves a partial change behind.

Lifecycle of a call: the first ``JoinCall`` in a channel starts it (``CallStarted`` then ``ParticipantJoined``);
the last participant to leave ends it (``ParticipantLeft`` then ``CallEnded`` with the duration and every session
that was ever in it). The earliest-joined participant is the host; when the host leaves, the role passes to the
earliest-joined participant that remains (``HostChanged``). ``MakeHost`` hands it over explicitly.

Reconnects: ``Disconnect`` keeps the participant in the call, marks it disconnected and asks for a timer
``reconnect:<session>`` at ``at + reconnect_window_ms``. ``Reconnect`` before the deadline cancels the timer.
``TimerFired`` for a session still disconnected at or after its deadline removes it (reason ``timed_out``); a stale
or early timer (the session reconnected, left, or was re-disconnected with a later deadline) is ignored with no
output, because timers race with inputs in any real adapter. Every ``StartTimer`` is matched by exactly one later
``CancelTimer`` (on reconnect, on leaving, and also when the timer fires and removes the session), so a timer table
an adapter builds from outputs alone always equals ``timers()``.

Routing: a route forwards one published track of a publisher to one receiver. The set of routes is a function of
the state: every track of every participant goes to every *other* participant of the same call, and a route is
paused exactly when its track is AUDIO and its publisher is muted. Every transition emits the difference
(``RouteAdded``/``RoutePaused``/``RouteResumed``/``RouteRemoved``) between the route sets before and after, in a
fixed order (publishers in join order, tracks in publish order, receivers in join order), so the media plane can
apply outputs blindly. Disconnection does NOT pause routes: routes describe what each session subscribes to, not
whether its transport is up; a disconnected session simply has no packets to send or receive, and after
``Reconnect`` the media plane re-establishes exactly the routes ``routes()`` lists, with no extra outputs to undo.

Idempotent commands (muting a muted session, raising a raised hand, turning on a camera that is on, making the host
host) succeed with no output; they are not mistakes, just late duplicates of a click.

Remote mistakes become ``Rejected``; malformed events never reach this module (their constructors raise).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from ..errors import LocalProtocolError
from . import events as ev
from . import outputs as out
from .state import (
    RECONNECT_TIMER_PREFIX,
    Call,
    Config,
    Participant,
    ParticipantView,
    Route,
    reconnect_key,
)

__all__ = ["CallsMachine", "CallView", "Guard", "Transition", "TRANSITIONS"]


class Guard(enum.Enum):
    """A precondition of a transition, and the reason given when it fails."""

    IN_CALL = out.RejectReason.NOT_IN_CALL
    CONNECTED = out.RejectReason.DISCONNECTED
    HOST = out.RejectReason.NOT_HOST
    TARGET = out.RejectReason.UNKNOWN_TARGET


@dataclass(frozen=True, slots=True, kw_only=True)
class CallView:
    """A read-only copy of one call, participants in join order."""

    channel_id: str
    call_id: str
    started_at: int
    host_id: str
    screen_sharer: str | None
    screen_stream_id: str | None
    participants: tuple[ParticipantView, ...]


@dataclass(slots=True)
class _Ctx:
    """What the guards resolved for a handler: the caller's call and participant, and the target if any."""

    call: Call | None = None
    me: Participant | None = None
    target: Participant | None = None


Outputs = list[out.OutputEvent]
Handler = Callable[["CallsMachine", Any, _Ctx], Outputs]


@dataclass(frozen=True, slots=True)
class Transition:
    guards: tuple[Guard, ...]
    handler: Handler


class CallsMachine:
    """Every call of one server. Feed inputs to ``handle``; read state through the query methods."""

    __slots__ = ("_config", "_calls", "_where")

    def __init__(self, config: Config | None = None) -> None:
        self._config = config if config is not None else Config()
        self._calls: dict[str, Call] = {}  # channel_id -> Call, in start order
        self._where: dict[str, str] = {}  # session_id -> channel_id of its call

    # ------------------------------------------------------------------ the interface

    def handle(self, event: ev.InputEvent) -> list[out.OutputEvent]:
        """Apply one input and return what happened, in a deterministic order.

        Emits ``Rejected`` (alone, state unchanged) for a remote party's mistake; raises ``LocalProtocolError`` for
        an input type this machine does not know or a malformed timer key.
        """
        row = TRANSITIONS.get(type(event))
        if row is None:
            raise LocalProtocolError(f"CallsMachine cannot handle input type {type(event).__name__!r}")
        ctx = _Ctx()
        for guard in row.guards:
            if not self._check(guard, event, ctx):
                return [self._reject(event, guard.value)]
        return row.handler(self, event, ctx)

    # ------------------------------------------------------------------ queries

    @property
    def config(self) -> Config:
        c = self._config
        return Config(
            max_participants=c.max_participants,
            reconnect_window_ms=c.reconnect_window_ms,
            allow_screen_sharing=c.allow_screen_sharing,
        )

    def channel_of(self, session_id: str) -> str | None:
        """The channel whose call the session is in, or None."""
        return self._where.get(session_id)

    def call_of(self, session_id: str) -> CallView | None:
        """The call the session is in, or None."""
        channel = self._where.get(session_id)
        return None if channel is None else self.call(channel)

    def call(self, channel_id: str) -> CallView | None:
        c = self._calls.get(channel_id)
        if c is None:
            return None
        return CallView(
            channel_id=c.channel_id,
            call_id=c.call_id,
            started_at=c.started_at,
            host_id=c.host_id,
            screen_sharer=c.screen_sharer,
            screen_stream_id=c.screen_stream_id,
            participants=tuple(self._view(c, p) for p in c.participants.values()),
        )

    def calls(self) -> tuple[CallView, ...]:
        """Every ongoing call, in the order they started."""
        return tuple(v for ch in self._calls if (v := self.call(ch)) is not None)

    def sessions(self, channel_id: str) -> tuple[str, ...]:
        """Session ids of the channel's call in join order (empty when there is no call)."""
        c = self._calls.get(channel_id)
        return () if c is None else tuple(c.participants)

    def participant(self, session_id: str) -> ParticipantView | None:
        channel = self._where.get(session_id)
        if channel is None:
            return None
        c = self._calls[channel]
        return self._view(c, c.participants[session_id])

    def host(self, channel_id: str) -> str | None:
        c = self._calls.get(channel_id)
        return None if c is None else c.host_id

    def routes(self, channel_id: str | None = None) -> list[Route]:
        """The forwarding table (of one channel, or all), in the fixed output order."""
        chosen = self._calls.values() if channel_id is None else [c for c in [self._calls.get(channel_id)] if c]
        return [r for c in chosen for r in _routes_of(c)]

    def timers(self) -> dict[str, int]:
        """Pending timers (key -> deadline ms); an adapter re-arms these after restoring a snapshot."""
        return {
            reconnect_key(p.session_id): p.reconnect_deadline
            for c in self._calls.values()
            for p in c.participants.values()
            if p.reconnect_deadline is not None
        }

    def snapshot(self) -> dict[str, Any]:
        """The whole state as a JSON-able dict (see core/calls/snapshot.py for the format)."""
        from .snapshot import dump_state

        return dump_state(self._config, list(self._calls.values()))

    @classmethod
    def restore(cls, data: dict[str, Any]) -> CallsMachine:
        """Rebuild a machine from ``snapshot()``; raises ``SnapshotError`` for a malformed snapshot."""
        from .snapshot import load_state

        config, calls = load_state(data)
        m = cls(config)
        for c in calls:
            m._calls[c.channel_id] = c
            for sid in c.participants:
                m._where[sid] = c.channel_id
        return m

    # ------------------------------------------------------------------ guards

    def _check(self, guard: Guard, event: Any, ctx: _Ctx) -> bool:
        if guard is Guard.IN_CALL:
            channel = self._where.get(event.session_id)
            if channel is None:
                return False
            ctx.call = self._calls[channel]
            ctx.me = ctx.call.participants[event.session_id]
            return True
        assert ctx.call is not None and ctx.me is not None, "IN_CALL must come first"
        if guard is Guard.CONNECTED:
            return ctx.me.connected
        if guard is Guard.HOST:
            return ctx.call.host_id == ctx.me.session_id
        # Guard.TARGET
        ctx.target = ctx.call.participants.get(event.target)
        return ctx.target is not None

    @staticmethod
    def _reject(event: Any, reason: out.RejectReason) -> out.Rejected:
        return out.Rejected(session_id=event.session_id, command=type(event).__name__, reason=reason)

    def _view(self, c: Call, p: Participant) -> ParticipantView:
        return ParticipantView(
            channel_id=c.channel_id,
            call_id=c.call_id,
            session_id=p.session_id,
            user_id=p.user_id,
            joined_at=p.joined_at,
            muted=p.muted,
            video=p.video,
            hand_raised_at=p.hand_raised_at,
            connected=p.connected,
            screen=c.screen_sharer == p.session_id,
            host=c.host_id == p.session_id,
            tracks=tuple(p.tracks.items()),
        )

    # ------------------------------------------------------------------ handlers

    def _configure(self, e: ev.Configure, ctx: _Ctx) -> Outputs:
        self._config = Config(
            max_participants=e.max_participants,
            reconnect_window_ms=e.reconnect_window_ms,
            allow_screen_sharing=e.allow_screen_sharing,
        )
        return [
            out.ConfigChanged(
                max_participants=e.max_participants,
                reconnect_window_ms=e.reconnect_window_ms,
                allow_screen_sharing=e.allow_screen_sharing,
            )
        ]

    def _join(self, e: ev.JoinCall, ctx: _Ctx) -> Outputs:
        if e.session_id in self._where:
            return [self._reject(e, out.RejectReason.ALREADY_IN_CALL)]
        c = self._calls.get(e.channel_id)
        limit = self._config.max_participants
        if c is not None and limit and len(c.participants) >= limit:
            return [self._reject(e, out.RejectReason.CALL_FULL)]
        result: Outputs = []
        if c is None:
            c = Call(channel_id=e.channel_id, call_id=e.call_id, started_at=e.at, host_id=e.session_id)
            self._calls[e.channel_id] = c
            result.append(out.CallStarted(channel_id=c.channel_id, call_id=c.call_id, at=e.at, host_id=e.session_id))
        p = Participant(session_id=e.session_id, user_id=e.user_id, joined_at=e.at)
        c.participants[p.session_id] = p
        c.ever.setdefault(p.session_id, None)
        self._where[p.session_id] = c.channel_id
        result.append(out.ParticipantJoined(channel_id=c.channel_id, session_id=p.session_id, user_id=p.user_id))
        for q, track_id, kind in _tracks_of(c, exclude=p.session_id):
            result.append(
                out.RouteAdded(
                    channel_id=c.channel_id,
                    track_id=track_id,
                    kind=kind,
                    publisher_id=q.session_id,
                    receiver_id=p.session_id,
                    paused=_paused(q, kind),
                )
            )
        return result

    def _leave(self, e: ev.LeaveCall, ctx: _Ctx) -> Outputs:
        assert ctx.call is not None and ctx.me is not None
        return self._remove(ctx.call, ctx.me, out.LeaveReason.LEFT, by=e.session_id, at=e.at)

    def _disconnect(self, e: ev.Disconnect, ctx: _Ctx) -> Outputs:
        assert ctx.call is not None and ctx.me is not None
        deadline = e.at + self._config.reconnect_window_ms
        ctx.me.reconnect_deadline = deadline
        return [
            out.ParticipantDisconnected(channel_id=ctx.call.channel_id, session_id=e.session_id),
            out.StartTimer(key=reconnect_key(e.session_id), deadline=deadline),
        ]

    def _reconnect(self, e: ev.Reconnect, ctx: _Ctx) -> Outputs:
        assert ctx.call is not None and ctx.me is not None
        if ctx.me.connected:
            return [self._reject(e, out.RejectReason.NOT_DISCONNECTED)]
        ctx.me.reconnect_deadline = None
        return [
            out.CancelTimer(key=reconnect_key(e.session_id)),
            out.ParticipantReconnected(channel_id=ctx.call.channel_id, session_id=e.session_id),
        ]

    def _timer(self, e: ev.TimerFired, ctx: _Ctx) -> Outputs:
        if not e.key.startswith(RECONNECT_TIMER_PREFIX):
            raise LocalProtocolError(f"CallsMachine never starts a timer with key {e.key!r}")
        session_id = e.key[len(RECONNECT_TIMER_PREFIX) :]
        channel = self._where.get(session_id)
        if channel is None:
            return []
        c = self._calls[channel]
        p = c.participants[session_id]
        if p.reconnect_deadline is None or e.at < p.reconnect_deadline:
            return []
        return self._remove(c, p, out.LeaveReason.TIMED_OUT, by=session_id, at=e.at)

    def _mute(self, e: ev.Mute, ctx: _Ctx) -> Outputs:
        assert ctx.call is not None and ctx.me is not None
        return _set_muted(ctx.call, ctx.me, True, by=e.session_id)

    def _unmute(self, e: ev.Unmute, ctx: _Ctx) -> Outputs:
        assert ctx.call is not None and ctx.me is not None
        return _set_muted(ctx.call, ctx.me, False, by=e.session_id)

    def _screen_on(self, e: ev.ScreenOn, ctx: _Ctx) -> Outputs:
        assert ctx.call is not None
        if not self._config.allow_screen_sharing:
            return [self._reject(e, out.RejectReason.SCREEN_SHARING_DISABLED)]
        if ctx.call.screen_sharer is not None:
            return [self._reject(e, out.RejectReason.SCREEN_ALREADY_SHARED)]
        ctx.call.screen_sharer = e.session_id
        ctx.call.screen_stream_id = e.stream_id
        return [out.ScreenStarted(channel_id=ctx.call.channel_id, session_id=e.session_id, stream_id=e.stream_id)]

    def _screen_off(self, e: ev.ScreenOff, ctx: _Ctx) -> Outputs:
        assert ctx.call is not None
        if ctx.call.screen_sharer != e.session_id:
            return [self._reject(e, out.RejectReason.NOT_SHARING)]
        return _stop_screen(ctx.call, by=e.session_id)

    def _video_on(self, e: ev.VideoOn, ctx: _Ctx) -> Outputs:
        assert ctx.call is not None and ctx.me is not None
        if ctx.me.video:
            return []
        ctx.me.video = True
        return [out.VideoStarted(channel_id=ctx.call.channel_id, session_id=e.session_id)]

    def _video_off(self, e: ev.VideoOff, ctx: _Ctx) -> Outputs:
        assert ctx.call is not None and ctx.me is not None
        if not ctx.me.video:
            return []
        ctx.me.video = False
        return [out.VideoStopped(channel_id=ctx.call.channel_id, session_id=e.session_id)]

    def _raise_hand(self, e: ev.RaiseHand, ctx: _Ctx) -> Outputs:
        assert ctx.call is not None and ctx.me is not None
        if ctx.me.hand_raised_at is not None:
            return []
        ctx.me.hand_raised_at = e.at
        return [out.HandRaised(channel_id=ctx.call.channel_id, session_id=e.session_id, raised_at=e.at)]

    def _lower_hand(self, e: ev.LowerHand, ctx: _Ctx) -> Outputs:
        assert ctx.call is not None and ctx.me is not None
        return _lower(ctx.call, ctx.me, by=e.session_id)

    def _react(self, e: ev.React, ctx: _Ctx) -> Outputs:
        assert ctx.call is not None
        return [out.Reacted(channel_id=ctx.call.channel_id, session_id=e.session_id, emoji=e.emoji)]

    def _make_host(self, e: ev.MakeHost, ctx: _Ctx) -> Outputs:
        assert ctx.call is not None and ctx.target is not None
        if ctx.call.host_id == ctx.target.session_id:
            return []
        ctx.call.host_id = ctx.target.session_id
        return [out.HostChanged(channel_id=ctx.call.channel_id, host_id=ctx.target.session_id)]

    def _host_mute(self, e: ev.HostMute, ctx: _Ctx) -> Outputs:
        assert ctx.call is not None and ctx.target is not None
        return _set_muted(ctx.call, ctx.target, True, by=e.session_id)

    def _host_mute_others(self, e: ev.HostMuteOthers, ctx: _Ctx) -> Outputs:
        assert ctx.call is not None
        result: Outputs = []
        for p in list(ctx.call.participants.values()):
            if p.session_id != e.session_id:
                result += _set_muted(ctx.call, p, True, by=e.session_id)
        return result

    def _host_stop_screen(self, e: ev.HostStopScreen, ctx: _Ctx) -> Outputs:
        assert ctx.call is not None
        if ctx.call.screen_sharer is None:
            return [self._reject(e, out.RejectReason.NOT_SHARING)]
        return _stop_screen(ctx.call, by=e.session_id)

    def _host_lower_hand(self, e: ev.HostLowerHand, ctx: _Ctx) -> Outputs:
        assert ctx.call is not None and ctx.target is not None
        return _lower(ctx.call, ctx.target, by=e.session_id)

    def _host_remove(self, e: ev.HostRemove, ctx: _Ctx) -> Outputs:
        assert ctx.call is not None and ctx.target is not None
        return self._remove(ctx.call, ctx.target, out.LeaveReason.REMOVED, by=e.session_id, at=e.at)

    def _host_end_call(self, e: ev.HostEndCall, ctx: _Ctx) -> Outputs:
        assert ctx.call is not None
        c = ctx.call
        result: Outputs = []
        for p in list(c.participants.values()):
            result += self._remove(c, p, out.LeaveReason.CALL_ENDED, by=e.session_id, at=e.at, pass_host=False)
        return result

    def _publish(self, e: ev.PublishTrack, ctx: _Ctx) -> Outputs:
        assert ctx.call is not None and ctx.me is not None
        if e.track_id in ctx.me.tracks:
            return [self._reject(e, out.RejectReason.DUPLICATE_TRACK)]
        ctx.me.tracks[e.track_id] = e.kind
        paused = _paused(ctx.me, e.kind)
        return [
            out.RouteAdded(
                channel_id=ctx.call.channel_id,
                track_id=e.track_id,
                kind=e.kind,
                publisher_id=e.session_id,
                receiver_id=r,
                paused=paused,
            )
            for r in ctx.call.participants
            if r != e.session_id
        ]

    def _unpublish(self, e: ev.UnpublishTrack, ctx: _Ctx) -> Outputs:
        assert ctx.call is not None and ctx.me is not None
        if e.track_id not in ctx.me.tracks:
            return [self._reject(e, out.RejectReason.UNKNOWN_TRACK)]
        del ctx.me.tracks[e.track_id]
        return [
            out.RouteRemoved(channel_id=ctx.call.channel_id, track_id=e.track_id, publisher_id=e.session_id, receiver_id=r)
            for r in ctx.call.participants
            if r != e.session_id
        ]

    # ------------------------------------------------------------------ shared steps

    def _remove(
        self, c: Call, p: Participant, reason: out.LeaveReason, *, by: str, at: int, pass_host: bool = True
    ) -> Outputs:
        """Take ``p`` out of ``c``: cancel its timer, end its share, drop its routes both ways, pass the host role,
        and end the call if it was the last one."""
        sid = p.session_id
        result: Outputs = []
        if p.reconnect_deadline is not None:
            result.append(out.CancelTimer(key=reconnect_key(sid)))
        if c.screen_sharer == sid:
            result += _stop_screen(c, by=by)
        for track_id in p.tracks:
            for r in c.participants:
                if r != sid:
                    result.append(
                        out.RouteRemoved(channel_id=c.channel_id, track_id=track_id, publisher_id=sid, receiver_id=r)
                    )
        for q, track_id, _kind in _tracks_of(c, exclude=sid):
            result.append(
                out.RouteRemoved(channel_id=c.channel_id, track_id=track_id, publisher_id=q.session_id, receiver_id=sid)
            )
        del c.participants[sid]
        del self._where[sid]
        result.append(out.ParticipantLeft(channel_id=c.channel_id, session_id=sid, reason=reason))
        if not c.participants:
            del self._calls[c.channel_id]
            result.append(
                out.CallEnded(
                    channel_id=c.channel_id,
                    call_id=c.call_id,
                    at=at,
                    duration_ms=at - c.started_at,
                    participants=tuple(c.ever),
                )
            )
        elif c.host_id == sid:
            c.host_id = next(iter(c.participants))
            if pass_host:
                result.append(out.HostChanged(channel_id=c.channel_id, host_id=c.host_id))
        return result


# ---------------------------------------------------------------------- helpers on plain state


def _paused(publisher: Participant, kind: ev.TrackKind) -> bool:
    return kind is ev.TrackKind.AUDIO and publisher.muted


def _tracks_of(c: Call, *, exclude: str) -> Iterator[tuple[Participant, str, ev.TrackKind]]:
    """Every published track of the call except ``exclude``'s: publishers in join order, tracks in publish order."""
    for q in c.participants.values():
        if q.session_id != exclude:
            for track_id, kind in q.tracks.items():
                yield q, track_id, kind


def _routes_of(c: Call) -> Iterator[Route]:
    for q in c.participants.values():
        for track_id, kind in q.tracks.items():
            for r in c.participants:
                if r != q.session_id:
                    yield Route(
                        channel_id=c.channel_id,
                        track_id=track_id,
                        kind=kind,
                        publisher_id=q.session_id,
                        receiver_id=r,
                        paused=_paused(q, kind),
                    )


def _set_muted(c: Call, p: Participant, muted: bool, *, by: str) -> Outputs:
    """Mute or unmute ``p`` and pause or resume its audio routes; no output when nothing changes."""
    if p.muted == muted:
        return []
    p.muted = muted
    result: Outputs = [
        out.Muted(channel_id=c.channel_id, session_id=p.session_id, by=by)
        if muted
        else out.Unmuted(channel_id=c.channel_id, session_id=p.session_id)
    ]
    route_event = out.RoutePaused if muted else out.RouteResumed
    for track_id, kind in p.tracks.items():
        if kind is ev.TrackKind.AUDIO:
            for r in c.participants:
                if r != p.session_id:
                    result.append(
                        route_event(channel_id=c.channel_id, track_id=track_id, publisher_id=p.session_id, receiver_id=r)
                    )
    return result


def _stop_screen(c: Call, *, by: str) -> Outputs:
    sharer = c.screen_sharer
    assert sharer is not None
    c.screen_sharer = None
    c.screen_stream_id = None
    return [out.ScreenStopped(channel_id=c.channel_id, session_id=sharer, by=by)]


def _lower(c: Call, p: Participant, *, by: str) -> Outputs:
    if p.hand_raised_at is None:
        return []
    p.hand_raised_at = None
    return [out.HandLowered(channel_id=c.channel_id, session_id=p.session_id, by=by)]


# ---------------------------------------------------------------------- the transition table

_IN = (Guard.IN_CALL,)
_LIVE = (Guard.IN_CALL, Guard.CONNECTED)
_HOST = (Guard.IN_CALL, Guard.CONNECTED, Guard.HOST)
_HOST_ON = (Guard.IN_CALL, Guard.CONNECTED, Guard.HOST, Guard.TARGET)

M = CallsMachine
TRANSITIONS: dict[type[ev.InputEvent], Transition] = {
    ev.Configure: Transition((), M._configure),
    ev.JoinCall: Transition((), M._join),
    ev.LeaveCall: Transition(_IN, M._leave),
    ev.Disconnect: Transition(_LIVE, M._disconnect),
    ev.Reconnect: Transition(_IN, M._reconnect),
    ev.TimerFired: Transition((), M._timer),
    ev.Mute: Transition(_LIVE, M._mute),
    ev.Unmute: Transition(_LIVE, M._unmute),
    ev.ScreenOn: Transition(_LIVE, M._screen_on),
    ev.ScreenOff: Transition(_LIVE, M._screen_off),
    ev.VideoOn: Transition(_LIVE, M._video_on),
    ev.VideoOff: Transition(_LIVE, M._video_off),
    ev.RaiseHand: Transition(_LIVE, M._raise_hand),
    ev.LowerHand: Transition(_LIVE, M._lower_hand),
    ev.React: Transition(_LIVE, M._react),
    ev.MakeHost: Transition(_HOST_ON, M._make_host),
    ev.HostMute: Transition(_HOST_ON, M._host_mute),
    ev.HostMuteOthers: Transition(_HOST, M._host_mute_others),
    ev.HostStopScreen: Transition(_HOST, M._host_stop_screen),
    ev.HostLowerHand: Transition(_HOST_ON, M._host_lower_hand),
    ev.HostRemove: Transition(_HOST_ON, M._host_remove),
    ev.HostEndCall: Transition(_HOST, M._host_end_call),
    ev.PublishTrack: Transition(_LIVE, M._publish),
    ev.UnpublishTrack: Transition(_IN, M._unpublish),
}
"""Input type -> (guards checked in order, handler). A type missing here raises ``LocalProtocolError``."""
del M
