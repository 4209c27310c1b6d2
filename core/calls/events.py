"""Input events of the call core.

Inputs are commands from a remote party (a session asking to join, mute, share its screen) or observations made by
the embedding program (a WebSocket dropped, a timer fired, a track was published on the media plane). Every input
carries ``at``, the wall-clock time in integer milliseconds chosen by the adapter, so that the core never reads a
clock and a recorded log replays to the same outputs. Ids (call ids, session ids, track ids) are chosen by the
adapter too, for the same reason.

Events are frozen, slotted and keyword-only; they validate their fields when built and raise ``LocalProtocolError``
for misuse by the embedding program (an empty id, a negative time), never for a remote party's mistake: those become
``Rejected`` outputs.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, fields

from ..errors import LocalProtocolError

__all__ = [
    "TrackKind",
    "InputEvent",
    "SessionInput",
    "TargetedInput",
    "Configure",
    "JoinCall",
    "LeaveCall",
    "Disconnect",
    "GoingAway",
    "Reconnect",
    "Mute",
    "Unmute",
    "ScreenOn",
    "ScreenOff",
    "VideoOn",
    "VideoOff",
    "RaiseHand",
    "LowerHand",
    "React",
    "MakeHost",
    "HostMute",
    "HostMuteOthers",
    "HostStopScreen",
    "HostLowerHand",
    "HostRemove",
    "HostEndCall",
    "PublishTrack",
    "UnpublishTrack",
    "TimerFired",
    "INPUT_TYPES",
]


class TrackKind(enum.StrEnum):
    """What a published track carries; the routing rules (mute pauses audio) depend on it."""

    AUDIO = "audio"
    VIDEO = "video"
    SCREEN_VIDEO = "screen_video"
    SCREEN_AUDIO = "screen_audio"


_ID_MAX = 128


@dataclass(frozen=True, slots=True, kw_only=True)
class InputEvent:
    """Base of every input: ``at`` is milliseconds since the epoch, supplied by the adapter."""

    at: int

    def __post_init__(self) -> None:
        if isinstance(self.at, bool) or not isinstance(self.at, int) or self.at < 0:
            raise LocalProtocolError(f"{type(self).__name__}.at must be a non-negative int (ms), got {self.at!r}")
        for f in fields(self):
            if f.name.endswith("_id") or f.name == "target":
                value = getattr(self, f.name)
                if value is None and f.default is None:
                    continue  # an optional id (``JoinCall.call_id``), left out
                if not isinstance(value, str) or not value or len(value) > _ID_MAX:
                    raise LocalProtocolError(
                        f"{type(self).__name__}.{f.name} must be a non-empty str of at most {_ID_MAX} chars, "
                        f"got {value!r}"
                    )


@dataclass(frozen=True, slots=True, kw_only=True)
class Configure(InputEvent):
    """Server-wide call policy. Logged like any input so that replay applies the same limits.

    ``max_participants`` 0 means unlimited; ``reconnect_window_ms`` is how long a disconnected session keeps its
    place before it is removed.
    """

    max_participants: int = 0
    reconnect_window_ms: int = 30_000
    allow_screen_sharing: bool = True

    def __post_init__(self) -> None:
        InputEvent.__post_init__(self)
        if self.max_participants < 0:
            raise LocalProtocolError(f"max_participants must be >= 0, got {self.max_participants}")
        if self.reconnect_window_ms < 0:
            raise LocalProtocolError(f"reconnect_window_ms must be >= 0, got {self.reconnect_window_ms}")


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionInput(InputEvent):
    """An input from or about one session: a command it sent, or what the embedding program observed of it.

    Every input but ``Configure`` and ``TimerFired`` is one; a ``Rejected`` answer names this ``session_id``.
    """

    session_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class TargetedInput(SessionInput):
    """A host command aimed at another participant (``target``) of the host's call."""

    target: str


@dataclass(frozen=True, slots=True, kw_only=True)
class JoinCall(SessionInput):
    """A session asks to join the call of a channel.

    ``call_id`` is only read when this join starts the call: it names the new call. To join the ongoing call of a
    channel, leave it out (``None``); if there is no call by then, the join is refused with ``no_call`` rather than
    starting a call without an id. A ``call_id`` given while a call is ongoing is ignored (logs written before it was
    optional always carry one).
    """

    channel_id: str
    user_id: str
    call_id: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class LeaveCall(SessionInput):
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class Disconnect(SessionInput):
    """The session's transport dropped; it keeps its place for the reconnect window."""


@dataclass(frozen=True, slots=True, kw_only=True)
class GoingAway(SessionInput):
    """The client says its page is going away (a closed tab, or a reload): keep its place for ``keep_ms`` only.

    Like ``Disconnect``, but with a short window chosen by the adapter instead of the call's reconnect window (the
    shorter of the two applies): a reload comes back within it and resumes the session, a closed tab is gone soon
    after rather than shown as reconnecting for the whole window.
    """

    keep_ms: int

    def __post_init__(self) -> None:
        SessionInput.__post_init__(self)
        if self.keep_ms < 0:
            raise LocalProtocolError(f"keep_ms must be >= 0, got {self.keep_ms}")


@dataclass(frozen=True, slots=True, kw_only=True)
class Reconnect(SessionInput):
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class Mute(SessionInput):
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class Unmute(SessionInput):
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class ScreenOn(SessionInput):
    """``stream_id`` is the client's media stream id of the share, passed on to the other participants."""

    stream_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ScreenOff(SessionInput):
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class VideoOn(SessionInput):
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class VideoOff(SessionInput):
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class RaiseHand(SessionInput):
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class LowerHand(SessionInput):
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class React(SessionInput):
    """A reaction is broadcast only; it is not state."""

    emoji: str

    def __post_init__(self) -> None:
        SessionInput.__post_init__(self)
        if not isinstance(self.emoji, str) or not self.emoji or len(self.emoji) > 32:
            raise LocalProtocolError(f"React.emoji must be a non-empty str of at most 32 chars, got {self.emoji!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class MakeHost(TargetedInput):
    """The host (``session_id``) hands the host role to ``target``."""


@dataclass(frozen=True, slots=True, kw_only=True)
class HostMute(TargetedInput):
    """The host mutes ``target``."""


@dataclass(frozen=True, slots=True, kw_only=True)
class HostMuteOthers(SessionInput):
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class HostStopScreen(SessionInput):
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class HostLowerHand(TargetedInput):
    """The host lowers ``target``'s raised hand."""


@dataclass(frozen=True, slots=True, kw_only=True)
class HostRemove(TargetedInput):
    """The host removes ``target`` from the call."""


@dataclass(frozen=True, slots=True, kw_only=True)
class HostEndCall(SessionInput):
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class PublishTrack(SessionInput):
    """The media plane saw the session publish a track (an SDP m-section with a send direction)."""

    track_id: str
    kind: TrackKind

    def __post_init__(self) -> None:
        SessionInput.__post_init__(self)
        if not isinstance(self.kind, TrackKind):
            raise LocalProtocolError(f"PublishTrack.kind must be a TrackKind, got {self.kind!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class UnpublishTrack(SessionInput):
    track_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class TimerFired(InputEvent):
    """Answers a ``StartTimer(key=...)`` output once its deadline has passed."""

    key: str

    def __post_init__(self) -> None:
        InputEvent.__post_init__(self)
        if not isinstance(self.key, str) or not self.key:
            raise LocalProtocolError(f"TimerFired.key must be a non-empty str, got {self.key!r}")


INPUT_TYPES: dict[str, type[InputEvent]] = {
    cls.__name__: cls
    for cls in (
        Configure, JoinCall, LeaveCall, Disconnect, GoingAway, Reconnect, Mute, Unmute, ScreenOn, ScreenOff, VideoOn,
        VideoOff, RaiseHand, LowerHand, React, MakeHost, HostMute, HostMuteOthers, HostStopScreen, HostLowerHand,
        HostRemove, HostEndCall, PublishTrack, UnpublishTrack, TimerFired,
    )
}
