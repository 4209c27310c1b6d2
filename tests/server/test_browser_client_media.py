"""The browser client's media features against the real server (issue 14): a three-person audio call with tiles and
speaking rings, per-participant volume, the speaker picker (``setSinkId``), and a screen share with the presenter
banner, the sharer's self-preview and full screen. These tests also take the screenshots of docs/client.md (set
CALLSD_SCREENSHOT_DIR=docs/client to refresh them; see tests/browser_shots.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import browser_shots
import browser_support as bs  # tests/ is on pythonpath (pyproject.toml)
import pytest

pytestmark = [pytest.mark.browser, pytest.mark.slow]

import playwright.sync_api as playwright_sync  # noqa: E402

expect = playwright_sync.expect
bs.require_chromium()

# Record every setSinkId call, so the test sees that the chosen speaker was applied to the remote audio.
RECORD_SINKS = """
(() => {
  const real = HTMLMediaElement.prototype.setSinkId;
  window.__sinks = [];
  HTMLMediaElement.prototype.setSinkId = function (id) { window.__sinks.push(id); return real.call(this, id); };
})();
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[bs.CallsdProcess]:
    with bs.CallsdProcess(tmp_path_factory.mktemp("callsd"), max_participants=3) as proc:
        yield proc


@pytest.fixture
def people(browser: Any, server: bs.CallsdProcess) -> Iterator[bs.People]:
    made = bs.People(browser, server.url, init_script=RECORD_SINKS)
    yield made
    made.close()



def _unmute(p: bs.Participant) -> None:
    p.tid("mute-button").click()
    expect(p.tid("mute-button")).to_have_text("Mute", timeout=bs.WAIT_MS)


def _tile(p: bs.Participant, sid: str) -> Any:
    return p.page.locator(f'[data-testid="tile"][data-session-id="{sid}"]')


def test_three_person_audio_call_rings_volume_and_speaker(people: Any) -> None:
    ada, bob, cy = people("Ada Lovelace"), people("Bob Kahn"), people("Cy")
    for p in (ada, bob, cy):
        p.join("trio")
    for p in (ada, bob, cy):
        p.wait_participants(3)
        p.wait_media_connected()
    b_sid = bob.session_id
    _unmute(bob)
    _unmute(cy)
    ada.wait_inbound_growing("audio")
    # Bob's own ring follows his microphone's level (the fake device beeps); the server's user_voice_on drives the
    # others' rings (test_browser_client_features.py: the fake beeps are too short for the server's detector).
    expect(_tile(bob, b_sid)).to_have_attribute("data-speaking", "true", timeout=bs.WAIT_MS)
    ada.tid("hand-button").click()
    expect(_tile(bob, ada.session_id).locator('[data-testid="tile-hand"]')).to_be_visible(timeout=bs.WAIT_MS)
    # Per-participant volume: Ada turns Bob down; only Bob's audio gets quieter.
    bob_audio = ada.page.locator(f'audio[data-session-id="{b_sid}"]')
    expect(bob_audio.first).to_be_attached(timeout=bs.WAIT_MS)
    _tile(ada, b_sid).locator('[data-testid="volume-slider"]').fill("30")
    assert ada.page.evaluate(
        f"[...document.querySelectorAll('audio[data-session-id=\"{b_sid}\"]')].map(a => a.volume)") == [0.3]
    others = ada.page.evaluate(
        f"[...document.querySelectorAll('audio[data-testid=remote-audio]:not([data-session-id=\"{b_sid}\"])')]"
        ".map(a => a.volume)")
    assert others and all(v == 1 for v in others), others
    # Speaker choice: every remote audio element plays on the chosen output (setSinkId).
    ada.tid("devices-button").click()
    output = ada.tid("speaker-select").locator("option").nth(1).get_attribute("value")
    ada.tid("speaker-select").select_option(output)
    ada.page.wait_for_function(
        f"[...document.querySelectorAll('audio[data-testid=remote-audio]')].every(a => a.sinkId === {output!r})",
        timeout=bs.WAIT_MS)
    assert output in ada.page.evaluate("window.__sinks")
    ada.tid("devices-button").click()
    bob.page.wait_for_timeout(300)  # let the speaking ring and the timer tick for the picture
    bob.page.screenshot(path=str(browser_shots.shot_path("call-3-audio.png")))


def test_screen_share_presenter_banner_preview_and_full_screen(people: Any) -> None:
    ada, bob = people("Ada Lovelace"), people("Bob Kahn")
    ada.join("present")
    bob.join("present")
    for p in (ada, bob):
        p.wait_participants(2)
        p.wait_media_connected()
    _unmute(ada)
    # A camera shows inside its owner's tile, on every page (one's own preview too).
    ada.tid("camera-button").click()
    in_tile = bob.page.locator(f'[data-testid="tile"][data-session-id="{ada.session_id}"] [data-testid="remote-video"]')
    expect(in_tile).to_have_count(1, timeout=bs.WAIT_MS)
    bob.page.wait_for_function(
        f"document.querySelector('[data-testid=tile][data-session-id=\"{ada.session_id}\"] video').videoWidth > 0",
        timeout=bs.WAIT_MS)
    expect(_tile(ada, ada.session_id).locator('[data-testid="local-video"]')).to_be_visible()
    ada.tid("screen-button").click()
    # The sharer sees a banner with a preview of what is shared, and can stop from it.
    expect(ada.tid("presenter-banner")).to_be_visible(timeout=bs.WAIT_MS)
    expect(ada.tid("presenter-text")).to_contain_text("You are presenting")
    ada.page.wait_for_function("document.querySelector('[data-testid=presenter-preview]').videoWidth > 0",
                               timeout=bs.WAIT_MS)
    # The others see who presents, the screen itself, and can make it full screen.
    expect(bob.tid("presenter-text")).to_contain_text("Ada Lovelace is presenting", timeout=bs.WAIT_MS)
    bob.page.wait_for_function(
        "[...document.querySelectorAll('[data-testid=remote-screen]')].some(v => v.videoWidth > 0)",
        timeout=bs.WAIT_MS)
    expect(bob.tid("fullscreen-button")).to_be_visible(timeout=bs.WAIT_MS)
    bob.page.wait_for_timeout(1000)  # let the fake screen frames settle for the picture
    bob.page.screenshot(path=str(browser_shots.shot_path("screen-share.png")), full_page=True)
    # Accessibility with real media on the page (camera in a tile, a share, the presenter banner).
    assert browser_shots.axe_violations(bob.page) == []
    assert browser_shots.axe_violations(ada.page) == []
    bob.tid("fullscreen-button").click()
    bob.page.wait_for_function("document.fullscreenElement !== null", timeout=bs.WAIT_MS)
    bob.page.evaluate("document.exitFullscreen()")
    ada.tid("presenter-stop-button").click()
    expect(bob.tid("presenter-banner")).to_be_hidden(timeout=bs.WAIT_MS)
    expect(ada.tid("screen-button")).to_have_attribute("aria-pressed", "false")


def test_the_page_recovers_when_the_server_comes_back(browser: Any, tmp_path: Path) -> None:
    """Bug 4 with a real outage: the server stops for longer than a few attempts, the page says so and offers
    Retry; when the server is back, Retry brings the page back into the call (the session survives the restart in
    the event log, or the page joins afresh), with its controls enabled again."""
    proc = bs.CallsdProcess(tmp_path, max_participants=3)
    proc.start()
    ada = bs.Participant(browser, proc.url, "Ada")
    try:
        ada.join("restart")
        ada.wait_media_connected()
        proc.stop()
        expect(ada.tid("offline-note")).to_be_visible(timeout=bs.WAIT_MS)
        expect(ada.tid("mute-button")).to_be_disabled()
        expect(ada.tid("retry-button")).to_be_visible(timeout=bs.WAIT_MS)
        proc.start()
        # Retry now (through the DOM: the page's own backoff may have got there first and hidden the button).
        ada.page.evaluate("document.querySelector('[data-testid=retry-button]').click()")
        ada.wait_in_call()
        expect(ada.tid("offline-note")).to_be_hidden(timeout=bs.WAIT_MS)
        expect(ada.tid("mute-button")).to_be_enabled()
        expect(ada.tid("error-banner")).to_be_hidden()
        ada.wait_media_connected()
        _unmute(ada)
    finally:
        ada.close()
        proc.stop()
