"""The transport-wide sequencer's C record (native/sequencer_record.h) against its pure-Python twin
(twcc_send.SequencerTwin): Hypothesis drives both with the same stamps (valid and unstampable packets, any extension
id, probe clusters, a clock that jumps), feedback reads and forced growths, and requires the same stamped bytes, the
same results and the same counters after every step, and the same history, slot by slot, at the end."""

from __future__ import annotations

import struct
from typing import Any

import pytest
from callsd.adapters.media.twcc_send import SequencerTwin, TransportSequencer
from callsd.core.wire.transport_cc import TransportCc
from hypothesis import given, settings
from hypothesis import strategies as st

FIELDS = ("ext_id", "next_seq", "stamped", "unstampable", "sent_bytes", "cluster", "cluster_last", "_mask")
HISTORY = ("_send_ms", "_size", "_seq", "_reported", "_cluster")


class Clock:
    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


class TwinSequencer(SequencerTwin):
    __slots__ = ()
    results = TransportSequencer.results


def packet(draw: Any) -> bytes:
    """RTP with or without a one-byte extension block, sometimes malformed or too short to stamp."""
    head = struct.pack("!BBHII", draw(st.sampled_from([0x80, 0x90, 0x90, 0xA0])), 111, draw(st.integers(0, 0xFFFF)),
                       0, 0x1234)
    body = draw(st.sampled_from([b"", bytes.fromhex("bede0001") + bytes([0x10, 0x30, 0, 0]),
                                 bytes.fromhex("bede0002") + bytes(8), bytes.fromhex("10000001") + bytes(4)]))
    return (head + body + draw(st.binary(max_size=30)))[: draw(st.integers(0, 80))]


@st.composite
def programs(draw: Any) -> tuple[int, list[tuple[Any, ...]]]:
    ext_id = draw(st.sampled_from([1, 3, 14, 15, 0, 256]))
    ops: list[tuple[Any, ...]] = []
    for _ in range(draw(st.integers(1, 30))):
        kind = draw(st.sampled_from(["stamp"] * 6 + ["burst", "feedback", "cluster", "grow", "next"]))
        if kind == "stamp":
            ops.append(("stamp", packet(draw), draw(st.sampled_from([0.0, 0.001, 0.02, 3.0]))))
        elif kind == "burst":  # enough packets at a high rate to grow the ring
            ops.append(("burst", draw(st.integers(1, 400)), draw(st.sampled_from([0.0001, 0.001, 0.01]))))
        elif kind == "feedback":
            ops.append(("feedback", draw(st.integers(0, 0xFFFF)), draw(st.integers(1, 300)), draw(st.booleans())))
        elif kind == "cluster":
            ops.append(("cluster", draw(st.integers(0, 40)), draw(st.booleans())))
        elif kind == "next":
            ops.append(("next", draw(st.integers(0, 0xFFFF))))
        else:
            ops.append(("grow",))
    return ext_id, ops


def play(sequencer: Any, clock: Clock, op: tuple[Any, ...]) -> Any:
    kind = op[0]
    if kind == "stamp":
        clock.now += op[2]
        return sequencer.stamp(op[1])
    if kind == "burst":
        out = []
        for i in range(op[1]):
            clock.now += op[2]
            out.append(sequencer.stamp(struct.pack("!BBHII", 0x80, 111, i, 0, 1) + bytes(20)))
        return out
    if kind == "feedback":
        base, count, some_lost = op[1], op[2], op[3]
        arrivals = tuple(None if some_lost and i % 3 == 0 else 1000 * i for i in range(count))
        return sequencer.results(TransportCc(sender_ssrc=1, media_ssrc=2, base_seq=base, reference_time=0, fb_count=0,
                                             arrivals=arrivals))
    if kind == "cluster":
        sequencer.cluster, sequencer.cluster_last = op[1], op[2]
        return None
    if kind == "next":
        sequencer.next_seq = op[1]
        return None
    if sequencer._mask < 4095:  # noqa: SLF001 - growth is the twin's contract too
        sequencer._grow()  # noqa: SLF001
    return None


def state(sequencer: Any) -> tuple[Any, ...]:
    return tuple(getattr(sequencer, name) for name in FIELDS) + tuple(list(getattr(sequencer, name))
                                                                     for name in HISTORY)


@settings(max_examples=40, deadline=None)
@given(programs())
def test_the_c_record_and_the_twin_stamp_record_and_report_alike(program: tuple[int, list[tuple[Any, ...]]]) -> None:
    ext_id, ops = program
    c_clock, twin_clock = Clock(), Clock()
    record, twin = TransportSequencer(ext_id, c_clock), TwinSequencer(ext_id, twin_clock)
    assert state(record) == state(twin)
    for op in ops:
        assert play(record, c_clock, op) == play(twin, twin_clock, op), op
        assert [getattr(record, name) for name in FIELDS] == [getattr(twin, name) for name in FIELDS], op
    assert state(record) == state(twin)


def test_the_c_record_is_the_sequencer_where_the_extension_is_built() -> None:
    from callsd.adapters.media.native._engine import SequencerRecord

    assert TransportSequencer.__mro__[1] is SequencerRecord


def test_an_uninitialised_record_refuses_instead_of_crashing() -> None:
    sequencer = TransportSequencer.__new__(TransportSequencer)
    for use in (lambda: sequencer.stamp(bytes(20)), lambda: sequencer._take(0, 3), lambda: sequencer._send_ms):  # noqa: SLF001
        with pytest.raises(ValueError, match="not initialised"):
            use()
