"""The pieces of a signaling session the hub is built from: the transport and media-plane interfaces it depends on,
its settings and counters, and the per-socket ``Connection``.

``Transport`` and ``MediaPlaneLike`` are small ``typing.Protocol``s (hypercorn style): the hub never imports Quart or
the media plane, so it runs in tests on memory transports and without media (``NullMediaPlane``).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any, Protocol

import trio
from callsd.core.calls import events as ev
from callsd.core.calls import outputs as out

from .signaling_protocol import SignalingError, TokenBucket

__all__ = ["Transport", "MediaPlaneLike", "NullMediaPlane", "Recorder", "HubSettings", "HubCounters", "Connection",
           "ROUTING_OUTPUTS"]

ROUTING_OUTPUTS = (out.RouteAdded, out.RouteRemoved, out.RoutePaused, out.RouteResumed)
_ROUTING = ROUTING_OUTPUTS


class Transport(Protocol):
    """One client WebSocket as the hub sees it; the server adapts Quart's ``websocket`` to this."""

    async def receive(self) -> str | bytes | None: ...  # None once the socket is closed

    async def send(self, text: str) -> None: ...

    async def close(self, code: int, reason: str) -> None: ...


class MediaPlaneLike(Protocol):
    """The part of ``adapters.media.plane.MediaPlane`` the hub uses."""

    def open_session(self, session_id: str, channel_id: str) -> None: ...

    def handle_signal(self, session_id: str, msg: dict[str, Any]) -> None: ...

    def set_screen_stream(self, session_id: str, stream_id: str | None) -> None: ...

    def apply(self, outputs: list[out.OutputEvent]) -> None: ...

    def close_session(self, session_id: str) -> None: ...


class NullMediaPlane:
    """Stands in when the server runs without media: records what it was asked, answers SDP with an error."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def open_session(self, session_id: str, channel_id: str) -> None:
        self.calls.append(("open_session", (session_id, channel_id)))

    def handle_signal(self, session_id: str, msg: dict[str, Any]) -> None:
        self.calls.append(("handle_signal", (session_id, msg)))
        if msg.get("type") == "offer":
            raise SignalingError("media_unavailable", "this server runs without a media plane")

    def set_screen_stream(self, session_id: str, stream_id: str | None) -> None:
        self.calls.append(("set_screen_stream", (session_id, stream_id)))

    def apply(self, outputs: list[out.OutputEvent]) -> None:
        routing = [o for o in outputs if isinstance(o, _ROUTING)]
        if routing:
            self.calls.append(("apply", routing))

    def close_session(self, session_id: str) -> None:
        self.calls.append(("close_session", session_id))


class Recorder(Protocol):
    def handle(self, event: ev.InputEvent) -> list[out.OutputEvent]: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class HubSettings:
    auth_mode: str = "open"  # "open" | "token"
    auth_secret: str = ""
    ice_servers: tuple[dict[str, Any], ...] = ()
    turn_secret: str = ""
    turn_ttl_seconds: int = 86400
    rate: float = 10.0
    burst: int = 100
    server_version: str = "0"


class HubCounters:
    """Plain counters read by the metrics collector at scrape time."""

    def __init__(self) -> None:
        self.ws_connections_total = 0
        self.ws_connections_open = 0
        self.ws_events: Counter[tuple[str, str]] = Counter()  # (direction, type) -> n
        self.ws_closed_slow = 0
        self.store_ops: Counter[str] = Counter()
        self.rtc_sessions_total = 0
        self.rtc_conn_states: Counter[str] = Counter()
        self.rtc_errors: Counter[str] = Counter()


class Connection:
    """One WebSocket: its session id (changes on ``reconnect``), its call, its outbox and its rate limiter."""

    __slots__ = ("session_id", "channel_id", "user_id", "query_token", "bucket", "outbox", "scope", "close_code",
                 "close_reason", "replaced", "action")

    def __init__(self, session_id: str, query_token: str | None, bucket: TokenBucket,
                 outbox: trio.MemorySendChannel[str]) -> None:
        self.session_id = session_id
        self.channel_id: str | None = None
        self.user_id: str | None = None
        self.query_token = query_token
        self.bucket = bucket
        self.outbox = outbox
        self.scope: trio.CancelScope | None = None
        self.close_code = 1000
        self.close_reason = ""
        self.replaced = False
        self.action: str | None = None

    def kill(self, code: int, reason: str) -> None:
        """Close this socket soon (from any task): its nursery is cancelled and the close frame sent."""
        self.close_code, self.close_reason = code, reason
        if self.scope is not None:
            self.scope.cancel()
