"""Transport-cc arrival times toward publishers come from the kernel, not from when the server drained the socket.

Why it matters: a publisher's delay-based estimate (Chromium's trendline) reads the growth of the receive deltas in
the server's feedback as queueing on the network. When the server's drain is late (CPU load, ``coalesce_ms``, a
batch), packets wait in the socket; stamped when drained, the held packets arrive "at once" after a gap that never
happened on the network, and the estimate stops rising (the Chromium test of twcc_recv.py under load). Here
packets sit in the RTC socket for HOLD seconds before either receive path drains it: the feedback's deltas must
still be the gaps at which they were sent, on both paths (docs/adr/0035).
"""

from __future__ import annotations

import socket
import struct
import time

import pytest
from callsd.adapters.media.udp import SO_TIMESTAMPNS, open_socket, stamp_arrivals
from callsd.core.wire.transport_seq import stamp_transport_seq
from native_support import PUBLISHER_TWCC_EXT, Run, Scenario, TrackSpec

HOLD = 0.3  # seconds the held packets wait in the socket before the drain
SPACING = 0.02  # seconds between the held packets as sent
HELD = 4  # packets held
TOLERANCE_US = 1000  # the feedback's 250 us ticks, and the wall-to-monotonic offset read once per drain

SCENARIO = Scenario(profile=b"SRTP_AEAD_AES_128_GCM", publishers=1, receivers=0, receivers_connected=(),
                    tracks=(TrackSpec(publisher=0, media="audio", ssrc=0x1234, signalled=True, level_id=0),),
                    routes=(), events=())


def test_the_rtc_socket_asks_the_kernel_for_arrival_times() -> None:
    sock, _ = open_socket("127.0.0.1", 0, rcvbuf=64 * 1024, sndbuf=64 * 1024)
    try:
        assert sock.getsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS) == 1
    finally:
        sock.close()


def _numbered(seq: int) -> bytes:
    plain = struct.pack("!BBHII", 0x80, 111, seq, seq * 960, 0x1234) + b"opus" * 10
    packet = stamp_transport_seq(plain, PUBLISHER_TWCC_EXT, seq)
    assert packet is not None
    return packet


@pytest.mark.parametrize("path", ["python", "native"])
def test_packets_held_in_the_socket_are_reported_at_their_kernel_arrival(path: str) -> None:
    r = Run(SCENARIO, path, twcc=True)
    stamp_arrivals(r.sock)  # as open_socket does for the server's socket
    try:
        sent: list[tuple[float, float]] = []  # (before, after) each sendto, monotonic seconds

        def send(seq: int) -> None:
            before = time.monotonic()
            r.send_rtp(0, _numbered(seq), "ok")
            sent.append((before, time.monotonic()))

        send(0)
        r.drain()  # the first packet is read at once: the next one's delta is measured from it
        for seq in range(1, HELD + 1):
            if seq > 1:
                time.sleep(SPACING)
            send(seq)
        time.sleep(HOLD)  # the experiment: the server is late, the packets wait in the socket
        held_s = time.monotonic() - sent[-1][1]
        r.drain()
        (sender,) = r.feedback
        sender.drain()
        report = sender.recorder.feedback(1, 0)
        assert report is not None and report.base_seq == 0 and len(report.arrivals) == HELD + 1
        arrivals = report.arrivals
        assert all(a is not None for a in arrivals)
        deltas_us = [b - a for a, b in zip(arrivals, arrivals[1:], strict=False)]  # type: ignore[operator]
        bounds_us = [(int((sent[i + 1][0] - sent[i][1]) * 1e6) - TOLERANCE_US,
                      int((sent[i + 1][1] - sent[i][0]) * 1e6) + TOLERANCE_US) for i in range(HELD)]
        assert held_s >= HOLD
        assert all(low <= d <= high for d, (low, high) in zip(deltas_us, bounds_us, strict=True)), (
            f"{path}: feedback deltas {deltas_us} us, sent at gaps within {bounds_us} us, held {held_s * 1e3:.0f} ms")
    finally:
        r.close()
