"""Fixtures for the server tests: a real callsd server on ephemeral loopback ports, and a WebSocket client."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio
from callsd.app.config import Config, load_config
from callsd.app.server import ServerControl, ServerInfo, serve
from trio_websocket import open_websocket_url


class Client:
    """A signaling client speaking docs/protocol.md over a real WebSocket; every wait is time-boxed."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.session_id = ""
        self.reconnect_secret = ""  # from the last join_ack: what a reconnect of this session must present
        self.seen: list[dict[str, Any]] = []

    async def send(self, kind: str, data: dict[str, Any] | None = None) -> None:
        await self.ws.send_message(json.dumps({"type": kind, "data": data or {}}))

    async def recv(self, timeout: float = 5.0) -> dict[str, Any]:
        with trio.fail_after(timeout):
            msg = json.loads(await self.ws.get_message())
        self.seen.append(msg)
        if msg.get("type") == "join_ack":
            self.reconnect_secret = msg["data"].get("reconnect_secret", "")
        return msg

    async def join(self, channel: str = "room", name: str | None = None) -> dict[str, Any]:
        """Join ``channel`` (display name ``name``, else the start of the session id); returns the join_ack after
        this session's own ``user_joined``."""
        ack = await self.request("join", {"channel_id": channel, "display_name": name or self.session_id[:6]},
                                 expect="join_ack")
        await self.expect("user_joined")
        return ack

    def reconnect_data(self, channel: str = "room", **extra: Any) -> dict[str, Any]:
        """The data of a ``reconnect`` of this client's session (with its secret)."""
        return {"session_id": self.session_id, "channel_id": channel, "reconnect_secret": self.reconnect_secret,
                **extra}

    async def expect(self, kind: str, timeout: float = 5.0) -> dict[str, Any]:
        """Read until an event of ``kind`` arrives; return its data."""
        with trio.fail_after(timeout):
            while True:
                msg = await self.recv(timeout)
                if msg["type"] == kind:
                    return msg["data"]  # type: ignore[no-any-return]

    async def request(self, kind: str, data: dict[str, Any] | None = None, *, expect: str) -> dict[str, Any]:
        await self.send(kind, data)
        return await self.expect(expect)

    async def error(self, kind: str, data: dict[str, Any] | None = None) -> str:
        err = await self.request(kind, data, expect="error")
        assert err["action"] in (kind, None)
        return err["code"]  # type: ignore[no-any-return]

    async def nothing_pending(self, wait: float = 0.2) -> list[dict[str, Any]]:
        got = []
        with trio.move_on_after(wait):
            while True:
                got.append(json.loads(await self.ws.get_message()))
        return got


def make_config(tmp_path: Any, **sections: dict[str, Any]) -> Config:
    env = {"CALLSD_HTTP_PORT": "0", "CALLSD_RTC_ICE_PORT_UDP": "0", "CALLSD_RTC_ICE_PORT_TCP": "0",
           "CALLSD_STORE_DATA_DIR": str(tmp_path / "data")}
    for section, values in sections.items():
        for key, value in values.items():
            env[f"CALLSD_{section.upper()}_{key.upper()}"] = json.dumps(value) if not isinstance(value, str) else value
    return load_config(None, env)


@pytest.fixture
def start_server(tmp_path: Path, nursery: trio.Nursery) -> Callable[..., Any]:
    """``info, control = await start_server(calls={"max_participants": 2}, media=False)``.

    Each server a test starts keeps its store in a data dir of its own (the first in ``tmp_path / "data"``, the
    next in ``data-2``, ...), as two real servers would: state shared by accident would hide a bug or make one up.
    A test that means two servers to share a store (a restart) passes the same ``data_dir`` to both, or names it
    in ``store={"data_dir": ...}``.
    """
    started = 0

    async def start(*, media: bool = False, plane_factory: Any = None, config: Config | None = None,
                    data_dir: Path | None = None, **sections: dict[str, Any]) -> tuple[ServerInfo, ServerControl]:
        nonlocal started
        started += 1
        if config is None:
            own = tmp_path / ("data" if started == 1 else f"data-{started}")
            store = {"data_dir": str(data_dir or own), **sections.get("store", {})}
            config = make_config(tmp_path, **{**sections, "store": store})
        cfg = config  # bound for the lambda below (mypy narrows a local it cannot see reassigned)
        control = ServerControl()
        info = await nursery.start(lambda task_status: serve(cfg, control=control, media=media,
                                                             plane_factory=plane_factory, task_status=task_status))
        return info, control

    return start


@asynccontextmanager
async def _connect(info: ServerInfo, query: str = "") -> AsyncIterator[Client]:
    url = f"ws://127.0.0.1:{info.http_port}/api/v1/websocket{query}"
    async with open_websocket_url(url) as ws:
        client = Client(ws)
        hello = await client.expect("hello")
        client.session_id = hello["session_id"]
        yield client


@pytest.fixture
def connect() -> Callable[..., Any]:
    """``async with connect(info) as client:`` opens a socket and reads ``hello``."""
    return _connect


async def _http_get(port: int, path: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    """A minimal HTTP/1.1 GET over a Trio socket (no extra client dependency)."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        await stream.send_all(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{extra}Connection: close\r\n\r\n".encode())
        data = b""
        with trio.fail_after(5):
            while chunk := await stream.receive_some(65536):
                data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin1").split("\r\n")
    status = int(lines[0].split()[1])
    hdrs = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    if hdrs.get("transfer-encoding") == "chunked":
        out, rest = b"", body
        while rest:
            size_text, _, rest = rest.partition(b"\r\n")
            size = int(size_text, 16)
            if size == 0:
                break
            out, rest = out + rest[:size], rest[size + 2:]
        body = out
    return status, hdrs, body


@pytest.fixture
def http_get() -> Callable[..., Any]:
    """``status, headers, body = await http_get(port, "/path")``."""
    return _http_get
