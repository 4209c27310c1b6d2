"""RTCP compound packets: parse and build (core/wire/rtcp.py)."""

from __future__ import annotations

import pytest
from callsd.core.wire.rtcp import (
    Bye,
    Feedback,
    Fir,
    Nack,
    Pli,
    ReceiverReport,
    ReportBlock,
    RtcpError,
    SdesChunk,
    SenderReport,
    SourceDescription,
    UnknownRtcp,
    build_fir,
    build_nack,
    build_pli,
    build_rr,
    build_rtcp,
    build_sr,
    nack_pairs,
    parse_remb,
    parse_rtcp,
)
from callsd.core.wire.rtp import is_rtcp
from hypothesis import given
from hypothesis import strategies as st


def test_compound_sr_sdes_bye_round_trips() -> None:
    block = ReportBlock(ssrc=9, fraction_lost=12, cumulative_lost=-3, highest_seq=70000, jitter=5, lsr=6, dlsr=7)
    packets = [
        SenderReport(ssrc=1, ntp_timestamp=(3_900_000_000 << 32) | 5, rtp_timestamp=48000, packet_count=10,
                     octet_count=1000, reports=(block,)),
        SourceDescription(chunks=(SdesChunk(ssrc=1, items=((1, b"cname-abc"),)), SdesChunk(ssrc=2, items=()))),
        Bye(ssrcs=(1, 2), reason=b"bye"),
    ]
    data = build_rtcp(packets)
    assert is_rtcp(data) and len(data) % 4 == 0
    parsed = parse_rtcp(data)
    assert parsed == packets
    sdes = parsed[1]
    assert isinstance(sdes, SourceDescription) and sdes.cname_of(1) == "cname-abc" and sdes.cname_of(2) is None


def test_builders_for_what_an_sfu_sends() -> None:
    assert parse_rtcp(build_pli(sender_ssrc=1, media_ssrc=2)) == [Pli(sender_ssrc=1, media_ssrc=2)]
    assert parse_rtcp(build_fir(sender_ssrc=1, media_ssrc=2, seq=258)) == [Fir(sender_ssrc=1, entries=((2, 2),))]
    assert parse_rtcp(build_rr(ssrc=5)) == [ReceiverReport(ssrc=5)]
    sr = parse_rtcp(build_sr(ssrc=5, ntp_timestamp=1, rtp_timestamp=2, packet_count=3, octet_count=4))
    assert sr == [SenderReport(ssrc=5, ntp_timestamp=1, rtp_timestamp=2, packet_count=3, octet_count=4)]


def test_nack_folds_into_pid_blp_and_unfolds_back() -> None:
    lost = (65530, 65531, 65535, 0, 10, 40)
    assert nack_pairs(lost) == [(65530, 0x8031), (40, 0)]  # 10 is 16 after 65530: last BLP bit
    (nack,) = parse_rtcp(build_nack(sender_ssrc=1, media_ssrc=2, lost=lost))
    assert isinstance(nack, Nack) and nack.lost == lost and nack.media_ssrc == 2


def test_chromium_like_nack_bytes() -> None:
    # PID 100, BLP 0x0005 -> 100, 101, 103
    data = bytes.fromhex("81cd0003" "00000001" "00000002" "00640005")
    assert parse_rtcp(data) == [Nack(sender_ssrc=1, media_ssrc=2, lost=(100, 101, 103))]


def test_remb_and_transport_cc_stay_opaque_feedback() -> None:
    remb_fci = b"REMB" + bytes((1,)) + (3 << 18 | 1000).to_bytes(3, "big") + (0xABCD).to_bytes(4, "big")
    twcc = Feedback(packet_type=205, fmt=15, sender_ssrc=1, media_ssrc=2, fci=b"\x00\x01\x00\x02\x00\x00\x00\x00")
    remb = Feedback(packet_type=206, fmt=15, sender_ssrc=1, media_ssrc=0, fci=remb_fci)
    parsed = parse_rtcp(build_rtcp([twcc, remb]))
    assert parsed == [twcc, remb]
    assert parse_remb(remb) == (8000, (0xABCD,)) and parse_remb(twcc) is None


def test_unknown_types_and_padding() -> None:
    xr = UnknownRtcp(packet_type=207, count=0, body=b"\x00\x00\x00\x01")
    assert parse_rtcp(build_rtcp([xr])) == [xr]
    padded = bytes.fromhex("a0c90002" "00000005" "00000004")  # RR, P bit, 4 bytes of padding
    assert parse_rtcp(padded) == [ReceiverReport(ssrc=5)]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\x80\xc9", "too short"),
        (bytes.fromhex("40c90001 00000005"), "version must be 2"),
        (bytes.fromhex("80c90005 00000005"), "overruns"),
        (bytes.fromhex("81c90001 00000005"), "needs 28 bytes"),
        (bytes.fromhex("80c90001 00000005 8000"), "trailing bytes"),
        (bytes.fromhex("81ca0001 00000001"), "not terminated"),
        (bytes.fromhex("81cd0003 00000001 00000002 0064"), "overruns"),
        (bytes.fromhex("81cd0001 00000001"), "needs 8 bytes"),
        (bytes.fromhex("a0c90001 00000000"), "invalid padding"),
    ],
)
def test_malformed_rtcp_raises_rtcp_error(data: bytes, message: str) -> None:
    with pytest.raises(RtcpError, match=message):
        parse_rtcp(data)


@given(ssrc=st.integers(0, 2**32 - 1), ntp=st.integers(0, 2**64 - 1), rtp=st.integers(0, 2**32 - 1),
       packets=st.integers(0, 2**32 - 1), octets=st.integers(0, 2**32 - 1))
def test_an_sr_without_blocks_is_packed_as_build_rtcp_would(ssrc: int, ntp: int, rtp: int, packets: int,
                                                               octets: int) -> None:
    """build_sr's one-step packing (an SR per forwarded stream per second) gives build_rtcp's bytes."""
    fields = {"ssrc": ssrc, "ntp_timestamp": ntp, "rtp_timestamp": rtp, "packet_count": packets, "octet_count": octets}
    assert build_sr(**fields) == build_rtcp([SenderReport(**fields)])  # type: ignore[arg-type]
