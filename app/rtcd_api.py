"""The HTTP/WebSocket API of a standalone ``callsd rtcd`` (docs/rtcd.md; OpenAPI in app/rtcd_openapi.json).

No auth: ``GET /version``, ``GET /healthz`` (503 while draining), ``GET /openapi.json``.
Registration: ``POST /register`` / ``POST /unregister`` (self-registration, or ``Bearer <admin_secret_key>``).
Client auth: ``POST /login`` (HTTP Basic ``client_id:auth_key``) → a bearer token; ``GET /system`` and
``GET /metrics`` take Basic or Bearer; ``/ws`` (the plane RPC of adapters/media/remote.py) takes Bearer.

Every refusal of credentials is the same 401 (no hint which part was wrong), counted per client address by the
``FailureLimiter``: over the limit the address gets 429 before any credential is even looked at.
"""

from __future__ import annotations

import base64
import hmac
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio
from callsd.adapters.media.message_stream import MessageStream
from callsd.adapters.media.remote import serve_plane_rpc
from callsd.adapters.media.rtcd_links import LinkPlanes
from quart import Response, request, websocket
from quart_trio import QuartTrio

from .http_guard import TICKET_KEY, ConnectionTicket
from .rtcd_auth import (
    MAX_KEY_LENGTH,
    MIN_KEY_LENGTH,
    BearerTokens,
    ClientStore,
    FailureLimiter,
    valid_client_id,
)
from .rtcd_config import RtcdConfig

__all__ = ["RtcdState", "create_rtcd_app", "LINK_MAX_MESSAGE", "OPENAPI_PATH"]

LINK_MAX_MESSAGE = 1 << 20  # one WebSocket message of the control link (frames longer than that are split)
OPENAPI_PATH = Path(__file__).with_name("rtcd_openapi.json")


@dataclass(slots=True, kw_only=True)
class RtcdState:
    """What the API reads and changes; owned by app/rtcd_service.py."""

    config: RtcdConfig
    plane: Any  # the MediaPlane
    links: LinkPlanes
    clients: ClientStore
    tokens: BearerTokens
    limiter: FailureLimiter
    version: str
    render_metrics: Callable[[], tuple[bytes, str]]
    cpu_load: float = 0.0
    draining: bool = False
    ws_accepted: int = 0
    ws_messages_in: int = 0
    ws_messages_out: int = 0


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(json.dumps(data), status=status, mimetype="application/json", headers=headers)


def _unauthorized() -> Response:
    return _json({"error": "unauthorized"}, 401, {"WWW-Authenticate": 'Basic realm="callsd rtcd", Bearer'})


def _basic(header: str | None) -> tuple[str, str] | None:
    if not header or not header.startswith("Basic "):
        return None
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode()
    except ValueError:  # not base64 (binascii.Error), not ASCII (a latin-1 header byte), not UTF-8
        return None
    client_id, sep, key = decoded.partition(":")
    return (client_id, key) if sep and valid_client_id(client_id) and len(key) <= MAX_KEY_LENGTH else None


def _bearer(header: str | None) -> str | None:
    if not header or not header.startswith("Bearer "):
        return None
    return header[7:].strip() or None


def create_rtcd_app(state: RtcdState) -> QuartTrio:
    app = QuartTrio(__name__, static_folder=None)
    app.config["MAX_CONTENT_LENGTH"] = 16 << 10
    api = state.config.api
    openapi = OPENAPI_PATH.read_bytes()

    def address() -> str:
        client = request.scope.get("client") or ("?", 0)
        return str(client[0])

    def limited(where: str) -> Response | None:
        if state.limiter.blocked(where, time.monotonic()):
            return _json({"error": "too many failed attempts; retry later"}, 429,
                         {"Retry-After": str(int(state.limiter.window))})
        return None

    def failed(where: str) -> Response:
        state.limiter.failed(where, time.monotonic())
        return _unauthorized()

    async def client_of(header: str | None, *, basic: bool, bearer: bool) -> str | None:
        """The authenticated client id, or None (Basic: the key's hash checked in a thread)."""
        if basic and (pair := _basic(header)) is not None:
            ok = await trio.to_thread.run_sync(state.clients.verify, *pair)
            return pair[0] if ok else None
        if bearer and (token := _bearer(header)) is not None:
            found = state.tokens.check(token, time.time())
            if found is not None and state.clients.exists(found.client_id):
                return found.client_id
        return None

    def is_admin(header: str | None) -> bool:
        token = _bearer(header)
        return bool(api.admin_secret_key) and token is not None and hmac.compare_digest(
            token.encode(), api.admin_secret_key.encode())

    def guarded(handler: Callable[[str], Awaitable[Response]], *, basic: bool = True,
                bearer: bool = True) -> Callable[[], Awaitable[Response]]:
        async def run() -> Response:
            where = address()
            if (refusal := limited(where)) is not None:
                return refusal
            client = await client_of(request.headers.get("Authorization"), basic=basic, bearer=bearer)
            if client is None:
                return failed(where)
            return await handler(client)

        run.__name__ = handler.__name__
        return run

    @app.route("/version")
    async def version() -> Response:
        return _json({"version": state.version, "build": state.version, "service": "callsd-rtcd"})

    @app.route("/healthz")
    async def healthz() -> Response:
        if state.draining:
            return _json({"status": "draining"}, 503)
        return _json({"status": "ok"})

    @app.route("/openapi.json")
    async def openapi_document() -> Response:
        return Response(openapi, mimetype="application/json")

    async def registration_refusal(where: str) -> Response | None:
        """None when this request may (un)register; else 403 (registration off) or 401 (bad admin key)."""
        if is_admin(request.headers.get("Authorization")) or api.allow_self_registration:
            return None
        if api.admin_secret_key:
            return failed(where)
        return _json({"error": "registration is off (api.allow_self_registration, api.admin_secret_key)"}, 403)

    async def body() -> dict[str, Any] | None:
        data = await request.get_json(force=True, silent=True)
        return data if isinstance(data, dict) else None

    @app.route("/register", methods=["POST"])
    async def register() -> Response:
        where = address()
        if (refusal := limited(where) or await registration_refusal(where)) is not None:
            return refusal
        data = await body()
        if data is None or not valid_client_id(data.get("client_id")):
            return _json({"error": "client_id: 1-64 characters of A-Z a-z 0-9 - _ ."}, 400)
        key = data.get("auth_key")
        if not isinstance(key, str) or not MIN_KEY_LENGTH <= len(key) <= MAX_KEY_LENGTH:
            return _json({"error": f"auth_key: {MIN_KEY_LENGTH} to {MAX_KEY_LENGTH} characters"}, 400)
        if not await trio.to_thread.run_sync(state.clients.register, data["client_id"], key):
            return _json({"error": "client_id is already registered"}, 409)
        return _json({"client_id": data["client_id"]}, 201)

    @app.route("/unregister", methods=["POST"])
    async def unregister() -> Response:
        where = address()
        if (refusal := limited(where)) is not None:
            return refusal
        header = request.headers.get("Authorization")
        data = await body()
        client_id = data.get("client_id") if data else None
        own = await client_of(header, basic=True, bearer=False)
        if not is_admin(header) and (own is None or (client_id is not None and client_id != own)):
            return failed(where)
        target = client_id if isinstance(client_id, str) else own
        if target is None or not state.clients.unregister(target):
            return _json({"error": "no such client"}, 404)
        return _json({"client_id": target})

    async def login(client: str) -> Response:
        token, bearer = state.tokens.issue(client, time.time())
        return _json({"bearer_token": token, "expires_at": bearer.expires_at})

    async def system(client: str) -> Response:
        return _json({"cpu_load": round(state.cpu_load, 3), "sessions": state.links.sessions,
                      "calls": state.links.calls, "draining": state.draining})

    async def metrics(client: str) -> Response:
        data, content_type = state.render_metrics()
        return Response(data, content_type=content_type)

    app.add_url_rule("/login", "login", guarded(login, bearer=False), methods=["POST"])
    app.add_url_rule("/system", "system", guarded(system))
    app.add_url_rule("/metrics", "metrics", guarded(metrics))

    @app.websocket("/ws")
    async def ws() -> Response | None:
        client = websocket.scope.get("client") or ("?", 0)
        where = str(client[0])
        if state.limiter.blocked(where, time.monotonic()):
            return _json({"error": "too many failed attempts; retry later"}, 429)
        if await client_of(websocket.headers.get("Authorization"), basic=False, bearer=True) is None:
            state.limiter.failed(where, time.monotonic())
            return _unauthorized()
        await websocket.accept()
        ticket = websocket.scope.get("state", {}).get(TICKET_KEY)
        if isinstance(ticket, ConnectionTicket):
            ticket.joined()
        state.ws_accepted += 1
        await serve_link(state, websocket._get_current_object())  # type: ignore[attr-defined]
        return None

    return app


async def serve_link(state: RtcdState, ws: Any) -> None:
    """One control link: the plane RPC over the WebSocket, the link's sessions closed when it ends."""

    async def send(data: bytes) -> None:
        state.ws_messages_out += 1
        await ws.send(data)

    async def receive() -> bytes | None:
        try:
            message = await ws.receive()
        except Exception:  # the peer went away (Quart raises on a closed socket)
            return None
        state.ws_messages_in += 1
        return message.encode() if isinstance(message, str) else bytes(message)

    async def close() -> None:
        await ws.close(1000)

    view = state.links.attach(state.plane)
    stream = MessageStream(send, receive, close, max_message=LINK_MAX_MESSAGE)
    try:
        await serve_plane_rpc(stream, view, view.pipe)
    finally:
        state.links.detach(view)
