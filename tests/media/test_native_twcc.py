"""The native step's transport-wide stamp (adapters/media/native/twcc_stamp.h) against the Python reference: the
rules byte for byte on any packet, and the sequencer left as ``TransportSequencer.stamp`` leaves it (the step's
end-to-end equality, history included, is tests/media/test_native_diff.py's ``twcc`` runs)."""

from __future__ import annotations

import time

from callsd.adapters.media.native import _engine
from callsd.core.wire.rtp import RtpHeader, build_rtp
from callsd.core.wire.transport_seq import read_transport_seq, stamp_transport_seq
from hypothesis import given, settings
from hypothesis import strategies as st
from native_support import RouteSpec, Run, Scenario, TrackSpec, run

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


@settings(max_examples=500)
@given(plain=st.one_of(rtp_packets(), st.binary(max_size=64)), ext_id=st.integers(1, 255),
       seq=st.integers(0, 65535))
def test_the_c_rules_are_the_python_rules(plain: bytes, ext_id: int, seq: int) -> None:
    assert _engine.stamp_transport_seq(plain, ext_id, seq) == stamp_transport_seq(plain, ext_id, seq)


def _three_stamped_packets() -> Scenario:
    """One publisher's audio routed to one receiver whose packets carry a transport-wide number (ext id 5)."""
    return Scenario(profile=b"SRTP_AEAD_AES_128_GCM", publishers=1, receivers=1, receivers_connected=(True,),
                    tracks=(TrackSpec(publisher=0, media="audio", ssrc=0x1234, signalled=True, level_id=1),),
                    routes=(RouteSpec(track=0, receiver=0, ssrc=0xAA, ts_offset=5, last_seq=9, pt=109,
                                      remap=((1, 14),), paused=False, negotiated=True),),
                    events=tuple(("rtp", 0, n, 111, 0, bytes.fromhex("bede0001") + b"\x10\x05\x00\x00", 0,
                                  b"opus" * 10, False, 0x1234, "ok", 1) for n in range(1, 4)))


def test_the_step_stamps_and_records_like_the_python_path() -> None:
    """Guards the differential test against comparing nothing: a receiver's packet is stamped, and the number, the
    counters and the send-history entry are the same on both paths."""
    sc = _three_stamped_packets()
    reference = run(sc, "python", twcc=True)
    native = run(sc, "native", twcc=True)
    assert native == reference
    next_seq, stamped, unstampable, sent_bytes = native["sequencers"][0][:4]
    assert (next_seq, stamped, unstampable) == (3, 3, 0) and sent_bytes > 0
    assert [read_transport_seq(packet, 5) for packet in native["received"][1]] == [0, 1, 2]  # SRTP leaves the header clear


def test_a_sequencer_on_time_monotonic_is_read_in_c_with_its_value() -> None:
    """The server's sequencers and forwarder run on ``time.monotonic``; the step then reads CLOCK_MONOTONIC itself
    (no call, no float) and must record what ``time.monotonic()`` would have returned: a send time inside the
    window of two readings taken around the step, in ms, on every stamped slot."""
    sc = _three_stamped_packets()
    r = Run(sc, "native", twcc=True)
    try:
        for q in r.sequencers:
            q._clock = time.monotonic  # noqa: SLF001 - the server's clock
        r.plane.forwarder._clock = time.monotonic  # noqa: SLF001
        before = time.monotonic()
        r.play()
        after = time.monotonic()
        (q,) = r.sequencers
        assert q.stamped == 3
        assert all(before * 1000.0 <= q._send_ms[slot] <= after * 1000.0 for slot in range(3))  # noqa: SLF001
        assert all(before <= t.last_rx <= after for t in r.tracks if t.started)
        assert any(t.started for t in r.tracks)
    finally:
        r.close()
