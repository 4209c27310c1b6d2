"""Events the media plane emits to the server (``MediaPlane(config, emit)``; ``emit(event)`` gets these).

They are facts about the media side of a session, in the past tense, or an effect the server must carry out:

- ``SendSignal``: send ``msg`` (an SDP answer or a server offer, ``{"type": ..., "sdp": ...}``) to the session over
  its signaling WebSocket.
- ``TrackPublished`` / ``TrackUnpublished``: the session's SDP added or removed a track it sends; the server turns
  them into core ``PublishTrack`` / ``UnpublishTrack`` inputs and applies the core's routing outputs back with
  ``plane.apply()``.
- ``SessionConnected`` / ``SessionClosed``: ICE+DTLS came up / the media path died (consent expired, DTLS failed,
  the session was closed).
- ``MediaStateChanged``: the session's media connection became ``connected`` (``detail``: the client's address as
  seen by the server), ``failed`` (``reason`` ``no_ice_check`` or ``no_dtls``; ``detail``: the advertised address or
  where checks came from) or ``disconnected`` (``reason``: the transport's); see ice_outcome.py.
- ``VoiceActivity``: the audio level of the session's microphone crossed the speaking threshold (debounced).
- ``SignalRejected``: the plane refused a client signal (``sdp``/``ice``); in-process it raises ``SdpRejected``
  instead, a media worker reports it as this event (adapters/media/remote.py), in order with that session's others.
- ``SessionMoved``: the session's media now lives on another worker (its old one died); the server answers with
  ``plane.restore_routes`` (the routes the core has towards it), the one way routes are restored after a reconnect.

Like the core's events they are frozen, slotted, keyword-only dataclasses.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from callsd.core.calls.events import TrackKind

__all__ = [
    "MediaEvent",
    "SendSignal",
    "TrackPublished",
    "TrackUnpublished",
    "SessionConnected",
    "SessionClosed",
    "VoiceActivity",
    "SignalRejected",
    "SessionMoved",
    "MediaStateChanged",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class MediaEvent:
    session_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class SendSignal(MediaEvent):
    """Deliver ``msg`` to the session's client: ``{"type": "answer"|"offer", "sdp": str}``."""

    msg: dict[str, Any]


@dataclass(frozen=True, slots=True, kw_only=True)
class TrackPublished(MediaEvent):
    """The session publishes ``track_id`` (unique server-wide) carrying ``kind``."""

    track_id: str
    kind: TrackKind


@dataclass(frozen=True, slots=True, kw_only=True)
class TrackUnpublished(MediaEvent):
    track_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionConnected(MediaEvent):
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionClosed(MediaEvent):
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class VoiceActivity(MediaEvent):
    speaking: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class SignalRejected(MediaEvent):
    """The plane refused a client signal; ``action`` is ``sdp`` or ``ice``, ``reason`` says why."""

    action: str
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionMoved(MediaEvent):
    """The session was re-opened on another media worker, without the routes it receives: restore them."""


@dataclass(frozen=True, slots=True, kw_only=True)
class MediaStateChanged(MediaEvent):
    """The session's media connection changed state (see ice_outcome.py)."""

    state: str  # "connected" | "failed" | "disconnected"
    reason: str  # "" | "no_ice_check" | "no_dtls" | a transport close reason
    detail: str
