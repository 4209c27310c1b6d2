"""The native path sends the reporting round's RTCP as one batch (SRTCP in C, one ``sendmmsg``: rtcp_batch.h,
docs/adr/0042); the Python path, one ``Peer.send_rtcp`` each, is the reference: same bytes, same counters.

The Hypothesis differential (test_native_diff.py) draws report rounds and ticks among its events too; these pin
the cases it may not draw.
"""

from __future__ import annotations

import json
import socket
import struct
import subprocess
import sys
from pathlib import Path
from unittest import mock

from callsd.adapters.media import twcc_recv
from callsd.adapters.media.native import path as native
from callsd.adapters.media.native._engine import send_rtcp_batch
from callsd.adapters.media.native.path import NativeSrtpContext
from callsd.adapters.media.srtp import SrtpContext
from callsd.core.wire import rtcp
from callsd.core.wire.transport_seq import stamp_transport_seq
from native_support import RouteSpec, Scenario, TrackSpec, keys_for, run

PROFILE = b"SRTP_AEAD_AES_128_GCM"


def _call_with_reports(profile: bytes) -> Scenario:
    audio = ("rtp", 0, 1, 111, 0, None, 0, b"opus" * 10, False, 0x1234, "ok", 5)
    return Scenario(profile=profile, publishers=1, receivers=3, receivers_connected=(True, True, False),
                    tracks=(TrackSpec(publisher=0, media="audio", ssrc=0x1234, signalled=True, level_id=0),),
                    routes=tuple(RouteSpec(track=0, receiver=r, ssrc=0xA0 + r, ts_offset=5, last_seq=9, pt=109,
                                           remap=(), paused=False, negotiated=True) for r in range(3)),
                    events=(audio, ("report", True), audio, *(("report", False),) * 10, ("report", True)))


def test_the_native_round_is_byte_identical_to_the_python_round() -> None:
    for profile in (PROFILE, b"SRTP_AES128_CM_SHA1_80"):
        sc = _call_with_reports(profile)
        reference = run(sc, "python")
        with mock.patch.object(native, "send_rtcp_batch", wraps=send_rtcp_batch) as batch:
            ours = run(sc, "native")
        assert ours == reference
        # 2 whole rounds, and the 3 ticks (of 10) whose slot holds a connected session (4 sessions: slots 0-3)
        assert batch.call_count == 5
        # publisher + 2 connected receivers, 3 reports each; the unconnected receiver has no peer to report to
        assert ours["transport"]["rtcp_out"] == 9
        srs = [p for raw in ours["received"][1] for p in _plain_rtcp(raw, profile, 1)]
        assert any(isinstance(p, rtcp.SenderReport) and p.packet_count == 10 for p in srs)


def _plain_rtcp(datagram: bytes, profile: bytes, index: int) -> list[rtcp.RtcpPacket]:
    """What the client ``index`` of native_support's run reads from one SRTCP datagram (RTP ones: nothing)."""
    if not 192 <= datagram[1] <= 223:
        return []
    _, client = keys_for(profile, bytes(range(index, index + 60)))
    plain = SrtpContext(client).unprotect_rtcp(datagram)
    assert plain is not None
    return list(rtcp.parse_rtcp(bytes(plain)))


def test_a_batch_counts_bad_items_and_refusals_and_sends_the_rest_in_order() -> None:
    server, _ = keys_for(PROFILE, bytes(range(60)))
    session = NativeSrtpContext(server).tx
    reference = SrtpContext(server)
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        rx.bind(("127.0.0.1", 0))
        rx.settimeout(5)
        to = rx.getsockname()
        packets = [rtcp.build_rr(ssrc=n) for n in range(150)]  # more than one sendmmsg of BATCH
        items: list[object] = [(session, p, to) for p in packets]
        items[3:3] = [("not a session", packets[0], to), (session, packets[0], ("not an address", 1)),
                      (session, bytes(3000), to)]
        sent, octets, would_block, errors, refused, bad = send_rtcp_batch(tx.fileno(), items)  # type: ignore[arg-type]
        expected = [bytes(reference.protect_rtcp(p) or b"") for p in packets]
        assert (sent, octets, would_block, errors, refused, bad) == (150, sum(map(len, expected)), 0, 0, 1, 2)
        assert [rx.recv(4096) for _ in packets] == expected
    finally:
        rx.close()
        tx.close()


class _Publisher:
    """A publisher's peer as the transport-cc feedback round sees it."""

    def __init__(self, sender: twcc_recv.FeedbackSender) -> None:
        self.twcc_in: twcc_recv.FeedbackSender | None = sender
        self.sent: list[bytes] = []

    def send_rtcp(self, plain: bytes) -> bool:
        self.sent.append(plain)
        return True


def test_transport_cc_feedback_hands_its_round_over_as_one_batch() -> None:
    """The feedback round toward publishers goes through the same hand-over as the reports (the plane passes the
    endpoint's ``send_rtcp_round``): the same packets, in the same order, as one ``send_rtcp`` each."""
    pairs: list[tuple[_Publisher, bytes]] = []
    one_by_one, batched = [], []
    for peers in (one_by_one, batched):
        for n in range(3):
            sender = twcc_recv.FeedbackSender(3, 0x100 + n, 1000.0)
            for k, seq in enumerate((10, 11, 13)):
                packet = stamp_transport_seq(struct.pack("!BBHII", 0x80, 111, k, k * 960, 7 + n), 3, seq)
                assert packet is not None
                sender.on_packet(packet, 1000.0 + k * 0.01)
            peers.append(_Publisher(sender))
    assert twcc_recv.send_feedback(one_by_one) == 3
    assert twcc_recv.send_feedback(batched, pairs.extend) == 3
    assert [plain for _, plain in pairs] == [p for peer in one_by_one for p in peer.sent]
    assert [peer for peer, _ in pairs] == batched and not any(peer.sent for peer in batched)
    assert all(peer.twcc_in is not None and peer.twcc_in.sent == 1 for peer in batched)


def test_the_rtcp_round_bench_runs_and_every_report_arrives() -> None:
    """`python -m bench.rtcp_round` (docs/performance.md's figures) on a small shape, both paths and every way:
    every report sent arrives (a change of the plane's interface cannot break the bench unnoticed)."""
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.run([sys.executable, "-m", "bench.rtcp_round", "--calls", "5", "--size", "4", "--rounds", "1",
                           "--repeats", "1", "--json"],
                          cwd=root, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert set(result["best"]) == {f"{p}/{w}" for p in ("python", "native")
                                   for w in ("burst_each", "burst_batch", "ticks_batch")}
    assert all(row["reports"] == row["received"] == 20 for row in result["best"].values())
