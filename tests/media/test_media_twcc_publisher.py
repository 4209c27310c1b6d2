"""Transport-cc feedback toward publishers (adapters/media/twcc_recv.py, docs/video.md): negotiated on the sections
a client sends on, every numbered packet recorded, reported back about every 100 ms."""

from __future__ import annotations

import trio
import trio.testing
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


def test_the_feedback_round_walks_only_the_peers_given_a_sender_while_they_are_open() -> None:
    rig = Rig()
    a = rig.join("A", ("audio", "0", "sendrecv", 7))
    rig.plane.open_session("B", "chan")
    text = offer(("audio", "0", "sendrecv", 9), ufrag="uB").replace(f"a=extmap:3 {TWCC}\r\n", "")
    rig.plane.handle_signal("B", {"type": "offer", "sdp": text})
    b = FakePeer("B")
    rig.plane.on_connected(b)  # type: ignore[arg-type]
    peers = rig.plane.feedback_peers
    assert peers.current() == [a]  # B negotiated no transport-cc: never walked
    a.closed = True  # the endpoint closed it
    assert peers.current() == []
    c = rig.join("C", ("audio", "0", "sendrecv", 11))
    assert peers.current() == [c]
    again = offer(("audio", "0", "sendrecv", 11), ufrag="uC").replace(f"a=extmap:3 {TWCC}\r\n", "")
    rig.plane.handle_signal("C", {"type": "offer", "sdp": again})  # a re-offer without the extension
    assert c.twcc_in is None and peers.current() == []


async def test_the_feedback_loop_sleeps_while_no_peer_has_a_sender_and_reports_once_one_has(
        autojump_clock: trio.testing.MockClock) -> None:
    rig = Rig()
    rounds: list[int] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(twcc_recv.feedback_loop, rig.plane.feedback_peers, rounds.append)
        await trio.sleep(5.0)
        assert rounds == []  # not one wake-up for nothing
        a = rig.join("A", ("audio", "0", "sendrecv", 7))
        sender = a.twcc_in
        assert isinstance(sender, twcc_recv.FeedbackSender)
        packet = stamp_transport_seq(rtp(10, 960, 7), 3, 500)
        assert packet is not None
        sender.on_packet(packet, 1000.0)
        await trio.sleep(twcc_recv.INTERVAL * 1.5)
        assert rounds == [1] and len(a.rtcp) == 1
        a.closed = True
        await trio.sleep(twcc_recv.INTERVAL * 1.5)  # the round that finds it closed, then sleep again
        count = len(rounds)
        await trio.sleep(5.0)
        assert len(rounds) == count
        nursery.cancel_scope.cancel()
