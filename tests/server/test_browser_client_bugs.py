"""The browser client's bugs of issue 14, each pinned by what a user sees in headless Chromium.

Most run against the fake signaling server of browser_support (no media plane: fast and deterministic); the name
rules run against the real ``callsd serve`` (the server is the authority on names). A connection outage is made
with Playwright's WebSocket routing: while the gate is down, every new socket the page opens is closed at once, as
if the server were unreachable; the fake server itself keeps running. One Chromium serves the module.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import browser_shots as bs_shots
import browser_support as bs  # tests/ is on pythonpath (pyproject.toml)
import pytest
from fake_calls_server import FakeCallsServer, run_fake_server

pytestmark = pytest.mark.browser

import playwright.sync_api as playwright_sync  # noqa: E402

expect = playwright_sync.expect
bs.require_chromium()

# CALLSD_CLIENT_STATIC: run against another copy of the client (e.g. the one before a fix)
CLIENT_STATIC = Path(os.environ.get("CALLSD_CLIENT_STATIC") or bs.STATIC_DIR)

WS_URL = re.compile(r".*/api/v1/websocket.*")


@pytest.fixture
def fake() -> Iterator[tuple[FakeCallsServer, str]]:
    app = FakeCallsServer(max_participants=3, static_dir=CLIENT_STATIC)
    with run_fake_server(app) as url:
        yield app, url


@pytest.fixture
def people(browser: Any) -> Iterator[Any]:
    made = bs.People(browser)
    yield lambda url, name, **kw: made(name, url=url, **kw)
    made.close()


class Gate:
    """Route the page's WebSockets: ``up`` passes them to the server, ``down`` closes each new one at once."""

    def __init__(self, page: Any) -> None:
        self.up = True
        page.route_web_socket(WS_URL, self._route)

    def _route(self, ws: Any) -> None:
        if self.up:
            ws.connect_to_server()
        else:
            ws.close(code=1011, reason="gate down")


def _sent(app: FakeCallsServer, kind: str) -> list[dict[str, Any]]:
    return [r for r in app.received if r["type"] == kind]


# 1 -------------------------------------------------------------------------------------------------------------
def test_autojoin_link_with_name_joins_in_a_fresh_profile(fake: Any, people: Any) -> None:
    app, url = fake
    ada = people(url, "Ada")
    ada.page.goto(f"{url}/?channel=standup&name=Ada&autojoin=1", timeout=bs.WAIT_MS)
    ada.wait_in_call()
    assert _sent(app, "join")[-1]["data"] == {"channel_id": "standup", "display_name": "Ada", "batch": True}


# 2 -------------------------------------------------------------------------------------------------------------
def test_a_blocked_microphone_cannot_unmute(fake: Any, people: Any) -> None:
    app, url = fake
    ada = people(url, "Ada")
    ada.context.add_init_script(
        "navigator.mediaDevices.getUserMedia = async (c) => {"
        " if (c && c.audio) throw new DOMException('blocked', 'NotAllowedError');"
        " return new MediaStream(); };"
    )
    ada.join("blocked")
    expect(ada.tid("error-banner")).to_have_attribute("data-code", "media_denied", timeout=bs.WAIT_MS)
    ada.tid("mute-button").click()
    expect(ada.tid("error-banner")).to_have_attribute("data-code", "mic_needed", timeout=bs.WAIT_MS)
    assert "blocked" in ada.tid("error-text").inner_text()
    expect(ada.tid("mute-button")).to_have_text("Unmute")
    expect(ada.tid("mute-button")).to_have_attribute("aria-pressed", "true")
    assert _sent(app, "unmute") == []
    expect(ada.row(ada.session_id)).to_have_attribute("data-muted", "true")


# 3, 4, 5 ---------------------------------------------------------------------------------------------------------
def test_an_outage_pauses_controls_clears_speaking_and_recovers_with_retry(fake: Any, people: Any) -> None:
    app, url = fake
    ada, bob = people(url, "Ada"), people(url, "Bob")
    gate = Gate(ada.page)
    ada.join("outage")
    bob.join("outage")
    ada.wait_participants(2)
    a_sid, b_sid = ada.session_id, bob.session_id
    app.push("outage", "user_voice_on", {"session_id": b_sid})
    expect(ada.row(b_sid)).to_have_attribute("data-speaking", "true", timeout=bs.WAIT_MS)
    gate.up = False
    ada.page.evaluate("window.callsd.dropConnection()")
    # 3: while the page cannot reach the server its controls are disabled, and it says why.
    expect(ada.tid("offline-note")).to_be_visible(timeout=bs.WAIT_MS)
    for control in ("mute-button", "hand-button", "screen-button", "camera-button"):
        expect(ada.tid(control)).to_be_disabled()
    expect(ada.tid("leave-button")).to_be_enabled()  # one can always leave
    # 5: nobody is shown speaking during the outage.
    expect(ada.row(b_sid)).to_have_attribute("data-speaking", "false")
    expect(ada.page.locator('[data-testid="tile"][data-speaking="true"]')).to_have_count(0)
    # 4: after a few failed attempts it says so once, keeps trying, and offers Retry.
    expect(ada.tid("retry-button")).to_be_visible(timeout=bs.WAIT_MS)
    expect(ada.tid("error-banner")).to_have_attribute("data-code", "reconnect_failed")
    assert "keeps trying" in ada.tid("error-text").inner_text()
    assert "Could not" not in ada.tid("status-banner").inner_text()
    ada.page.screenshot(path=str(_shot("error-reconnecting.png")))
    gate.up = True
    ada.tid("retry-button").click()
    ada.wait_in_call()
    assert ada.session_id == a_sid
    expect(ada.tid("offline-note")).to_be_hidden(timeout=bs.WAIT_MS)
    expect(ada.tid("error-banner")).to_be_hidden()
    expect(ada.tid("hand-button")).to_be_enabled()
    ada.tid("hand-button").click()
    expect(bob.row(a_sid)).to_have_attribute("data-hand", "true", timeout=bs.WAIT_MS)
    # Coming back online retries at once, whatever the backoff had planned.
    gate.up = False
    ada.page.evaluate("window.callsd.dropConnection()")
    expect(ada.tid("retry-button")).to_be_visible(timeout=bs.WAIT_MS)
    gate.up = True
    ada.page.evaluate("window.dispatchEvent(new Event('online'))")
    ada.wait_in_call()
    expect(ada.tid("offline-note")).to_be_hidden(timeout=bs.WAIT_MS)


# 6 -------------------------------------------------------------------------------------------------------------
def test_a_long_name_does_not_widen_the_page_at_390px(fake: Any, people: Any) -> None:
    app, url = fake
    long_name = "W" * 64
    ada = people(url, long_name, viewport={"width": 390, "height": 844})
    bob = people(url, "Bob")
    ada.join("narrow")
    bob.join("narrow")
    ada.wait_participants(2)
    width = ada.page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, width
    box = ada.row(ada.session_id).bounding_box()
    assert box is not None and box["x"] + box["width"] <= 390
    ada.page.screenshot(path=str(_shot("call-390px.png")), full_page=True)


# 8 -------------------------------------------------------------------------------------------------------------
def test_token_mode_without_a_token_says_an_invite_link_is_needed(fake: Any, people: Any) -> None:
    app, url = fake
    ada = people(url, "Ada")
    ada.page.route("**/api/v1/config", lambda route: route.fulfill(
        status=200, content_type="application/json",
        body='{"auth_mode": "token", "protocol": 1, "allow_screen_sharing": true}'))
    ada.page.goto(f"{url}/?channel=standup", timeout=bs.WAIT_MS)
    expect(ada.tid("token-needed")).to_be_visible(timeout=bs.WAIT_MS)
    assert "invite link" in ada.tid("token-needed").inner_text()
    expect(ada.tid("join-button")).to_be_disabled()
    assert "Type a channel name" not in ada.tid("channel-list-empty").inner_text()
    assert _sent(app, "join") == []
    ada.page.screenshot(path=str(_shot("lobby-token-needed.png")))


# 11 ------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def real(tmp_path_factory: pytest.TempPathFactory) -> Iterator[bs.CallsdProcess]:
    with bs.CallsdProcess(tmp_path_factory.mktemp("callsd"), max_participants=3) as proc:
        yield proc


def test_closing_the_tab_leaves_soon_and_a_reload_comes_back(real: bs.CallsdProcess, people: Any) -> None:
    ada, bob, cy = people(real.url, "Ada"), people(real.url, "Bob"), people(real.url, "Cy")
    ada.join("close")
    bob.join("close")
    cy.join("close")
    ada.wait_participants(3)
    b_sid, c_sid = bob.session_id, cy.session_id
    # A reload resumes the same session: the page said `going_away` on pagehide and came back within its 3 s.
    cy.page.reload()
    cy.wait_in_call()
    assert cy.session_id == c_sid
    ada.wait_participants(3)
    # Closing the tab says `going_away` too: the others see the person go after 3 s, not "reconnecting" for the
    # 30 s reconnect window (the wait below is shorter than that window).
    bob.page.close()
    expect(ada.row(b_sid)).to_have_count(0, timeout=12_000)
    ada.wait_participants(2)


def _shot(name: str) -> Path:
    return bs_shots.shot_path(name)


# Clicks the server never got ------------------------------------------------------------------------------------
def test_a_hand_raise_and_an_unmute_the_server_never_got_are_asked_again_when_the_session_resumes(
        fake: Any, people: Any) -> None:
    """A cluster owner that stops acting for a call (its lease lost under load) drops the frames on their way to it,
    and the session is resumed elsewhere: the page's clicks must not be lost with them. The page keeps each ask as
    an intent until the server's broadcast confirms it, and asks again when the resumed session's state does not
    show it yet. Here Playwright's WebSocket routing swallows the first ``raise_hand`` and the first ``unmute``; the
    drop that follows stands for the move."""
    app, url = fake
    ada, bob = people(url, "Ada"), people(url, "Bob")
    swallowed: dict[str, str | bytes] = {}

    def route(ws: Any) -> None:
        server = ws.connect_to_server()

        def from_page(message: str | bytes) -> None:
            for kind in ("raise_hand", "unmute"):
                if kind not in swallowed and f'"{kind}"' in str(message):
                    swallowed[kind] = message
                    return
            server.send(message)

        ws.on_message(from_page)

    ada.page.route_web_socket(WS_URL, route)
    ada.join("lost-click")
    bob.join("lost-click")
    ada.wait_participants(2)
    a_sid = ada.session_id
    ada.tid("hand-button").click()
    ada.tid("mute-button").click()
    deadline = time.monotonic() + bs.WAIT_MS / 1000
    while len(swallowed) < 2:
        assert time.monotonic() < deadline, f"the page sent only {sorted(swallowed)}"
        ada.page.wait_for_timeout(50)
    assert _sent(app, "raise_hand") == [] and _sent(app, "unmute") == []
    expect(ada.tid("hand-button")).to_have_attribute("aria-pressed", "false")  # the buttons show the server's word
    expect(ada.tid("mute-button")).to_have_text("Unmute")
    ada.page.evaluate("window.callsd.dropConnection()")
    expect(bob.row(a_sid)).to_have_attribute("data-hand", "true", timeout=bs.WAIT_MS)
    expect(bob.row(a_sid)).to_have_attribute("data-muted", "false", timeout=bs.WAIT_MS)
    expect(ada.tid("hand-button")).to_have_attribute("aria-pressed", "true", timeout=bs.WAIT_MS)
    expect(ada.tid("mute-button")).to_have_text("Mute", timeout=bs.WAIT_MS)
    assert ada.session_id == a_sid and len(_sent(app, "raise_hand")) == 1 and len(_sent(app, "unmute")) == 1
    ada.tid("hand-button").click()  # the intent was settled: the next click lowers
    expect(bob.row(a_sid)).to_have_attribute("data-hand", "false", timeout=bs.WAIT_MS)
