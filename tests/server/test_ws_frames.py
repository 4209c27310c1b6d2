"""The direct socket's frame codec (app/ws_frames.py) against wsproto as the client: any messages, fragmented and
interleaved with pings, cut into chunks anywhere, come out whole and in order; frames it writes parse as wsproto
reads them; the rules the guard does not check (UTF-8, close codes) are answered with their close code."""

from __future__ import annotations

from callsd.app.ws_frames import (
    NO_STATUS,
    Broken,
    Close,
    FrameReader,
    Ping,
    Received,
    close_frame,
    pong_frame,
    text_frame,
)
from hypothesis import given, settings
from hypothesis import strategies as st
from wsproto.connection import Connection, ConnectionType
from wsproto.events import CloseConnection, Message, Pong, TextMessage
from wsproto.events import Ping as WsPing


def _client() -> Connection:
    return Connection(ConnectionType.CLIENT)


def _read_in_chunks(wire: bytes, cuts: list[int]) -> list[Received]:
    reader, events, start = FrameReader(), list[Received](), 0
    for cut in sorted({c % (len(wire) + 1) for c in cuts}) + [len(wire)]:
        events += reader.receive(wire[start:cut])
        start = cut
    return events


messages = st.lists(st.tuples(st.one_of(st.text(max_size=300), st.binary(max_size=300)),
                              st.integers(1, 3), st.booleans()), max_size=6)


@settings(max_examples=200, deadline=None)
@given(messages, st.lists(st.integers(0, 10_000), max_size=8))
def test_messages_fragments_and_pings_come_out_whole_in_order_however_the_bytes_are_cut(
        sent: list[tuple[str | bytes, int, bool]], cuts: list[int]) -> None:
    client, wire, expected = _client(), b"", list[Received]()
    for data, fragments, ping_inside in sent:
        step = max(1, len(data) // fragments)
        pieces = [data[i:i + step] for i in range(0, len(data), step)] or [data]
        for n, piece in enumerate(pieces):
            last = n == len(pieces) - 1
            wire += client.send(Message(data=piece, message_finished=last))
            if last:
                expected.append(data)
            if ping_inside and n == 0:  # between fragments, or after a message of one frame
                wire += client.send(WsPing(payload=b"p"))
                expected.append(Ping(b"p"))
    assert _read_in_chunks(wire, cuts) == expected


def test_a_large_message_with_a_64_bit_length() -> None:
    data = "é" * 40_000  # 80,000 bytes: the 8-byte length form
    assert _read_in_chunks(_client().send(Message(data=data)), [1, 5, 70_000]) == [data]


def test_close_frames_carry_their_code_and_reason_and_nothing_after_is_read() -> None:
    client = _client()
    wire = client.send(CloseConnection(code=4001, reason="bye")) + b"\x81\x80\x00\x00\x00\x00"
    assert FrameReader().receive(wire) == [Close(4001, "bye")]
    assert FrameReader().receive(_masked(0x8, b"")) == [Close(NO_STATUS, "")]  # no code: answered with none


def _masked(opcode: int, payload: bytes) -> bytes:
    return bytes((0x80 | opcode, 0x80 | len(payload))) + b"\x00" * 4 + payload  # an all-zero mask


def test_rules_the_guard_does_not_check_are_answered_with_their_code() -> None:
    assert FrameReader().receive(_masked(0x1, b"\xc3\x28")) == [Broken(1007)]  # not UTF-8
    assert FrameReader().receive(_masked(0x8, b"\x03")) == [Broken(1002)]  # a one-byte close payload
    assert FrameReader().receive(_masked(0x8, (1006).to_bytes(2, "big"))) == [Broken(1002)]  # a local-only code
    assert FrameReader().receive(_masked(0x8, (1000).to_bytes(2, "big") + b"\xff")) == [Broken(1007)]
    reader = FrameReader()
    assert reader.receive(_masked(0x1, b"\xff") + _masked(0x1, b"ok")) == [Broken(1007)]
    assert reader.receive(_masked(0x1, b"ok")) == []  # nothing more is read after a broken rule


def test_frames_written_read_back_as_wsproto_reads_them() -> None:
    client = _client()
    client.receive_data(text_frame("é" * 70) + text_frame("x" * 70_000) + pong_frame(b"hi")
                        + close_frame(4001, "replaced"))
    events = list(client.events())
    texts = [e.data for e in events if isinstance(e, TextMessage)]
    assert texts == ["é" * 70, "x" * 70_000]
    assert any(isinstance(e, Pong) and e.payload == b"hi" for e in events)
    assert any(isinstance(e, CloseConnection) and (e.code, e.reason) == (4001, "replaced") for e in events)
    assert close_frame(NO_STATUS, "") == b"\x88\x00"
