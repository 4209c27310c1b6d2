"""The RID extensions are accepted on every video section when simulcast is on: Chromium offers no a=simulcast on an
inactive section (the page's camera slot), and once an answer refused the RID extension it will not offer simulcast
on a later section (a screen share started mid-call): setLocalDescription fails with "negotiates simulcast but does
not negotiate the RID RTP header extension"."""

from __future__ import annotations

from callsd.core.wire.negotiation import Negotiator, OfferAnswered
from callsd.core.wire.sdp import parse_sdp
from callsd.core.wire.simulcast_sdp import REPAIRED_RID_URI, RID_URI

from .test_video_simulcast_sdp import CHROMIUM, TRANSPORT


def plain_video_offer() -> str:
    """The recorded Chromium offer, its video section not simulcast but listing the RID extensions (as Chromium
    does for a transceiver with encodings that is still inactive)."""
    head, video = CHROMIUM.split("m=video", 1)
    return head + "m=video" + video.rstrip("\r\n") + f"\r\na=extmap:10 {RID_URI}\r\na=extmap:11 {REPAIRED_RID_URI}\r\n"


def test_a_plain_video_section_keeps_the_rid_extensions_when_simulcast_is_on() -> None:
    r = Negotiator(transport=TRANSPORT, session_id=1, simulcast=True).handle_offer(plain_video_offer())
    assert isinstance(r, OfferAnswered)
    video = parse_sdp(r.answer).media[1]
    assert {e.uri: e.id for e in video.extmaps}.items() >= {RID_URI: 10, REPAIRED_RID_URI: 11}.items()
    assert video.attribute("simulcast") is None  # nothing else changes: one encoding until it offers more


def test_without_simulcast_the_rid_extensions_are_refused() -> None:
    r = Negotiator(transport=TRANSPORT, session_id=1, simulcast=False).handle_offer(plain_video_offer())
    assert isinstance(r, OfferAnswered) and RID_URI not in r.answer
