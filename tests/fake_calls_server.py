"""A fake signaling server for the browser UI tests: the protocol of docs/protocol.md with no media plane.

``FakeCallsServer`` is an ASGI app that serves the page and answers the signaling messages from dicts (offers stay
unanswered), so the page's call-state UI (participants, mute, hands, host, errors, reconnect) can be driven
deterministically and fast; ``push`` and ``drop_all`` inject server events and network failures from the test's
thread. ``run_fake_server`` serves it with Hypercorn's Trio worker in a thread on a free loopback port.

A module of its own because it is a server, not a browser helper: browser_support.py drives Chromium and the real
``callsd serve``; this stands in for the latter when media is not what a test is about.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import mimetypes
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from browser_support import STATIC_DIR, wait_http
from net_support import free_port

__all__ = ["FakeCallsServer", "run_fake_server"]


@dataclass
class _Conn:
    outbox: Any  # trio.MemorySendChannel[dict | tuple]
    session_id: str
    channel_id: str | None = None


@dataclass
class _Call:
    call_id: str
    host_id: str
    participants: dict[str, dict[str, Any]] = field(default_factory=dict)
    screen: dict[str, str] | None = None


class FakeCallsServer:
    """ASGI app: static files + the signaling protocol, state kept in dicts. offers stay unanswered.

    ``drop_all()`` closes every socket abruptly (from any thread), as a network failure would.
    """

    def __init__(self, *, max_participants: int = 0, static_dir: Path = STATIC_DIR) -> None:
        self.max_participants = max_participants
        self.static_dir = static_dir  # the page under test: the repository's client unless a test names another
        self.calls: dict[str, _Call] = {}
        self.conns: dict[str, _Conn] = {}  # session id -> live connection
        self.received: list[dict[str, Any]] = []
        self._ids = itertools.count(1)
        self._token: Any = None

    # -- ASGI ---------------------------------------------------------------------------------------------------
    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                msg = await receive()
                if msg["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif msg["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] == "http":
            await self._http(scope, receive, send)
        elif scope["type"] == "websocket":
            await self._websocket(scope, receive, send)

    async def _http(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        path = scope["path"]
        status, ctype, body = 404, "text/plain", b"not found"
        if path == "/":
            status, ctype, body = 200, "text/html", (self.static_dir / "index.html").read_bytes()
        elif path.startswith("/static/") and ".." not in path:
            f = self.static_dir / path.removeprefix("/static/")
            if f.is_file():
                status, body = 200, f.read_bytes()
                ctype = mimetypes.guess_type(f.name)[0] or "application/octet-stream"
                if f.suffix == ".js":
                    ctype = "text/javascript"
        elif path == "/healthz":
            status, ctype, body = 200, "application/json", b'{"status": "ok"}'
        elif path == "/api/v1/config":
            status, ctype = 200, "application/json"
            body = json.dumps({"auth_mode": "open", "protocol": 1, "allow_screen_sharing": True,
                               "max_participants": self.max_participants}).encode()
        elif path == "/api/v1/channels":
            status, ctype = 200, "application/json"
            chans = [{"channel_id": ch, "call_id": c.call_id, "participants": len(c.participants)}
                     for ch, c in self.calls.items()]
            body = json.dumps({"channels": chans}).encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", ctype.encode()), (b"cache-control", b"no-store")]})
        await send({"type": "http.response.body", "body": body})

    async def _websocket(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        import trio

        msg = await receive()
        if msg["type"] != "websocket.connect":
            return
        await send({"type": "websocket.accept"})
        self._token = trio.lowlevel.current_trio_token()
        out_send, out_recv = trio.open_memory_channel[Any](100)
        conn = _Conn(outbox=out_send, session_id=f"s{next(self._ids)}")

        async def writer() -> None:
            async for item in out_recv:
                if isinstance(item, tuple):  # ("close", code)
                    with contextlib.suppress(Exception):
                        await send({"type": "websocket.close", "code": item[1]})
                    nursery.cancel_scope.cancel()
                    return
                await send({"type": "websocket.send", "text": json.dumps(item)})

        async with trio.open_nursery() as nursery:
            nursery.start_soon(writer)
            self._emit(conn, "hello", {"session_id": conn.session_id, "protocol": 1, "auth_mode": "open"})
            while True:
                msg = await receive()
                if msg["type"] == "websocket.disconnect":
                    break
                try:
                    req = json.loads(msg.get("text") or "")
                    self.received.append(req)
                    self._handle(conn, req["type"], req.get("data") or {})
                except Exception as e:  # noqa: BLE001 - a fake answers bad input with an error event
                    self._emit(conn, "error", {"code": "bad_message", "message": str(e), "action": None})
            nursery.cancel_scope.cancel()
        self._dropped(conn)

    # -- protocol -----------------------------------------------------------------------------------------------
    def _emit(self, conn: _Conn, type_: str, data: dict[str, Any]) -> None:
        with contextlib.suppress(Exception):
            conn.outbox.send_nowait({"type": type_, "data": data})

    def _broadcast(self, channel_id: str, type_: str, data: dict[str, Any]) -> None:
        call = self.calls.get(channel_id)
        if call is None:
            return
        for sid in call.participants:
            c = self.conns.get(sid)
            if c is not None:
                self._emit(c, type_, {"channel_id": channel_id, **data})

    def _state(self, channel_id: str) -> dict[str, Any]:
        call = self.calls[channel_id]
        return {"channel_id": channel_id, "call_id": call.call_id, "start_at": 0, "host_id": call.host_id,
                "screen": call.screen, "participants": list(call.participants.values())}

    def _error(self, conn: _Conn, code: str, action: str) -> None:
        self._emit(conn, "error", {"code": code, "message": code.replace("_", " "), "action": action})

    def _handle(self, conn: _Conn, action: str, d: dict[str, Any]) -> None:
        ch = conn.channel_id
        call = self.calls.get(ch) if ch else None
        me = call.participants.get(conn.session_id) if call else None
        if action == "join":
            channel = d["channel_id"]
            call = self.calls.get(channel)
            if call and self.max_participants and len(call.participants) >= self.max_participants:
                return self._error(conn, "call_full", action)
            started = call is None
            if call is None:
                call = self.calls[channel] = _Call(call_id=f"c{next(self._ids)}", host_id=conn.session_id)
            conn.channel_id = channel
            self.conns[conn.session_id] = conn
            user = d.get("display_name") or conn.session_id
            call.participants[conn.session_id] = {
                "session_id": conn.session_id, "user_id": user, "muted": True, "raised_hand": 0, "video": False,
                "screen": False, "speaking": False, "connected": True}
            self._emit(conn, "join_ack", {"session_id": conn.session_id, "call_id": call.call_id,
                                          "channel_id": channel, "user_id": user, "ice_servers": [],
                                          "state": self._state(channel), "reconnected": False})
            if started:
                self._broadcast(channel, "call_start", {"call_id": call.call_id, "host_id": call.host_id})
            self._broadcast(channel, "user_joined", {"session_id": conn.session_id, "user_id": user})
            return None
        if action == "reconnect":
            call = self.calls.get(d.get("channel_id", ""))
            sid = d.get("session_id", "")
            if call is None or sid not in call.participants:
                return self._error(conn, "unknown_session", action)
            old = self.conns.get(sid)
            if old is not None and old is not conn:
                with contextlib.suppress(Exception):
                    old.outbox.send_nowait(("close", 4001))
                old.channel_id = None
            conn.session_id, conn.channel_id = sid, d["channel_id"]
            self.conns[sid] = conn
            call.participants[sid]["connected"] = True
            p = call.participants[sid]
            self._emit(conn, "join_ack", {"session_id": sid, "call_id": call.call_id, "channel_id": conn.channel_id,
                                          "user_id": p["user_id"], "ice_servers": [],
                                          "state": self._state(conn.channel_id), "reconnected": True})
            self._broadcast(conn.channel_id, "user_reconnected", {"session_id": sid})
            return None
        if action in ("sdp", "ice"):
            return None  # no media plane: offers stay unanswered
        if call is None or me is None or ch is None:
            return self._error(conn, "not_joined", action)
        sid = conn.session_id
        host_only = action.startswith("host_")
        if host_only and call.host_id != sid:
            return self._error(conn, "not_host", action)
        if action in ("mute", "unmute"):
            me["muted"] = action == "mute"
            self._broadcast(ch, "user_muted" if me["muted"] else "user_unmuted", {"session_id": sid, "by": sid})
        elif action in ("raise_hand", "lower_hand"):
            me["raised_hand"] = 1 if action == "raise_hand" else 0
            if action == "raise_hand":
                self._broadcast(ch, "user_raised_hand", {"session_id": sid, "raised_at": 1})
            else:
                self._broadcast(ch, "user_lowered_hand", {"session_id": sid, "by": sid})
        elif action == "screen_on":
            if call.screen is not None:
                return self._error(conn, "screen_already_shared", action)
            call.screen = {"session_id": sid, "stream_id": d["stream_id"]}
            me["screen"] = True
            self._broadcast(ch, "user_screen_on", {"session_id": sid, "stream_id": d["stream_id"]})
        elif action in ("screen_off", "host_screen_off"):
            if call.screen is None:
                return self._error(conn, "not_sharing", action)
            owner = call.screen["session_id"]
            call.screen = None
            call.participants[owner]["screen"] = False
            self._broadcast(ch, "user_screen_off", {"session_id": owner, "by": sid})
        elif action in ("video_on", "video_off"):
            me["video"] = action == "video_on"
            self._broadcast(ch, f"user_{action}", {"session_id": sid})
        elif action == "react":
            self._broadcast(ch, "user_reacted", {"session_id": sid, "emoji": d["emoji"]})
        elif action == "get_state":
            self._emit(conn, "call_state", self._state(ch))
        elif action in ("host_mute", "host_lower_hand", "host_remove", "host_make"):
            target = d.get("session_id", "")
            if target not in call.participants:
                return self._error(conn, "unknown_target", action)
            if action == "host_mute":
                call.participants[target]["muted"] = True
                self._broadcast(ch, "user_muted", {"session_id": target, "by": sid})
            elif action == "host_lower_hand":
                call.participants[target]["raised_hand"] = 0
                self._broadcast(ch, "user_lowered_hand", {"session_id": target, "by": sid})
            elif action == "host_make":
                call.host_id = target
                self._broadcast(ch, "call_host_changed", {"host_id": target})
            else:
                self._broadcast(ch, "user_left", {"session_id": target, "reason": "removed"})
                del call.participants[target]
        elif action == "host_mute_others":
            for t, p in call.participants.items():
                if t != sid and not p["muted"]:
                    p["muted"] = True
                    self._broadcast(ch, "user_muted", {"session_id": t, "by": sid})
        elif action in ("leave", "host_end"):
            reason = "left" if action == "leave" else "call_ended"
            leavers = [sid] if action == "leave" else list(call.participants)
            for t in leavers:
                self._broadcast(ch, "user_left", {"session_id": t, "reason": reason})
                del call.participants[t]
            if not call.participants or action == "host_end":
                if action == "host_end":
                    for t in leavers:
                        c = self.conns.get(t)
                        if c is not None:
                            self._emit(c, "call_end", {"channel_id": ch, "call_id": call.call_id})
                del self.calls[ch]
            elif call.host_id == sid:
                call.host_id = next(iter(call.participants))
                self._broadcast(ch, "call_host_changed", {"host_id": call.host_id})
            conn.channel_id = None
        else:
            self._error(conn, "unknown_type", action)
        return None

    def _dropped(self, conn: _Conn) -> None:
        if self.conns.get(conn.session_id) is conn:
            del self.conns[conn.session_id]
            call = self.calls.get(conn.channel_id or "")
            if call is not None and conn.session_id in call.participants:
                call.participants[conn.session_id]["connected"] = False
                self._broadcast(conn.channel_id or "", "user_disconnected", {"session_id": conn.session_id})

    def push(self, channel_id: str, type_: str, data: dict[str, Any]) -> None:
        """Broadcast a server event to a channel's call, as the real server would (thread-safe)."""
        import trio

        trio.from_thread.run_sync(self._broadcast, channel_id, type_, data, trio_token=self._token)

    def drop_all(self) -> None:
        """Close every live socket with 1011, as if the network had failed (thread-safe)."""
        import trio

        def _close() -> None:
            for c in list(self.conns.values()):
                with contextlib.suppress(Exception):
                    c.outbox.send_nowait(("close", 1011))

        trio.from_thread.run_sync(_close, trio_token=self._token)


@contextlib.contextmanager
def run_fake_server(app: FakeCallsServer) -> Iterator[str]:
    """Serve ``app`` with Hypercorn's Trio worker in a thread; yields the base URL."""
    import hypercorn.config
    import hypercorn.trio
    import trio

    port = free_port()
    config = hypercorn.config.Config()
    config.bind = [f"127.0.0.1:{port}"]
    config.accesslog = None
    config.errorlog = None
    stop = threading.Event()
    token_box: list[Any] = []

    async def main() -> None:
        token_box.append(trio.lowlevel.current_trio_token())

        async def trigger() -> None:
            while not stop.is_set():
                await trio.sleep(0.05)

        await hypercorn.trio.serve(app, config, shutdown_trigger=trigger)

    thread = threading.Thread(target=trio.run, args=(main,), daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(url + "/healthz", timeout=10)
        yield url
    finally:
        stop.set()
        thread.join(timeout=10)
