"""Transport-wide congestion control toward receivers: negotiated, stamped on every packet, fed back to the
receiver's estimate (adapters/media/twcc_send.py, docs/video.md)."""

from __future__ import annotations

from callsd.adapters.media.twcc_send import TransportSequencer
from callsd.core.calls.events import TrackKind
from callsd.core.wire import rtcp
from callsd.core.wire.sdp import parse_sdp
from callsd.core.wire.transport_cc import TransportCc, build_transport_cc
from callsd.core.wire.transport_seq import read_transport_seq

from .test_media_plane import TWCC, FakePeer, Rig, rtp


def twcc_rig(accept_twcc: bool = True) -> tuple[Rig, FakePeer, FakePeer, int]:
    rig = Rig()
    rig.join("A", ("video", "0", "sendrecv", 7))
    b = rig.join("B", ("audio", "0", "sendrecv", 2))
    rig.route("A_0", "A", "B", kind=TrackKind.VIDEO)
    rig.accept("B", twcc=accept_twcc)
    out_ssrc = parse_sdp(rig.signals("B", "offer")[-1]).media[1].ssrc_list()[0]
    return rig, rig.peers["A"], b, out_ssrc


def test_the_offer_asks_for_transport_cc_and_every_packet_to_a_receiver_that_accepted_it_is_numbered() -> None:
    rig, a, b, out_ssrc = twcc_rig()
    section = parse_sdp(rig.signals("B", "offer")[-1]).media[1]
    ext_id = section.extension_id(TWCC)
    assert ext_id == 3 and "transport-cc" in section.codecs[0].feedback
    assert isinstance(b.twcc, TransportSequencer) and b.twcc.ext_id == ext_id
    for seq in range(10):
        rig.plane.on_rtp(a, rtp(100 + seq, 3000 * seq, 7, pt=96))  # type: ignore[arg-type]
    rig.plane.on_rtcp(b, rtcp.build_nack(sender_ssrc=99, media_ssrc=out_ssrc,  # type: ignore[arg-type]
                                         lost=[b.rtp[3][2] << 8 | b.rtp[3][3]]))
    assert [read_transport_seq(p, ext_id) for p in b.rtp] == list(range(11))  # the NACK answer too


def test_feedback_reaches_the_receivers_estimate_and_rr_loss_no_longer_counts() -> None:
    rig, a, b, out_ssrc = twcc_rig()
    for seq in range(40):
        rig.plane.on_rtp(a, rtp(100 + seq, 3000 * seq, 7, pt=96))  # type: ignore[arg-type]
    arrivals = tuple(1000 * 64_000 + 250 * 20 * i for i in range(40))
    report = TransportCc(sender_ssrc=99, media_ssrc=out_ssrc, base_seq=0, reference_time=1000, fb_count=0,
                         arrivals=arrivals)
    rig.plane.on_rtcp(b, rtcp.build_rtcp([build_transport_cc(report)]))  # type: ignore[arg-type]
    assert rig.plane.counters["twcc_in"] == 1 and rig.plane.estimates.estimate("B") is not None
    lossy = rtcp.build_rr(ssrc=99, reports=[rtcp.ReportBlock(ssrc=out_ssrc, fraction_lost=200)])
    rig.plane.on_rtcp(b, lossy)  # type: ignore[arg-type]
    assert rig.plane.counters["loss_reports"] == 0  # transport-cc counts losses itself
    rig.plane.on_rtcp(b, rtcp.build_rtcp([build_transport_cc(report)]))  # type: ignore[arg-type]
    assert rig.plane.counters["twcc_in"] == 2  # a repeated report is read, its packets are not counted twice


def test_a_receiver_that_declines_the_extension_gets_unstamped_packets() -> None:
    rig, a, b, _ = twcc_rig(accept_twcc=False)
    assert b.twcc is None
    rig.plane.on_rtp(a, rtp(100, 0, 7, pt=96))  # type: ignore[arg-type]
    assert len(b.rtp) == 1 and read_transport_seq(b.rtp[0], 3) is None
