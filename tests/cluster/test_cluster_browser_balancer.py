"""Chromium pages and `callsd loadtest` users of one call behind a real HAProxy running deploy/proxy/haproxy.cfg
(round-robin over three nodes): their sockets land on different nodes, every page hears the other pages (decoded
audio: inbound-rtp energy grows) and receives every other user's audio packets; the load users receive every
page's audio and each other's. Then `kill -9` of the owner: within
10 s every page hears the others again without a reload (pages of the dead node reconnect through the balancer,
the others are moved by the node keeping their socket), `callsd replay --verify` passes over the PostgreSQL log,
and every hand raise or lower a page saw acknowledged is in the log, in order."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import browser_support as bs
import pytest
from callsd.adapters.store.opening import open_store
from callsd.core.calls.events import LowerHand, RaiseHand
from cluster_support import cluster_node, lease_of, node_metric, one_call_load
from haproxy_support import HAProxy
from process_support import log_tails_on_failure
from serve_support import ServeProcess

pytestmark = [pytest.mark.browser, pytest.mark.slow]

import playwright.sync_api as playwright_sync  # noqa: E402

expect = playwright_sync.expect
bs.require_chromium()

# Every hand raise/lower broadcast a page receives, on any of its sockets, kept for the whole life of the page (the
# client's own log keeps the last 200 messages): the acknowledged inputs. A reload would empty it.
RECORD_ACKS = """
(() => {
  window.__acks = [];
  const Native = window.WebSocket;
  window.WebSocket = class extends Native {
    constructor(...args) {
      super(...args);
      this.addEventListener("message", (e) => {
        try {
          const m = JSON.parse(e.data);
          if (m.type === "user_raised_hand" || m.type === "user_lowered_hand") window.__acks.push([m.type, m.data.session_id]);
        } catch (_) {}
      });
    }
  };
})();
"""

INBOUND_AUDIO = """async () => {
  const out = {};
  if (!window.callsd.pc) return out;
  (await window.callsd.pc.getStats()).forEach((s) => {
    if (s.type === "inbound-rtp" && s.kind === "audio")
      out[s.id] = [s.packetsReceived || 0, s.totalAudioEnergy || 0, s.totalSamplesReceived || 0];
  });
  return out;
}"""

HAND_EVENTS = {"user_raised_hand": "RaiseHand", "user_lowered_hand": "LowerHand"}


def _hears(p: bs.Participant, *, decoded: int, packets: int, until: float) -> float:
    """Wait until the page's inbound audio grows on ``packets`` streams, ``decoded`` of them with audio energy
    (a decoded, non-silent signal); returns when that was seen (time.monotonic)."""
    while True:
        before = p.page.evaluate(INBOUND_AUDIO)
        p.page.wait_for_timeout(700)
        after = p.page.evaluate(INBOUND_AUDIO)
        now = time.monotonic()
        grown = [(after[k][1] > before[k][1] and after[k][2] > before[k][2], after[k][0] > before[k][0])
                 for k in after if k in before]
        if sum(e for e, _ in grown) >= decoded and sum(g for _, g in grown) >= packets:
            return now
        if now > until:
            raise AssertionError(f"{p.name}: inbound audio {after} (was {before})\n{p.debug()}")


def _hand(p: bs.Participant, kind: str) -> None:
    """Raise or lower the hand with the page's button and wait for the server's acknowledgement (the broadcast)."""
    sid = p.session_id
    count = f"window.__acks.filter(a => a[0] === '{kind}' && a[1] === '{sid}').length"
    seen = int(p.page.evaluate(count))
    p.tid("hand-button").click()
    try:
        p.page.wait_for_function(f"{count} > {seen}", timeout=bs.WAIT_MS)
    except playwright_sync.TimeoutError:
        acks = p.page.evaluate("window.__acks")
        raise AssertionError(f"{p.name}: no {kind} for {sid} in {bs.WAIT_MS} ms; acks {acks}\n{p.debug()}") from None


def test_pages_and_load_users_behind_haproxy_hear_each_other_again_after_kill_9(browser: Any, pg_url: str,
                                                                                  tmp_path: Path) -> None:
    nodes = {name: cluster_node(tmp_path, pg_url, name) for name in ("n1", "n2", "n3")}
    balancer = HAProxy(tmp_path, [(name, node.port) for name, node in nodes.items()])
    people = bs.People(browser, balancer.url, init_script=RECORD_ACKS)
    with log_tails_on_failure({f"node {name}": node.log_path for name, node in nodes.items()}):
        _run(nodes, balancer, people, pg_url, tmp_path)


def _run(nodes: dict[str, ServeProcess], balancer: HAProxy, people: bs.People, pg_url: str, tmp_path: Path) -> None:
    """The steps of the module docstring; the caller adds the nodes' logs to a failure."""
    out = tmp_path / "load.json"
    load_users = 2
    load: subprocess.Popen[str] | None = None
    try:
        for node in nodes.values():
            node.start()
        balancer.start()
        load = subprocess.Popen(
            one_call_load([balancer.url], load_users, 75, out, reconnect=True), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path)
        deadline = time.monotonic() + 30
        while (lease := lease_of(pg_url)) is None:  # the load users joined first: their call's channel
            assert time.monotonic() < deadline, "the load test's call never started"
            time.sleep(0.2)
        owner, epoch, stream = lease
        channel = stream.removeprefix("channel/")
        pages = [people(name) for name in ("Alice", "Bob", "Carol")]
        for p in pages:
            p.join(channel)
        for p in pages:
            p.wait_participants(len(pages) + load_users)
            p.tid("mute-button").click()
            expect(p.tid("mute-button")).to_have_text("Mute", timeout=bs.WAIT_MS)
        others = len(pages) + load_users - 1
        for p in pages:
            _hears(p, decoded=len(pages) - 1, packets=others, until=time.monotonic() + 30)
        sockets = {name: node_metric(node.url, "callsd_cluster_client_sockets") for name, node in nodes.items()}
        print("client sockets per node:", sockets, "owner:", owner)
        assert sum(sockets.values()) == len(pages) + load_users, sockets
        assert sum(1 for n in sockets.values() if n) >= 2, sockets  # one call's users on different nodes
        sessions = [p.session_id for p in pages]
        for p in pages:
            _hand(p, "user_raised_hand")

        # The owner now: under load an owner whose lease renewal came back too late gives the call up and a node
        # takes it at the next epoch (a move the pages ride through, their clicks included); kill the one now.
        owner, epoch, _ = lease_of(pg_url) or ("", 0, "")
        killed = time.monotonic()
        nodes[owner].kill()
        back = [_hears(p, decoded=len(pages) - 1, packets=len(pages) - 1, until=killed + 10) - killed
                for p in pages]
        print("audio back at the pages after kill -9 of the owner (s):", [round(b, 2) for b in back])
        new_owner, new_epoch, _ = lease_of(pg_url) or ("", 0, "")
        assert new_owner != owner and new_epoch == epoch + 1
        assert [p.session_id for p in pages] == sessions  # the same sessions, resumed
        for p in pages:
            assert p.page.evaluate("window.callsd.phase") == "in_call"
            _hand(p, "user_lowered_hand")
            _hand(p, "user_raised_hand")
        acked = {p.session_id: [HAND_EVENTS[kind] for kind, sid in p.page.evaluate("window.__acks")
                                if sid == p.session_id] for p in pages}
        assert all(seen[:1] == ["RaiseHand"] and len(seen) == 3 for seen in acked.values()), acked  # no reload
        try:
            load_output, _ = load.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            load.kill()
            load_output, _ = load.communicate()
    finally:
        people.close()
        if load is not None and load.poll() is None:
            load.kill()
            load.wait()
        balancer.stop()
        for node in nodes.values():
            node.stop()
    assert load is not None and load.returncode in (0, 3), load_output  # 3: "a server process changed"
    doc = json.loads(out.read_text())
    assert doc["users"]["failed"] == 0 and doc["users"]["connected"] == load_users, doc["users"]
    # ...and the load users hear the pages too (and each other) on their last media leg, with the new owner.
    heard = doc["calls"][0]["audio_streams_received_last_leg"]
    assert heard >= load_users * (len(pages) + load_users - 1), doc["calls"][0]
    verified = subprocess.run([sys.executable, "-m", "callsd.app.cli", "replay", pg_url, "--verify"],
                              capture_output=True, text=True, timeout=120)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    logged: dict[str, list[str]] = defaultdict(list)
    with open_store(f"{pg_url}?stream={stream.replace('/', '%2F')}", readonly=True) as store:  # type: ignore[attr-defined]
        for entry in store.iter_records(1):
            if isinstance(entry.event, RaiseHand | LowerHand):
                logged[entry.event.session_id].append(type(entry.event).__name__)
    for session_id, seen in acked.items():
        assert logged[session_id] == seen, (session_id, logged[session_id], seen)  # every acknowledged input
