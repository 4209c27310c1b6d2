"""End to end: the page recovers its media by itself when the media path fails while the WebSocket stays up.

``callsd serve`` runs with ``rtc.media_workers = 2`` (docs/adr/0007-media-workers.md): each call lives on one
``callsd rtcd`` process, worker *i* on UDP port ``ice_port_udp + i``. Two people in headless Chromium hear each
other; the test finds the worker carrying their call from the port of the pages' selected ICE candidate pair and
kills it (SIGKILL). The server reports their media sessions closed; the WebSocket stays up. Each page must show the
"reconnecting media" state (``media-status``), restart ICE, and within a bounded time hear the other again, on the
surviving worker, without a reload and as the same session.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from typing import Any

import browser_support as bs  # tests/ is on pythonpath (pyproject.toml)
import pytest

pytestmark = [pytest.mark.browser, pytest.mark.slow]

import playwright.sync_api as playwright_sync  # noqa: E402

expect = playwright_sync.expect
bs.require_chromium()

RECOVERY_S = 30.0  # the bound on getting audio back after the worker died

# Records every state the media-status element shows (with the socket's state at that moment); also marks the
# document, so that a reload would be noticed.
WATCH_MEDIA_STATUS = """() => {
    window.__mediaStatusSeen = [];
    const el = document.querySelector('[data-testid="media-status"]');
    new MutationObserver(() => window.__mediaStatusSeen.push({
        state: el.dataset.state, visible: !el.hidden, text: el.textContent, t: Math.round(performance.now()),
        wsOpen: !!window.callsd.ws && window.callsd.ws.readyState === 1,
    })).observe(el, { attributes: true });
}"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[bs.CallsdProcess]:
    proc = bs.CallsdProcess(tmp_path_factory.mktemp("callsd-workers"), media_workers=2)
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()



def _unmute(p: bs.Participant) -> None:
    p.tid("mute-button").click()
    expect(p.tid("mute-button")).to_have_text("Mute", timeout=bs.WAIT_MS)


def test_media_comes_back_after_the_call_s_media_worker_dies(browser: Any, server: bs.CallsdProcess) -> None:
    alice = bs.Participant(browser, server.url, "Alice")
    bob = bs.Participant(browser, server.url, "Bob")
    try:
        alice.join("e2e-worker-loss")
        bob.join("e2e-worker-loss")
        alice.wait_participants(2)
        bob.wait_participants(2)
        alice.wait_media_connected()
        bob.wait_media_connected()
        _unmute(alice)
        _unmute(bob)
        alice.wait_inbound_growing("audio")
        bob.wait_inbound_growing("audio")
        expect(alice.tid("media-status")).to_be_hidden()
        a_sid, b_sid = alice.session_id, bob.session_id

        # The worker carrying the call: both pages talk to the same RTC port, one of the server's rtcd children.
        port = alice.selected_remote()[1]
        assert bob.selected_remote()[1] == port
        workers = server.worker_pids()
        assert sorted(workers) == [server.rtc_port, server.rtc_port + 1], workers
        for p in (alice, bob):
            p.page.evaluate(WATCH_MEDIA_STATUS)
        os.kill(workers[port], signal.SIGKILL)
        killed_at = time.monotonic()

        # Both pages show that their media is reconnecting (recovery can be quick: the observer keeps what was
        # shown), while the WebSocket stays up.
        for p in (alice, bob):
            try:
                p.page.wait_for_function(
                    "window.__mediaStatusSeen.some(s => s.state === 'reconnecting' && s.visible && s.wsOpen)",
                    timeout=bs.WAIT_MS)
            except playwright_sync.TimeoutError as e:
                raise AssertionError(f"{p.name}: never showed reconnecting media\n{p.debug()}") from e

        # Within the bound: media connected again (on the other worker), the state cleared, audio both ways.
        left_ms = max(1000, int((RECOVERY_S - (time.monotonic() - killed_at)) * 1000))
        for p in (alice, bob):
            p.wait_media_connected(left_ms)
            expect(p.tid("media-status")).to_be_hidden(timeout=bs.WAIT_MS)
        for p in (alice, bob):
            p.wait_inbound_growing("audio", timeout=max(2.0, RECOVERY_S - (time.monotonic() - killed_at)))
        recovered_s = time.monotonic() - killed_at
        assert recovered_s <= RECOVERY_S
        print(f"media recovered {recovered_s:.1f} s after the worker was killed")
        for p in (alice, bob):
            print(p.name, p.page.evaluate("window.__mediaStatusSeen.map(s => [s.t, s.state, s.text])"))
        assert alice.selected_remote()[1] != port
        # No reload, same sessions, still both in the call.
        assert (alice.session_id, bob.session_id) == (a_sid, b_sid)
        assert alice.page.evaluate("Array.isArray(window.__mediaStatusSeen)")  # gone if the page had reloaded
        assert bob.page.evaluate("Array.isArray(window.__mediaStatusSeen)")
        for p in (alice, bob):
            expect(p.tid("media-status")).to_have_attribute("data-state", "connected")
        assert alice.page.evaluate("window.callsd.iceRestarts") >= 1
        assert bob.page.evaluate("window.callsd.iceRestarts") >= 1
        alice.wait_participants(2)
        bob.wait_participants(2)
    finally:
        alice.close()
        bob.close()
