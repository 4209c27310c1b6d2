"""Transport-cc feedback toward publishers (adapters/media/twcc_recv.py, docs/video.md): negotiated on the sections
a client sends on, every numbered packet recorded, reported back about every 100 ms."""

from __future__ import annotations

from callsd.adapters.media import twcc_recv
from callsd.core.wire import rtcp
from callsd.core.wire.sdp import parse_sdp
from callsd.core.wire.transport_cc import parse_transport_cc
from callsd.core.wire.transport_seq import stamp_transport_seq

from .test_media_plane import TWCC, FakePeer, Rig, offer, rtp


def test_a_publisher_that_numbers_its_packets_gets_transport_cc_reports_of_their_arrival() -> None:
    rig = Rig()
    a = rig.join("A", ("audio", "0", "sendrecv", 7), ("video", "1", "sendrecv", 8))
    answer = parse_sdp(rig.signals("A", "answer")[-1])
    assert all(m.extension_id(TWCC) == 3 for m in answer.media)  # kept on audio and video
    assert "transport-cc" in answer.media[1].codecs[0].feedback  # as offered (the fake offer asks on video only)
    sender = a.twcc_in
    assert isinstance(sender, twcc_recv.FeedbackSender) and sender.ext_id == 3
    start = 1000.0
    for i, seq in enumerate((500, 501, 503)):  # 502 is lost on the way
        packet = stamp_transport_seq(rtp(10 + i, 960 * i, 7), 3, seq)
        assert packet is not None
        sender.on_packet(packet, start + i * 0.005)
    sender.on_packet(rtp(20, 0, 7), start)  # an unnumbered packet is not reported
    assert twcc_recv.send_feedback([a]) == 1 and twcc_recv.send_feedback([a]) == 0  # only what is new
    [packet] = rtcp.parse_rtcp(a.rtcp[-1])
    assert isinstance(packet, rtcp.Feedback)
    report = parse_transport_cc(packet)
    assert report is not None and report.base_seq == 500 and report.sender_ssrc == rig.plane.sessions["A"].rtcp_ssrc
    assert report.media_ssrc == 7  # one of the publisher's streams: Chromium ignores feedback naming another
    first = report.arrivals[0]
    assert first is not None
    assert [None if t is None else t - first for t in report.arrivals] == [0, 5000, None, 10000]


def test_a_publisher_without_the_extension_gets_no_feedback_sender() -> None:
    rig = Rig()
    rig.plane.open_session("A", "chan")
    text = offer(("audio", "0", "sendrecv", 7), ufrag="uA").replace(f"a=extmap:3 {TWCC}\r\n", "")
    rig.plane.handle_signal("A", {"type": "offer", "sdp": text})
    a = FakePeer("A")
    rig.plane.on_connected(a)  # type: ignore[arg-type]
    assert TWCC not in rig.signals("A", "answer")[-1]
    assert a.twcc_in is None and twcc_recv.send_feedback([a]) == 0
