"""Helpers for the browser tests: Chromium through Playwright, the real ``callsd serve``, and a small fake server.

- ``launch_chromium(playwright)`` starts Debian's Chromium with fake media devices and fake capture UI, so
  getUserMedia and getDisplayMedia succeed without prompts. Launch once per test module (it is slow here) and open a
  new browser *context* per participant: contexts do not share storage, like two people on two machines.
- ``CallsdProcess`` runs the real server (``python -m callsd.app.cli serve --config FILE``) as a subprocess on
  free loopback ports in a temporary data directory, and waits for ``/healthz``.
- The fake signaling server for UI tests (no media plane) is in fake_calls_server.py.
- ``Participant`` wraps a Playwright page with the few actions and reads the tests need.

Every wait is time-boxed; every address is 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any, BinaryIO

from net_support import free_port
from process_support import terminate

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


def require_chromium() -> None:
    """Fail the calling test module, loudly and never as a skip, when Debian's Chromium is missing."""
    import pytest  # here: the namespace scripts (tests/net/*_client.py) import this module without pytest's help

    if not Path(CHROMIUM).exists():
        pytest.fail("Debian's chromium is not installed: run scripts/system-deps.sh (make test does)", pytrace=False)


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
        self._log: BinaryIO | None = None  # the server's stdout and stderr, open while it runs

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
        if self.proc is not None:
            # SIGINT exits promptly; SIGTERM would drain, waiting for the calls of closed pages to time out.
            terminate(self.proc, sig=signal.SIGINT)
        if self._log is not None:
            self._log.close()
            self._log = None


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
