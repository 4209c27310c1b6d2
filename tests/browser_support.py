"""Helpers for the browser tests: Chromium through Playwright, the real ``callsd serve``, and a small fake server.

- ``launch_chromium(playwright)`` starts Debian's Chromium with fake media devices and fake capture UI, so
  getUserMedia and getDisplayMedia succeed without prompts. Launch once per test module (it is slow here) and open a
  new browser *context* per participant: contexts do not share storage, like two people on two machines.
- ``CallsdProcess`` runs the real server (``python -m callsd.app.cli serve --config FILE``) as a subprocess on
  free loopback ports in a temporary data directory, and waits for ``/healthz``.
- ``FakeCallsServer`` is an ASGI app speaking the signaling protocol of docs/protocol.md with no media plane: enough
  to exercise the page's call-state UI (participants, mute, hands, host, errors, reconnect) deterministically.
- ``Participant`` wraps a Playwright page with the few actions and reads the tests need.

Every wait is time-boxed; every address is 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import mimetypes
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from net_support import free_port

STATIC_DIR = Path(__file__).resolve().parents[1] / "app" / "static"

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
    "--auto-select-desktop-capture-source=Entire screen",
    "--allow-loopback-in-peer-connection",
    "--autoplay-policy=no-user-gesture-required",
    "--disable-background-networking",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]

WAIT_MS = 30_000  # upper bound of any single UI wait (generous: the 2-core machine is shared)


def launch_chromium(playwright: Any) -> Any:
    return playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)



def free_udp_port(low: int = 20_000, high: int = 32_000) -> int:
    """A free UDP port in a range every config check accepts (80–49151); tried in order from a random start."""
    start = low + (os.getpid() * 7919 + time.monotonic_ns()) % (high - low)
    for offset in range(0, high - low, 37):
        port = low + (start - low + offset) % (high - low)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free UDP port")


def _udp_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def wait_http(url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except Exception as e:  # noqa: BLE001 - keep polling until the deadline
            last = e
        time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer 200 within {timeout}s: {last!r}")


# ---------------------------------------------------------------------------------------------------------------
# The real server
# ---------------------------------------------------------------------------------------------------------------


class CallsdProcess:
    """``callsd serve`` in a subprocess with its own data dir; ``url`` is the page's base URL.

    Open auth mode unless ``auth_secret`` is given (then token mode with that signing secret). ``media_workers = N``
    sets ``rtc.media_workers`` (N ``callsd rtcd`` processes on UDP ports ``rtc_port .. rtc_port + N - 1``, all free
    when chosen); ``worker_pids()`` maps each live worker's RTC port to its pid.
    """

    def __init__(
        self, data_dir: Path, *, max_participants: int = 0, auth_secret: str = "", extra_toml: str = "",
        media_workers: int = 0,
    ) -> None:
        self.data_dir = data_dir
        self.http_port = free_port()
        self.rtc_port = free_udp_port()
        for _ in range(50):  # every worker's port must be free too
            if all(_udp_free(self.rtc_port + i) for i in range(1, media_workers)):
                break
            self.rtc_port = free_udp_port()
        self.media_workers = media_workers
        self.url = f"http://127.0.0.1:{self.http_port}"
        self.config_path = data_dir / "callsd.toml"
        self.log_path = data_dir / "server.log"
        self.config_path.write_text(
            "[http]\n"
            f'listen = "127.0.0.1"\nport = {self.http_port}\n'
            "[rtc]\n"
            f'ice_address_udp = "127.0.0.1"\nice_port_udp = {self.rtc_port}\n'
            "ice_port_tcp = 0\n"  # ICE-TCP off: its default port 8443 would collide between parallel runs
            + (f"media_workers = {media_workers}\n" if media_workers else "")
            + "[calls]\n"
            f"max_participants = {max_participants}\n"
            "[store]\n"
            f'data_dir = "{data_dir / "data"}"\n'
            "[auth]\n"
            + (f'mode = "token"\nsecret = "{auth_secret}"\n' if auth_secret else 'mode = "open"\n')
            + extra_toml
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> CallsdProcess:
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "callsd.app.cli", "serve", "--config", str(self.config_path)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=self.data_dir,
        )
        try:
            wait_http(self.url + "/healthz")
        except TimeoutError as e:
            self.stop()
            tail = self.log_path.read_text(errors="replace")[-4000:]
            raise RuntimeError("callsd serve did not start:\n" + tail) from e
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def worker_pids(self) -> dict[int, int]:
        """RTC UDP port -> pid of each ``callsd rtcd`` child of the server (read from /proc; Linux only)."""
        found: dict[int, int] = {}
        if self.proc is None:
            return found
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
                ppid = int(stat.rsplit(")", 1)[1].split()[1])
                if ppid != self.proc.pid:
                    continue
                argv = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
            except (OSError, ValueError, IndexError):
                continue
            if "rtcd" in argv and "--rtc-port" in argv:
                found[int(argv[argv.index("--rtc-port") + 1])] = int(entry.name)
        return found

    def __enter__(self) -> CallsdProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            # SIGINT exits promptly; SIGTERM would drain, waiting for the calls of closed pages to time out.
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        if getattr(self, "_log", None) is not None:
            self._log.close()


# ---------------------------------------------------------------------------------------------------------------
# A fake signaling server (no media) for UI tests
# ---------------------------------------------------------------------------------------------------------------


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

    def __init__(self, *, max_participants: int = 0) -> None:
        self.max_participants = max_participants
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
            status, ctype, body = 200, "text/html", (STATIC_DIR / "index.html").read_bytes()
        elif path.startswith("/static/") and ".." not in path:
            f = STATIC_DIR / path.removeprefix("/static/")
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


# ---------------------------------------------------------------------------------------------------------------
# A participant: one browser context, one page
# ---------------------------------------------------------------------------------------------------------------


class People:
    """The pages one test opens: ``people(name)`` (or ``people(name, url=...)`` for another server) makes a
    ``Participant``; ``close()`` closes them all and fails the test on an uncaught exception in any page (a bug
    even when the UI looks right). ``init_script`` runs in every page before the client's own scripts."""

    def __init__(self, browser: Any, url: str = "", *, init_script: str | None = None) -> None:
        self.browser, self.url, self.init_script = browser, url, init_script
        self.made: list[Participant] = []

    def __call__(self, name: str, *, url: str | None = None, viewport: dict[str, int] | None = None) -> Participant:
        p = Participant(self.browser, url or self.url, name)
        if self.init_script:
            p.context.add_init_script(self.init_script)
        if viewport:
            p.page.set_viewport_size(viewport)
        self.made.append(p)
        return p

    def close(self) -> None:
        errors = [line for p in self.made for line in p.console if line.startswith("pageerror")]
        for p in self.made:
            p.close()
        assert not errors, errors


_SELECTED_REMOTE = """async () => {
    const pc = window.callsd.pc;
    if (!pc || pc.connectionState !== 'connected') return null;
    const report = await pc.getStats();
    let pairId = null;
    report.forEach((r) => { if (r.type === 'transport' && r.selectedCandidatePairId) pairId = r.selectedCandidatePairId; });
    const pair = pairId && report.get(pairId);
    const remote = pair && report.get(pair.remoteCandidateId);
    return remote ? [remote.address || remote.ip, remote.port] : null;
}"""


class Participant:
    def __init__(self, browser: Any, base_url: str, name: str) -> None:
        self.name = name
        self.base_url = base_url
        self.context = browser.new_context(viewport={"width": 1200, "height": 760})
        self.page = self.context.new_page()
        self.console: list[str] = []
        self.page.on("console", lambda m: self.console.append(f"{m.type}: {m.text}"))
        self.page.on("pageerror", lambda e: self.console.append(f"pageerror: {e}"))

    def tid(self, testid: str) -> Any:
        return self.page.locator(f'[data-testid="{testid}"]')

    def open_with_token(self, channel: str, token: str) -> None:
        """Token mode: the page joins by itself from ``?channel=...&token=...``."""
        self.page.goto(f"{self.base_url}/?channel={channel}&token={token}", timeout=WAIT_MS)

    def join(self, channel: str, *, expect_in_call: bool = True) -> None:
        self.page.goto(f"{self.base_url}/?channel={channel}", timeout=WAIT_MS)
        self.tid("name-input").fill(self.name)
        self.tid("join-button").click()
        if expect_in_call:
            self.wait_in_call()

    def wait_in_call(self) -> None:
        self.page.wait_for_function("window.callsd && window.callsd.phase === 'in_call'", timeout=WAIT_MS)
        self.tid("call-view").wait_for(state="visible", timeout=WAIT_MS)

    @property
    def session_id(self) -> str:
        return str(self.page.evaluate("window.callsd.sessionId"))

    def row(self, session_id: str) -> Any:
        return self.page.locator(f'[data-testid="participant"][data-session-id="{session_id}"]')

    def wait_participants(self, n: int) -> None:
        self.page.wait_for_function(
            f"document.querySelectorAll('[data-testid=participant]').length === {n}", timeout=WAIT_MS
        )

    def rtp(self) -> dict[str, Any]:
        return dict(self.page.evaluate("window.callsd.rtpStats()"))

    def inbound(self, kind: str) -> int:
        return int(self.rtp()["inbound"].get(kind, {}).get("packets", 0))

    def wait_inbound_growing(self, kind: str, *, timeout: float = 30.0) -> tuple[int, int]:
        """Wait until inbound ``kind`` packets are flowing (count grows between two reads); returns the two reads."""
        deadline = time.monotonic() + timeout
        first = self.inbound(kind)
        while time.monotonic() < deadline:
            self.page.wait_for_timeout(500)
            now = self.inbound(kind)
            if now > first and now > 0:
                return first, now
            first = now
        raise AssertionError(f"{self.name}: inbound {kind} packets not growing; stats={self.rtp()}\n{self.debug()}")

    def selected_remote(self, timeout: float = 10.0) -> tuple[str, int]:
        """The server's address and port on the page's selected ICE candidate pair, once media is connected: which
        media host or worker the page talks to."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            remote = self.page.evaluate(_SELECTED_REMOTE)
            if remote:
                return str(remote[0]), int(remote[1])
            self.page.wait_for_timeout(250)
        raise AssertionError(f"{self.name}: no selected candidate pair\n{self.debug()}")

    def wait_media_connected(self, timeout_ms: int = WAIT_MS) -> None:
        """Wait until the page's peer connection is ``connected``; fail with the page's view otherwise."""
        try:
            self.page.wait_for_function(
                "window.callsd.pc && window.callsd.pc.connectionState === 'connected'", timeout=timeout_ms)
        except Exception as e:  # playwright's TimeoutError
            raise AssertionError(f"{self.name}: media never connected\n{self.debug()}") from e

    def debug(self) -> str:
        """The page's view for a failure message: signaling log, transceivers, console."""
        info = self.page.evaluate(
            """() => ({
                log: window.callsd.log.filter(m => m.type !== 'ice').map(m => m.dir + ' ' + m.type + ' '
                     + JSON.stringify(m.data).slice(0, 120)),
                pc: window.callsd.pc && {
                    state: window.callsd.pc.connectionState, signaling: window.callsd.pc.signalingState,
                    transceivers: window.callsd.pc.getTransceivers().map(t =>
                        [t.mid, t.direction, t.currentDirection, t.receiver.track.kind, t.receiver.track.id]),
                },
            })"""
        )
        lines = [f"--- {self.name} ({self.session_id}) pc={info['pc']}", *info["log"], *self.console[-20:]]
        return "\n".join(lines)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.context.close()
