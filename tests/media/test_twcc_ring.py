"""The transport-cc send history (adapters/media/twcc_send.py) sizes itself to the rate it is fed: it starts at
FIRST slots, doubles whenever it would overwrite a packet sent less than COVER_MS ago (up to HISTORY), and keeps
every packet it held across a growth, so feedback for them still finds them. Each test runs on the C record (the
``TransportSequencer`` where the extension is built) and on its pure-Python twin."""

from __future__ import annotations

import struct

import pytest
from callsd.adapters.media.twcc_send import COVER_MS, FIRST, HISTORY, SequencerTwin, TransportSequencer
from callsd.core.wire.transport_cc import TransportCc


class TwinSequencer(SequencerTwin):
    """``TransportSequencer`` on the pure-Python twin (what runs where the extension is not built)."""

    __slots__ = ()
    results = TransportSequencer.results


SEQUENCERS = pytest.mark.parametrize("sequencer", [TransportSequencer, TwinSequencer])


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def packet(seq: int) -> bytes:
    return struct.pack("!BBHII", 0x80, 111, seq & 0xFFFF, seq * 960 & 0xFFFFFFFF, 0x1234) + bytes(20)


def ring_size(s: TransportSequencer | TwinSequencer) -> int:
    return len(s._seq)  # noqa: SLF001 - the size is what this test is about


def feedback(base: int, count: int) -> TransportCc:
    return TransportCc(sender_ssrc=1, media_ssrc=2, base_seq=base, reference_time=0, fb_count=0,
                       arrivals=tuple(1000 * i for i in range(count)))


@SEQUENCERS
def test_an_audio_rate_keeps_the_small_ring(sequencer: type[TransportSequencer]) -> None:
    clock = Clock()
    s = sequencer(5, clock)
    for i in range(3 * FIRST):  # 100 packets/s: FIRST slots cover 2.56 s > COVER_MS
        s.stamp(packet(i))
        clock.now += 0.010
    assert ring_size(s) == FIRST and COVER_MS < FIRST * 10


@SEQUENCERS
def test_a_high_rate_grows_the_ring_and_keeps_what_it_held(sequencer: type[TransportSequencer]) -> None:
    clock = Clock()
    s = sequencer(5, clock)
    for i in range(FIRST + 10):  # 1000 packets/s: FIRST slots are 256 ms, under COVER_MS
        s.stamp(packet(i))
        clock.now += 0.001
    assert ring_size(s) == 2 * FIRST
    got = s.results(feedback(0, FIRST + 10))  # every packet since the start is still known, each once
    assert [r.size for r in got] == [len(packet(0)) + 8] * (FIRST + 10)
    assert s.results(feedback(0, FIRST + 10)) == []
    for i in range(FIRST + 10, 40_000):
        s.stamp(packet(i))
        clock.now += 0.0001  # 10,000 packets/s: grows to the cap and no further
    assert ring_size(s) == HISTORY
