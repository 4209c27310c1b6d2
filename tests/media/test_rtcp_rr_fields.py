"""``rtcp.build_rr_fields``, the reporting round's RR builder (ADR 0042), is ``build_rr`` without the dataclasses:
the same bytes for every block the round can build."""

from __future__ import annotations

import pytest
from callsd.core.wire import rtcp
from hypothesis import given
from hypothesis import strategies as st

U32 = st.integers(0, 0xFFFFFFFF)
FIELDS = st.tuples(U32, st.integers(0, 255), st.integers(-0x800000, 0x7FFFFF), U32, U32, U32, U32)


@given(U32, st.lists(FIELDS, max_size=31))
def test_rr_fields_are_byte_identical_to_rr_of_report_blocks(ssrc: int,
                                                           blocks: list[rtcp.BlockFields]) -> None:
    reference = rtcp.build_rr(ssrc=ssrc, reports=[
        rtcp.ReportBlock(ssrc=b[0], fraction_lost=b[1], cumulative_lost=b[2], highest_seq=b[3], jitter=b[4],
                         lsr=b[5], dlsr=b[6]) for b in blocks])
    ours = rtcp.build_rr_fields(ssrc=ssrc, blocks=blocks)
    assert ours == reference
    (rr,) = rtcp.parse_rtcp(ours)
    assert isinstance(rr, rtcp.ReceiverReport) and [b.cumulative_lost for b in rr.reports] == [b[2] for b in blocks]


def test_more_than_31_blocks_are_refused_like_build_rr() -> None:
    blocks = [(n, 0, 0, 0, 0, 0, 0) for n in range(32)]
    with pytest.raises(ValueError, match="0..31"):
        rtcp.build_rr_fields(ssrc=1, blocks=blocks)
    with pytest.raises(ValueError, match="0..31"):
        rtcp.build_rr(ssrc=1, reports=[rtcp.ReportBlock(ssrc=n) for n in range(32)])


class _Track:
    last_ts, last_rx, clock_rate = 960, 10.0, 48000


class _Route:
    def __init__(self, ssrc: int) -> None:
        self.ssrc, self.packets, self.octets, self.ts_offset, self.track = ssrc, 10, 1600, 7, _Track()


@pytest.mark.parametrize("streams", [0, 5, 39, 40, 120])
def test_a_session_round_is_split_into_compound_packets_under_the_chunk_size(streams: int) -> None:
    """One compound packet while it fits, else several under ``MAX_CHUNK``, each SR in exactly one of them."""
    from callsd.adapters.media.rtcp_term import MAX_CHUNK, session_reports

    chunks = session_reports(0xABC, [_Route(n) for n in range(1, streams + 1)], [], 10.5, 1 << 40)
    assert all(len(c) <= MAX_CHUNK for c in chunks)
    packets = [p for c in chunks for p in rtcp.parse_rtcp(c)]
    assert [p.ssrc for p in packets if isinstance(p, rtcp.SenderReport)] == list(range(1, streams + 1))
    assert len(chunks) == (1 if streams * 28 <= MAX_CHUNK else -(-streams * 28 // MAX_CHUNK))
    if not streams:
        assert packets == [rtcp.ReceiverReport(ssrc=0xABC)]


@given(U32, st.integers(0, (1 << 64) - 1), U32, U32, U32)
def test_sr_alone_packs_build_srs_bytes(ssrc: int, ntp: int, rtp_ts: int, packets: int, octets: int) -> None:
    packed = rtcp.SR_ALONE.pack(*rtcp.SR_ALONE_HEADER, ssrc, ntp, rtp_ts, packets, octets)
    assert packed == rtcp.build_sr(ssrc=ssrc, ntp_timestamp=ntp, rtp_timestamp=rtp_ts, packet_count=packets,
                                   octet_count=octets)
