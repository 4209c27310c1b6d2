"""The browser client as a meeting product (issue 14): presence tiles, views and pinning, toasts and notices, the
call timer, keyboard shortcuts, the invite link, device pickers and the level meter, and accessibility (axe-core).

Against the fake signaling server of browser_support: fast, and server events can be pushed at will. The media
features that need real remote audio (speaker choice, per-participant volume, screen share) are in
test_browser_client_media.py, against the real server. One Chromium serves the module.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import browser_shots
import browser_support as bs  # tests/ is on pythonpath (pyproject.toml)
import pytest
from fake_calls_server import FakeCallsServer, run_fake_server

pytestmark = pytest.mark.browser

import playwright.sync_api as playwright_sync  # noqa: E402

expect = playwright_sync.expect
bs.require_chromium()


@pytest.fixture
def fake() -> Iterator[tuple[FakeCallsServer, str]]:
    app = FakeCallsServer(max_participants=4)
    with run_fake_server(app) as url:
        yield app, url


@pytest.fixture
def people(browser: Any) -> Iterator[Any]:
    made = bs.People(browser)
    yield lambda url, name, **kw: made(name, url=url, **kw)
    made.close()


def _tile(p: bs.Participant, sid: str) -> Any:
    return p.page.locator(f'[data-testid="tile"][data-session-id="{sid}"]')


def _sent(app: FakeCallsServer, kind: str, sid: str | None = None) -> int:
    return sum(1 for r in app.received if r["type"] == kind)


def _blur(p: bs.Participant) -> None:
    p.page.evaluate("document.activeElement && document.activeElement.blur()")


def test_tiles_speaking_pin_views_toasts_and_notices(fake: Any, people: Any) -> None:
    app, url = fake
    ada, bob = people(url, "Ada Lovelace"), people(url, "Bob")
    ada.join("tiles")
    bob.join("tiles")
    ada.wait_participants(2)
    a_sid, b_sid = ada.session_id, bob.session_id
    # A tile per participant: initials, a colour that is the same on every page, the name, muted icon.
    expect(ada.tid("tile")).to_have_count(2)
    expect(_tile(ada, a_sid).locator('[data-testid="tile-avatar"]')).to_have_text("AL")
    expect(_tile(ada, b_sid).locator('[data-testid="tile-avatar"]')).to_have_text("B")
    colour = "el => getComputedStyle(el).backgroundColor"
    assert _tile(ada, b_sid).locator('[data-testid="tile-avatar"]').evaluate(colour) == \
        _tile(bob, b_sid).locator('[data-testid="tile-avatar"]').evaluate(colour)
    expect(_tile(ada, b_sid).locator('[data-testid="tile-muted"]')).to_be_visible()
    # The speaking ring follows user_voice_on/off.
    app.push("tiles", "user_voice_on", {"session_id": b_sid})
    expect(_tile(ada, b_sid)).to_have_attribute("data-speaking", "true", timeout=bs.WAIT_MS)
    app.push("tiles", "user_voice_off", {"session_id": b_sid})
    expect(_tile(ada, b_sid)).to_have_attribute("data-speaking", "false", timeout=bs.WAIT_MS)
    # A participant whose media never connected is named, not left silent (user_media_state, issue 11).
    no_media = ada.row(b_sid).locator('[data-testid="no-media-indicator"]')
    expect(no_media).to_be_hidden()
    app.push("tiles", "user_media_state", {"session_id": b_sid, "state": "failed", "reason": "no_ice_check"})
    expect(no_media).to_be_visible(timeout=bs.WAIT_MS)
    expect(ada.tid("toast").filter(has_text="Bob has no audio connection")).to_have_count(1, timeout=bs.WAIT_MS)
    app.push("tiles", "user_media_state", {"session_id": b_sid, "state": "connected", "reason": ""})
    expect(no_media).to_be_hidden(timeout=bs.WAIT_MS)
    # Pin: speaker view with Bob large; the view button goes back to the grid.
    _tile(ada, b_sid).locator('[data-testid="pin-button"]').click()
    expect(ada.tid("stage")).to_have_attribute("data-view", "speaker")
    expect(_tile(ada, b_sid)).to_have_attribute("data-pinned", "true")
    expect(_tile(ada, b_sid)).to_have_class("ptile featured")
    ada.tid("view-button").click()
    expect(ada.tid("stage")).to_have_attribute("data-view", "grid")
    # Join and leave toasts.
    cy = people(url, "Cy")
    cy.join("tiles")
    expect(ada.tid("toast").filter(has_text="Cy joined")).to_be_visible(timeout=bs.WAIT_MS)
    cy.tid("leave-button").click()
    expect(ada.tid("toast").filter(has_text="Cy left")).to_be_visible(timeout=bs.WAIT_MS)
    # Shortcuts: M unmutes (server-confirmed), H raises the hand; the host's actions are announced to Bob.
    _blur(bob)
    bob.page.keyboard.press("m")
    expect(bob.tid("mute-button")).to_have_text("Mute", timeout=bs.WAIT_MS)
    bob.page.keyboard.press("h")
    expect(ada.row(b_sid)).to_have_attribute("data-hand", "true", timeout=bs.WAIT_MS)
    expect(_tile(ada, b_sid).locator('[data-testid="tile-hand"]')).to_be_visible()
    ada.row(b_sid).locator('[data-testid="host-mute-button"]').click()
    expect(bob.tid("toast").filter(has_text="Ada Lovelace muted you")).to_be_visible(timeout=bs.WAIT_MS)
    expect(bob.tid("mute-button")).to_have_text("Unmute")
    ada.row(b_sid).locator('[data-testid="host-lower-hand-button"]').click()
    expect(bob.tid("toast").filter(has_text="lowered your hand")).to_be_visible(timeout=bs.WAIT_MS)
    # Space is push-to-talk: unmuted while held, muted again on release.
    _blur(bob)
    bob.page.keyboard.down(" ")
    expect(bob.tid("mute-button")).to_have_text("Mute", timeout=bs.WAIT_MS)
    bob.page.keyboard.up(" ")
    expect(bob.tid("mute-button")).to_have_text("Unmute", timeout=bs.WAIT_MS)
    # The call timer runs; the random session id is not shown.
    expect(ada.tid("call-timer")).to_have_text(__import__("re").compile(r"^\d+:\d\d$"))
    expect(ada.tid("my-session-id")).to_be_hidden()
    assert a_sid not in ada.page.inner_text("body")


def test_invite_link_and_token(fake: Any, people: Any) -> None:
    app, url = fake
    ada = people(url, "Ada")
    ada.join("invite")
    ada.tid("invite-button").click()
    expect(ada.tid("invite-link")).to_have_value(f"{url}/?channel=invite")
    tok = people(url, "T")
    tok.page.route("**/api/v1/config", lambda route: route.fulfill(
        status=200, content_type="application/json", body='{"auth_mode": "token", "allow_screen_sharing": true}'))
    tok.page.goto(f"{url}/?channel=invite&token=abc.def", timeout=bs.WAIT_MS)
    tok.wait_in_call()
    tok.tid("invite-button").click()
    expect(tok.tid("invite-link")).to_have_value(f"{url}/?channel=invite&token=abc.def")


def test_device_pickers_level_meter_switching_and_hotplug(fake: Any, people: Any) -> None:
    app, url = fake
    ada = people(url, "Ada")
    ada.page.goto(f"{url}/?channel=devices", timeout=bs.WAIT_MS)
    # The lobby lists the fake devices and shows a live level meter before joining.
    expect(ada.tid("mic-select").locator("option")).to_have_count(3, timeout=bs.WAIT_MS)
    expect(ada.tid("speaker-select").locator("option")).to_have_count(3)
    expect(ada.tid("camera-select").locator("option")).to_have_count(1)
    ada.page.wait_for_function(
        "Number(document.querySelector('[data-testid=mic-level]').getAttribute('aria-valuenow')) > 0",
        timeout=bs.WAIT_MS)
    ada.tid("preview-camera-button").click()
    expect(ada.tid("preview-video")).to_be_visible()
    ada.page.wait_for_function("document.querySelector('[data-testid=preview-video]').videoWidth > 0",
                               timeout=bs.WAIT_MS)
    ada.page.screenshot(path=str(browser_shots.shot_path("lobby.png")))
    ada.tid("name-input").fill("Ada")
    ada.tid("join-button").click()
    ada.wait_in_call()
    ada.page.wait_for_function("window.callsd.outgoing.mic && window.callsd.outgoing.mic.sender.track",
                               timeout=bs.WAIT_MS)
    before = ada.page.evaluate("window.callsd.outgoing.mic.sender.track.id")
    # Choosing another microphone during the call swaps the sending track, no renegotiation.
    ada.tid("devices-button").click()
    expect(ada.tid("mic-select")).to_be_visible()
    second = ada.tid("mic-select").locator("option").nth(2).get_attribute("value")
    ada.tid("mic-select").select_option(second)
    ada.page.wait_for_function("window.callsd.micSwitches === 1", timeout=bs.WAIT_MS)
    after = ada.page.evaluate("window.callsd.outgoing.mic.sender.track.id")
    assert after != before
    source = ada.page.evaluate(
        """async () => { const ids = []; (await window.callsd.pc.getStats()).forEach(r => {
             if (r.type === 'media-source' && r.kind === 'audio') ids.push(r.trackIdentifier); }); return ids; }""")
    assert after in source, source
    assert ada.page.evaluate("window.callsd.outgoing.mic.sender.track.getSettings().deviceId") == second
    # The camera picker swaps the camera's sending track too (one fake camera here: it is opened afresh).
    ada.tid("camera-button").click()
    ada.page.wait_for_function("window.callsd.outgoing.cam && window.callsd.outgoing.cam.sender.track",
                               timeout=bs.WAIT_MS)
    cam_before = ada.page.evaluate("window.callsd.outgoing.cam.sender.track.id")
    ada.tid("camera-select").dispatch_event("change")
    ada.page.wait_for_function(
        f"window.callsd.outgoing.cam.sender.track && window.callsd.outgoing.cam.sender.track.id !== {cam_before!r}",
        timeout=bs.WAIT_MS)
    expect(ada.tid("local-video")).to_be_visible()
    # Hot-plug: a devicechange re-reads the device lists.
    ada.page.evaluate("navigator.mediaDevices.dispatchEvent(new Event('devicechange'))")
    ada.page.wait_for_function("window.callsd.deviceChanges === 1", timeout=bs.WAIT_MS)
    expect(ada.tid("mic-select")).to_have_value(second)
    # Speaking into a muted microphone (the fake device beeps) brings up "You are muted".
    expect(ada.tid("muted-hint")).to_be_visible(timeout=bs.WAIT_MS)


def test_no_serious_accessibility_violations_in_lobby_and_call(fake: Any, people: Any) -> None:
    app, url = fake
    ada, bob = people(url, "Ada"), people(url, "Bob")
    ada.page.goto(f"{url}/?channel=a11y", timeout=bs.WAIT_MS)
    expect(ada.tid("mic-select").locator("option")).to_have_count(3, timeout=bs.WAIT_MS)
    assert browser_shots.axe_violations(ada.page) == []
    ada.tid("name-input").fill("Ada")
    ada.tid("join-button").click()
    ada.wait_in_call()
    bob.join("a11y")
    ada.wait_participants(2)
    ada.tid("hand-button").click()
    expect(ada.tid("hand-button")).to_have_attribute("aria-pressed", "true", timeout=bs.WAIT_MS)
    ada.tid("devices-button").click()
    assert browser_shots.axe_violations(ada.page) == []
