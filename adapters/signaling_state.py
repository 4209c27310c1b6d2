"""What the server tells a client about a call, as pure functions of the core's views (docs/protocol.md).

``call_state`` is the call state object (in ``join_ack`` and ``call_state``); ``ice_servers`` the ICE server list of
``join_ack``, with TURN REST credentials filled in by the injected ``TurnCredentials`` when the server has a secret.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from callsd.core.calls.machine import CallView

from .signaling_session import TurnCredentials

__all__ = ["LiveStatus", "call_state", "ice_servers"]


@dataclass(slots=True)
class LiveStatus:
    """What the hub knows of each session's live media beyond the core's state: who is speaking (``VoiceActivity``)
    and the state of its media connection (``MediaStateChanged``: "connected", "failed", "disconnected"; absent
    means "connecting"). Shared by the media bridge (writes), the dispatcher (forgets who left) and the call state."""

    speaking: set[str] = field(default_factory=set)
    media: dict[str, str] = field(default_factory=dict)

    def forget(self, session_id: str) -> None:
        self.speaking.discard(session_id)
        self.media.pop(session_id, None)


def call_state(view: CallView, live: LiveStatus) -> dict[str, Any]:
    """The call state object of docs/protocol.md; ``live`` says who is speaking and how their media is."""
    return {
        "channel_id": view.channel_id, "call_id": view.call_id, "start_at": view.started_at,
        "host_id": view.host_id,
        "screen": {"session_id": view.screen_sharer, "stream_id": view.screen_stream_id}
        if view.screen_sharer else None,
        "participants": [
            {"session_id": p.session_id, "user_id": p.user_id, "muted": p.muted,
             "raised_hand": p.hand_raised_at or 0, "video": p.video, "screen": p.screen,
             "speaking": p.session_id in live.speaking, "connected": p.connected,
             "media": live.media.get(p.session_id, "connecting")}
            for p in view.participants
        ],
    }


def ice_servers(configured: Iterable[dict[str, Any]], session_id: str, now_s: float,
                turn_credentials: TurnCredentials | None) -> list[dict[str, Any]]:
    """Configured ICE servers; TURN entries without credentials get TURN REST ones when ``turn_credentials``."""
    servers = [dict(s) for s in configured]
    if turn_credentials is not None:
        username, password = turn_credentials(session_id, now_s)
        for s in servers:
            urls = s.get("urls", [])
            if any(u.startswith(("turn:", "turns:")) for u in urls) and not s.get("username"):
                s["username"], s["credential"] = username, password
    return servers
