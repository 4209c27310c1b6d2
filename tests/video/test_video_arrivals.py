"""Transport-cc feedback toward a publisher (core/video/arrivals.py): what one report says about what arrived."""

from __future__ import annotations

from callsd.core.video.arrivals import MAX_PACKETS, MAX_SPAN, ArrivalRecorder
from callsd.core.wire.rtcp import Feedback, build_rtcp, parse_rtcp
from callsd.core.wire.transport_cc import TransportCc, build_transport_cc, parse_transport_cc


def on_the_wire(tcc: TransportCc) -> TransportCc:
    packets = parse_rtcp(build_rtcp([build_transport_cc(tcc)]))
    assert len(packets) == 1 and isinstance(packets[0], Feedback)
    parsed = parse_transport_cc(packets[0])
    assert parsed is not None
    return parsed


def report(r: ArrivalRecorder) -> TransportCc:
    tcc = r.feedback(sender_ssrc=7, media_ssrc=9)
    assert tcc is not None
    return on_the_wire(tcc)


def test_nothing_received_means_no_report() -> None:
    assert ArrivalRecorder().feedback(1, 2) is None


def test_a_report_names_every_number_from_the_first_with_arrivals_and_holes() -> None:
    r = ArrivalRecorder()
    for seq, t in ((10, 1_000_100), (11, 1_005_000), (13, 1_010_249), (14, 1_009_000)):
        r.record(seq, t)
    tcc = report(r)
    assert (tcc.sender_ssrc, tcc.media_ssrc, tcc.base_seq, tcc.fb_count) == (7, 9, 10, 0)
    assert tcc.reference_time == 1_000_100 // 64_000
    # floored to 250 us; 12 never came; 14 arrived before 13 (a negative delta)
    assert tcc.arrivals == (1_000_000, 1_005_000, None, 1_010_000, 1_009_000)
    assert r.feedback(7, 9) is None
    r.record(15, 1_020_000)
    tcc = report(r)
    assert (tcc.base_seq, tcc.fb_count, tcc.arrivals) == (15, 1, (1_020_000,))


def test_numbers_wrap_around_16_bits() -> None:
    r = ArrivalRecorder()
    for i, seq in enumerate((65534, 65535, 0, 2)):
        r.record(seq, 64_000 * 3 + i * 1000)
    tcc = report(r)
    assert tcc.base_seq == 65534 and tcc.arrivals == (192_000, 193_000, 194_000, None, 195_000)


def test_late_and_duplicate_packets_are_reported_once() -> None:
    r = ArrivalRecorder()
    r.record(1, 0)
    r.record(3, 1000)
    report(r)
    r.record(2, 2000)  # reported lost already
    r.record(3, 2500)  # duplicate of a reported one
    r.record(4, 3000)
    r.record(4, 3500)  # duplicate of a pending one
    tcc = report(r)
    assert (tcc.base_seq, tcc.arrivals) == (4, (3000,)) and r.ignored == 3


def test_a_long_run_is_split_across_reports() -> None:
    r = ArrivalRecorder()
    for seq in range(MAX_PACKETS + 10):
        r.record(seq, seq * 500)
    first, second = report(r), report(r)
    assert len(first.arrivals) == MAX_PACKETS and (second.base_seq, len(second.arrivals)) == (MAX_PACKETS, 10)
    assert r.feedback(7, 9) is None
    assert len(build_rtcp([build_transport_cc(first)])) < 1100


def test_a_gap_longer_than_a_delta_ends_the_report() -> None:
    r = ArrivalRecorder()
    r.record(0, 0)
    r.record(1, 9_000_000)  # 9 s later: does not fit 16 bits of 250 us
    a, b = report(r), report(r)
    assert (a.base_seq, a.arrivals) == (0, (0,)) and (b.base_seq, b.arrivals) == (1, (9_000_000,))


def test_a_counter_restart_starts_over() -> None:
    r = ArrivalRecorder()
    r.record(100, 0)
    r.record(100 + MAX_SPAN + 5, 1000)
    tcc = report(r)
    assert (tcc.base_seq, tcc.arrivals) == (100 + MAX_SPAN + 5, (1000,))


def test_the_reference_time_wraps_and_keeps_the_deltas() -> None:
    r = ArrivalRecorder()
    start = ((1 << 23) - 1) * 64_000 + 63_000  # the last reference that fits, then past it
    r.record(0, start)
    r.record(1, start + 2_000)
    tcc = report(r)
    assert tcc.reference_time == (1 << 23) - 1
    r.record(2, start + 4_000)
    tcc = report(r)
    assert tcc.reference_time == -(1 << 23) and tcc.arrivals == (-(1 << 23) * 64_000 + 3_000,)
