"""Media through a real TURN relay: headless Chromium, the real ``callsd serve`` and Debian's coturn, all on 127.0.0.1.

callsd is configured with ``rtc.ice_servers = ["turn:127.0.0.1:<coturn port>?transport=udp"]`` and coturn's
``static-auth-secret``, so each ``join_ack`` carries TURN REST credentials (``<expiry>:<session id>``). Alice's page
is the real client; an init script only adds ``iceTransportPolicy: "relay"`` to the configuration the page passes to
``new RTCPeerConnection`` (the page's own ``iceServers``, from ``join_ack``, are kept), so her only way to the server
is an allocation on coturn. Bob is a second browser context on host candidates.

What is asserted is what a user and the operator observe: Alice's audio reaches Bob and Bob's reaches Alice
(inbound-rtp packet counts grow), the selected candidate pair of Alice's connection has a local candidate of type
``relay`` allocated on coturn, and coturn's log shows a successful ALLOCATE for the username ``join_ack`` gave her.
This holds whether the browser reaches coturn over UDP or only over TCP (``turn:...?transport=tcp``). After a
signaling drop the page reconnects the session and is relayed again with the fresh ``join_ack`` credentials.
With a callsd whose secret differs from coturn's, the allocation is refused (401 in coturn's log and in the page's
``icecandidateerror``), no relay candidate is gathered and the media never connects.

Every wait is time-boxed (the whole module stays well under a minute here); coturn, callsd and Chromium are stopped
at teardown.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import browser_support as bs  # tests/ is on pythonpath (pyproject.toml)
import pytest
import turn_support as ts

pytestmark = [pytest.mark.browser, pytest.mark.slow]

import playwright.sync_api as playwright_sync  # noqa: E402

expect = playwright_sync.expect
bs.require_chromium()
if not Path(ts.TURNSERVER).exists():  # fail, not skip: the TURN test must not silently vanish
    pytest.fail("Debian coturn is not installed: run scripts/system-deps.sh", pytrace=False)

SECRET = "turn-test-secret"
TEST_BUDGET_S = 45.0  # every wait of one test body comes out of this (fixtures: coturn ≤ 10 s, callsd ≤ 20 s)
STEP_S = 20.0  # and no single wait takes more than this
DEFAULT_TTL_S = 1440 * 60  # rtc.turn_credentials_expiration_minutes, default


class Budget:
    """One deadline for a whole test: each wait gets what is left of it, at most ``STEP_S``."""

    def __init__(self, seconds: float) -> None:
        self.deadline = time.monotonic() + seconds

    def s(self) -> float:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"the test's {TEST_BUDGET_S:.0f} s budget is spent")
        return min(left, STEP_S)

    def ms(self) -> float:
        return self.s() * 1000


# Installed before the page's scripts: the page's RTCPeerConnection gets iceTransportPolicy "relay" added to the
# configuration it passes (nothing else changes), and what the browser gathers or fails to gather is recorded.
RELAY_ONLY = """
(() => {
  const Native = window.RTCPeerConnection;
  const seen = { configs: [], candidates: [], errors: [] };
  window.__turn = seen;
  class RelayOnlyPeerConnection extends Native {
    constructor(config, ...rest) {
      seen.configs.push(JSON.parse(JSON.stringify(config || {})));
      super(Object.assign({}, config || {}, { iceTransportPolicy: "relay" }), ...rest);
      this.addEventListener("icecandidate", (e) => {
        if (e.candidate && e.candidate.candidate) {
          seen.candidates.push({ type: e.candidate.type, address: e.candidate.address, port: e.candidate.port });
        }
      });
      this.addEventListener("icecandidateerror", (e) => {
        seen.errors.push({ url: e.url, errorCode: e.errorCode, errorText: e.errorText });
      });
    }
  }
  window.RTCPeerConnection = RelayOnlyPeerConnection;
})();
"""

SELECTED_PAIR = """
async () => {
  const pc = window.callsd.pc;
  if (!pc) return null;
  const report = await pc.getStats();
  let pairId = null;
  report.forEach((s) => { if (s.type === "transport" && s.selectedCandidatePairId) pairId = s.selectedCandidatePairId; });
  const pair = pairId ? report.get(pairId) : null;
  if (!pair) return null;
  const cand = (id) => {
    const c = report.get(id);
    return c && { type: c.candidateType, address: c.address || c.ip, port: c.port, relayProtocol: c.relayProtocol,
                  url: c.url };
  };
  return { state: pair.state, local: cand(pair.localCandidateId), remote: cand(pair.remoteCandidateId) };
}
"""


def _callsd(data_dir: Path, *, turn_url: str, secret: str) -> Any:
    """``callsd serve`` whose join_ack hands out ``turn_url`` with TURN REST credentials signed with ``secret``."""
    data_dir.mkdir()
    proc = bs.CallsdProcess(data_dir)
    text = proc.config_path.read_text()
    assert text.count("[rtc]\n") == 1
    proc.config_path.write_text(
        text.replace(
            "[rtc]\n", f'[rtc]\nice_servers = ["{turn_url}"]\nturn_static_auth_secret = "{secret}"\n'
        )
    )
    return proc.start()


@pytest.fixture(scope="module")
def coturn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    turn = ts.Coturn(tmp_path_factory.mktemp("coturn"), secret=SECRET).start()
    try:
        yield turn
    finally:
        turn.stop()


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[Callable[..., Any]]:
    made: list[Any] = []

    def make(*, turn_url: str, secret: str) -> Any:
        made.append(_callsd(tmp_path / f"callsd{len(made)}", turn_url=turn_url, secret=secret))
        return made[-1]

    yield make
    for proc in made:
        proc.stop()


@pytest.fixture
def people(browser: Any) -> Iterator[Callable[..., Any]]:
    made: list[Any] = []

    def make(url: str, name: str, *, relay_only: bool = False) -> Any:
        p = bs.Participant(browser, url, name)
        if relay_only:
            p.page.add_init_script(RELAY_ONLY)
        made.append(p)
        return p

    yield make
    for p in made:
        p.close()


def _turn_entry(p: Any) -> dict[str, Any]:
    """The TURN entry of the ``ice_servers`` the page received in its ``join_ack``."""
    acks = [
        m["data"]
        for m in p.page.evaluate("window.callsd.log")
        if m["dir"] == "in" and m["type"] == "join_ack"
    ]
    assert acks, p.debug()
    entries = [s for s in acks[-1]["ice_servers"] if any(str(u).startswith("turn:") for u in _urls(s))]
    assert len(entries) == 1, acks[-1]["ice_servers"]
    return dict(entries[0])


def _urls(server: dict[str, Any]) -> list[str]:
    urls = server.get("urls", [])
    return [urls] if isinstance(urls, str) else list(urls)


def _join(p: Any, channel: str, budget: Budget) -> None:
    """Join through the page as a user does: name, Join button, then wait for the call view."""
    p.page.goto(f"{p.base_url}/?channel={channel}", timeout=budget.ms())
    p.tid("name-input").fill(p.name, timeout=budget.ms())
    p.tid("join-button").click(timeout=budget.ms())
    p.page.wait_for_function("window.callsd && window.callsd.phase === 'in_call'", timeout=budget.ms())


def _wait_participants(p: Any, n: int, budget: Budget) -> None:
    p.page.wait_for_function(
        f"document.querySelectorAll('[data-testid=participant]').length === {n}", timeout=budget.ms()
    )


def _unmute(p: Any, budget: Budget) -> None:
    p.tid("mute-button").click(timeout=budget.ms())
    expect(p.tid("mute-button")).to_have_text("Mute", timeout=budget.ms())


def _wait_connected(p: Any, budget: Budget) -> None:
    try:
        p.page.wait_for_function(
            "window.callsd.pc && window.callsd.pc.connectionState === 'connected'", timeout=budget.ms()
        )
    except playwright_sync.TimeoutError as e:
        raise AssertionError(
            f"{p.name}: media never connected; turn={p.page.evaluate('window.__turn')}\n{p.debug()}"
        ) from e


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_audio_flows_through_coturn_with_the_join_ack_credentials(
    coturn: Any, servers: Callable[..., Any], people: Callable[..., Any], transport: str
) -> None:
    """``transport``: how the browser reaches coturn (``tcp``: a client whose network lets only TCP out)."""
    turn_url = coturn.url_for(transport)
    server = servers(turn_url=turn_url, secret=SECRET)
    budget = Budget(TEST_BUDGET_S)
    alice = people(server.url, "Alice", relay_only=True)
    bob = people(server.url, "Bob")
    _join(alice, f"turn-relay-{transport}", budget)
    _join(bob, f"turn-relay-{transport}", budget)
    _wait_participants(alice, 2, budget)
    _wait_participants(bob, 2, budget)

    # join_ack's TURN entry: the configured URL with TURN REST credentials for Alice's session, and the page used it.
    turn = _turn_entry(alice)
    assert _urls(turn) == [turn_url]
    expiry, _, session = turn["username"].partition(":")
    assert session == alice.session_id
    assert abs(int(expiry) - (time.time() + DEFAULT_TTL_S)) < 120, turn[
        "username"
    ]  # callsd's default lifetime
    configs = alice.page.evaluate("window.__turn.configs")
    assert configs and turn in configs[-1]["iceServers"], configs

    _unmute(alice, budget)
    _unmute(bob, budget)
    _wait_connected(alice, budget)
    _wait_connected(bob, budget)

    # Alice's connection to the server runs over a relay candidate allocated on coturn, towards callsd's RTC port.
    pair = alice.page.evaluate(SELECTED_PAIR)
    assert pair is not None, alice.debug()
    assert pair["state"] == "succeeded", pair
    assert pair["local"]["type"] == "relay", pair
    assert pair["local"]["address"] == "127.0.0.1", pair
    assert coturn.min_port <= pair["local"]["port"] <= coturn.max_port, pair
    assert pair["local"]["relayProtocol"] == transport, pair
    assert pair["local"]["url"] == turn_url, pair
    assert (pair["remote"]["type"], pair["remote"]["port"]) == ("host", server.rtc_port), pair
    gathered = alice.page.evaluate("window.__turn.candidates")
    assert gathered and {c["type"] for c in gathered} == {"relay"}, gathered
    bob_pair = bob.page.evaluate(SELECTED_PAIR)  # Bob, without the relay-only policy, goes direct
    assert bob_pair is not None and bob_pair["local"]["type"] == "host", bob_pair

    # What each of them hears: the other's audio, Alice's both ways through the relay.
    bob.wait_inbound_growing("audio", timeout=budget.s())
    alice.wait_inbound_growing("audio", timeout=budget.s())

    # The operator's view: coturn allocated a relay for exactly that username.
    assert coturn.wait_for(lambda: coturn.allocations(turn["username"]), timeout=min(5, budget.s())), (
        coturn.log()[-3000:]
    )
    assert coturn.permissions(turn["username"]), coturn.log()[-3000:]
    assert coturn.refusals(turn["username"]) == []


def _relayed_pair(p: Any, coturn: Any) -> dict[str, Any]:
    pair = p.page.evaluate(SELECTED_PAIR)
    assert pair is not None and pair["state"] == "succeeded", pair
    assert pair["local"]["type"] == "relay" and pair["local"]["url"] == coturn.url, pair
    return dict(pair)


def test_after_a_network_drop_the_reconnected_session_is_relayed_again(
    coturn: Any, servers: Callable[..., Any], people: Callable[..., Any]
) -> None:
    server = servers(turn_url=coturn.url, secret=SECRET)
    budget = Budget(TEST_BUDGET_S)
    alice = people(server.url, "Alice", relay_only=True)
    bob = people(server.url, "Bob")
    _join(alice, "turn-reconnect", budget)
    _join(bob, "turn-reconnect", budget)
    _wait_participants(alice, 2, budget)
    _unmute(alice, budget)
    _wait_connected(alice, budget)
    first = _relayed_pair(alice, coturn)
    session = alice.session_id
    # Gathering done: every allocation of this first peer connection is in coturn's log (it logs before answering).
    alice.page.wait_for_function("window.callsd.pc.iceGatheringState === 'complete'", timeout=budget.ms())
    allocated_before = _allocations_of(coturn, session)
    assert allocated_before > 0, coturn.log()[-3000:]

    # The signaling socket drops; the page reconnects the same session, gets a fresh join_ack (fresh credentials)
    # and builds a new peer connection with them, through coturn again.
    alice.page.evaluate("window.callsd.dropConnection()")
    alice.page.wait_for_function(
        "window.callsd.log.some(m => m.dir === 'in' && m.type === 'join_ack' && m.data.reconnected)",
        timeout=budget.ms(),
    )
    assert alice.session_id == session
    assert len(alice.page.evaluate("window.__turn.configs")) == 2
    _wait_connected(alice, budget)
    second = _relayed_pair(alice, coturn)
    assert second["local"]["port"] != first["local"]["port"], (first, second)  # a new allocation

    # Bob hears Alice again, and coturn made new allocations for her session's fresh credentials.
    bob.wait_inbound_growing("audio", timeout=budget.s())
    turn = _turn_entry(alice)
    assert turn["username"].endswith(":" + session)
    assert coturn.wait_for(
        lambda: _allocations_of(coturn, session) > allocated_before, timeout=min(5, budget.s())
    ), coturn.log()[-3000:]


def _allocations_of(coturn: Any, session_id: str) -> int:
    """Successful ALLOCATEs coturn logged for any TURN username of this callsd session."""
    return sum(
        1
        for r in coturn.requests()
        if r.user.endswith(":" + session_id) and r.method == "ALLOCATE" and r.outcome == "success"
    )


def test_a_wrong_secret_gets_no_relay_allocation(
    coturn: Any, servers: Callable[..., Any], people: Callable[..., Any]
) -> None:
    server = servers(turn_url=coturn.url, secret="not-" + SECRET)
    budget = Budget(TEST_BUDGET_S)
    alice = people(server.url, "Alice", relay_only=True)
    _join(alice, "turn-wrong-secret", budget)
    turn = _turn_entry(alice)
    assert turn["username"].endswith(":" + alice.session_id)

    # Chromium reports the refused allocation as an icecandidateerror with the TURN server's 401.
    try:
        alice.page.wait_for_function(
            "window.__turn.errors.some(e => e.errorCode === 401)", timeout=budget.ms()
        )
    except playwright_sync.TimeoutError as e:
        raise AssertionError(
            f"no 401 from coturn; turn={alice.page.evaluate('window.__turn')}\n{coturn.log()[-3000:]}"
        ) from e
    errors = alice.page.evaluate("window.__turn.errors")
    assert any(e["errorCode"] == 401 and e["url"].startswith("turn:127.0.0.1:") for e in errors), errors

    assert coturn.wait_for(lambda: coturn.refusals(turn["username"]), timeout=min(5, budget.s())), (
        coturn.log()[-3000:]
    )
    assert coturn.allocations(turn["username"]) == []

    # The browser finished gathering with nothing to offer: no relay candidate, so no media path at all.
    alice.page.wait_for_function("window.callsd.pc.iceGatheringState === 'complete'", timeout=budget.ms())
    assert alice.page.evaluate("window.__turn.candidates") == []
    assert alice.page.evaluate("window.callsd.pc.connectionState") != "connected"
