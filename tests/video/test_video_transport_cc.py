"""Transport-cc feedback (PT 205 FMT 15): round trips, a hand-built packet, and malformed input."""

from __future__ import annotations

import struct

import pytest
from callsd.core.wire.rtcp import Feedback, RtcpError, build_rtcp, parse_rtcp
from callsd.core.wire.transport_cc import TransportCc, build_transport_cc, parse_transport_cc


def roundtrip(tcc: TransportCc) -> TransportCc:
    packets = parse_rtcp(build_rtcp([build_transport_cc(tcc)]))
    assert len(packets) == 1 and isinstance(packets[0], Feedback)
    parsed = parse_transport_cc(packets[0])
    assert parsed is not None
    return parsed


def test_roundtrip_with_losses_small_large_and_negative_deltas() -> None:
    ref = 1000
    base = ref * 64_000
    arrivals = (base + 250, None, None, base + 1000, base + 1000 + 250 * 300, base + 500, *([None] * 20),
                base + 9000)
    tcc = TransportCc(sender_ssrc=1, media_ssrc=2, base_seq=65530, reference_time=ref, fb_count=7,
                      arrivals=arrivals)
    assert roundtrip(tcc) == tcc


def test_a_hand_built_packet_parses() -> None:
    # base 10, 3 packets, reference 1 (64 ms), count 5; one run-length chunk "3 x received small"; deltas 4, 8, 0
    fci = struct.pack("!HHI", 10, 3, 1 << 8 | 5) + struct.pack("!H", 1 << 13 | 3) + bytes((4, 8, 0)) + b"\0"
    tcc = parse_transport_cc(Feedback(packet_type=205, fmt=15, sender_ssrc=1, media_ssrc=2, fci=fci))
    assert tcc is not None
    assert tcc.arrivals == (64_000 + 1000, 64_000 + 3000, 64_000 + 3000)
    assert tcc.base_seq == 10 and tcc.fb_count == 5


def test_a_two_bit_vector_chunk_parses() -> None:
    chunk = 0xC000 | 1 << 12 | 0 << 10 | 2 << 8  # received small, lost, received large, then padding
    fci = struct.pack("!HHI", 0, 3, 0) + struct.pack("!H", chunk) + bytes((2,)) + struct.pack("!h", -4) + b"\0"
    tcc = parse_transport_cc(Feedback(packet_type=205, fmt=15, sender_ssrc=1, media_ssrc=2, fci=fci))
    assert tcc is not None and tcc.arrivals == (500, None, -500)


def test_other_feedback_is_not_transport_cc() -> None:
    assert parse_transport_cc(Feedback(packet_type=206, fmt=15, sender_ssrc=1, media_ssrc=0, fci=b"REMB")) is None


@pytest.mark.parametrize("fci", [
    b"",
    struct.pack("!HHI", 0, 0, 0),
    struct.pack("!HHI", 0, 5, 0),
    struct.pack("!HHI", 0, 2, 0) + struct.pack("!H", 1 << 13 | 2) + b"\x01",
    struct.pack("!HHI", 0, 1, 0) + struct.pack("!H", 3 << 13 | 1),
    struct.pack("!HHI", 0, 1, 0) + struct.pack("!H", 0),
])
def test_malformed_feedback_is_an_rtcp_error(fci: bytes) -> None:
    with pytest.raises(RtcpError):
        parse_transport_cc(Feedback(packet_type=205, fmt=15, sender_ssrc=1, media_ssrc=2, fci=fci))
