"""The signaling WebSocket's admission rules, shared by both ways of serving it, and the direct way's acceptor.

The same upgrade is refused for the same reasons whichever stack serves it (``http.signaling_socket``,
docs/config.md): a ``Host`` this server is not reached by (421, DNS rebinding: app/http_policy.py), a browser
``Origin`` that is neither the page's nor configured (403, cross-site WebSocket hijacking), a bad ``?token=`` in token
mode (401, before any socket exists). ``SignalingUpgrade`` applies them to a head app/ws_direct.py parsed, and runs
the hub's session on the accepted ``DirectSocket``; the Quart view in app/server.py applies them to Quart's request.
"""

from __future__ import annotations

import json
import time

from callsd.adapters.signaling import SignalingHub
from callsd.adapters.signaling_protocol import batch_frame, encode

from .auth import TokenError, verify_token
from .config import Config
from .http_guard import GuardCounters
from .http_policy import host_allowed, host_name
from .ws_direct import DirectSocket, JoinTicket, UpgradeRequest

__all__ = ["SIGNALING_PATH", "JOIN_ACK_PREFIX", "origin_allowed", "acknowledges_join", "SignalingUpgrade",
           "TicketTransport"]

SIGNALING_PATH = "/api/v1/websocket"
JOIN_ACK_PREFIX = encode("join_ack", {})[: len('{"type":"join_ack",')]  # a join or a reconnect succeeded
BATCH_PREFIX = batch_frame(["{}", "{}"])[: len('{"type":"batch",')]


def origin_allowed(origin: str, host: str, config: Config) -> bool:
    """Browsers send ``Origin`` on WebSocket upgrades; accept the page's own origin and the configured ones.

    Without this check any web page the user visits could open a socket to a callsd on 127.0.0.1 and join calls
    in their name (cross-site WebSocket hijacking); clients that are not browsers send no ``Origin``.
    """
    normalized = origin.rstrip("/").lower()
    if normalized in config.http.allowed_origins:
        return True
    scheme, _, rest = normalized.partition("://")
    return scheme in ("http", "https") and rest == host.lower()


def acknowledges_join(text: str) -> bool:
    """Whether a frame carries a ``join_ack``: it is one, or a batch holding one (not necessarily first: a reply
    queued before the join may share its frame). Inside a JSON string a quote is escaped, so the object's opening
    text cannot occur in one: a substring test is exact."""
    return text.startswith(JOIN_ACK_PREFIX) or (text.startswith(BATCH_PREFIX) and JOIN_ACK_PREFIX in text)


class TicketTransport:
    """The hub's ``Transport`` over a direct socket; it lifts the connection's join deadline when the hub
    acknowledges a join or reconnect (as app/server.py's ``_QuartTransport`` does over Quart's)."""

    __slots__ = ("_socket", "_ticket")

    def __init__(self, socket: DirectSocket, ticket: JoinTicket) -> None:
        self._socket = socket
        self._ticket = ticket

    async def receive(self) -> str | bytes | None:
        return await self._socket.receive()

    async def send(self, text: str) -> None:
        if not self._ticket.is_joined and acknowledges_join(text):
            self._ticket.joined()
        await self._socket.send(text)

    async def close(self, code: int, reason: str) -> None:
        await self._socket.close(code, reason)


class SignalingUpgrade:
    """``DirectUpgrades`` for the signaling path: the admission rules above, then the hub's session."""

    __slots__ = ("_hub", "_config", "_counters")

    def __init__(self, hub: SignalingHub, config: Config, counters: GuardCounters) -> None:
        self._hub = hub
        self._config = config
        self._counters = counters

    @property
    def path(self) -> str:
        return SIGNALING_PATH

    def check(self, request: UpgradeRequest) -> tuple[int, str] | None:
        config, host = self._config, request.headers.get("host")
        if not host_allowed(host, auth_mode=config.auth.mode, allowed_hosts=config.http.allowed_hosts):
            self._counters.refused["host_not_allowed"] += 1
            return 421, f"host {host_name(host or '')!r} is not served here (see http.allowed_hosts)"
        origin = request.headers.get("origin")
        if origin is not None and not origin_allowed(origin, host or "", config):
            self._hub.counters.ws_events["in", "origin_refused"] += 1
            return 403, "cross-origin WebSocket refused (see http.allowed_origins)"
        token = request.arg("token")
        if config.auth.mode == "token" and token is not None:
            try:  # a bad token is refused before the upgrade: no socket, no frames, no session
                verify_token(token, secret=config.auth.secret, now=time.time())
            except TokenError as exc:
                self._hub.counters.ws_events["in", "token_refused"] += 1
                return 401, json.dumps({"error": {"code": exc.code, "message": exc.message}})
        return None

    async def serve(self, request: UpgradeRequest, socket: DirectSocket, ticket: JoinTicket) -> None:
        await self._hub.serve_connection(TicketTransport(socket, ticket), query_token=request.arg("token"),
                                         batch_allowed=True)
