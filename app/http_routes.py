"""The HTTP routes a single server and a cluster node both serve, installed once for both.

``/``, ``/healthz``, ``/version``, ``/metrics``, ``/api/v1/config`` and ``/api/v1/channels`` answer the same way
on ``callsd serve`` alone and as a cluster node: a page, a probe or an operator must not be able to tell which one it
reached. What differs (where the calls live, what /metrics exposes, whether the node drains) is handed in as a
``NodeView``; the answers' shapes, the status codes and the auth checks live here, once.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from callsd.adapters.media.advertiser import advertised_by
from callsd.adapters.signaling_protocol import PROTOCOL_VERSION
from quart import Response, request
from quart_trio import QuartTrio

from .auth import TokenError, verify_token
from .config import Config

__all__ = ["NodeView", "Unavailable", "install_node_routes", "json_response", "client_config_body",
           "channels_allowed", "rtc_health"]

STATIC_DIR = Path(__file__).resolve().parent / "static"
MISSING_PAGE = ("<!doctype html><title>callsd</title><p>callsd is running; the web client is not installed.")


class Unavailable(Exception):
    """The node cannot answer for the whole deployment now (a cluster's directory is unreachable): a 503, never a
    partial answer presented as the whole."""


@dataclass(frozen=True, slots=True)
class NodeView:
    """What the shared routes read from the node they run on."""

    version: str
    draining: Callable[[], bool]
    health: Callable[[], dict[str, Any]]  # the fields /healthz adds to ``{"status": "ok"}``
    metrics: Callable[[], Awaitable[Response]]  # the exposition (its own auth check included)
    calls: Callable[[], Awaitable[list[dict[str, Any]]]]  # ongoing calls: channel_id, call_id, participants


def rtc_health(plane: object) -> dict[str, Any]:
    """The ``rtc`` part of /healthz: what an in-process media plane advertises ({} without one, or with workers)."""
    advertised = advertised_by(plane)
    return {} if advertised is None else {"rtc": {"advertised": advertised.as_json()}}


def json_response(data: Any, status: int = 200) -> Response:
    return Response(json.dumps(data), status=status, mimetype="application/json")


def client_config_body(config: Config) -> dict[str, Any]:
    """What ``/api/v1/config`` tells the page before it joins."""
    return {"auth_mode": config.auth.mode, "protocol": PROTOCOL_VERSION,
            "allow_screen_sharing": config.calls.allow_screen_sharing,
            "max_participants": config.calls.max_participants}


def channels_allowed(config: Config) -> Callable[[str], bool] | Response:
    """Which channels ``/api/v1/channels`` may list to this request: all in open mode, the token's in token mode
    (``Authorization: Bearer`` or ``?token=``); a 401 response for a missing or bad token."""
    if config.auth.mode != "token":
        return lambda channel: True
    header = request.headers.get("Authorization", "")
    token = header[7:].strip() if header.lower().startswith("bearer ") else request.args.get("token")
    try:
        claims = verify_token(token, secret=config.auth.secret, now=time.time())
    except TokenError as exc:
        return json_response({"error": {"code": exc.code, "message": exc.message}}, 401)
    return claims.allows


def install_node_routes(app: QuartTrio, config: Config, node: NodeView) -> None:
    """Register the shared routes on ``app``."""

    @app.route("/")
    async def index() -> Response:
        page = STATIC_DIR / "index.html"
        if page.is_file():
            return Response(page.read_bytes(), mimetype="text/html")
        return Response(MISSING_PAGE, mimetype="text/html")

    @app.route("/healthz")
    async def healthz() -> Response:
        if node.draining():
            return json_response({"status": "draining"}, 503)
        return json_response({"status": "ok", **node.health()})

    @app.route("/version")
    async def version() -> Response:
        return json_response({"version": node.version, "protocol": PROTOCOL_VERSION})

    @app.route("/metrics")
    async def metrics() -> Response:
        if config.metrics.listen:
            return Response("not here: /metrics is served on metrics.listen", status=404)
        return await node.metrics()

    @app.route("/api/v1/config")
    async def client_config() -> Response:
        return json_response(client_config_body(config))

    @app.route("/api/v1/channels")
    async def channels() -> Response:
        allowed = channels_allowed(config)
        if isinstance(allowed, Response):
            return allowed
        try:
            calls = await node.calls()
        except Unavailable as exc:
            return json_response({"error": {"code": "unavailable", "message": str(exc)}}, 503)
        return json_response({"channels": [call for call in calls if allowed(call["channel_id"])]})
