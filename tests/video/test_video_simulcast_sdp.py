"""Simulcast offers (a=rid/a=simulcast): accepted as recv streams when the negotiator allows simulcast."""

from __future__ import annotations

from pathlib import Path

from callsd.core.wire.negotiation import LocalTransport, Negotiator, OfferAnswered
from callsd.core.wire.sdp import parse_sdp
from callsd.core.wire.simulcast_sdp import REPAIRED_RID_URI, RID_URI, send_rids

CHROMIUM = (Path(__file__).parent.parent / "media" / "data" / "offer_chromium.sdp").read_text()
TRANSPORT = LocalTransport(ice_ufrag="srvu", ice_pwd="serverpassword0123456789",
                           fingerprint="sha-256 " + ":".join(["AB"] * 32), host="127.0.0.1", port=9)


def simulcast_offer(streams: str = "q;h;f") -> str:
    """The recorded Chromium offer with its video section sending three RID streams and no a=ssrc lines."""
    head, video = CHROMIUM.split("m=video", 1)
    lines = [ln for ln in ("m=video" + video).splitlines() if ln and not ln.startswith("a=ssrc")]
    lines += [f"a=extmap:10 {RID_URI}", f"a=extmap:11 {REPAIRED_RID_URI}",
              "a=rid:q send", "a=rid:h send", "a=rid:f send", f"a=simulcast:send {streams}"]
    return "\r\n".join([*head.splitlines(), *lines]) + "\r\n"


def test_send_rids_reads_the_simulcast_streams_in_order() -> None:
    video = parse_sdp(simulcast_offer()).media[1]
    assert send_rids(video) == ("q", "h", "f")
    assert send_rids(parse_sdp(simulcast_offer("~q;h,x;f")).media[1]) == ("q", "h", "f")
    assert send_rids(parse_sdp(simulcast_offer("q;zz")).media[1]) == ()  # zz has no a=rid line
    assert send_rids(parse_sdp(simulcast_offer("q")).media[1]) == ()  # one stream is not simulcast
    assert send_rids(parse_sdp(CHROMIUM).media[1]) == ()


def test_a_simulcast_offer_is_answered_with_recv_rids_when_allowed() -> None:
    n = Negotiator(transport=TRANSPORT, session_id=1, simulcast=True)
    r = n.handle_offer(simulcast_offer())
    assert isinstance(r, OfferAnswered)
    video = r.published[1]
    assert video.rids == ("q", "h", "f") and video.ssrcs == ()
    assert video.extension_id(RID_URI) == 10 and video.extension_id(REPAIRED_RID_URI) == 11
    answer = parse_sdp(r.answer).media[1]
    assert [v for n_, v in answer.other if n_ == "rid"] == ["q recv", "h recv", "f recv"]
    assert answer.attribute("simulcast") == "recv q;h;f"
    assert parse_sdp(r.answer).media[0].attribute("simulcast") is None


def test_without_simulcast_the_offer_gets_one_encoding() -> None:
    r = Negotiator(transport=TRANSPORT, session_id=1).handle_offer(simulcast_offer())
    assert isinstance(r, OfferAnswered)
    assert r.published[1].rids == () and "a=rid" not in r.answer and "a=simulcast" not in r.answer
    assert RID_URI not in r.answer


def test_an_inactive_simulcast_section_keeps_its_layers_for_later() -> None:
    """The page negotiates its camera's slot inactive before the camera is on; the answer must still accept the
    RIDs, or the browser drops its extra encodings for good and the camera later publishes one layer."""
    n = Negotiator(transport=TRANSPORT, session_id=1, simulcast=True)
    r = n.handle_offer(simulcast_offer().replace("a=sendrecv", "a=inactive"))
    assert isinstance(r, OfferAnswered)
    assert not r.published or all(p.kind != "video" for p in r.published)
    answer = parse_sdp(r.answer).media[1]
    assert answer.attribute("simulcast") == "recv q;h;f" and answer.direction.value == "inactive"
