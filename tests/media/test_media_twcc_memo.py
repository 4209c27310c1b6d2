"""The sequencer's layout memo stamps exactly what the pure function stamps (adapters/media/twcc_send.py): the same
bytes for every packet, well-formed or not, however the packets of one sequencer share or change their blocks."""

from __future__ import annotations

from callsd.adapters.media import twcc_send
from callsd.adapters.media.twcc_send import TransportSequencer
from callsd.core.wire.rtp import RtpHeader, build_rtp
from callsd.core.wire.transport_seq import stamp_transport_seq
from hypothesis import given, settings
from hypothesis import strategies as st

one_byte_elements = st.lists(st.tuples(st.integers(1, 14), st.binary(min_size=1, max_size=16)), max_size=4)
two_byte_elements = st.lists(st.tuples(st.integers(1, 255), st.binary(max_size=20)), max_size=4)


@st.composite
def rtp_packets(draw: st.DrawFn) -> bytes:
    """Packets as routes send them (blocks of every form, blanked elements, CSRCs, padding), and a few mangled."""
    form = draw(st.sampled_from(["none", "one", "two", "other"]))
    elements = draw(two_byte_elements if form == "two" else one_byte_elements) if form != "none" else []
    profile = {"none": None, "one": 0xBEDE, "two": 0x1000, "other": 0x1234}[form]
    plain = bytearray(build_rtp(RtpHeader(marker=draw(st.booleans()), payload_type=111, sequence=draw(st.integers(0, 65535)),
                                          timestamp=7, ssrc=0x1234, csrcs=tuple(draw(st.lists(st.integers(0, 2**32 - 1), max_size=2))),
                                          extension_profile=profile, extensions=tuple(elements)),
                                draw(st.binary(max_size=40))))
    if form != "none" and draw(st.booleans()):  # a remap blanked some bytes of the block
        start = 12 + 4 * (plain[0] & 0x0F) + 4
        at = draw(st.integers(start, len(plain)))
        width = draw(st.integers(0, 6))
        plain[at:at + width] = bytes(len(plain[at:at + width]))
    mangle = draw(st.sampled_from(["keep", "keep", "keep", "truncate", "flip"]))
    if mangle == "truncate":
        del plain[draw(st.integers(0, len(plain))):]
    elif mangle == "flip" and plain:
        plain[draw(st.integers(0, len(plain) - 1))] ^= 1 << draw(st.integers(0, 7))
    return bytes(plain)


@settings(max_examples=300)
@given(ext_id=st.sampled_from([1, 3, 5, 14, 15, 200]), packets=st.lists(rtp_packets(), min_size=1, max_size=12),
       seq=st.integers(0, 65535))
def test_the_memo_stamps_what_the_pure_function_stamps(ext_id: int, packets: list[bytes], seq: int) -> None:
    sequencer = TransportSequencer(ext_id, lambda: 1.0)
    sequencer.next_seq = seq
    for plain in packets * 2:  # the second pass finds every layout learnt
        number = sequencer.next_seq
        expected = stamp_transport_seq(plain, ext_id, number)
        assert sequencer.stamp(plain) == (plain if expected is None else expected)


def test_same_block_other_payloads_reuse_one_layout_and_the_memo_is_bounded() -> None:
    sequencer = TransportSequencer(3, lambda: 1.0)
    block = ((1, b"\x05"),)
    for n in range(5):
        plain = build_rtp(RtpHeader(marker=False, payload_type=111, sequence=n, timestamp=n, ssrc=9,
                                    extension_profile=0xBEDE, extensions=block), bytes(n * 10))
        assert sequencer.stamp(plain) == stamp_transport_seq(plain, 3, n)
    assert len(sequencer._layouts) == 1  # noqa: SLF001 - the memo itself
    def level(n: int) -> bytes:
        return build_rtp(RtpHeader(marker=False, payload_type=111, sequence=1, timestamp=1, ssrc=9,
                                   extension_profile=0xBEDE, extensions=((1, n.to_bytes(2, "big")),)), b"x")

    for n in range(twcc_send._MAX_LAYOUTS + 3):  # noqa: SLF001 - its bound
        number = sequencer.next_seq
        assert sequencer.stamp(level(n)) == stamp_transport_seq(level(n), 3, number)
    assert len(sequencer._layouts) == twcc_send._MAX_LAYOUTS  # noqa: SLF001 - full: misses take the walk
    sequencer.next_seq = 0  # the number wrapped: the memo starts afresh
    assert sequencer.stamp(level(1000)) == stamp_transport_seq(level(1000), 3, 0)
    assert len(sequencer._layouts) == 1  # noqa: SLF001
