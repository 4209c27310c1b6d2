"""Properties of the transport-cc feedback toward publishers (core/video/arrivals.py): whatever arrives, in any
order, with any repeats and wraps, the reports survive the wire and name each received number once, at its time."""

from __future__ import annotations

from callsd.core.video.arrivals import ArrivalRecorder
from callsd.core.wire.rtcp import Feedback, build_rtcp, parse_rtcp
from callsd.core.wire.transport_cc import build_transport_cc, parse_transport_cc
from hypothesis import given
from hypothesis import strategies as st

packets = st.lists(st.tuples(st.integers(-40, 60), st.integers(0, 20_000)), min_size=1, max_size=300)


@given(st.integers(0, 0xFFFF), st.integers(0, 10**12), packets, st.integers(1, 50))
def test_reports_roundtrip_and_name_each_received_number_once(start: int, t0: int,
                                                              steps: list[tuple[int, int]], every: int) -> None:
    r = ArrivalRecorder()
    seq, now = start, t0
    arrived: dict[int, int] = {}  # first arrival per 16-bit number, since its last report
    reported: list[tuple[int, int | None]] = []

    def drain() -> None:
        while (tcc := r.feedback(1, 2)) is not None:
            packet = parse_rtcp(build_rtcp([build_transport_cc(tcc)]))[0]
            assert isinstance(packet, Feedback)
            parsed = parse_transport_cc(packet)
            assert parsed == tcc
            reported.extend(((tcc.base_seq + i) & 0xFFFF, a) for i, a in enumerate(tcc.arrivals))

    for i, (jump, gap) in enumerate(steps):
        seq = (seq + jump) & 0xFFFF
        now += gap
        r.record(seq, now)
        arrived.setdefault(seq, now - now % 250)
        if i % every == 0:
            drain()
    drain()
    received = [(s, a) for s, a in reported if a is not None]
    assert len({s for s, _ in received}) == len(received) == r.recorded  # each received number once
    # at its first arrival, floored to 250 us; only the 24-bit reference's wrap may move all times of a report
    assert all((a - arrived[s]) % (64_000 << 24) == 0 for s, a in received)
    assert {s for s, a in reported if a is None}.isdisjoint({s for s, _ in received})  # lost xor received
