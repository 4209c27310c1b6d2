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

A row has one of three shapes, and the shape fixes what its handler receives, typed: ``Open`` rows (no guard:
``Configure``, ``JoinCall``, ``TimerFired``) pass the event alone; ``Seated`` rows (``IN_CALL`` first) also pass the
caller's ``Call`` and ``Participant``; ``Aimed`` rows (``TARGET`` last) also pass the target's ``Participant``.

Lifecycle of a call: the first ``JoinCall`` in a channel starts it (``CallStarted`` then ``ParticipantJoined``);
the last participant to leave ends it (``ParticipantLeft`` then ``CallEnded`` with the duration and every session
that was ever in it). The earliest-joined participant is the host; when the host leaves, the role passes to the
earliest-joined participant that remains (``HostChanged``). ``MakeHost`` hands it over explicitly.

Reconnects: ``Disconnect`` keeps the participant in the call, marks it disconnected and asks for a timer
``reconnect:<session>`` at ``at + reconnect_window_ms``. ``Reconnect`` before the deadline cancels the timer.
``TimerFired`` for a session still disconnected at or after its deadline removes it (reason ``timed_out``). A stale
fire (the timer was cancelled: the session reconnected or left) is ignored with no output, because a fire races a
cancel in any real adapter. An early fire (``at`` before the pending deadline of its key) is the adapter's bug and
raises ``LocalProtocolError``, leaving the timer armed (the contract is written on ``StartTimer``): ignoring it
silently would strand a session whose adapter dropped its timer handle. Every ``StartTimer`` is matched by exactly
one later ``CancelTimer`` (on reconnect, on leaving, and also when the timer fires and removes the session), so a
timer table an adapter builds from outputs alone always equals ``timers()``; an adapter that feeds a fire only when
its table says the key is due never trips the early check.

Routing: a route forwards one published track of a publisher to one receiver. The set of routes is a function of
the state: every track of every participant goes to every *other* participant of the same call, and a route is
paused exactly when its track is AUDIO and its publisher is muted. Every transition emits the difference
(``RouteAdded``/``RoutePaused``/``RouteResumed``/``RouteRemoved``) between the route sets before and after, in a
fixed order (publishers in join order, tracks in publish order, receivers in join order), so the media plane can
apply outputs blindly. Disconnection does NOT pause routes: routes describe what each session subscribes to, not
whether its transport is up; a disconnected session simply has no packets to send or receive, and after
``Reconnect`` the media plane re-establishes exactly the routes ``routes()`` lists, with no extra outputs to undo.

Publishing is bounded: a session publishes at most ``MAX_TRACKS_PER_KIND`` (one) track of each kind (a microphone,
a camera, a screen and its audio; simulcast layers are one track). Every published track is routed to every other
participant, so one session's tracks multiply the whole call's work; a further ``PublishTrack`` of a kind the
session already publishes is ``Rejected`` with ``too_many_tracks`` (unpublish first, as a source switch does).

Idempotent commands (muting a muted session, raising a raised hand, turning on a camera that is on, making the host
host) succeed with no output; they are not mistakes, just late duplicates of a click.

Remote mistakes become ``Rejected``; malformed events never reach this module (their constructors raise).
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, Generic, Protocol, TypeVar

from ..errors import LocalProtocolError
from . import events as ev
from . import outputs as out
from .snapshot import dump_state, load_state
from .state import (
    RECONNECT_TIMER_PREFIX,
    Call,
    Config,
    Participant,
    ParticipantView,
    Route,
    reconnect_key,
)
from .steps import lower_hand, route_paused, routes_of, set_muted, stop_screen, tracks_of

__all__ = ["CallsMachine", "CallView", "Guard", "Transition", "Open", "Seated", "Aimed", "TRANSITIONS",
           "MAX_TRACKS_PER_KIND"]

MAX_TRACKS_PER_KIND = 1  # tracks a session may publish of each TrackKind (module docstring, "Publishing")


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


Outputs = list[out.OutputEvent]

E = TypeVar("E", bound=ev.InputEvent)
S = TypeVar("S", bound=ev.SessionInput)
T = TypeVar("T", bound=ev.TargetedInput)


class Transition(Protocol):
    """One row of ``TRANSITIONS``: the guards it checks, in order, and how it runs its handler.

    There are three shapes of row, so that every handler is typed with its own event and receives exactly what its
    guards resolved, never an optional it has to assert away: ``Open`` (no guard; ``handler(machine, event)``),
    ``Seated`` (guards start with ``IN_CALL``; ``handler(machine, event, call, me)``) and ``Aimed`` (also
    ``TARGET``; ``handler(machine, event, call, me, target)``).
    """

    @property
    def event_type(self) -> type[ev.InputEvent]: ...

    @property
    def guards(self) -> tuple[Guard, ...]: ...

    def run(self, machine: CallsMachine, event: ev.InputEvent) -> Outputs: ...


def _misfiled(row: object, event: ev.InputEvent) -> LocalProtocolError:
    return LocalProtocolError(f"{row!r} cannot run input type {type(event).__name__!r}")


# The three row shapes are plain slotted classes, not dataclasses: a generic dataclass is one thing mypyc cannot
# compile (mypyc/mypyc#827; docs/adr/0053). Each keeps the dataclass's ``repr``, which ``_misfiled`` quotes.


class Open(Generic[E]):
    """A row without guards (``Configure``, ``JoinCall``, ``TimerFired``)."""

    __slots__ = ("event_type", "handler", "guards")

    def __init__(self, event_type: type[E], handler: Callable[[CallsMachine, E], Outputs],
                 guards: tuple[Guard, ...] = ()) -> None:
        self.event_type: Final = event_type
        self.handler: Final = handler
        self.guards: Final = guards

    def __repr__(self) -> str:
        return f"Open(event_type={self.event_type!r}, handler={self.handler!r}, guards={self.guards!r})"

    def run(self, machine: CallsMachine, event: ev.InputEvent) -> Outputs:
        if not isinstance(event, self.event_type):
            raise _misfiled(self, event)
        return self.handler(machine, event)


class Seated(Generic[S]):
    """A row for a participant's own command: ``IN_CALL`` first, then ``CONNECTED``/``HOST`` as listed."""

    __slots__ = ("event_type", "guards", "handler")

    def __init__(self, event_type: type[S], guards: tuple[Guard, ...],
                 handler: Callable[[CallsMachine, S, Call, Participant], Outputs]) -> None:
        if guards[:1] != (Guard.IN_CALL,) or Guard.TARGET in guards:
            raise LocalProtocolError(f"a Seated row needs IN_CALL first and no TARGET, got {guards}")
        self.event_type: Final = event_type
        self.guards: Final = guards
        self.handler: Final = handler

    def __repr__(self) -> str:
        return f"{type(self).__name__}(event_type={self.event_type!r}, guards={self.guards!r}, handler={self.handler!r})"

    def run(self, machine: CallsMachine, event: ev.InputEvent) -> Outputs:
        if not isinstance(event, self.event_type):
            raise _misfiled(self, event)
        seat = machine._seat(event, self.guards)
        if isinstance(seat, out.Rejected):
            return [seat]
        return self.handler(machine, event, *seat)


class Aimed(Generic[T]):
    """A row for a host command on another participant: ``IN_CALL`` first and ``TARGET`` last."""

    __slots__ = ("event_type", "guards", "handler")

    def __init__(self, event_type: type[T], guards: tuple[Guard, ...],
                 handler: Callable[[CallsMachine, T, Call, Participant, Participant], Outputs]) -> None:
        if guards[:1] != (Guard.IN_CALL,) or guards[-1:] != (Guard.TARGET,):
            raise LocalProtocolError(f"an Aimed row needs IN_CALL first and TARGET last, got {guards}")
        self.event_type: Final = event_type
        self.guards: Final = guards
        self.handler: Final = handler

    def __repr__(self) -> str:
        return f"{type(self).__name__}(event_type={self.event_type!r}, guards={self.guards!r}, handler={self.handler!r})"

    def run(self, machine: CallsMachine, event: ev.InputEvent) -> Outputs:
        if not isinstance(event, self.event_type):
            raise _misfiled(self, event)
        seat = machine._seat(event, self.guards)
        if isinstance(seat, out.Rejected):
            return [seat]
        call, me = seat
        return self.handler(machine, event, call, me, call.participants[event.target])


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

        Emits ``Rejected`` (alone, state unchanged) for a remote party's mistake; raises ``LocalProtocolError``
        (state unchanged) for an input type this machine does not know, a timer key it never issued, or a timer
        fired before its deadline (``StartTimer``'s contract).
        """
        row = TRANSITIONS.get(type(event))
        if row is None:
            raise LocalProtocolError(f"CallsMachine cannot handle input type {type(event).__name__!r}")
        return row.run(self, event)

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

    def census(self) -> tuple[int, int]:
        """(ongoing calls, participants in them), without building a view of each: /metrics reads it every scrape,
        and ``calls()`` built 1,200 participant views for it at 150 calls x 8 (~40 % of a scrape)."""
        return len(self._calls), sum(len(c.participants) for c in self._calls.values())

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
        return [r for c in chosen for r in routes_of(c)]

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
        return dump_state(self._config, list(self._calls.values()))

    @classmethod
    def restore(cls, data: dict[str, Any]) -> CallsMachine:
        """Rebuild a machine from ``snapshot()``; raises ``SnapshotError`` for a malformed snapshot."""
        config, calls = load_state(data)
        m = cls(config)
        for c in calls:
            m._calls[c.channel_id] = c
            for sid in c.participants:
                m._where[sid] = c.channel_id
        return m

    # ------------------------------------------------------------------ guards

    def _seat(self, event: ev.SessionInput, guards: tuple[Guard, ...]) -> tuple[Call, Participant] | out.Rejected:
        """Check ``guards`` in order (``IN_CALL`` first); the caller's call and participant, or the first refusal."""
        channel = self._where.get(event.session_id)
        if channel is None:
            return self._reject(event, Guard.IN_CALL.value)
        call = self._calls[channel]
        me = call.participants[event.session_id]
        for guard in guards:
            if guard is Guard.CONNECTED:
                ok = me.connected
            elif guard is Guard.HOST:
                ok = call.host_id == me.session_id
            elif guard is Guard.TARGET:
                ok = isinstance(event, ev.TargetedInput) and event.target in call.participants
            else:  # Guard.IN_CALL, checked above
                continue
            if not ok:
                return self._reject(event, guard.value)
        return call, me

    @staticmethod
    def _reject(event: ev.SessionInput, reason: out.RejectReason) -> out.Rejected:
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

    def _configure(self, e: ev.Configure) -> Outputs:
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

    def _join(self, e: ev.JoinCall) -> Outputs:
        if e.session_id in self._where:
            return [self._reject(e, out.RejectReason.ALREADY_IN_CALL)]
        c = self._calls.get(e.channel_id)
        limit = self._config.max_participants
        if c is not None and limit and len(c.participants) >= limit:
            return [self._reject(e, out.RejectReason.CALL_FULL)]
        result: Outputs = []
        if c is None:
            if e.call_id is None:  # "join the ongoing call", and there is none (any more)
                return [self._reject(e, out.RejectReason.NO_CALL)]
            c = Call(channel_id=e.channel_id, call_id=e.call_id, started_at=e.at, host_id=e.session_id)
            self._calls[e.channel_id] = c
            result.append(out.CallStarted(channel_id=c.channel_id, call_id=c.call_id, at=e.at, host_id=e.session_id))
        p = Participant(session_id=e.session_id, user_id=e.user_id, joined_at=e.at)
        c.participants[p.session_id] = p
        c.ever.setdefault(p.session_id, None)
        self._where[p.session_id] = c.channel_id
        result.append(out.ParticipantJoined(channel_id=c.channel_id, session_id=p.session_id, user_id=p.user_id))
        for q, track_id, kind in tracks_of(c, exclude=p.session_id):
            result.append(
                out.RouteAdded(
                    channel_id=c.channel_id,
                    track_id=track_id,
                    kind=kind,
                    publisher_id=q.session_id,
                    receiver_id=p.session_id,
                    paused=route_paused(q, kind),
                )
            )
        return result

    def _leave(self, e: ev.LeaveCall, call: Call, me: Participant) -> Outputs:
        return self._remove(call, me, out.LeaveReason.LEFT, by=e.session_id, at=e.at)

    def _disconnect(self, e: ev.Disconnect | ev.GoingAway, call: Call, me: Participant) -> Outputs:
        window = self._config.reconnect_window_ms
        if isinstance(e, ev.GoingAway):
            window = min(window, e.keep_ms)
        deadline = e.at + window
        me.reconnect_deadline = deadline
        return [
            out.ParticipantDisconnected(channel_id=call.channel_id, session_id=e.session_id),
            out.StartTimer(key=reconnect_key(e.session_id), deadline=deadline),
        ]

    def _reconnect(self, e: ev.Reconnect, call: Call, me: Participant) -> Outputs:
        if me.connected:
            return [self._reject(e, out.RejectReason.NOT_DISCONNECTED)]
        me.reconnect_deadline = None
        return [
            out.CancelTimer(key=reconnect_key(e.session_id)),
            out.ParticipantReconnected(channel_id=call.channel_id, session_id=e.session_id),
        ]

    def _timer(self, e: ev.TimerFired) -> Outputs:
        """Remove a session whose reconnect window ran out; ignore a stale fire; raise for an early one."""
        if not e.key.startswith(RECONNECT_TIMER_PREFIX):
            raise LocalProtocolError(f"CallsMachine never starts a timer with key {e.key!r}")
        session_id = e.key[len(RECONNECT_TIMER_PREFIX) :]
        channel = self._where.get(session_id)
        if channel is None:
            return []
        c = self._calls[channel]
        p = c.participants[session_id]
        if p.reconnect_deadline is None:
            return []  # stale: the session reconnected, so the timer was cancelled
        if e.at < p.reconnect_deadline:
            raise LocalProtocolError(
                f"TimerFired({e.key!r}) at {e.at} ms is early: the timer is due at {p.reconnect_deadline} ms "
                "(StartTimer's contract); it stays armed"
            )
        return self._remove(c, p, out.LeaveReason.TIMED_OUT, by=session_id, at=e.at)

    def _mute(self, e: ev.Mute, call: Call, me: Participant) -> Outputs:
        return set_muted(call, me, True, by=e.session_id)

    def _unmute(self, e: ev.Unmute, call: Call, me: Participant) -> Outputs:
        return set_muted(call, me, False, by=e.session_id)

    def _screen_on(self, e: ev.ScreenOn, call: Call, me: Participant) -> Outputs:
        if not self._config.allow_screen_sharing:
            return [self._reject(e, out.RejectReason.SCREEN_SHARING_DISABLED)]
        if call.screen_sharer is not None:
            return [self._reject(e, out.RejectReason.SCREEN_ALREADY_SHARED)]
        call.screen_sharer = e.session_id
        call.screen_stream_id = e.stream_id
        return [out.ScreenStarted(channel_id=call.channel_id, session_id=e.session_id, stream_id=e.stream_id)]

    def _screen_off(self, e: ev.ScreenOff, call: Call, me: Participant) -> Outputs:
        if call.screen_sharer != e.session_id:
            return [self._reject(e, out.RejectReason.NOT_SHARING)]
        return stop_screen(call, e.session_id, by=e.session_id)

    def _video_on(self, e: ev.VideoOn, call: Call, me: Participant) -> Outputs:
        if me.video:
            return []
        me.video = True
        return [out.VideoStarted(channel_id=call.channel_id, session_id=e.session_id)]

    def _video_off(self, e: ev.VideoOff, call: Call, me: Participant) -> Outputs:
        if not me.video:
            return []
        me.video = False
        return [out.VideoStopped(channel_id=call.channel_id, session_id=e.session_id)]

    def _raise_hand(self, e: ev.RaiseHand, call: Call, me: Participant) -> Outputs:
        if me.hand_raised_at is not None:
            return []
        me.hand_raised_at = e.at
        return [out.HandRaised(channel_id=call.channel_id, session_id=e.session_id, raised_at=e.at)]

    def _lower_hand(self, e: ev.LowerHand, call: Call, me: Participant) -> Outputs:
        return lower_hand(call, me, by=e.session_id)

    def _react(self, e: ev.React, call: Call, me: Participant) -> Outputs:
        return [out.Reacted(channel_id=call.channel_id, session_id=e.session_id, emoji=e.emoji)]

    def _make_host(self, e: ev.MakeHost, call: Call, me: Participant, target: Participant) -> Outputs:
        if call.host_id == target.session_id:
            return []
        call.host_id = target.session_id
        return [out.HostChanged(channel_id=call.channel_id, host_id=target.session_id)]

    def _host_mute(self, e: ev.HostMute, call: Call, me: Participant, target: Participant) -> Outputs:
        return set_muted(call, target, True, by=e.session_id)

    def _host_mute_others(self, e: ev.HostMuteOthers, call: Call, me: Participant) -> Outputs:
        result: Outputs = []
        for p in list(call.participants.values()):
            if p.session_id != e.session_id:
                result += set_muted(call, p, True, by=e.session_id)
        return result

    def _host_stop_screen(self, e: ev.HostStopScreen, call: Call, me: Participant) -> Outputs:
        sharer = call.screen_sharer
        if sharer is None:
            return [self._reject(e, out.RejectReason.NOT_SHARING)]
        return stop_screen(call, sharer, by=e.session_id)

    def _host_lower_hand(self, e: ev.HostLowerHand, call: Call, me: Participant, target: Participant) -> Outputs:
        return lower_hand(call, target, by=e.session_id)

    def _host_remove(self, e: ev.HostRemove, call: Call, me: Participant, target: Participant) -> Outputs:
        return self._remove(call, target, out.LeaveReason.REMOVED, by=e.session_id, at=e.at)

    def _host_end_call(self, e: ev.HostEndCall, call: Call, me: Participant) -> Outputs:
        c = call
        result: Outputs = []
        for p in list(c.participants.values()):
            result += self._remove(c, p, out.LeaveReason.CALL_ENDED, by=e.session_id, at=e.at, pass_host=False)
        return result

    def _publish(self, e: ev.PublishTrack, call: Call, me: Participant) -> Outputs:
        if e.track_id in me.tracks:
            return [self._reject(e, out.RejectReason.DUPLICATE_TRACK)]
        if sum(kind is e.kind for kind in me.tracks.values()) >= MAX_TRACKS_PER_KIND:
            return [self._reject(e, out.RejectReason.TOO_MANY_TRACKS)]
        me.tracks[e.track_id] = e.kind
        paused = route_paused(me, e.kind)
        return [
            out.RouteAdded(
                channel_id=call.channel_id,
                track_id=e.track_id,
                kind=e.kind,
                publisher_id=e.session_id,
                receiver_id=r,
                paused=paused,
            )
            for r in call.participants
            if r != e.session_id
        ]

    def _unpublish(self, e: ev.UnpublishTrack, call: Call, me: Participant) -> Outputs:
        if e.track_id not in me.tracks:
            return [self._reject(e, out.RejectReason.UNKNOWN_TRACK)]
        del me.tracks[e.track_id]
        return [
            out.RouteRemoved(channel_id=call.channel_id, track_id=e.track_id, publisher_id=e.session_id, receiver_id=r)
            for r in call.participants
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
            result += stop_screen(c, sid, by=by)
        for track_id in p.tracks:
            for r in c.participants:
                if r != sid:
                    result.append(
                        out.RouteRemoved(channel_id=c.channel_id, track_id=track_id, publisher_id=sid, receiver_id=r)
                    )
        for q, track_id, _kind in tracks_of(c, exclude=sid):
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


# ---------------------------------------------------------------------- the transition table

_IN = (Guard.IN_CALL,)
_LIVE = (Guard.IN_CALL, Guard.CONNECTED)
_HOST = (Guard.IN_CALL, Guard.CONNECTED, Guard.HOST)
_HOST_ON = (Guard.IN_CALL, Guard.CONNECTED, Guard.HOST, Guard.TARGET)

M = CallsMachine
_ROWS = (
    Open(ev.Configure, M._configure),
    Open(ev.JoinCall, M._join),
    Seated(ev.LeaveCall, _IN, M._leave),
    Seated(ev.Disconnect, _LIVE, M._disconnect),
    Seated(ev.GoingAway, _LIVE, M._disconnect),
    Seated(ev.Reconnect, _IN, M._reconnect),
    Open(ev.TimerFired, M._timer),
    Seated(ev.Mute, _LIVE, M._mute),
    Seated(ev.Unmute, _LIVE, M._unmute),
    Seated(ev.ScreenOn, _LIVE, M._screen_on),
    Seated(ev.ScreenOff, _LIVE, M._screen_off),
    Seated(ev.VideoOn, _LIVE, M._video_on),
    Seated(ev.VideoOff, _LIVE, M._video_off),
    Seated(ev.RaiseHand, _LIVE, M._raise_hand),
    Seated(ev.LowerHand, _LIVE, M._lower_hand),
    Seated(ev.React, _LIVE, M._react),
    Aimed(ev.MakeHost, _HOST_ON, M._make_host),
    Aimed(ev.HostMute, _HOST_ON, M._host_mute),
    Seated(ev.HostMuteOthers, _HOST, M._host_mute_others),
    Seated(ev.HostStopScreen, _HOST, M._host_stop_screen),
    Aimed(ev.HostLowerHand, _HOST_ON, M._host_lower_hand),
    Aimed(ev.HostRemove, _HOST_ON, M._host_remove),
    Seated(ev.HostEndCall, _HOST, M._host_end_call),
    Seated(ev.PublishTrack, _LIVE, M._publish),
    Seated(ev.UnpublishTrack, _IN, M._unpublish),
)
TRANSITIONS: dict[type[ev.InputEvent], Transition] = {row.event_type: row for row in _ROWS}
"""Input type -> row (guards checked in order, then the handler). A type missing here raises ``LocalProtocolError``."""
del M
