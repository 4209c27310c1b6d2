"""What ``callsd serve`` says to an rtcd host's API (docs/rtcd.md): ``POST /login``, ``GET /system``, the ``/ws``
control link. Plain HTTP/1.1 through h11 (hypercorn's own parser) over a trio stream, one request per connection;
TLS (``https://``) checks the certificate against the *name* of ``rtc.rtcd_url`` while connecting to one of the
addresses it resolves to.

    endpoint = RtcdEndpoint.from_url("http://rtcd.internal:8045", address="10.0.0.7")
    token = await login(endpoint, client_id, auth_key)
    load = await system(endpoint, token)          # {"cpu_load", "sessions", "calls", "draining"}
    async with open_link(endpoint, token) as stream:   # a trio Stream carrying the plane RPC (remote.py)
        ...
"""

from __future__ import annotations

import base64
import json
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import h11
import trio
import trio_websocket

from .message_stream import MessageStream

__all__ = ["RtcdEndpoint", "RtcdApiError", "login", "system", "open_link", "LINK_MAX_MESSAGE"]

LINK_MAX_MESSAGE = 1 << 20
HTTP_TIMEOUT = 5.0
PING_INTERVAL = 5.0
PING_TIMEOUT = 10.0


class RtcdApiError(Exception):
    """The host answered with an error status, or not at all."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True, kw_only=True)
class RtcdEndpoint:
    tls: bool
    name: str  # the host name of rtc.rtcd_url (TLS server name, Host header)
    port: int
    address: str  # the IP address this endpoint connects to

    @classmethod
    def from_url(cls, url: str, *, address: str | None = None) -> RtcdEndpoint:
        parts = urlsplit(url)
        tls = parts.scheme == "https"
        name = parts.hostname or ""
        return cls(tls=tls, name=name, port=parts.port or (443 if tls else 80), address=address or name)

    @property
    def label(self) -> str:
        return f"[{self.address}]:{self.port}" if ":" in self.address else f"{self.address}:{self.port}"


async def _connect(endpoint: RtcdEndpoint,
                   ssl_context: ssl.SSLContext | None) -> trio.SocketStream | trio.SSLStream[trio.SocketStream]:
    stream = await trio.open_tcp_stream(endpoint.address, endpoint.port)
    if not endpoint.tls:
        return stream
    tls = trio.SSLStream(stream, ssl_context or ssl.create_default_context(), server_hostname=endpoint.name)
    await tls.do_handshake()
    return tls


async def _request(endpoint: RtcdEndpoint, method: str, path: str, authorization: str,
                   ssl_context: ssl.SSLContext | None) -> tuple[int, bytes]:
    with trio.fail_after(HTTP_TIMEOUT):
        stream = await _connect(endpoint, ssl_context)
        try:
            async with stream:
                return await _exchange(stream, method, path, endpoint.name, authorization)
        except h11.ProtocolError as exc:  # e.g. the host died mid-answer: a failed request, like a refused connect
            raise RtcdApiError(f"{method} {path}: broken answer ({exc})") from exc


async def _exchange(stream: trio.abc.Stream, method: str, path: str, host: str,
                    authorization: str) -> tuple[int, bytes]:
    """One request, one answer, on a fresh connection (``Connection: close``)."""
    conn = h11.Connection(h11.CLIENT)
    headers = [("Host", host), ("Authorization", authorization), ("Connection", "close"),
               ("Content-Length", "0")]
    await stream.send_all(conn.send(h11.Request(method=method, target=path, headers=headers)))
    await stream.send_all(conn.send(h11.EndOfMessage()))
    status, body = 0, bytearray()
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            conn.receive_data(bytes(await stream.receive_some(1 << 16)))
        elif isinstance(event, h11.Response):
            status = event.status_code
        elif isinstance(event, h11.Data):
            body += event.data
            if len(body) > 1 << 20:
                raise RtcdApiError("answer too long")
        elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
            return status, bytes(body)


async def login(endpoint: RtcdEndpoint, client_id: str, auth_key: str,
                ssl_context: ssl.SSLContext | None = None) -> str:
    basic = base64.b64encode(f"{client_id}:{auth_key}".encode()).decode()
    status, body = await _request(endpoint, "POST", "/login", f"Basic {basic}", ssl_context)
    if status != 200:
        raise RtcdApiError(f"login refused ({status})", status)
    token = json.loads(body).get("bearer_token")
    if not isinstance(token, str):
        raise RtcdApiError("login answer has no bearer_token")
    return token


async def system(endpoint: RtcdEndpoint, token: str, ssl_context: ssl.SSLContext | None = None) -> dict[str, Any]:
    status, body = await _request(endpoint, "GET", "/system", f"Bearer {token}", ssl_context)
    if status != 200:
        raise RtcdApiError(f"/system answered {status}", status)
    data = json.loads(body)
    if not isinstance(data, dict):
        raise RtcdApiError("/system answer is not an object")
    return data


async def _keepalive(ws: trio_websocket.WebSocketConnection) -> None:
    """Ping the host; a link whose pong does not come back within ``PING_TIMEOUT`` is closed (the plane's
    ``serve`` then sees it end and reports its sessions closed)."""
    while True:
        await trio.sleep(PING_INTERVAL)
        with trio.move_on_after(PING_TIMEOUT) as timer:
            await ws.ping()
        if timer.cancelled_caught:
            await ws.aclose(1011, "ping timeout")
            return


@asynccontextmanager
async def open_link(endpoint: RtcdEndpoint, token: str,
                    ssl_context: ssl.SSLContext | None = None) -> AsyncIterator[MessageStream]:
    """The authenticated ``/ws`` control link as a stream of the plane RPC's bytes."""
    async with trio.open_nursery() as nursery:
        with trio.fail_after(HTTP_TIMEOUT):
            stream = await _connect(endpoint, ssl_context)
            ws = await trio_websocket.wrap_client_stream(
                nursery, stream, endpoint.name, "/ws", extra_headers=[(b"Authorization", f"Bearer {token}".encode())],
                max_message_size=LINK_MAX_MESSAGE, message_queue_size=0)
        nursery.start_soon(_keepalive, ws)

        async def receive() -> bytes | None:
            try:
                message = await ws.get_message()
            except trio_websocket.ConnectionClosed:
                return None
            return message.encode() if isinstance(message, str) else message

        async def send(data: bytes) -> None:
            try:
                await ws.send_message(data)
            except trio_websocket.ConnectionClosed as exc:
                raise trio.BrokenResourceError("the rtcd link closed") from exc

        link = MessageStream(send, receive, ws.aclose, max_message=LINK_MAX_MESSAGE)
        try:
            yield link
        finally:
            await link.aclose()
            nursery.cancel_scope.cancel()
