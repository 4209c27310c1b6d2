"""Chromium pages of one call on three cluster nodes: they hear each other through the owner; the owner is killed
with SIGKILL: the pages on the surviving nodes keep their WebSocket, are moved to the new owner, renegotiate and
hear each other again, without a reload."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import browser_support as bs
import pytest
from cluster_support import cluster_node, owner_of
from serve_support import ServeProcess

pytestmark = [pytest.mark.browser, pytest.mark.slow]

import playwright.sync_api as playwright_sync  # noqa: E402

expect = playwright_sync.expect
bs.require_chromium()


def _unmute(p: bs.Participant) -> None:
    p.tid("mute-button").click()
    expect(p.tid("mute-button")).to_have_text("Mute", timeout=bs.WAIT_MS)


def test_pages_on_surviving_nodes_hear_each_other_again_after_the_owner_dies(browser: Any, pg_url: str,
                                                                              tmp_path: Path) -> None:
    nodes: dict[str, ServeProcess] = {name: cluster_node(tmp_path, pg_url, name) for name in ("n1", "n2", "n3")}
    for node in nodes.values():
        node.start()
    people = bs.People(browser)
    try:
        alice = people("Alice", url=nodes["n1"].url)
        bob = people("Bob", url=nodes["n2"].url)
        carol = people("Carol", url=nodes["n3"].url)
        alice.join("room")  # first: n1 owns the call
        bob.join("room")
        carol.join("room")
        for p in (alice, bob, carol):
            p.wait_participants(3)
            _unmute(p)
        assert owner_of(pg_url, "room") == ("n1", 1)
        for p in (alice, bob, carol):
            p.wait_inbound_growing("audio")  # through n1's media plane, relayed signaling for bob and carol
        session_ids = (bob.session_id, carol.session_id)

        nodes["n1"].kill()
        for p in (bob, carol):  # the node keeping the page's socket passes the new owner's join_ack on
            p.page.wait_for_function(
                "window.callsd.log.filter(m => m.dir === 'in' && m.type === 'join_ack').length >= 2",
                timeout=10_000)
        owner, epoch = owner_of(pg_url, "room")
        assert owner in ("n2", "n3") and epoch == 2
        for p in (bob, carol):
            p.wait_media_connected()
        for p in (bob, carol):
            p.wait_inbound_growing("audio")  # a new peer connection with the new owner, no reload
        assert (bob.session_id, carol.session_id) == session_ids  # the same sessions, resumed
        assert bob.page.evaluate("window.callsd.phase") == "in_call"
    finally:
        people.close()
        for node in nodes.values():
            node.stop()
