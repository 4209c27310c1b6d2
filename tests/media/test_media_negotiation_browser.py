"""Chromium accepts the server's answers and offers (core/wire/negotiation.py), driven through Playwright.

No network: the browser only applies descriptions (its ICE checks towards 127.0.0.1:9 go nowhere).
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from callsd.core.wire.negotiation import (
    AnswerApplied,
    LocalTransport,
    Negotiator,
    OfferAnswered,
    OfferIgnored,
    OfferMade,
    OutgoingTrack,
)
from callsd.core.wire.sdp import Codec, Direction, parse_sdp

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream", "--allow-loopback-in-peer-connection",
        "--disable-background-networking", "--no-sandbox", "--disable-gpu", "--disable-component-update",
        "--no-first-run", "--disable-sync"]
FP = "sha-256 " + ":".join(["4F"] * 32)
TRANSPORT = LocalTransport(ice_ufrag="srvu", ice_pwd="serverpassword0123456789", fingerprint=FP,
                           host="127.0.0.1", port=9)

SETUP = """async () => {
  window.pc = new RTCPeerConnection();
  window.got = [];
  pc.ontrack = (e) => got.push([e.transceiver.mid, e.track.kind, e.streams.map((s) => s.id).join(',')]);
  const stream = new MediaStream();
  for (const kind of ['audio', 'video']) pc.addTransceiver(kind, {direction: 'sendrecv', streams: [stream]});
  await pc.setLocalDescription(await pc.createOffer());
  return pc.localDescription.sdp;
}"""
APPLY_ANSWER = "async (sdp) => { await pc.setRemoteDescription({type: 'answer', sdp}); return pc.signalingState; }"
ANSWER_OFFER = """async (sdp) => {
  await pc.setRemoteDescription({type: 'offer', sdp});
  await pc.setLocalDescription(await pc.createAnswer());
  return pc.localDescription.sdp;
}"""
SCREEN_OFFER = """async () => {
  pc.addTransceiver('video', {direction: 'sendonly', streams: [new MediaStream()]});
  await pc.setLocalDescription(await pc.createOffer());
  return pc.localDescription.sdp;
}"""


@pytest.fixture
def page() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.fail("Debian's chromium is not installed: run scripts/system-deps.sh (make test does)", pytrace=False)
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as profile, sync_playwright() as p:
        ctx = p.chromium.launch_persistent_context(profile, executable_path=str(CHROMIUM), headless=True, args=ARGS)
        try:
            pg = ctx.new_page()
            pg.goto("about:blank")
            yield pg
        finally:
            ctx.close()


def track(name: str, kind: str, ssrc: int) -> OutgoingTrack:
    codec = (Codec(payload_type=111, name="opus", clock_rate=48000, channels=2, fmtp="minptime=10;useinbandfec=1")
             if kind == "audio" else Codec(payload_type=96, name="VP8", clock_rate=90000))
    return OutgoingTrack(track_id=f"{name}-{kind}", stream_id=f"stream-{name}", kind=kind, ssrc=ssrc, codec=codec,
                         rtx_ssrc=ssrc + 1 if kind == "video" else None, cname=name)


def test_chromium_accepts_answer_server_offers_and_its_own_reoffer(page: Any) -> None:
    n = Negotiator(transport=TRANSPORT, session_id=777)
    first = n.handle_offer(page.evaluate(SETUP))
    assert isinstance(first, OfferAnswered) and len(first.published) == 2
    assert page.evaluate(APPLY_ANSWER, first.answer) == "stable"

    made = n.make_offer([track("bob", "audio", 1000), track("bob", "video", 2000)])
    assert isinstance(made, OfferMade)
    applied = n.handle_answer(page.evaluate(ANSWER_OFFER, made.offer))
    assert isinstance(applied, AnswerApplied) and not applied.refused
    assert sorted(t.track_id for t in applied.sending) == ["bob-audio", "bob-video"]
    got = page.evaluate("() => got")
    assert sorted(g[1:] for g in got) == [["audio", "stream-bob"], ["video", "stream-bob"]]

    # the client starts a screen share: it re-offers every section plus a new sendonly one
    again = n.handle_offer(page.evaluate(SCREEN_OFFER))
    assert isinstance(again, OfferAnswered), again
    assert [p.kind for p in again.published] == ["video"] and not again.unpublished
    assert page.evaluate(APPLY_ANSWER, again.answer) == "stable"
    assert [m.direction for m in parse_sdp(again.answer).media][-1] is Direction.RECVONLY

    # bob's video route is removed, carol's audio is added: inactive section, then reused
    removed = n.make_offer([track("bob", "audio", 1000)])
    assert isinstance(removed, OfferMade)
    assert isinstance(n.handle_answer(page.evaluate(ANSWER_OFFER, removed.offer)), AnswerApplied)
    carol = n.make_offer([track("bob", "audio", 1000), track("carol", "video", 3000)])
    assert isinstance(carol, OfferMade)
    final = n.handle_answer(page.evaluate(ANSWER_OFFER, carol.offer))
    assert isinstance(final, AnswerApplied) and sorted(t.track_id for t in final.sending) == [
        "bob-audio", "carol-video"]
    assert ["video", "stream-carol"] in [g[1:] for g in page.evaluate("() => got")]


POLITE_ANSWER = """async (sdp) => {
  await pc.setLocalDescription({type: 'rollback'});
  await pc.setRemoteDescription({type: 'offer', sdp});
  await pc.setLocalDescription(await pc.createAnswer());
  return pc.localDescription.sdp;
}"""
REOFFER = "async () => { await pc.setLocalDescription(await pc.createOffer()); return pc.localDescription.sdp; }"


def test_glare_with_chromium_the_server_is_impolite(page: Any) -> None:
    n = Negotiator(transport=TRANSPORT, session_id=778)
    first = n.handle_offer(page.evaluate(SETUP))
    assert isinstance(first, OfferAnswered)
    page.evaluate(APPLY_ANSWER, first.answer)
    pending = n.make_offer([track("bob", "audio", 1000)])
    assert isinstance(pending, OfferMade)
    # meanwhile the browser starts a screen share and offers: the server ignores it (its own offer is pending)
    assert n.handle_offer(page.evaluate(SCREEN_OFFER)) == OfferIgnored(reason="glare")
    # the browser, polite, rolls back, answers the server's offer, then offers its screen share again
    applied = n.handle_answer(page.evaluate(POLITE_ANSWER, pending.offer))
    assert isinstance(applied, AnswerApplied) and [t.track_id for t in applied.sending] == ["bob-audio"]
    again = n.handle_offer(page.evaluate(REOFFER))
    assert isinstance(again, OfferAnswered), again
    assert [p.kind for p in again.published] == ["video"] and not again.unpublished
    assert page.evaluate(APPLY_ANSWER, again.answer) == "stable"
    assert ["audio", "stream-bob"] in [g[1:] for g in page.evaluate("() => got")]


AUDIO_ONLY = """async () => {
  window.pc = new RTCPeerConnection();
  window.got = [];
  pc.ontrack = (e) => got.push([e.transceiver.mid, e.track.kind, e.streams.map((s) => s.id).join(',')]);
  pc.addTransceiver('audio', {direction: 'sendrecv', streams: [new MediaStream()]});
  await pc.setLocalDescription(await pc.createOffer());
  return pc.localDescription.sdp;
}"""
CAMERA_OFFER = """async () => {
  pc.addTransceiver('video', {direction: 'sendonly', streams: [new MediaStream()]});
  await pc.setLocalDescription(await pc.createOffer());
  return pc.localDescription.sdp;
}"""


def extension_ids(*descriptions: str) -> dict[int, set[str]]:
    out: dict[int, set[str]] = {}
    for text in descriptions:
        for m in parse_sdp(text).media:
            for e in m.extmaps:
                out.setdefault(e.id, set()).add(e.uri)
    return out


@pytest.mark.parametrize("camera", ["after_answer", "crossing_the_server_offer"])
def test_chromium_audio_only_accepts_a_server_video_offer_then_offers_its_camera(page: Any, camera: str) -> None:
    """No inactive camera transceiver in the first offer: the server's video section must not renumber the ids
    Chromium already uses (transport-cc, ...) nor take the ids it gives its own video (playout-delay, ...).
    Whether the camera offer comes after the answer or crosses the server's offer (glare: Chromium rolls it
    back but keeps the transceiver's ids), Chromium applies every description and the server accepts its offer."""
    n = Negotiator(transport=TRANSPORT, session_id=779)
    first_offer = page.evaluate(AUDIO_ONLY)
    assert [m.kind for m in parse_sdp(first_offer).media] == ["audio"]
    first = n.handle_offer(first_offer)
    assert isinstance(first, OfferAnswered)
    assert page.evaluate(APPLY_ANSWER, first.answer) == "stable"

    made = n.make_offer([track("bob", "video", 2000)])  # another participant's camera
    assert isinstance(made, OfferMade)
    seen = [first_offer, first.answer, made.offer]
    if camera == "after_answer":
        answer = page.evaluate(ANSWER_OFFER, made.offer)  # setRemoteDescription(offer) succeeds
        applied = n.handle_answer(answer)
        camera_offer = page.evaluate(CAMERA_OFFER)
        seen += [answer, camera_offer]
    else:
        crossing = page.evaluate(CAMERA_OFFER)
        assert n.handle_offer(crossing) == OfferIgnored(reason="glare")
        answer = page.evaluate(POLITE_ANSWER, made.offer)  # rollback, then setRemoteDescription(offer) succeeds
        applied = n.handle_answer(answer)
        camera_offer = page.evaluate(REOFFER)
        seen += [crossing, answer, camera_offer]
    assert isinstance(applied, AnswerApplied) and [t.track_id for t in applied.sending] == ["bob-video"]
    assert ["video", "stream-bob"] in [g[1:] for g in page.evaluate("() => got")]

    again = n.handle_offer(camera_offer)
    assert isinstance(again, OfferAnswered), again
    assert [p.kind for p in again.published] == ["video"] and not again.unpublished
    assert page.evaluate(APPLY_ANSWER, again.answer) == "stable"
    assert [t.track_id for t in again.sending] == ["bob-video"]
    # one URI per id across everything either side wrote in this session
    ids = extension_ids(*seen, again.answer)
    assert {i: u for i, u in ids.items() if len(u) > 1} == {}
