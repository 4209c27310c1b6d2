"""Output events of the call core: facts in the past tense, rejections, and effects for the adapters.

Every output belongs to exactly one kind, and each kind is a base class, so that a consumer filters with one
``isinstance`` instead of rebuilding a tuple of types::

    OutputEvent
    +-- ChannelOutput        names its ``channel_id``: an adapter fans it out without lookups
    |   +-- CallFact         broadcast to the call's sessions (ParticipantJoined, Muted, CallEnded...)
    |   +-- RoutingChange    applied by the media plane to its forwarding table (RouteAdded/Removed/Paused/Resumed)
    +-- TimerRequest         asks the adapter for a ``TimerFired`` (StartTimer) or to forget one (CancelTimer)
    +-- Rejection            a remote command was refused, with a machine-readable ``reason`` (Rejected)
    +-- ConfigChanged        the server-wide configuration the machine now applies

The core never sees packets: routing changes are the whole interface to the media plane. The bases add no field an
output did not already have, so the event-log codec (type name + fields, canonical JSON with sorted keys) writes
exactly the bytes it wrote before the bases existed.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from .events import TrackKind

__all__ = [
    "RejectReason",
    "LeaveReason",
    "OutputEvent",
    "ChannelOutput",
    "CallFact",
    "RoutingChange",
    "TimerRequest",
    "Rejection",
    "CallStarted",
    "CallEnded",
    "ParticipantJoined",
    "ParticipantLeft",
    "ParticipantDisconnected",
    "ParticipantReconnected",
    "Muted",
    "Unmuted",
    "ScreenStarted",
    "ScreenStopped",
    "VideoStarted",
    "VideoStopped",
    "HandRaised",
    "HandLowered",
    "Reacted",
    "HostChanged",
    "Rejected",
    "RouteAdded",
    "RouteRemoved",
    "RoutePaused",
    "RouteResumed",
    "StartTimer",
    "CancelTimer",
    "ConfigChanged",
    "OUTPUT_TYPES",
]


class RejectReason(enum.StrEnum):
    """Machine-readable reasons a remote command was refused; clients switch on these strings."""

    CALL_FULL = "call_full"
    NOT_IN_CALL = "not_in_call"
    ALREADY_IN_CALL = "already_in_call"
    NOT_HOST = "not_host"
    SCREEN_ALREADY_SHARED = "screen_already_shared"
    SCREEN_SHARING_DISABLED = "screen_sharing_disabled"
    NOT_SHARING = "not_sharing"
    UNKNOWN_TARGET = "unknown_target"
    UNKNOWN_TRACK = "unknown_track"
    DUPLICATE_TRACK = "duplicate_track"
    NOT_DISCONNECTED = "not_disconnected"
    DISCONNECTED = "disconnected"
    TOO_MANY_TRACKS = "too_many_tracks"  # a session publishes at most one track of each kind (machine.py)
    NO_CALL = "no_call"


class LeaveReason(enum.StrEnum):
    LEFT = "left"
    REMOVED = "removed"
    TIMED_OUT = "timed_out"
    CALL_ENDED = "call_ended"


@dataclass(frozen=True, slots=True, kw_only=True)
class OutputEvent:
    """Base of every output. Concrete outputs derive from one of the kind bases below (module docstring)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ChannelOutput(OutputEvent):
    """An output about the call of one channel."""

    channel_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class CallFact(ChannelOutput):
    """Something that happened in a call, in the past tense; the signaling adapter tells the call's sessions."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RoutingChange(ChannelOutput):
    """A change to the forwarding table: the route of ``track_id`` from ``publisher_id`` to ``receiver_id``.

    The media plane applies these blindly and in order; the machine's ``routes()`` is their running sum.
    """

    track_id: str
    publisher_id: str
    receiver_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class TimerRequest(OutputEvent):
    """Asks the adapter to start or cancel the timer named ``key`` (one pending timer per key)."""

    key: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Rejection(OutputEvent):
    """A remote command was refused with ``reason``; nothing else changed."""

    session_id: str
    reason: RejectReason


@dataclass(frozen=True, slots=True, kw_only=True)
class CallStarted(CallFact):
    call_id: str
    at: int
    host_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class CallEnded(CallFact):
    """``participants`` lists every session that was ever in the call, in join order."""

    call_id: str
    at: int
    duration_ms: int
    participants: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class ParticipantJoined(CallFact):
    session_id: str
    user_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ParticipantLeft(CallFact):
    session_id: str
    reason: LeaveReason


@dataclass(frozen=True, slots=True, kw_only=True)
class ParticipantDisconnected(CallFact):
    session_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ParticipantReconnected(CallFact):
    session_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Muted(CallFact):
    """``by`` is the session that muted (itself, or the host)."""

    session_id: str
    by: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Unmuted(CallFact):
    session_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ScreenStarted(CallFact):
    session_id: str
    stream_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ScreenStopped(CallFact):
    session_id: str
    by: str


@dataclass(frozen=True, slots=True, kw_only=True)
class VideoStarted(CallFact):
    session_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class VideoStopped(CallFact):
    session_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class HandRaised(CallFact):
    session_id: str
    raised_at: int


@dataclass(frozen=True, slots=True, kw_only=True)
class HandLowered(CallFact):
    session_id: str
    by: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Reacted(CallFact):
    session_id: str
    emoji: str


@dataclass(frozen=True, slots=True, kw_only=True)
class HostChanged(CallFact):
    host_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Rejected(Rejection):
    """A remote command was refused; nothing else changed. ``command`` is the input's type name."""

    command: str


@dataclass(frozen=True, slots=True, kw_only=True)
class RouteAdded(RoutingChange):
    """Forward ``track_id`` of ``publisher_id`` to ``receiver_id``; start paused when ``paused``."""

    kind: TrackKind
    paused: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class RouteRemoved(RoutingChange):
    """Stop forwarding this route and forget it."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RoutePaused(RoutingChange):
    """Stop forwarding packets of this route without tearing it down (muted audio)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RouteResumed(RoutingChange):
    """Forward a paused route again (unmuted audio)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class StartTimer(TimerRequest):
    """Ask the adapter to feed ``TimerFired(key=key, at=t)`` once its clock reads ``t >= deadline`` (ms).

    The contract, checked by the machine:

    - ``at`` must be at or after ``deadline``. An early fire is the adapter's bug (a clock read before the sleep
      ended, a table out of step with the outputs) and raises ``LocalProtocolError``: the timer stays armed in
      the machine, so the adapter must keep its own entry too and fire again when the deadline has passed.
    - Starting a key that is pending replaces its deadline (the adapter's table keeps one deadline per key).
    - A fire for a key with no pending timer (cancelled by ``CancelTimer``, or its session gone) is stale, not
      early: it races a cancel in any real adapter and is ignored with no output.
    - ``CallsMachine.timers()`` lists the pending keys and deadlines, to re-arm after restoring a snapshot.
    """

    deadline: int


@dataclass(frozen=True, slots=True, kw_only=True)
class CancelTimer(TimerRequest):
    """Forget the pending timer ``key``; a ``TimerFired`` for it that was already on its way is ignored."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ConfigChanged(OutputEvent):
    """The server-wide call settings the machine applies from now on (answers ``Configure``)."""

    max_participants: int
    reconnect_window_ms: int
    allow_screen_sharing: bool


OUTPUT_TYPES: dict[str, type[OutputEvent]] = {
    cls.__name__: cls
    for cls in (
        CallStarted, CallEnded, ParticipantJoined, ParticipantLeft, ParticipantDisconnected,
        ParticipantReconnected, Muted, Unmuted, ScreenStarted, ScreenStopped, VideoStarted, VideoStopped,
        HandRaised, HandLowered, Reacted, HostChanged, Rejected, RouteAdded, RouteRemoved, RoutePaused,
        RouteResumed, StartTimer, CancelTimer, ConfigChanged,
    )
}
