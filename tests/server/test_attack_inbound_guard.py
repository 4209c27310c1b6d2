"""app/http_inbound.py on its own: what a client may send is decided from headers, however the bytes are split."""

from __future__ import annotations

from attack_support import frame_header
from callsd.app.http_inbound import InboundGuard, Phase, RefusalReason
from hypothesis import given
from hypothesis import strategies as st

LIMIT = 1000
UPGRADE = (b"GET /api/v1/websocket HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           b"Sec-WebSocket-Key: x\r\nSec-WebSocket-Extensions: permessage-deflate;\r\n client_max_window_bits\r\n"
           b"Sec-WebSocket-Version: 13\r\n\r\n")


def _frame(length: int, opcode: int = 0x1, fin: bool = True) -> bytes:
    return frame_header(length, opcode, fin=fin) + b"p" * length


def _feed_in_pieces(guard: InboundGuard, data: bytes, cuts: list[int]) -> tuple[bytes, object]:
    forwarded, refusal = b"", None
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    for start, end in zip(points, points[1:], strict=False):
        checked = guard.feed(data[start:end])
        forwarded += checked.forward
        if checked.refusal is not None:
            refusal = checked.refusal
            break
    return forwarded, refusal


def _upgraded_guard() -> InboundGuard:
    guard = InboundGuard(max_message_bytes=LIMIT)
    guard.feed(UPGRADE)
    assert guard.response_started(b"HTTP/1.1 101 \r\n") is None
    return guard


@given(st.lists(st.tuples(st.integers(0, LIMIT), st.sampled_from([0x1, 0x2, 0x9, 0xA])), max_size=6),
       st.lists(st.integers(0, 10_000), max_size=12))
def test_frames_within_the_limit_pass_through_unchanged_however_split(frames, cuts):
    data = b"".join(_frame(min(n, 125) if op >= 0x8 else n, op) for n, op in frames)
    forwarded, refusal = _feed_in_pieces(_upgraded_guard(), data, cuts)
    assert refusal is None and forwarded == data


@given(st.integers(LIMIT + 1, 1 << 40), st.lists(st.integers(0, 10_000), max_size=12))
def test_a_message_over_the_limit_is_refused_at_its_header_after_the_frames_before_it(size, cuts):
    before = _frame(10) + _frame(5, 0x9)
    data = before + frame_header(size) + b"x" * 100
    forwarded, refusal = _feed_in_pieces(_upgraded_guard(), data, cuts)
    assert refusal is not None and refusal.reason is RefusalReason.MESSAGE_TOO_BIG and refusal.close_code == 1009
    assert forwarded == before


def test_fragments_count_towards_one_message():
    guard = _upgraded_guard()
    first = _frame(600, 0x1, fin=False)
    ping = _frame(3, 0x9)  # control frames may come between fragments and do not count
    assert guard.feed(first + ping).forward == first + ping
    checked = guard.feed(_frame(600, 0x0))
    assert checked.refusal is not None and checked.refusal.close_code == 1009 and checked.forward == b""


def test_malformed_frames_get_1002():
    cases = {
        "unmasked": bytes([0x81, 0x05]) + b"hello",
        "reserved bit": bytes([0xC1, 0x80]) + b"\0\0\0\0",
        "unknown opcode": bytes([0x83, 0x80]) + b"\0\0\0\0",
        "long ping": frame_header(126, 0x9) + b"x" * 126,
        "fragmented ping": frame_header(1, 0x9, fin=False) + b"x",
        "stray continuation": _frame(1, 0x0),
    }
    for name, data in cases.items():
        checked = _upgraded_guard().feed(data)
        assert checked.refusal is not None and checked.refusal.close_code == 1002, name
        assert checked.forward == b"", name


def test_the_extension_offer_is_stripped_so_no_compression_is_negotiated():
    checked = InboundGuard(max_message_bytes=LIMIT).feed(UPGRADE)
    assert checked.refusal is None
    assert b"permessage-deflate" not in checked.forward and b"client_max_window_bits" not in checked.forward
    assert checked.forward.startswith(b"GET /api/v1/websocket HTTP/1.1\r\n")
    assert b"Sec-WebSocket-Version: 13\r\n\r\n" in checked.forward


def test_plain_http_passes_and_a_protocol_switch_the_guard_did_not_see_is_refused():
    guard = InboundGuard(max_message_bytes=LIMIT)
    request = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    assert guard.feed(request[:10]).forward == b""  # the head is held until complete
    assert guard.feed(request[10:] + b"GET /").forward == request  # and so is the next one
    assert guard.phase is Phase.HTTP
    h2c = b" HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: h2c\r\nConnection: Upgrade, HTTP2-Settings\r\n\r\n"
    assert guard.feed(h2c).forward == b"GET /" + h2c
    assert guard.response_started(b"HTTP/1.1 200 \r\n") is None
    refusal = guard.response_started(b"HTTP/1.1 101 \r\n")
    assert refusal is not None and refusal.reason is RefusalReason.UNEXPECTED_UPGRADE


def test_http2_and_oversized_heads_are_refused():
    h2 = InboundGuard(max_message_bytes=LIMIT).feed(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
    assert h2.refusal is not None and h2.refusal.reason is RefusalReason.HTTP2
    big = InboundGuard(max_message_bytes=LIMIT, max_head_bytes=100).feed(b"GET / HTTP/1.1\r\nX: " + b"y" * 200)
    assert big.refusal is not None and big.refusal.http_status == 431


def test_frames_pipelined_before_the_upgrade_is_answered_are_bounded():
    guard = InboundGuard(max_message_bytes=LIMIT)
    checked = guard.feed(UPGRADE + _frame(900) + _frame(900))
    assert checked.refusal is not None and checked.refusal.reason is RefusalReason.EARLY_FRAMES
