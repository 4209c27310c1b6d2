"""Pre-negotiated audio slots in Chromium (docs/adr/0020-receive-slots.md): a fifth person joining a call of four
costs the four no SDP round, and audio flows to the newcomer and from it; the slots are in each page's first
offer (protocol 1.4), so every join is exactly one offer/answer round, the page's own.

Four Chromium pages join one channel of the real server and settle (every page's peer connection connected and
stable); the count of server offers each page has received (``window.callsd.offersReceived``) is noted. Then a
fifth joins and talks, and one of the four talks: each of the four must hear the newcomer on the audio element the
server named for it (a pre-negotiated section, by the ``slots`` signal), the newcomer must hear the talker, and no
page of the four may have received another offer.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import browser_support as bs  # tests/ is on pythonpath (pyproject.toml)
import pytest

pytestmark = [pytest.mark.browser, pytest.mark.slow]

import playwright.sync_api as playwright_sync  # noqa: E402

expect = playwright_sync.expect
bs.require_chromium()

# Packets received so far on the audio element the page attributes to session ``sid`` (0 if none yet).
PACKETS_FROM = """
async (sid) => {
  const el = document.querySelector(`audio[data-session-id="${sid}"]`);
  const pc = window.callsd.pc;
  if (!el || !pc || !el.srcObject) return 0;
  const track = el.srcObject.getAudioTracks()[0];
  let packets = 0;
  (await pc.getStats(track)).forEach((r) => { if (r.type === "inbound-rtp") packets += r.packetsReceived; });
  return packets;
}
"""

SETTLED = "window.callsd.pc && window.callsd.pc.connectionState === 'connected' && " \
          "window.callsd.pc.signalingState === 'stable'"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[bs.CallsdProcess]:
    with bs.CallsdProcess(tmp_path_factory.mktemp("callsd"), max_participants=5) as proc:
        yield proc


@pytest.fixture
def people(browser: Any, server: bs.CallsdProcess) -> Iterator[bs.People]:
    made = bs.People(browser, server.url)
    yield made
    made.close()


def _unmute(p: bs.Participant) -> None:
    p.tid("mute-button").click()
    expect(p.tid("mute-button")).to_have_text("Mute", timeout=bs.WAIT_MS)


def _wait_hears(listener: bs.Participant, speaker_sid: str, timeout_ms: int = 30_000) -> None:
    """Wait until ``listener`` receives growing audio on the element it attributes to ``speaker_sid``."""
    first = listener.page.evaluate(PACKETS_FROM, speaker_sid)
    try:
        listener.page.wait_for_function(f"async () => (await ({PACKETS_FROM})({speaker_sid!r})) > {first}",
                                        timeout=timeout_ms, polling=500)
    except Exception as e:  # playwright's TimeoutError
        raise AssertionError(f"{listener.name} does not hear {speaker_sid}\n{listener.debug()}") from e


def test_a_fifth_joiner_costs_the_four_no_renegotiation_and_audio_flows_both_ways(people: Any) -> None:
    four = [people(name) for name in ("Ada", "Bob", "Cy", "Di")]
    for p in four:
        p.join("slots")
    for p in four:
        p.wait_participants(4)
        p.wait_media_connected()
        p.page.wait_for_function(SETTLED, timeout=bs.WAIT_MS)
    ada = four[0]
    _unmute(ada)
    for p in four[1:]:
        _wait_hears(p, ada.session_id)  # the slots work inside the first four too
    offers_before = {p.name: p.page.evaluate("window.callsd.offersReceived") for p in four}
    slots_before = {p.name: p.page.evaluate("window.callsd.slotUpdates") for p in four}

    eve = people("Eve")
    eve.join("slots")
    for p in (*four, eve):
        p.wait_participants(5)
    eve.wait_media_connected()
    _unmute(eve)
    for p in four:
        _wait_hears(p, eve.session_id)
    _wait_hears(eve, ada.session_id)

    offers_after = {p.name: p.page.evaluate("window.callsd.offersReceived") for p in four}
    slots_after = {p.name: p.page.evaluate("window.callsd.slotUpdates") for p in four}
    assert offers_after == offers_before, f"the join renegotiated: {offers_before} -> {offers_after}"
    assert all(slots_after[n] > slots_before[n] for n in slots_before), (slots_before, slots_after)
    # The newcomer itself: its own offer carried its slots, answered with the four already on them; no server offer.
    assert eve.page.evaluate("window.callsd.offersReceived") == 0


# Counts the `sdp` offers a page sends, with the `slot_mids` each names (runs before the client's own scripts).
COUNT_OFFERS = """
window.__offersSent = [];
const send = WebSocket.prototype.send;
WebSocket.prototype.send = function (data) {
  try {
    const m = JSON.parse(data);
    if (m.type === "sdp" && m.data && m.data.type === "offer") window.__offersSent.push(m.data.slot_mids || null);
  } catch (e) { /* not JSON: not ours to count */ }
  return send.call(this, data);
};
"""

# The page's receive slots: its recvonly audio transceivers, with their mids and negotiated directions.
SLOT_TRANSCEIVERS = """
() => window.callsd.pc.getTransceivers()
  .filter((t) => t.receiver.track.kind === "audio" && t.direction === "recvonly")
  .map((t) => ({ mid: t.mid, current: t.currentDirection }))
"""


def test_three_browsers_hear_each_other_with_one_round_per_join(browser: Any, server: bs.CallsdProcess) -> None:
    """Three pages join in turn and talk: each sends one offer (its microphone, its camera's inactive section and
    eight recvonly audio slots named by ``slot_mids``), receives no server offer, and hears the two others on the
    slot sections of its own offer, which the server named for them (in its answer or by a ``slots`` signal)."""
    people = bs.People(browser, server.url, init_script=COUNT_OFFERS)
    try:
        trio_ = [people(name) for name in ("Fay", "Gus", "Hal")]
        for n, p in enumerate(trio_):
            p.join("slots-three")
            p.wait_participants(n + 1)
            p.wait_media_connected()
            p.page.wait_for_function(SETTLED, timeout=bs.WAIT_MS)
        for p in trio_:
            p.wait_participants(3)
            _unmute(p)
        for listener in trio_:
            for speaker in trio_:
                if speaker is not listener:
                    _wait_hears(listener, speaker.session_id)
        for p in trio_:
            sent = p.page.evaluate("window.__offersSent")
            slots = p.page.evaluate(SLOT_TRANSCEIVERS)
            assert len(sent) == 1, f"{p.name} sent {len(sent)} offers: {sent}"
            assert sorted(sent[0]) == sorted(t["mid"] for t in slots) and len(slots) == 8, (sent, slots)
            assert all(t["current"] == "recvonly" for t in slots), slots
            assert p.page.evaluate("window.callsd.offersReceived") == 0
            heard_on = p.page.evaluate("() => [...document.querySelectorAll('audio[data-session-id]')]"
                                       ".map((el) => el.dataset.mid)")
            assert len(heard_on) == 2 and set(heard_on) <= set(sent[0]), (heard_on, sent)
    finally:
        people.close()
