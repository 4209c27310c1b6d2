"""Output events of the call core: facts in the past tense, rejections, and effects for the adapters.

Facts (``ParticipantJoined``, ``Muted``...) are what the signaling adapter broadcasts to the call's sessions.
Routing outputs (``RouteAdded``, ``RoutePaused``...) are what the media plane applies to its forwarding table; the
core never sees packets. Timer outputs ask the adapter to answer with ``TimerFired`` at ``deadline``.
Every output that concerns a call names its ``channel_id`` so that an adapter can fan it out without lookups.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from .events import TrackKind

__all__ = [
    "RejectReason",
    "LeaveReason",
    "OutputEvent",
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


class LeaveReason(enum.StrEnum):
    LEFT = "left"
    REMOVED = "removed"
    TIMED_OUT = "timed_out"
    CALL_ENDED = "call_ended"


@dataclass(frozen=True, slots=True, kw_only=True)
class OutputEvent:
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class CallStarted(OutputEvent):
    channel_id: str
    call_id: str
    at: int
    host_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class CallEnded(OutputEvent):
    """``participants`` lists every session that was ever in the call, in join order."""

    channel_id: str
    call_id: str
    at: int
    duration_ms: int
    participants: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class ParticipantJoined(OutputEvent):
    channel_id: str
    session_id: str
    user_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ParticipantLeft(OutputEvent):
    channel_id: str
    session_id: str
    reason: LeaveReason


@dataclass(frozen=True, slots=True, kw_only=True)
class ParticipantDisconnected(OutputEvent):
    channel_id: str
    session_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ParticipantReconnected(OutputEvent):
    channel_id: str
    session_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Muted(OutputEvent):
    """``by`` is the session that muted (itself, or the host)."""

    channel_id: str
    session_id: str
    by: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Unmuted(OutputEvent):
    channel_id: str
    session_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ScreenStarted(OutputEvent):
    channel_id: str
    session_id: str
    stream_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ScreenStopped(OutputEvent):
    channel_id: str
    session_id: str
    by: str


@dataclass(frozen=True, slots=True, kw_only=True)
class VideoStarted(OutputEvent):
    channel_id: str
    session_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class VideoStopped(OutputEvent):
    channel_id: str
    session_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class HandRaised(OutputEvent):
    channel_id: str
    session_id: str
    raised_at: int


@dataclass(frozen=True, slots=True, kw_only=True)
class HandLowered(OutputEvent):
    channel_id: str
    session_id: str
    by: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Reacted(OutputEvent):
    channel_id: str
    session_id: str
    emoji: str


@dataclass(frozen=True, slots=True, kw_only=True)
class HostChanged(OutputEvent):
    channel_id: str
    host_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Rejected(OutputEvent):
    """A remote command was refused; nothing else changed. ``command`` is the input's type name."""

    session_id: str
    command: str
    reason: RejectReason


@dataclass(frozen=True, slots=True, kw_only=True)
class RouteAdded(OutputEvent):
    """Forward ``track_id`` of ``publisher_id`` to ``receiver_id``; start paused when ``paused``."""

    channel_id: str
    track_id: str
    kind: TrackKind
    publisher_id: str
    receiver_id: str
    paused: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class RouteRemoved(OutputEvent):
    channel_id: str
    track_id: str
    publisher_id: str
    receiver_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class RoutePaused(OutputEvent):
    """Stop forwarding packets of this route without tearing it down (muted audio)."""

    channel_id: str
    track_id: str
    publisher_id: str
    receiver_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class RouteResumed(OutputEvent):
    channel_id: str
    track_id: str
    publisher_id: str
    receiver_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class StartTimer(OutputEvent):
    """Ask the adapter to feed ``TimerFired(key=key)`` at or after ``deadline`` (ms). Restarting a key replaces it."""

    key: str
    deadline: int


@dataclass(frozen=True, slots=True, kw_only=True)
class CancelTimer(OutputEvent):
    key: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ConfigChanged(OutputEvent):
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
