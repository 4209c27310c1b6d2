"""Stamping the transport-wide sequence number on outgoing packets: every header form keeps its payload and other
extensions, the number reads back, and arbitrary bytes never raise."""

from __future__ import annotations

import pytest
from callsd.core.wire.rtp import RtpHeader, build_rtp, parse_rtp
from callsd.core.wire.transport_seq import read_transport_seq, stamp_transport_seq
from hypothesis import given
from hypothesis import strategies as st

TWCC = 3


def packet(profile: int | None, extensions: tuple[tuple[int, bytes], ...] = (), csrcs: tuple[int, ...] = (),
           payload: bytes = b"\x90\x80payload") -> bytes:
    return build_rtp(RtpHeader(marker=True, payload_type=96, sequence=7, timestamp=1234, ssrc=0xABCDEF,
                               csrcs=csrcs, extension_profile=profile, extensions=extensions), payload)


def test_a_packet_without_extensions_gets_a_one_byte_block() -> None:
    plain = packet(None, csrcs=(1, 2))
    out = stamp_transport_seq(plain, TWCC, 0x1234)
    assert out is not None and len(out) == len(plain) + 8
    head = parse_rtp(out)
    assert head.extension(TWCC) == b"\x12\x34" and head.csrcs == (1, 2) and out.endswith(b"\x90\x80payload")
    assert read_transport_seq(out, TWCC) == 0x1234


def test_an_existing_element_is_overwritten_in_place() -> None:
    plain = packet(0xBEDE, ((1, b"\x05"), (TWCC, b"\x00\x00"), (4, b"mid")))
    out = stamp_transport_seq(plain, TWCC, 65535)
    assert out is not None and len(out) == len(plain)
    assert parse_rtp(out).extensions == ((1, b"\x05"), (TWCC, b"\xff\xff"), (4, b"mid"))


def test_the_element_goes_into_trailing_padding_or_grows_the_block() -> None:
    roomy = packet(0xBEDE, ((1, b"\x05"),))  # 2 bytes of element, 2 of padding: no room for 3
    out = stamp_transport_seq(roomy, TWCC, 9)
    assert out is not None and len(out) == len(roomy) + 4
    assert parse_rtp(out).extensions == ((1, b"\x05"), (TWCC, b"\x00\x09"))
    blanked = bytearray(packet(0xBEDE, ((1, b"\x05"), (4, b"abcd"))))
    blanked[18:23] = bytes(5)  # the route's remap blanked the MID: 5 bytes of padding at the end of the block
    out = stamp_transport_seq(bytes(blanked), TWCC, 10)
    assert out is not None and len(out) == len(blanked)
    assert parse_rtp(out).extensions == ((1, b"\x05"), (TWCC, b"\x00\x0a"))


def test_two_byte_blocks_take_a_two_byte_element() -> None:
    plain = packet(0x1000, ((1, b""), (20, b"x" * 20)))
    out = stamp_transport_seq(plain, TWCC, 300)
    assert out is not None
    head = parse_rtp(out)
    assert head.extension_profile == 0x1000 and head.extensions == ((1, b""), (20, b"x" * 20), (TWCC, b"\x01\x2c"))


@pytest.mark.parametrize("bad", [b"", b"\x80" * 11, b"\x90" + bytes(11) + b"\xbe\xde\x00\x05\x10",
                                 b"\x90" + bytes(11) + b"\x12\x34\x00\x00"])
def test_malformed_packets_are_refused(bad: bytes) -> None:
    assert stamp_transport_seq(bad, TWCC, 1) is None


extension_data = st.binary(min_size=1, max_size=16)


@given(st.sampled_from([None, 0xBEDE, 0x1000]), st.lists(st.tuples(st.integers(1, 14), extension_data), max_size=5,
                                                          unique_by=lambda e: e[0]),
       st.integers(0, 0xFFFF), st.integers(1, 14), st.binary(max_size=40), st.lists(st.integers(0, 2**32 - 1),
                                                                                     max_size=3))
def test_stamping_keeps_everything_else(profile: int | None, extensions: list[tuple[int, bytes]], seq: int,
                                        ext_id: int, payload: bytes, csrcs: list[int]) -> None:
    if profile is None:
        extensions = []
    plain = packet(profile, tuple(extensions), tuple(csrcs), payload)
    out = stamp_transport_seq(plain, ext_id, seq)
    assert out is not None
    before, after = parse_rtp(plain), parse_rtp(out)
    assert read_transport_seq(out, ext_id) == seq
    kept = [(i, d) for i, d in before.extensions if i != ext_id]
    assert [(i, d) for i, d in after.extensions if i != ext_id] == kept
    assert out[after.payload_offset:] == plain[before.payload_offset:]
    assert (after.sequence, after.timestamp, after.ssrc, after.csrcs) == (7, 1234, 0xABCDEF, tuple(csrcs))


@given(st.binary(max_size=80), st.integers(1, 14), st.integers(0, 0xFFFF))
def test_any_bytes_are_stamped_or_refused(data: bytes, ext_id: int, seq: int) -> None:
    out = stamp_transport_seq(data, ext_id, seq)
    assert out is None or read_transport_seq(out, ext_id) == seq
