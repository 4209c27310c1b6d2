"""Names in the browser client against the real server, the authority on them (issue 14, bugs 7, 9 and 10).

The page checks the same rules first (app/static/names.js) and explains them in plain words; when a client skips
those checks (``window.callsd.join``), the server refuses with ``invalid_channel``/``invalid_name`` and the page shows
plain words for those too, never protocol text. Bidi and control characters are stripped by the server, and two
people with the same name are told apart ("evil", "evil (2)").
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import browser_shots
import browser_support as bs  # tests/ is on pythonpath (pyproject.toml)
import pytest

pytestmark = pytest.mark.browser

import playwright.sync_api as playwright_sync  # noqa: E402

expect = playwright_sync.expect
bs.require_chromium()

PROTOCOL_TEXT = ('"display_name"', '"channel_id"', "must be a string", "bad_request", "invalid_")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[bs.CallsdProcess]:
    with bs.CallsdProcess(tmp_path_factory.mktemp("callsd"), max_participants=3) as proc:
        yield proc


@pytest.fixture
def page(browser: Any, server: bs.CallsdProcess) -> Iterator[bs.Participant]:
    p = bs.Participant(browser, server.url, "Ada")
    yield p
    p.close()


def _no_protocol_text(p: bs.Participant) -> None:
    text = p.page.inner_text("body")
    assert not any(t in text for t in PROTOCOL_TEXT), text


def test_channel_rule_is_explained_for_the_form_and_the_link(page: bs.Participant, server: bs.CallsdProcess) -> None:
    page.page.goto(server.url, timeout=bs.WAIT_MS)
    page.tid("name-input").fill("Ada")
    page.tid("channel-input").fill("my channel!")
    page.tid("join-button").click()
    expect(page.tid("channel-error")).to_be_visible()
    assert "letters A-Z, digits, dots, dashes and underscores" in page.tid("channel-error").inner_text()
    expect(page.tid("channel-input")).to_have_attribute("aria-invalid", "true")
    # The same rule for a link: it does not join, it explains.
    page.page.goto(f"{server.url}/?channel={quote('my channel!<x>')}&name=Ada&autojoin=1", timeout=bs.WAIT_MS)
    expect(page.tid("channel-error")).to_be_visible(timeout=bs.WAIT_MS)
    page.page.goto(f"{server.url}/?channel={'c' * 100}&name=Ada&autojoin=1", timeout=bs.WAIT_MS)
    expect(page.tid("channel-error")).to_contain_text("100 characters", timeout=bs.WAIT_MS)
    assert page.page.evaluate("window.callsd.phase") == "lobby"
    browser_shots_path = browser_shots.shot_path("lobby-bad-channel.png")
    page.page.screenshot(path=str(browser_shots_path))
    # A client that skips the checks meets the server's rule, shown in the same plain words.
    page.page.evaluate("window.callsd.join('my channel!')")
    expect(page.tid("error-banner")).to_have_attribute("data-code", "invalid_channel", timeout=bs.WAIT_MS)
    assert "letters A-Z" in page.tid("error-text").inner_text()
    _no_protocol_text(page)


def test_name_rules_blank_and_too_long(page: bs.Participant, server: bs.CallsdProcess) -> None:
    page.page.goto(f"{server.url}/?channel=names", timeout=bs.WAIT_MS)
    page.tid("name-input").fill("    ")
    page.tid("join-button").click()
    expect(page.tid("name-error")).to_contain_text("Type your name")
    long_name = "n" * 300
    page.page.goto(f"{server.url}/?channel=names&name={long_name}&autojoin=1", timeout=bs.WAIT_MS)
    expect(page.tid("name-error")).to_contain_text("at most 64", timeout=bs.WAIT_MS)
    _no_protocol_text(page)
    # Past the page's checks, the server refuses it, and the page says so plainly.
    page.page.evaluate(f"document.querySelector('[data-testid=name-input]').value = '{long_name}'")
    page.page.evaluate("window.callsd.join('names')")
    expect(page.tid("error-banner")).to_have_attribute("data-code", "invalid_name", timeout=bs.WAIT_MS)
    assert "at most 64" in page.tid("error-text").inner_text()
    _no_protocol_text(page)


def test_bidi_names_are_cleaned_by_the_server_and_twins_told_apart(browser: Any, server: bs.CallsdProcess) -> None:
    eve = bs.Participant(browser, server.url, "\u202eevil\u202c")
    twin = bs.Participant(browser, server.url, "evil")
    try:
        eve.join("bidi")
        twin.join("bidi")
        for p in (eve, twin):
            p.wait_participants(2)
            names = p.tid("participant-name").all_inner_texts()
            assert sorted(names) == ["evil", "evil (2)"], names
            assert "\u202e" not in p.page.inner_text("body")
        assert eve.page.evaluate("window.callsd.participants")[eve.session_id]["user_id"] == "evil"
    finally:
        eve.close()
        twin.close()
