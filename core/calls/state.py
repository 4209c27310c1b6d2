"""The plain data the call machine keeps: configuration, calls and their participants.

These are ordinary mutable dataclasses owned by one ``CallsMachine``; nothing outside ``core/`` mutates them. The
adapters read them through the machine's queries, which return immutable views (``ParticipantView``, ``Route``).
Dicts are used as ordered sets: iteration order is insertion order, which is join order for participants and publish
order for tracks, so every output list the machine builds is deterministic.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .events import TrackKind

__all__ = ["Config", "Participant", "Call", "ParticipantView", "Route", "RECONNECT_TIMER_PREFIX", "reconnect_key"]

RECONNECT_TIMER_PREFIX = "reconnect:"


def reconnect_key(session_id: str) -> str:
    """The timer key the machine uses for a disconnected session's reconnect window."""
    return RECONNECT_TIMER_PREFIX + session_id


@dataclass(slots=True, kw_only=True)
class Config:
    max_participants: int = 0
    reconnect_window_ms: int = 30_000
    allow_screen_sharing: bool = True


@dataclass(slots=True, kw_only=True)
class Participant:
    session_id: str
    user_id: str
    joined_at: int
    muted: bool = True
    video: bool = False
    hand_raised_at: int | None = None
    # None while connected; the reconnect deadline (ms) while disconnected.
    reconnect_deadline: int | None = None
    # track_id -> kind, in publish order.
    tracks: dict[str, TrackKind] = field(default_factory=dict)

    @property
    def connected(self) -> bool:
        return self.reconnect_deadline is None


@dataclass(slots=True, kw_only=True)
class Call:
    channel_id: str
    call_id: str
    started_at: int
    host_id: str
    # session_id -> Participant, in join order.
    participants: dict[str, Participant] = field(default_factory=dict)
    screen_sharer: str | None = None
    screen_stream_id: str | None = None
    # Every session that was ever in the call, first join order, no repeats (dict as ordered set).
    ever: dict[str, None] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class ParticipantView:
    """A read-only copy of one participant's state, for adapters and the replay tool."""

    channel_id: str
    call_id: str
    session_id: str
    user_id: str
    joined_at: int
    muted: bool
    video: bool
    hand_raised_at: int | None
    connected: bool
    screen: bool
    host: bool
    tracks: tuple[tuple[str, TrackKind], ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Route:
    """One forwarding entry: packets of ``track_id`` from ``publisher_id`` go to ``receiver_id``."""

    channel_id: str
    track_id: str
    kind: TrackKind
    publisher_id: str
    receiver_id: str
    paused: bool
