"""The HTTP/1.1 requests of one connection, one after another, delimited the way h11 delimits them (pure).

Why
---
The inbound guard (app/http_inbound.py, docs/adr/0008-http-guard.md) must see every WebSocket upgrade head, to strip
its extension offer and to read the frames after it header by header. A reverse proxy that reuses backend
connections (nginx ``keepalive``, HAProxy ``http-reuse``) sends an upgrade as the second or tenth request of a
connection, so the guard has to know where each request ends and the next head begins. ``RequestTracker`` follows
the framing of RFC 9112 section 6:

    HEAD ──(no body)───────────────────────────────────────────────────────────▶ HEAD (the next request)
      ├──(Content-Length: n)──▶ BODY (n bytes passed through) ────────────────▶ HEAD
      ├──(Transfer-Encoding: chunked)──▶ CHUNK_SIZE ──▶ CHUNK_DATA ──▶ CHUNK_END ──▶ CHUNK_SIZE ...
      │                                      └──(size 0)──▶ TRAILER ──(empty line)──▶ HEAD
      └──(a WebSocket upgrade)──▶ the caller's (every byte after it is a frame)

Heads, chunk-size lines and trailers are collected whole (each bounded by ``max_head_bytes``) and forwarded once
complete; body and chunk bytes pass through as they arrive, never buffered. Anything whose end is not certain is
refused with 400 rather than guessed (request smuggling lives in such disagreements): Content-Length together with
Transfer-Encoding, Content-Length values that differ or are not digits, a transfer coding other than one
``chunked``, a folded Content-Length or Transfer-Encoding line, a bare LF line ending (h11 accepts one, so the guard
would misplace the head's end), whitespace before a field's colon, an upgrade request with a body. Should the guard
and hypercorn still disagree, a 101 the guard did not foresee is refused by ``InboundGuard.response_started``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from .http_refusal import Refusal, RefusalReason

__all__ = ["RequestTracker", "RequestsStep", "strip_headers", "HEAD_END"]

HEAD_END = b"\r\n\r\n"
CRLF = b"\r\n"
HTTP2_PREFACE = b"PRI * HTTP/2.0"
STRIPPED_HEADERS = frozenset({b"sec-websocket-extensions"})
FRAMING_FIELDS = frozenset({b"content-length", b"transfer-encoding"})
MAX_CHUNK_LINE = 1024  # a chunk-size line with its extensions
MAX_LENGTH_DIGITS = 18  # a Content-Length or chunk size beyond ~10^18 bytes is not a request, it is an attack
MAX_SIZE_HEX_DIGITS = 16


class Framing(enum.Enum):
    HEAD = "head"
    BODY = "body"
    CHUNK_SIZE = "chunk_size"
    CHUNK_DATA = "chunk_data"
    CHUNK_END = "chunk_end"
    TRAILER = "trailer"


COLLECTED = {Framing.HEAD: HEAD_END, Framing.CHUNK_SIZE: CRLF, Framing.TRAILER: HEAD_END}  # state -> its terminator


@dataclass(frozen=True, slots=True, kw_only=True)
class RequestsStep:
    forward: bytes  # request bytes before any upgrade head, in order
    upgrade_head: bytes | None = None  # a WebSocket upgrade head, extension offer removed: the caller's from here
    after_upgrade: bytes = b""  # the bytes after that head (frames)
    refusal: Refusal | None = None


@dataclass(frozen=True, slots=True)
class _Head:
    """What the tracker needs from one request head."""

    body: int | None  # its Content-Length (0: none), or None for chunked
    upgrade: bool


class RequestTracker:
    """One connection's request stream before any WebSocket upgrade. ``feed`` every chunk; ``heads`` counts the
    plain request heads passed so far."""

    __slots__ = ("max_head_bytes", "heads", "_state", "_collected", "_left")

    def __init__(self, *, max_head_bytes: int) -> None:
        self.max_head_bytes = max_head_bytes
        self.heads = 0
        self._state = Framing.HEAD
        self._collected = bytearray()  # a head, chunk-size line or trailer not yet complete
        self._left = 0  # body or chunk bytes still to pass through, or CRLF bytes still expected after a chunk

    def feed(self, data: bytes) -> RequestsStep:
        view = memoryview(data)
        pieces: list[bytes] = []
        position = 0
        while position < len(view):
            state = self._state
            if state in (Framing.BODY, Framing.CHUNK_DATA):
                step = min(self._left, len(view) - position)
                pieces.append(bytes(view[position: position + step]))
                self._left -= step
                position += step
                if not self._left:
                    self._state, self._left = ((Framing.HEAD, 0) if state is Framing.BODY else (Framing.CHUNK_END, 2))
                continue
            if state is Framing.CHUNK_END:
                if view[position] != CRLF[2 - self._left]:
                    return _refused(pieces, "a chunk's data is not followed by CRLF")
                pieces.append(CRLF[2 - self._left: 3 - self._left])
                self._left -= 1
                position += 1
                if not self._left:
                    self._state = Framing.CHUNK_SIZE
                continue
            used, unit, refusal = self._collect(view[position:])
            if refusal is not None:
                return _refused(pieces, refusal)
            position += used
            if unit is None:
                break
            if state is Framing.HEAD:
                head = _read_head(unit)
                if isinstance(head, Refusal):
                    return RequestsStep(forward=b"".join(pieces), refusal=head)
                if head.upgrade:
                    return RequestsStep(forward=b"".join(pieces), upgrade_head=strip_headers(unit, STRIPPED_HEADERS),
                                        after_upgrade=bytes(view[position:]))
                self.heads += 1
                if head.body is None:
                    self._state = Framing.CHUNK_SIZE
                elif head.body:
                    self._state, self._left = Framing.BODY, head.body
            elif state is Framing.CHUNK_SIZE:
                size = _chunk_size(unit)
                if size is None:
                    return _refused(pieces, "a chunk-size line that is not a hexadecimal size")
                self._state, self._left = (Framing.TRAILER, 0) if size == 0 else (Framing.CHUNK_DATA, size)
            else:
                self._state = Framing.HEAD
            pieces.append(unit)
        return RequestsStep(forward=b"".join(pieces))

    def _collect(self, more: memoryview) -> tuple[int, bytes | None, Refusal | str | None]:
        """Add ``more`` to the unit being collected: (bytes of ``more`` used, the unit once complete, refusal)."""
        before = len(self._collected)
        self._collected += more
        terminator = COLLECTED[self._state]
        limit = MAX_CHUNK_LINE if self._state is Framing.CHUNK_SIZE else self.max_head_bytes
        if self._state is Framing.TRAILER:  # an empty trailer is a lone CRLF: search as if one preceded it
            found = (CRLF + self._collected).find(terminator, max(0, before - 3))
            end = -1 if found < 0 else found + len(terminator) - len(CRLF)
        else:
            found = self._collected.find(terminator, max(0, before - len(terminator) + 1))
            end = -1 if found < 0 else found + len(terminator)
        unit = self._collected if end < 0 else self._collected[:end]
        if self._state is Framing.HEAD and unit.startswith(HTTP2_PREFACE):
            self._collected = bytearray()
            return 0, None, Refusal(reason=RefusalReason.HTTP2, detail="HTTP/2 is not served (HTTP/1.1 only)",
                                    http_status=505)
        if _has_bare_lf(unit, before, min(len(unit), limit + 1)):  # new bytes, within what every split has seen
            self._collected = bytearray()
            return 0, None, "a line ends with a bare LF (only CRLF delimits a request here)"
        if len(unit) > limit:
            self._collected = bytearray()
            what = "request head" if self._state is Framing.HEAD else self._state.value.replace("_", "-")
            return 0, None, Refusal(reason=RefusalReason.HEAD_TOO_BIG, detail=f"{what} over {limit} bytes",
                                    http_status=431)
        if end < 0:
            return len(more), None, None
        self._collected = bytearray()
        return end - before, bytes(unit), None


def _has_bare_lf(data: bytes | bytearray, start: int, stop: int) -> bool:
    """An LF without its CR in ``data[start:stop]`` (only the new bytes: a head trickled in byte by byte costs
    linear time, not quadratic)."""
    index = data.find(b"\n", start, stop)
    while index >= 0:
        if index == 0 or data[index - 1] != CRLF[0]:
            return True
        index = data.find(b"\n", index + 1, stop)
    return False


def _refused(pieces: list[bytes], refusal: Refusal | str) -> RequestsStep:
    if isinstance(refusal, str):
        refusal = Refusal(reason=RefusalReason.REQUEST_FRAMING, detail=refusal, http_status=400)
    return RequestsStep(forward=b"".join(pieces), refusal=refusal)


def _framing_refusal(detail: str) -> Refusal:
    return Refusal(reason=RefusalReason.REQUEST_FRAMING, detail=detail, http_status=400)


def _read_head(head: bytes) -> _Head | Refusal:
    """The framing of one complete head, or why it cannot be trusted."""
    lines = head[: -len(HEAD_END)].split(CRLF)
    if not lines[0] or lines[0][:1] in (b" ", b"\t"):
        return _framing_refusal("no request line")
    fields: list[tuple[bytes, bytes]] = []
    for line in lines[1:]:
        if line[:1] in (b" ", b"\t"):
            if not fields or fields[-1][0] in FRAMING_FIELDS:
                return _framing_refusal("a folded line continues no field, or Content-Length/Transfer-Encoding")
            fields[-1] = (fields[-1][0], fields[-1][1] + b" " + line.strip(b" \t"))
            continue
        name, colon, value = line.partition(b":")
        if not colon or not name or name != name.strip(b" \t"):
            return _framing_refusal("a header field without a name, or with whitespace before its colon")
        fields.append((name.lower(), value.strip(b" \t")))
    lengths = {part.strip(b" \t") for name, value in fields if name == b"content-length" for part in value.split(b",")}
    codings = [value for name, value in fields if name == b"transfer-encoding"]
    upgrade = lines[0].startswith(b"GET ") and any(name == b"upgrade" and value.lower() == b"websocket"
                                                   for name, value in fields)
    if codings and lengths:
        return _framing_refusal("both Transfer-Encoding and Content-Length")
    if codings:
        if len(codings) != 1 or codings[0].lower() != b"chunked":
            return _framing_refusal("a transfer coding other than one 'chunked'")
        return _framing_refusal("a WebSocket upgrade with a body") if upgrade else _Head(body=None, upgrade=False)
    if len(lengths) > 1:
        return _framing_refusal("Content-Length values that differ")
    length = lengths.pop() if lengths else b"0"
    if not length.isdigit() or len(length) > MAX_LENGTH_DIGITS:
        return _framing_refusal("a Content-Length that is not a number")
    if upgrade and int(length):
        return _framing_refusal("a WebSocket upgrade with a body")
    return _Head(body=int(length), upgrade=upgrade)


def _chunk_size(line: bytes) -> int | None:
    size = line[: -len(CRLF)].partition(b";")[0].rstrip(b" \t")
    if not size or len(size) > MAX_SIZE_HEX_DIGITS or size.strip(b"0123456789abcdefABCDEF"):
        return None
    return int(size, 16)


def strip_headers(head: bytes, names: frozenset[bytes]) -> bytes:
    """The head without the header fields in ``names`` (continuation lines of a removed field go too)."""
    kept: list[bytes] = []
    dropping = False
    for index, line in enumerate(head[: -len(HEAD_END)].split(CRLF)):
        if index and line[:1] in (b" ", b"\t"):
            if not dropping:
                kept.append(line)
            continue
        dropping = bool(index) and line.partition(b":")[0].strip().lower() in names
        if not dropping:
            kept.append(line)
    return CRLF.join(kept) + HEAD_END
