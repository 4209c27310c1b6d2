"""Headless Chromium (fake camera and microphone) and an aiortc peer in one call through the MediaPlane."""

from __future__ import annotations

import asyncio
import http.server
import shutil
import tempfile
import threading
from collections.abc import Callable
from typing import Any

import pytest
import trio
from callsd.core.calls import events as ev

from .conftest import AiortcClient, CallHarness, wait_until

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream", "--allow-loopback-in-peer-connection",
    "--disable-background-networking", "--no-sandbox", "--disable-gpu", "--disable-component-update",
    "--no-first-run", "--disable-sync",
]

PAGE_JS = """
async () => {
  const pc = new RTCPeerConnection({iceServers: []});
  window.pc = pc;
  window.remote = [];
  pc.ontrack = (e) => window.remote.push(e.track.id);
  const stream = await navigator.mediaDevices.getUserMedia({audio: true, video: {width: 320, height: 240}});
  for (const t of stream.getTracks()) pc.addTrack(t, stream);
  await pc.setLocalDescription(await pc.createOffer());
  return pc.localDescription.sdp;
}
"""

STATS_JS = """
async () => {
  const out = [];
  (await window.pc.getStats()).forEach((r) => {
    if (r.type === 'inbound-rtp') out.push({kind: r.kind, packets: r.packetsReceived || 0,
                                            track: r.trackIdentifier || ''});
  });
  return {inbound: out, state: window.pc.connectionState, remote: window.remote};
}
"""


class _Page(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802
        body = b"<!doctype html><title>callsd test</title>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


class ChromiumClient:
    """Playwright's async API in its own thread and asyncio loop, driven from Trio. ``offer`` opens the page and
    runs ``page_js`` (a subclass sets its own: what it publishes), which returns the page's offer."""

    page_js = PAGE_JS

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="chromium", daemon=True)
        self.thread.start()
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Page)
        self.http_thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.http_thread.start()
        self.profile = tempfile.mkdtemp(prefix="callsd-chromium-")
        self.pw: Any = None
        self.ctx: Any = None
        self.page: Any = None

    async def call(self, fn: Callable[[], Any], timeout: float = 30.0) -> Any:
        fut = asyncio.run_coroutine_threadsafe(fn(), self.loop)
        return await trio.to_thread.run_sync(lambda: fut.result(timeout), abandon_on_cancel=True)

    async def offer(self) -> str:
        async def go() -> str:
            from playwright.async_api import async_playwright

            self.pw = await async_playwright().start()
            self.ctx = await self.pw.chromium.launch_persistent_context(
                self.profile, executable_path=CHROMIUM, headless=True, args=ARGS
            )
            self.page = self.ctx.pages[0] if self.ctx.pages else await self.ctx.new_page()
            await self.page.goto(f"http://127.0.0.1:{self.httpd.server_address[1]}/")
            return str(await self.page.evaluate(self.page_js))

        return str(await self.call(go, timeout=60))

    async def set_answer(self, sdp: str) -> None:
        async def go() -> None:
            await self.page.evaluate("async (sdp) => pc.setRemoteDescription({type: 'answer', sdp})", sdp)

        await self.call(go)

    async def answer(self, sdp: str) -> str:
        async def go() -> str:
            return str(await self.page.evaluate(
                """async (sdp) => {
                    await pc.setRemoteDescription({type: 'offer', sdp});
                    await pc.setLocalDescription(await pc.createAnswer());
                    return pc.localDescription.sdp;
                }""", sdp))

        return str(await self.call(go))

    async def stats(self) -> dict[str, Any]:
        async def go() -> dict[str, Any]:
            return dict(await self.page.evaluate(STATS_JS))

        return dict(await self.call(go))

    async def close(self) -> None:
        async def go() -> None:
            if self.ctx is not None:
                await self.ctx.close()
            if self.pw is not None:
                await self.pw.stop()

        try:
            await self.call(go)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            await trio.to_thread.run_sync(self.thread.join, 5)
            self.httpd.shutdown()
            self.httpd.server_close()
            shutil.rmtree(self.profile, ignore_errors=True)


async def test_chromium_and_aiortc_exchange_audio(loopback_only: None) -> None:
    if shutil.which(CHROMIUM) is None:
        pytest.fail("Debian's chromium is not installed: run scripts/system-deps.sh (make test does)", pytrace=False)
    h = CallHarness()
    browser = ChromiumClient()
    peer = AiortcClient("a", audio_hz=440)
    with trio.fail_after(120):
        async with trio.open_nursery() as nursery:
            await nursery.start(h.plane.serve)
            nursery.start_soon(h.pump)
            try:
                await h.join("W", browser)  # type: ignore[arg-type]
                await h.join("A", peer)
                h.core(ev.Unmute(at=h.now(), session_id="W"))
                h.core(ev.Unmute(at=h.now(), session_id="A"))
                await wait_until(lambda: {"W", "A"} <= h.connected, timeout=30, what="both connected",
                                 diag=h.diagnostics)
                audio_w = h.track_of("W", "audio")

                stats: dict[str, Any] = {}
                for _ in range(100):
                    stats = await browser.stats()
                    audio_in = [s for s in stats["inbound"] if s["kind"] == "audio"]
                    if audio_in and audio_in[0]["packets"] > 50 and peer.frames.get(audio_w, 0) > 20:
                        break
                    await trio.sleep(0.2)
                audio_in = [s for s in stats["inbound"] if s["kind"] == "audio"]
                assert audio_in and audio_in[0]["packets"] > 50, (stats, h.diagnostics())
                assert "A_0" in stats["remote"]
                assert peer.frames.get(audio_w, 0) > 20, h.diagnostics()
                # the browser's camera reaches the aiortc peer as decodable VP8
                video_w = h.track_of("W", "video")
                await wait_until(lambda: peer.frames.get(video_w, 0) > 5, timeout=30, what="browser video",
                                 diag=h.diagnostics)
                # the browser's and aiortc's RTCP all parse with core.rtcp
                await wait_until(lambda: h.plane.counters["rtcp_in"] > 2, timeout=10, what="RTCP in",
                                 diag=h.diagnostics)
                assert h.plane.counters["rtcp_malformed"] == 0, h.diagnostics()
            finally:
                h.stop()
                await peer.close()
                await browser.close()
                nursery.cancel_scope.cancel()
