"""The wire format of the signaling WebSocket (docs/protocol.md): parsing client messages, encoding server events.

Pure functions and tables, no I/O, so the pump in ``signaling.py`` stays thin and these rules are testable alone:

- ``parse_message(frame)`` turns one WebSocket frame into a ``ClientMessage`` or raises ``SignalingError`` carrying
  the protocol error code (``bad_message``, ``unknown_type``) and, whenever the frame names one, the message's type
  as the error's ``action``, in the spirit of wsproto: bad input from the peer becomes a value that says what to
  answer. A message may carry a request ``id`` that the direct reply echoes (``encode(..., request_id=)``).
- ``field_id``/``field_str`` read the fields of ``data`` and raise ``SignalingError("bad_request", ...)`` naming the
  field.
- ``FACT_EVENTS`` maps each core fact output to the server event broadcast to the call (``event_for``).
- ``TokenBucket`` is the per-session rate limiter (10 msg/s, burst 100); time comes in as an argument.
- ``batch_frame(texts)`` joins encoded events into one ``batch`` frame (protocol 1.3, docs/adr/0027): text
  concatenation of what ``encode`` produced, no second JSON pass.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from callsd.core.calls import outputs as out

__all__ = [
    "PROTOCOL_VERSION",
    "PROTOCOL_MINOR",
    "RequestId",
    "peek",
    "MAX_MESSAGE_BYTES",
    "CLIENT_ACTIONS",
    "SignalingError",
    "ClientMessage",
    "parse_message",
    "field_id",
    "field_str",
    "encode",
    "FACT_EVENTS",
    "event_for",
    "TokenBucket",
    "BATCH_MAX_EVENTS",
    "BATCH_MAX_CHARS",
    "BATCH_LINGER",
    "LAZY_EVENTS",
    "batch_frame",
]

PROTOCOL_VERSION = 1
# 1.1: request ids, error.action always named, reconnect_secret, signal offer tracks; 1.2: audio slots;
# 1.3: batch frames; 1.4: receive slots in the client's first offer (protocol.md)
PROTOCOL_MINOR = 4
MAX_MESSAGE_BYTES = 1024 * 1024
_ID_MAX = 128
REQUEST_ID_MAX = 64

RequestId = str | int | float | None

CLIENT_ACTIONS = frozenset(
    {
        "join", "leave", "reconnect", "sdp", "ice", "mute", "unmute", "screen_on", "screen_off", "video_on",
        "video_off", "raise_hand", "lower_hand", "react", "host_make", "host_mute", "host_mute_others",
        "host_screen_off", "host_lower_hand", "host_remove", "host_end", "get_state", "ping", "going_away",
    }
)


class SignalingError(Exception):
    """A client message cannot be acted on; ``code`` is the ``error`` event's code (docs/protocol.md)."""

    def __init__(self, code: str, message: str, action: str | None = None) -> None:
        self.code = code
        self.message = message
        self.action = action
        super().__init__(f"{code}: {message}")


@dataclass(frozen=True, slots=True, kw_only=True)
class ClientMessage:
    type: str
    data: dict[str, Any]
    id: RequestId = None  # echoed on the direct reply (docs/protocol.md, "Request ids")


def _action_of(kind: object) -> str | None:
    """The message type to name in an error's ``action`` (bounded: it is the client's own text)."""
    return kind[:64] if isinstance(kind, str) and kind else None


def peek(frame: str | bytes | None) -> tuple[str | None, RequestId]:
    """The ``type`` and valid request ``id`` a frame names, as far as it is readable (never raises): what an error
    about a message that is not handled (``rate_limited``) still names."""
    if not isinstance(frame, str) or len(frame) > MAX_MESSAGE_BYTES:
        return None, None
    try:
        doc = json.loads(frame)
    except (ValueError, RecursionError):
        return None, None
    if not isinstance(doc, dict):
        return None, None
    try:
        request_id = _request_id(doc, "")
    except SignalingError:
        request_id = None
    return _action_of(doc.get("type")), request_id


def _request_id(doc: dict[str, Any], action: str) -> RequestId:
    value = doc.get("id")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float) or len(str(value)) > REQUEST_ID_MAX:
        raise SignalingError("bad_message", f"\"id\" must be a string or a number of at most {REQUEST_ID_MAX} "
                             "characters", action)
    return value


def parse_message(frame: str | bytes | None) -> ClientMessage:
    """Parse one frame: a JSON object with a string ``type`` naming a client action and an optional object ``data``.

    Raises ``SignalingError`` (``bad_message`` or ``unknown_type``); never anything else.
    """
    if not isinstance(frame, str):
        raise SignalingError("bad_message", "expected a text frame holding a JSON object")
    if len(frame) > MAX_MESSAGE_BYTES:
        raise SignalingError("bad_message", f"message larger than {MAX_MESSAGE_BYTES} bytes")
    try:
        doc = json.loads(frame)
    except (ValueError, RecursionError) as exc:
        raise SignalingError("bad_message", f"not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise SignalingError("bad_message", "a message must be a JSON object {\"type\": ..., \"data\": {...}}")
    kind = doc.get("type")
    if not isinstance(kind, str) or not kind:
        raise SignalingError("bad_message", "the message has no string \"type\"")
    action = _action_of(kind)
    data = doc.get("data", {})
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise SignalingError("bad_message", "\"data\" must be a JSON object", action)
    if kind not in CLIENT_ACTIONS:
        raise SignalingError("unknown_type", f"unknown message type {kind[:64]!r}", action)
    return ClientMessage(type=kind, data=data, id=_request_id(doc, kind))


def field_id(data: dict[str, Any], name: str, action: str) -> str:
    """A required identifier field: a string of 1–128 characters."""
    value = data.get(name)
    if not isinstance(value, str) or not value or len(value) > _ID_MAX:
        raise SignalingError("bad_request", f"{action}: \"{name}\" must be a string of 1-{_ID_MAX} characters", action)
    return value


def field_str(data: dict[str, Any], name: str, action: str, *, max_len: int, required: bool = True) -> str:
    value = data.get(name)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value) or len(value) > max_len:
        raise SignalingError("bad_request", f"{action}: \"{name}\" must be a string of 1-{max_len} characters", action)
    return value


def encode(kind: str, data: dict[str, Any], request_id: RequestId = None) -> str:
    """One server event as the text of a WebSocket frame; ``request_id`` (a direct reply's) becomes its ``id``."""
    doc: dict[str, Any] = {"type": kind, "data": data}
    if request_id is not None:
        doc["id"] = request_id
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False)


BATCH_MAX_EVENTS = 64  # events in one batch frame
BATCH_LINGER = 0.15  # seconds a batch of only lazy events waits for more before it is sent
# Events that may wait (up to BATCH_LINGER) for company in a batch frame: what a participant is told about the
# others' presence, whose arrivals for one join come from three inputs tens of ms apart (``user_joined``, then the
# ``slots`` signal, then ``user_media_state``). Anything else (replies, SDP, mute, hands...) is sent at once and
# takes the waiting lazy events with it, so the order of events is never changed.
LAZY_EVENTS = frozenset({"user_joined", "user_left", "user_media_state", "user_disconnected", "user_reconnected"})
BATCH_MAX_CHARS = 256 * 1024  # a batch is closed once its text reaches this (a client's frame limit stays far off)
_BATCH_HEAD = '{"type":"batch","data":{"events":['
_BATCH_TAIL = "]}}"


def batch_frame(texts: list[str]) -> str:
    """Several encoded events (each the text of ``encode``) as one frame: ``{"type": "batch", "data": {"events":
    [...]}}``, in order. One event is sent as it is: a batch of one would only cost the client an unwrap."""
    if len(texts) == 1:
        return texts[0]
    return _BATCH_HEAD + ",".join(texts) + _BATCH_TAIL


# core fact output -> (event type, data builder). Outputs not listed (Rejected, routes, timers, config) are not
# broadcast: the pump handles them itself.
FACT_EVENTS: dict[type[out.OutputEvent], tuple[str, Callable[[Any], dict[str, Any]]]] = {
    out.CallStarted: (
        "call_start",
        lambda o: {"channel_id": o.channel_id, "call_id": o.call_id, "start_at": o.at, "host_id": o.host_id},
    ),
    out.CallEnded: (
        "call_end",
        lambda o: {"channel_id": o.channel_id, "call_id": o.call_id, "duration_ms": o.duration_ms},
    ),
    out.ParticipantJoined: (
        "user_joined",
        lambda o: {"channel_id": o.channel_id, "session_id": o.session_id, "user_id": o.user_id},
    ),
    out.ParticipantLeft: (
        "user_left",
        lambda o: {"channel_id": o.channel_id, "session_id": o.session_id, "reason": str(o.reason)},
    ),
    out.ParticipantDisconnected: (
        "user_disconnected",
        lambda o: {"channel_id": o.channel_id, "session_id": o.session_id},
    ),
    out.ParticipantReconnected: (
        "user_reconnected",
        lambda o: {"channel_id": o.channel_id, "session_id": o.session_id},
    ),
    out.Muted: ("user_muted", lambda o: {"channel_id": o.channel_id, "session_id": o.session_id, "by": o.by}),
    out.Unmuted: ("user_unmuted", lambda o: {"channel_id": o.channel_id, "session_id": o.session_id}),
    out.ScreenStarted: (
        "user_screen_on",
        lambda o: {"channel_id": o.channel_id, "session_id": o.session_id, "stream_id": o.stream_id},
    ),
    out.ScreenStopped: (
        "user_screen_off",
        lambda o: {"channel_id": o.channel_id, "session_id": o.session_id, "by": o.by},
    ),
    out.VideoStarted: ("user_video_on", lambda o: {"channel_id": o.channel_id, "session_id": o.session_id}),
    out.VideoStopped: ("user_video_off", lambda o: {"channel_id": o.channel_id, "session_id": o.session_id}),
    out.HandRaised: (
        "user_raised_hand",
        lambda o: {"channel_id": o.channel_id, "session_id": o.session_id, "raised_at": o.raised_at},
    ),
    out.HandLowered: (
        "user_lowered_hand",
        lambda o: {"channel_id": o.channel_id, "session_id": o.session_id, "by": o.by},
    ),
    out.Reacted: (
        "user_reacted",
        lambda o: {"channel_id": o.channel_id, "session_id": o.session_id, "emoji": o.emoji},
    ),
    out.HostChanged: ("call_host_changed", lambda o: {"channel_id": o.channel_id, "host_id": o.host_id}),
}


def event_for(output: out.OutputEvent) -> tuple[str, dict[str, Any]] | None:
    """The (event type, data) broadcast for a fact output, or None for outputs that are not broadcast."""
    entry = FACT_EVENTS.get(type(output))
    if entry is None:
        return None
    kind, build = entry
    return kind, build(output)


class TokenBucket:
    """Allow ``rate`` messages per second on average with bursts of ``burst``; ``now`` is in seconds."""

    __slots__ = ("rate", "burst", "_tokens", "_last")

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self._tokens = float(burst)
        self._last = now

    def allow(self, now: float) -> bool:
        """Take one token if there is one; a refused message does not consume a token."""
        elapsed = max(0.0, now - self._last)
        self._last = now
        self._tokens = min(float(self.burst), self._tokens + elapsed * self.rate)
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False
