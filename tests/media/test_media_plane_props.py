"""Hypothesis properties of the forwarding rewrite (adapters/media/forwarder.py)."""

from __future__ import annotations

import struct
from types import SimpleNamespace

from callsd.adapters.media.forwarder import Forwarder, InTrack, OutRoute, build_ext, parse_ext
from callsd.core.events import TrackKind
from hypothesis import given, settings
from hypothesis import strategies as st


class Sink:
    def __init__(self) -> None:
        self.rtp: list[bytes] = []

    def send_rtp(self, plain: bytes) -> bool:
        self.rtp.append(plain)
        return True


def make(start_seq: int, ts_offset: int) -> tuple[Forwarder, InTrack, OutRoute, Sink]:
    fwd = Forwarder(send_pli=lambda t: None, on_voice=lambda s, v: None)
    track = InTrack(track_id="t", session="s", kind=TrackKind.AUDIO, media="audio", mid="0", ssrc=1,
                    clock_rate=48000, codecs={111: ("opus", 48000, 2, "")}, ext={}, stream_id="x")
    sink = Sink()
    route = OutRoute(track=track, receiver=SimpleNamespace(peer=sink), ssrc=0xABCDEF01, mid="s1", paused=False,
                     ts_offset=ts_offset)
    route.last_seq = start_seq
    route.set_mapping({111: 100}, (0,) * 16)
    route.negotiated = True
    track.routes["r"] = route
    track.relive()
    return fwd, track, route, sink


ops = st.lists(st.one_of(st.integers(1, 30), st.just("pause"), st.just("resume")), max_size=40)


@settings(max_examples=200, deadline=None)
@given(ops=ops, seq0=st.integers(0, 0xFFFF), ts0=st.integers(0, 0xFFFFFFFF), start=st.integers(0, 0xFFFF),
       ts_offset=st.integers(0, 0xFFFFFFFF))
def test_receiver_sees_consecutive_sequence_numbers_across_pauses(
    ops: list[int | str], seq0: int, ts0: int, start: int, ts_offset: int
) -> None:
    fwd, track, route, sink = make(start, ts_offset)
    inbound = {1: track}
    seq, ts = seq0, ts0
    sent_in: list[tuple[int, int]] = []
    for op in ops:
        if op == "pause" or op == "resume":
            paused = op == "pause"
            if route.paused != paused:
                route.paused = paused
                route.resync = True
                track.relive()
            continue
        assert isinstance(op, int)
        for _ in range(op):
            pkt = struct.pack("!BBHII", 0x80, 111, seq, ts, 1) + b"p"
            before = len(sink.rtp)
            fwd.on_rtp(inbound, pkt)
            if len(sink.rtp) > before:
                sent_in.append((seq, ts))
            else:
                assert route.paused
            seq = (seq + 1) & 0xFFFF
            ts = (ts + 960) & 0xFFFFFFFF
    outs = [struct.unpack("!BBHII", p[:12]) for p in sink.rtp]
    for (_, b1, _oseq, ots, ossrc), (_iseq, its) in zip(outs, sent_in, strict=True):
        assert ossrc == 0xABCDEF01 and b1 & 0x7F == 100
        assert (ots - its) & 0xFFFFFFFF == ts_offset  # timestamps shift by a constant: real time is kept
    for prev, cur in zip(outs, outs[1:], strict=False):
        assert (cur[2] - prev[2]) & 0xFFFF == 1
    if outs:
        assert outs[0][2] == (start + 1) & 0xFFFF


elements = st.lists(st.tuples(st.integers(1, 14), st.binary(min_size=1, max_size=16)), max_size=6)


@given(elems=elements, table=st.lists(st.integers(0, 14), min_size=16, max_size=16))
def test_extension_block_rewrite_roundtrips(elems: list[tuple[int, bytes]], table: list[int]) -> None:
    table[0] = 0
    block = build_ext(elems, tuple(range(16)))
    if not elems:
        assert block == b""
        return
    assert len(block) % 4 == 0
    parsed, end = parse_ext(block + b"payload", 0)
    assert parsed == elems and end == len(block)
    out = build_ext(elems, tuple(table))
    expected = [(table[i], d) for i, d in elems if table[i]]
    if expected:
        assert parse_ext(out, 0)[0] == expected
    else:
        assert out == b""


@given(data=st.binary(max_size=64))
def test_forwarder_never_raises_on_garbage(data: bytes) -> None:
    fwd, track, _route, _sink = make(0, 0)
    fwd.on_rtp({1: track}, data)
    if len(data) >= 12:
        fwd.on_rtp({1: track}, b"\x90" + data[1:8] + b"\x00\x00\x00\x01" + data[12:])
