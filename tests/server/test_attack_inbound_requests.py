"""app/http_requests.py through app/http_inbound.py: every request of a keep-alive connection is delimited, so a
WebSocket upgrade on a later request (a reverse proxy reusing its backend connection) is guarded like a first one,
and whatever cannot be delimited for sure (request smuggling shapes) is refused with 400."""

from __future__ import annotations

import pytest
from attack_support import frame_header
from callsd.app.http_inbound import InboundGuard, Phase, Refusal, RefusalReason
from hypothesis import given
from hypothesis import strategies as st

LIMIT = 1000
GET = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
OFFER = b"Sec-WebSocket-Extensions: permessage-deflate;\r\n client_max_window_bits\r\n"
UPGRADE = (b"GET /api/v1/websocket HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           b"Sec-WebSocket-Key: x\r\n" + OFFER + b"Sec-WebSocket-Version: 13\r\n\r\n")
STRIPPED = UPGRADE.replace(OFFER, b"")
ANSWER = b"HTTP/1.1 101 \r\nUpgrade: websocket\r\n\r\n"


def _post(body: bytes, *fields: bytes) -> bytes:
    lines = b"".join(field + b"\r\n" for field in fields or (b"Content-Length: %d" % len(body),))
    return b"POST /api/v1/x HTTP/1.1\r\nHost: 127.0.0.1\r\n" + lines + b"\r\n" + body


def _chunked(chunks: list[bytes], trailer: bytes = b"") -> bytes:
    body = b"".join(b"%x;name=value\r\n" % len(chunk) + chunk + b"\r\n" for chunk in chunks if chunk)
    return _post(body + b"0\r\n" + trailer + b"\r\n", b"Transfer-Encoding: chunked")


def _frame(length: int, opcode: int = 0x1) -> bytes:
    return frame_header(length, opcode) + b"p" * length


def _feed(data: bytes, cuts: list[int] = (), answer_at: int | None = None) -> tuple[bytes, Refusal | None]:
    """Feed ``data`` cut at ``cuts``; the server answers the upgrade once ``answer_at`` bytes are in (a cut there)."""
    guard = InboundGuard(max_message_bytes=LIMIT)
    forwarded, points = b"", sorted({c % (len(data) + 1) for c in cuts} | {0, len(data), answer_at or 0})
    for start, end in zip(points, points[1:], strict=False):
        checked = guard.feed(data[start:end])
        forwarded += checked.forward
        if answer_at is not None and end >= answer_at and guard.phase is Phase.FRAMES and not guard.upgraded:
            assert guard.response_started(ANSWER) is None
        if checked.refusal is not None:
            return forwarded, checked.refusal
    return forwarded, None


def test_a_get_then_an_upgrade_on_one_connection_is_guarded_like_a_first_upgrade():
    guard = InboundGuard(max_message_bytes=LIMIT)
    assert guard.feed(GET).forward == GET and guard.phase is Phase.HTTP
    assert guard.response_started(b"HTTP/1.1 200 \r\ncontent-length: 2\r\n\r\nok") is None
    checked = guard.feed(UPGRADE + _frame(10))
    assert checked.refusal is None and checked.forward == STRIPPED + _frame(10)  # the offer is stripped
    assert guard.phase is Phase.FRAMES and guard.response_started(ANSWER) is None and guard.upgraded
    assert guard.feed(_frame(500)).forward == _frame(500)


def test_an_oversized_frame_after_a_later_upgrade_is_refused_with_1009_before_its_payload():
    stream = GET + _post(b"x" * 50) + UPGRADE + _frame(20) + frame_header(LIMIT + 1) + b"y" * 300
    forwarded, refusal = _feed(stream, answer_at=len(GET + _post(b"x" * 50) + UPGRADE))
    assert refusal is not None and refusal.reason is RefusalReason.MESSAGE_TOO_BIG and refusal.close_code == 1009
    assert forwarded == GET + _post(b"x" * 50) + STRIPPED + _frame(20)


def test_a_body_is_passed_through_and_an_upgrade_head_inside_it_is_not_taken_for_one():
    guard = InboundGuard(max_message_bytes=LIMIT)
    posted = _post(UPGRADE)  # a body that looks like an upgrade request is still a body
    assert guard.feed(posted).forward == posted and guard.phase is Phase.HTTP
    refusal = guard.response_started(ANSWER)  # so a 101 now answers nothing the guard saw
    assert refusal is not None and refusal.reason is RefusalReason.UNEXPECTED_UPGRADE


def test_chunked_bodies_with_extensions_and_trailers_are_delimited():
    stream = _chunked([b"a" * 17, b"\r\n0\r\n\r\n" + UPGRADE], trailer=b"X-Checksum: 1\r\n") + _chunked([]) + UPGRADE
    forwarded, refusal = _feed(stream + _frame(3))
    assert refusal is None and forwarded == stream.replace(OFFER, b"", 2).replace(STRIPPED, UPGRADE, 1) + _frame(3)


SMUGGLING = {
    "CL and TE": _post(b"0\r\n\r\n", b"Content-Length: 5", b"Transfer-Encoding: chunked"),
    "TE and CL": _post(b"0\r\n\r\n", b"Transfer-Encoding: chunked", b"Content-Length: 5"),
    "differing CLs": _post(b"abcde", b"Content-Length: 5", b"Content-Length: 6"),
    "a CL list that differs": _post(b"abcde", b"Content-Length: 5, 6"),
    "a signed CL": _post(b"abcde", b"Content-Length: +5"),
    "a hex CL": _post(b"abcde", b"Content-Length: 0x5"),
    "an empty CL": _post(b"", b"Content-Length: "),
    "a huge CL": _post(b"", b"Content-Length: 9" + b"9" * 30),
    "TE gzip, chunked": _post(b"0\r\n\r\n", b"Transfer-Encoding: gzip, chunked"),
    "TE twice": _post(b"0\r\n\r\n", b"Transfer-Encoding: chunked", b"Transfer-Encoding: chunked"),
    "TE with a tab": _post(b"0\r\n\r\n", b"Transfer-Encoding:\tchunked\x0b"),
    "a folded CL": _post(b"abcde", b"Content-Length:", b" 5"),
    "whitespace before the colon": _post(b"abcde", b"Content-Length : 5"),
    "a bare LF head": b"GET / HTTP/1.1\nHost: a\n\n" + UPGRADE,
    "a bare LF in a field": _post(b"abcde", b"X: a\nContent-Length: 5"),
    "a bad chunk size": _post(b"zz\r\nab\r\n0\r\n\r\n", b"Transfer-Encoding: chunked"),
    "a negative chunk size": _post(b"-1\r\nab\r\n0\r\n\r\n", b"Transfer-Encoding: chunked"),
    "chunk data without its CRLF": _post(b"2\r\nabcd\r\n0\r\n\r\n", b"Transfer-Encoding: chunked"),
    "an upgrade with a body": UPGRADE.replace(b"\r\n\r\n", b"\r\nContent-Length: 4\r\n\r\n") + b"abcd",
    "a chunked upgrade": UPGRADE.replace(b"\r\n\r\n", b"\r\nTransfer-Encoding: chunked\r\n\r\n") + b"0\r\n\r\n",
    "no request line": b"\r\n\r\n" + UPGRADE,
}


@pytest.mark.parametrize("name", sorted(SMUGGLING))
def test_requests_that_cannot_be_delimited_for_sure_are_refused_with_400(name):
    forwarded, refusal = _feed(GET + SMUGGLING[name] + UPGRADE)
    assert refusal is not None, name
    assert refusal.reason is RefusalReason.REQUEST_FRAMING and refusal.http_status == 400, (name, refusal)
    if "chunk" in name:  # found in the body: its head and the valid bytes before went on; the bad ones did not
        assert (GET + SMUGGLING[name]).startswith(forwarded) and len(forwarded) < len(GET + SMUGGLING[name]), name
    else:
        assert forwarded == GET, name  # nothing of the doubtful request reaches hypercorn


def test_oversized_heads_chunk_lines_and_trailers_are_refused():
    long_line = _post(b"1" + b"0" * 2000 + b"\r\n", b"Transfer-Encoding: chunked")
    long_trailer = _post(b"0\r\nX: " + b"t" * 20_000 + b"\r\n\r\n", b"Transfer-Encoding: chunked")
    long_head = b"GET / HTTP/1.1\r\nX: " + b"h" * 20_000 + b"\r\n\r\n"
    for stream in (long_line, long_trailer, long_head):
        forwarded, refusal = _feed(GET + stream)
        assert refusal is not None and refusal.http_status == 431 and forwarded.startswith(GET)


def test_a_101_that_negotiates_an_extension_is_refused():
    guard = InboundGuard(max_message_bytes=LIMIT)
    guard.feed(GET + UPGRADE)
    refusal = guard.response_started(b"HTTP/1.1 101 \r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n")
    assert refusal is not None and refusal.reason is RefusalReason.UNEXPECTED_UPGRADE


_BODY = st.binary(max_size=40) | st.just(UPGRADE) | st.just(b"0\r\n\r\n")
_REQUEST = st.one_of(
    st.just(GET),
    _BODY.map(_post),
    st.tuples(st.lists(_BODY, max_size=3), st.sampled_from([b"", b"T: 1\r\n"])).map(lambda t: _chunked(*t)),
    st.sampled_from(sorted(SMUGGLING.values())),
)
_FRAMES = st.lists(st.integers(0, LIMIT + 200).map(_frame) | st.just(bytes([0x81, 0x05]) + b"hello"), max_size=4)


@given(st.lists(_REQUEST, max_size=5), st.booleans(), _FRAMES, st.lists(st.integers(0, 100_000), max_size=15),
       st.booleans())
def test_any_split_of_a_stream_gives_the_same_forwarded_bytes_and_refusal(requests, upgrade, frames, cuts, answer):
    stream = b"".join(requests) + (UPGRADE + b"".join(frames) if upgrade else b"")
    answer_at = len(b"".join(requests) + UPGRADE) if answer else None
    whole = _feed(stream, answer_at=answer_at)
    assert _feed(stream, cuts, answer_at=answer_at) == whole
    assert _feed(stream, list(range(len(stream))), answer_at=answer_at) == whole  # byte by byte
    if whole[1] is None and all(r in (GET,) or b"Content-Length: " in r for r in requests) and upgrade:
        assert whole[0] == b"".join(requests) + STRIPPED + b"".join(frames)  # bodies untouched, the head stripped


@given(st.integers(0, 3000), st.lists(st.integers(0, 5000), max_size=8))
def test_an_oversized_head_with_a_bare_lf_somewhere_is_refused_alike_however_split(lf_at, cuts):
    head = bytearray(b"GET / HTTP/1.1\r\nX: " + b"h" * 2500 + b"\r\n\r\n")
    head[min(lf_at, len(head) - 5)] = ord("\n")
    guard = InboundGuard(max_message_bytes=LIMIT, max_head_bytes=1024)
    whole = guard.feed(bytes(head)).refusal
    assert whole is not None and _feed_with(bytes(head), cuts) == whole


def _feed_with(data: bytes, cuts: list[int]) -> Refusal | None:
    guard = InboundGuard(max_message_bytes=LIMIT, max_head_bytes=1024)
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    for start, end in zip(points, points[1:], strict=False):
        refusal = guard.feed(data[start:end]).refusal
        if refusal is not None:
            return refusal
    return None
