"""The browser client's call-state UI, in headless Chromium, against a fake signaling server (no media plane).

These tests pin what a user sees for each protocol event — participants, mute, hand, host badge and host controls,
error messages, automatic reconnect and reload — without depending on the media path. The end-to-end tests with
the real server and real media are in test_browser_call.py. One Chromium launch serves the whole module.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import browser_support as bs  # tests/ is on pythonpath (pyproject.toml)
import pytest
from fake_calls_server import FakeCallsServer, run_fake_server

pytestmark = pytest.mark.browser

import playwright.sync_api as playwright_sync  # noqa: E402

expect = playwright_sync.expect
bs.require_chromium()


@pytest.fixture
def fake() -> Iterator[tuple[FakeCallsServer, str]]:
    app = FakeCallsServer(max_participants=2)
    with run_fake_server(app) as url:
        yield app, url


@pytest.fixture
def people(browser: Any, fake: tuple[FakeCallsServer, str]) -> Iterator[list[bs.Participant]]:
    made: list[bs.Participant] = []
    yield made
    for p in made:
        p.close()


def _person(browser: Any, url: str, people: list[bs.Participant], name: str) -> bs.Participant:
    p = bs.Participant(browser, url, name)
    people.append(p)
    return p


def test_two_people_see_each_other_with_host_badge_and_mute_state(browser: Any, fake: Any, people: Any) -> None:
    app, url = fake
    alice = _person(browser, url, people, "Alice")
    bob = _person(browser, url, people, "Bob")
    alice.join("standup")
    bob.join("standup")
    for who in (alice, bob):
        who.wait_participants(2)
        names = who.tid("participant-name").all_inner_texts()
        assert sorted(names) == ["Alice", "Bob"]
    a_sid, b_sid = alice.session_id, bob.session_id
    # Alice started the call: she is host for both, and only she sees host controls.
    assert bob.row(a_sid).locator('[data-testid="host-badge"]').is_visible()
    assert not bob.row(b_sid).locator('[data-testid="host-badge"]').is_visible()
    assert alice.tid("host-controls").is_visible()
    assert not bob.tid("host-controls").is_visible()
    assert alice.row(b_sid).locator('[data-testid="host-remove-button"]').is_visible()
    assert not alice.row(b_sid).locator('[data-testid="host-lower-hand-button"]').is_visible()
    # Sessions join muted; unmuting shows on both sides, from the server's broadcast.
    assert bob.row(b_sid).get_attribute("data-muted") == "true"
    expect(alice.row(b_sid)).to_have_attribute("data-muted", "true")  # learnt from user_joined alone
    expect(alice.row(b_sid).locator('[data-testid="host-mute-button"]')).to_be_hidden()
    expect(alice.tid("host-stop-screen-button")).to_be_disabled()
    assert alice.tid("mute-button").inner_text() == "Unmute"
    alice.tid("mute-button").click()
    bob.page.wait_for_function(
        f"document.querySelector('[data-session-id=\"{a_sid}\"]').dataset.muted === 'false'", timeout=bs.WAIT_MS
    )
    expect(alice.tid("mute-button")).to_have_text("Mute", timeout=bs.WAIT_MS)
    expect(bob.row(a_sid).locator('[data-testid="muted-indicator"]')).to_be_hidden()


def test_raise_hand_reaction_and_host_lower_hand(browser: Any, fake: Any, people: Any) -> None:
    app, url = fake
    alice = _person(browser, url, people, "Alice")
    bob = _person(browser, url, people, "Bob")
    alice.join("hands")
    bob.join("hands")
    alice.wait_participants(2)
    b_sid = bob.session_id
    bob.tid("hand-button").click()
    alice.row(b_sid).locator('[data-testid="hand-indicator"]').wait_for(state="visible", timeout=bs.WAIT_MS)
    expect(bob.tid("hand-button")).to_have_text("Lower hand", timeout=bs.WAIT_MS)
    alice.row(b_sid).locator('[data-testid="host-lower-hand-button"]').click()
    bob.page.wait_for_function(
        "document.querySelector('[data-testid=hand-button]').textContent === 'Raise hand'", timeout=bs.WAIT_MS
    )
    bob.page.locator('[data-testid="reaction-button"][data-emoji="🎉"]').click()
    alice.tid("reaction").first.wait_for(state="visible", timeout=bs.WAIT_MS)
    # Drawn as an icon (no emoji font needed); the emoji itself is on the element.
    assert alice.tid("reaction").first.get_attribute("data-emoji") == "🎉"
    assert "Bob" in alice.tid("reaction").first.inner_text()


def test_third_join_shows_call_full(browser: Any, fake: Any, people: Any) -> None:
    app, url = fake
    a, b, c = (_person(browser, url, people, n) for n in ("A", "B", "C"))
    a.join("full")
    b.join("full")
    c.join("full", expect_in_call=False)
    c.tid("error-banner").wait_for(state="visible", timeout=bs.WAIT_MS)
    assert c.tid("error-banner").get_attribute("data-code") == "call_full"
    assert "call is full" in c.tid("error-text").inner_text().lower()
    assert c.tid("lobby").is_visible()


def test_screen_already_shared_message(browser: Any, fake: Any, people: Any) -> None:
    app, url = fake
    alice = _person(browser, url, people, "Alice")
    bob = _person(browser, url, people, "Bob")
    alice.join("share")
    bob.join("share")
    alice.tid("screen-button").click()
    a_sid = alice.session_id
    bob.row(a_sid).locator('[data-testid="screen-indicator"]').wait_for(state="visible", timeout=bs.WAIT_MS)
    # The button is disabled while someone else shares; a forced attempt gets the server's refusal, shown clearly.
    assert bob.tid("screen-button").is_disabled()
    bob.page.evaluate("window.callsd.send('screen_on', {stream_id: 'x'})")
    bob.tid("error-banner").wait_for(state="visible", timeout=bs.WAIT_MS)
    assert bob.tid("error-banner").get_attribute("data-code") == "screen_already_shared"
    assert "already sharing" in bob.tid("error-text").inner_text()
    # The host stops the share: the sharer's button resets.
    alice.tid("host-stop-screen-button").click()
    alice.page.wait_for_function(
        "document.querySelector('[data-testid=screen-button]').getAttribute('aria-pressed') === 'false'",
        timeout=bs.WAIT_MS,
    )


def test_dropped_socket_reconnects_same_session(browser: Any, fake: Any, people: Any) -> None:
    app, url = fake
    alice = _person(browser, url, people, "Alice")
    bob = _person(browser, url, people, "Bob")
    alice.join("drop")
    bob.join("drop")
    a_sid = alice.session_id
    app.drop_all()
    # Both pages notice, say so, and come back on their own with the same session ids.
    alice.page.wait_for_function(
        "window.callsd.log.some(m => m.dir === 'out' && m.type === 'reconnect')", timeout=bs.WAIT_MS
    )
    alice.page.wait_for_function(
        "window.callsd.phase === 'in_call' && window.callsd.ws && window.callsd.ws.readyState === 1",
        timeout=bs.WAIT_MS,
    )
    assert alice.session_id == a_sid
    alice.wait_participants(2)
    bob.wait_participants(2)
    # The loss was announced, and the message went away once the session was back.
    assert "connection_lost" in alice.page.evaluate("window.callsd.errorsShown")
    expect(alice.tid("error-banner")).to_be_hidden()


def test_reload_rejoins_same_session_and_host_remove(browser: Any, fake: Any, people: Any) -> None:
    app, url = fake
    alice = _person(browser, url, people, "Alice")
    bob = _person(browser, url, people, "Bob")
    alice.join("reload")
    bob.join("reload")
    b_sid = bob.session_id
    # A reload keeps the session: the page says `going_away` on pagehide and comes back within its 3 s.
    bob.page.reload()
    bob.wait_in_call()
    assert bob.session_id == b_sid
    bob.wait_participants(2)
    assert [r for r in app.received if r["type"] == "reconnect"][-1]["data"]["session_id"] == b_sid
    # The host removes Bob: he is told, and is back in the lobby.
    alice.row(b_sid).locator('[data-testid="host-remove-button"]').click()
    bob.tid("error-banner").wait_for(state="visible", timeout=bs.WAIT_MS)
    assert bob.tid("error-banner").get_attribute("data-code") == "removed"
    assert bob.tid("lobby").is_visible()
    alice.wait_participants(1)


def test_reload_with_a_forgotten_session_joins_afresh(browser: Any, fake: Any, people: Any) -> None:
    app, url = fake
    alice = _person(browser, url, people, "Alice")
    alice.join("restart")
    old = alice.session_id
    # The server no longer knows the stored session (its reconnect window passed, or it restarted).
    alice.page.evaluate(
        "sessionStorage.setItem('callsd.session', JSON.stringify({session_id: 'gone', channel_id: 'restart'}))"
    )
    alice.page.reload()
    alice.wait_in_call()
    assert alice.session_id not in ("gone", old)
    reconnects = [r for r in app.received if r["type"] == "reconnect"]
    assert reconnects and reconnects[-1]["data"]["session_id"] == "gone"
    assert [r["data"]["display_name"] for r in app.received if r["type"] == "join"] == ["Alice", "Alice"]
    # The new session is this page's (the old one stays in the fake's call, shown as away, until it times out).
    mine = alice.row(alice.session_id)
    expect(mine.locator('[data-testid="you-badge"]')).to_be_visible(timeout=bs.WAIT_MS)
    expect(alice.row(old).locator('[data-testid="disconnected-indicator"]')).to_be_visible()
    expect(alice.tid("error-banner")).to_be_hidden()


def test_speaking_make_host_and_server_shutdown_are_shown(browser: Any, fake: Any, people: Any) -> None:
    app, url = fake
    alice = _person(browser, url, people, "Alice")
    bob = _person(browser, url, people, "Bob")
    alice.join("misc")
    bob.join("misc")
    alice.wait_participants(2)
    b_sid = bob.session_id
    # Voice activity from the server lights Bob's speaking dot, and turns it off again.
    app.push("misc", "user_voice_on", {"session_id": b_sid})
    expect(alice.row(b_sid)).to_have_attribute("data-speaking", "true", timeout=bs.WAIT_MS)
    app.push("misc", "user_voice_off", {"session_id": b_sid})
    expect(alice.row(b_sid)).to_have_attribute("data-speaking", "false", timeout=bs.WAIT_MS)
    # Alice hands the host role to Bob: the badge moves and so do the host controls.
    alice.row(b_sid).locator('[data-testid="host-make-button"]').click()
    expect(bob.tid("host-controls")).to_be_visible(timeout=bs.WAIT_MS)
    expect(alice.tid("host-controls")).to_be_hidden(timeout=bs.WAIT_MS)
    expect(alice.row(b_sid).locator('[data-testid="host-badge"]')).to_be_visible()
    # The server announces a shutdown: everyone is told.
    app.push("misc", "server_shutdown", {"drain_timeout_seconds": 30})
    expect(alice.tid("error-banner")).to_have_attribute("data-code", "server_shutdown", timeout=bs.WAIT_MS)
