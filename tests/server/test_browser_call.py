"""End to end: two (or three) people in headless Chromium call each other through the page and the real server.

One ``callsd serve`` subprocess (open mode, ``max_participants = 2``, free loopback ports, a temp data dir) and one
Chromium launch serve the whole module; each participant is a separate browser context with fake media devices.
Each test uses its own channel so that calls do not interfere.

What is asserted is what a user (or the page's own ``getStats()``) observes: names in the participant list, the
muted icon, inbound RTP packet counts growing or stopping, a remote screen-share element decoding frames, the "call
is full" message, and the same session id after a reload.

Set CALLSD_UPDATE_SCREENSHOT=1 to write docs/screenshot.png from the screen-share test.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import browser_support as bs  # tests/ is on pythonpath (pyproject.toml)
import pytest

pytestmark = [pytest.mark.browser, pytest.mark.slow]

import playwright.sync_api as playwright_sync  # noqa: E402

expect = playwright_sync.expect
bs.require_chromium()

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[bs.CallsdProcess]:
    with bs.CallsdProcess(tmp_path_factory.mktemp("callsd"), max_participants=2) as proc:
        yield proc


@pytest.fixture
def people(browser: Any, server: bs.CallsdProcess) -> Iterator[bs.People]:
    made = bs.People(browser, server.url)
    yield made
    made.close()


def _pair(people: Any, channel: str) -> tuple[bs.Participant, bs.Participant]:
    alice, bob = people("Alice"), people("Bob")
    alice.join(channel)
    bob.join(channel)
    alice.wait_participants(2)
    bob.wait_participants(2)
    return alice, bob


def _unmute(p: bs.Participant) -> None:
    p.tid("mute-button").click()
    expect(p.tid("mute-button")).to_have_text("Mute", timeout=bs.WAIT_MS)



def _stalled(p: bs.Participant, kind: str, *, settle_s: float = 1.5, window_s: float = 2.0) -> tuple[int, int]:
    """Wait for in-flight packets to drain, then read the inbound count twice, ``window_s`` apart."""
    p.page.wait_for_timeout(int(settle_s * 1000))
    before = p.inbound(kind)
    p.page.wait_for_timeout(int(window_s * 1000))
    return before, p.inbound(kind)


def test_two_people_see_and_hear_each_other_and_mute_stops_audio(people: Any, server: bs.CallsdProcess) -> None:
    alice, bob = _pair(people, "e2e-audio")
    assert sorted(alice.tid("participant-name").all_inner_texts()) == ["Alice", "Bob"]
    assert sorted(bob.tid("participant-name").all_inner_texts()) == ["Alice", "Bob"]
    alice.wait_media_connected()
    bob.wait_media_connected()
    _unmute(alice)
    _unmute(bob)
    # Audio flows both ways: each side's inbound audio packet count grows.
    alice.wait_inbound_growing("audio")
    bob.wait_inbound_growing("audio")
    # Alice mutes in the UI: Bob sees the muted icon and stops receiving her audio; Alice still hears Bob.
    a_sid = alice.session_id
    alice.tid("mute-button").click()
    expect(alice.tid("mute-button")).to_have_text("Unmute", timeout=bs.WAIT_MS)
    expect(bob.row(a_sid).locator('[data-testid="muted-indicator"]')).to_be_visible(timeout=bs.WAIT_MS)
    before, after = _stalled(bob, "audio")
    assert after == before, f"Bob still receives audio from muted Alice: {before} -> {after}"
    alice.wait_inbound_growing("audio")
    # Unmuting restores the flow.
    _unmute(alice)
    bob.wait_inbound_growing("audio")


def test_screen_share_reaches_the_other_side(people: Any, server: bs.CallsdProcess) -> None:
    alice, bob = _pair(people, "e2e-screen")
    alice.wait_media_connected()
    bob.wait_media_connected()
    a_sid = alice.session_id
    _unmute(alice)
    _unmute(bob)
    # Cameras one after the other (simultaneous ones are test_simultaneous_cameras_both_arrive's subject).
    alice.tid("camera-button").click()
    bob.wait_inbound_growing("video")
    bob.tid("camera-button").click()
    alice.wait_inbound_growing("video")
    expect(bob.page.locator('[data-testid="remote-screen"]')).to_have_count(0)
    alice.tid("screen-button").click()
    expect(alice.tid("screen-button")).to_have_attribute("aria-pressed", "true", timeout=bs.WAIT_MS)
    expect(bob.row(a_sid).locator('[data-testid="screen-indicator"]')).to_be_visible(timeout=bs.WAIT_MS)
    # Bob receives Alice's screen as video, shown in a screen-share element that decodes frames.
    screen = bob.page.locator('[data-testid="remote-screen"]')
    expect(screen.first).to_be_visible(timeout=bs.WAIT_MS)
    bob.page.wait_for_function(
        "[...document.querySelectorAll('[data-testid=remote-screen]')].some(v => v.videoWidth > 0)",
        timeout=bs.WAIT_MS,
    )
    # A raised hand shows on the other side too (and makes the picture tell more).
    alice.tid("hand-button").click()
    expect(bob.row(a_sid).locator('[data-testid="hand-indicator"]')).to_be_visible(timeout=bs.WAIT_MS)
    bob.page.wait_for_timeout(1500)  # let the fake camera/screen frames settle for the picture
    shot = REPO / "docs" / "screenshot.png"
    tmp_shot = Path(server.data_dir) / "screenshot.png"
    bob.page.screenshot(path=str(tmp_shot), full_page=True)
    if os.environ.get("CALLSD_UPDATE_SCREENSHOT") == "1":
        shutil.copyfile(tmp_shot, shot)
    # Stopping the share tells the other side and removes the screen; sharing again brings it back.
    alice.tid("screen-button").click()
    expect(bob.row(a_sid).locator('[data-testid="screen-indicator"]')).to_be_hidden(timeout=bs.WAIT_MS)
    expect(screen).to_have_count(0, timeout=bs.WAIT_MS)
    alice.tid("screen-button").click()
    expect(screen).to_have_count(1, timeout=bs.WAIT_MS)
    # Bob's camera off: Alice's view of it goes away.
    expect(alice.page.locator('[data-testid="remote-video"]')).to_have_count(1, timeout=bs.WAIT_MS)
    bob.tid("camera-button").click()
    expect(alice.page.locator('[data-testid="remote-video"]')).to_have_count(0, timeout=bs.WAIT_MS)


def test_third_join_past_max_participants_shows_call_full(people: Any, server: bs.CallsdProcess) -> None:
    _pair(people, "e2e-full")
    carol = people("Carol")
    carol.join("e2e-full", expect_in_call=False)
    expect(carol.tid("error-banner")).to_be_visible(timeout=bs.WAIT_MS)
    expect(carol.tid("error-banner")).to_have_attribute("data-code", "call_full")
    expect(carol.tid("error-text")).to_contain_text("call is full")
    expect(carol.tid("lobby")).to_be_visible()


def test_reload_reconnects_the_same_session(people: Any, server: bs.CallsdProcess) -> None:
    alice, bob = _pair(people, "e2e-reload")
    bob.wait_media_connected()
    b_sid = bob.session_id
    bob.page.reload()
    bob.wait_in_call()
    assert bob.session_id == b_sid
    bob.wait_participants(2)
    # Still one row for Bob on Alice's side, not a second one, and he is not shown as away.
    alice.wait_participants(2)
    expect(alice.row(b_sid)).to_have_count(1)
    expect(alice.row(b_sid).locator('[data-testid="disconnected-indicator"]')).to_be_hidden(timeout=bs.WAIT_MS)
    # Media is renegotiated on a fresh peer connection, and Alice hears Bob again.
    bob.wait_media_connected()
    _unmute(bob)
    alice.wait_inbound_growing("audio")


def test_reload_restores_incoming_media(people: Any, server: bs.CallsdProcess) -> None:
    alice, bob = _pair(people, "e2e-reload-media")
    bob.wait_media_connected()
    _unmute(alice)
    bob.wait_inbound_growing("audio")
    bob.page.reload()
    bob.wait_in_call()
    bob.wait_media_connected()
    bob.wait_inbound_growing("audio", timeout=10)


def test_simultaneous_cameras_both_arrive(people: Any, server: bs.CallsdProcess) -> None:
    """Both turn their cameras on at once: offers may cross (glare); each still ends up seeing the other."""
    alice, bob = _pair(people, "e2e-glare")
    alice.wait_media_connected()
    bob.wait_media_connected()
    alice.tid("camera-button").click()
    bob.tid("camera-button").click()
    alice.wait_inbound_growing("video", timeout=10)
    bob.wait_inbound_growing("video", timeout=10)


def test_host_mutes_a_participant_then_ends_the_call(people: Any, server: bs.CallsdProcess) -> None:
    alice, bob = _pair(people, "e2e-host")
    alice.wait_media_connected()
    bob.wait_media_connected()
    b_sid = bob.session_id
    _unmute(bob)
    alice.wait_inbound_growing("audio")
    # Alice started the call, so she is host: she mutes Bob from his row.
    alice.row(b_sid).locator('[data-testid="host-mute-button"]').click()
    expect(bob.tid("mute-button")).to_have_text("Unmute", timeout=bs.WAIT_MS)
    expect(alice.row(b_sid).locator('[data-testid="muted-indicator"]')).to_be_visible(timeout=bs.WAIT_MS)
    before, after = _stalled(alice, "audio")
    assert after == before, f"Alice still receives audio from Bob after the host muted him: {before} -> {after}"
    # Bob is not host: he has no host controls. Alice ends the call for everyone.
    expect(bob.tid("host-controls")).to_be_hidden()
    alice.tid("host-end-button").click()
    expect(bob.tid("error-banner")).to_have_attribute("data-code", "call_ended", timeout=bs.WAIT_MS)
    expect(bob.tid("lobby")).to_be_visible()
    expect(alice.tid("lobby")).to_be_visible(timeout=bs.WAIT_MS)


def test_dropped_websocket_reconnects_automatically(people: Any, server: bs.CallsdProcess) -> None:
    alice, bob = _pair(people, "e2e-drop")
    bob.wait_media_connected()
    b_sid = bob.session_id
    bob.page.evaluate("window.callsd.dropConnection()")
    # The page says the connection was lost, then comes back by itself as the same session.
    bob.page.wait_for_function("window.callsd.errorsShown.includes('connection_lost')", timeout=bs.WAIT_MS)
    bob.page.wait_for_function(
        "window.callsd.phase === 'in_call' && window.callsd.ws && window.callsd.ws.readyState === 1",
        timeout=bs.WAIT_MS,
    )
    assert bob.session_id == b_sid
    expect(bob.tid("error-banner")).to_be_hidden(timeout=bs.WAIT_MS)
    alice.wait_participants(2)
    expect(alice.row(b_sid).locator('[data-testid="disconnected-indicator"]')).to_be_hidden(timeout=bs.WAIT_MS)
    # Media comes back on a new peer connection: Alice hears Bob.
    bob.wait_media_connected()
    _unmute(bob)
    alice.wait_inbound_growing("audio")


TOKEN_SECRET = "browser-test-secret-0123456789"


@pytest.fixture(scope="module")
def token_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[bs.CallsdProcess]:
    with bs.CallsdProcess(tmp_path_factory.mktemp("callsd-token"), auth_secret=TOKEN_SECRET) as proc:
        yield proc


def test_token_mode_joins_from_the_url_and_refuses_a_foreign_channel(browser: Any,
                                                                    token_server: bs.CallsdProcess) -> None:
    from callsd.app.auth import create_token

    expires = int(time.time()) + 600
    good = create_token(secret=TOKEN_SECRET, user_id="dana", channels=["ops"], expires_at=expires)
    other = create_token(secret=TOKEN_SECRET, user_id="eve", channels=["finance"], expires_at=expires)
    dana = bs.Participant(browser, token_server.url, "dana")
    eve = bs.Participant(browser, token_server.url, "eve")
    try:
        # No name to type: the token names the user, and the page joins at once.
        dana.open_with_token("ops", good)
        dana.wait_in_call()
        expect(dana.tid("participant-name")).to_have_text(["dana"], timeout=bs.WAIT_MS)
        expect(dana.tid("name-field")).to_be_hidden()
        # A token for another channel is refused with a clear message.
        eve.open_with_token("ops", other)
        expect(eve.tid("error-banner")).to_have_attribute("data-code", "channel_forbidden", timeout=bs.WAIT_MS)
        expect(eve.tid("error-text")).to_contain_text("does not allow this channel")
        expect(eve.tid("lobby")).to_be_visible()
    finally:
        dana.close()
        eve.close()


def test_lobby_lists_calls_in_progress_and_joins_one(people: Any, server: bs.CallsdProcess) -> None:
    alice = people("Alice")
    alice.join("e2e-lobby")
    carol = people("Carol")
    carol.page.goto(server.url + "/", timeout=bs.WAIT_MS)
    item = carol.page.locator('[data-testid="channel-item"][data-channel-id="e2e-lobby"]')
    expect(item).to_be_visible(timeout=bs.WAIT_MS)
    expect(item).to_contain_text("(1)")
    carol.tid("name-input").fill("Carol")
    item.click()
    carol.wait_in_call()
    expect(carol.tid("call-channel")).to_have_text("e2e-lobby")
    carol.wait_participants(2)
    alice.wait_participants(2)
