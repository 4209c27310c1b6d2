"""What a client may send on one HTTP connection, checked as the bytes arrive (pure: no I/O, no clock).

Theory of operation
-------------------
hypercorn 0.18 buffers a whole WebSocket message before it compares its size with ``websocket_max_message_size``
and keeps reading after it has refused it, so one 256 MB frame costs 256 MB of memory before any check, and no
authentication runs first (issue 8, item 1; docs/adr/0008-http-guard.md). ``InboundGuard`` sits between the socket
and hypercorn (app/http_guard.py feeds it every chunk read) and decides from *headers* what the bytes that follow
may be, so an oversized message is refused when its frame header arrives, before its payload is read:

    HEAD ──(a request head, not an upgrade)──▶ HTTP ──(a later head that is a WebSocket upgrade)──┐
      │                                         (each request delimited: app/http_requests.py)      │
      └──(the first head is a WebSocket upgrade)──▶ FRAMES ◀───────────────────────────────────────┘
                        (extension offer stripped)     └── a frame too big / malformed ──▶ REFUSED

- HEAD and HTTP: ``RequestTracker`` (app/http_requests.py) delimits every request of the connection (head, then its
  Content-Length or chunked body) as hypercorn's h11 does, and refuses with 400 what it cannot delimit for sure. So
  every request head is seen, whether it is the first of the connection or the tenth on a connection a reverse
  proxy reuses (nginx ``keepalive``, HAProxy ``http-reuse``). A WebSocket upgrade head has its
  ``Sec-WebSocket-Extensions`` offer removed, so hypercorn never negotiates permessage-deflate: a compressed frame
  of 1 MiB can inflate to ~1 GB, and a size check on the wire bytes would mean nothing. An HTTP/2 preface is
  refused (callsd speaks HTTP/1.1 only: WebSockets over HTTP/2 would carry their frames inside h2 DATA frames this
  guard does not parse). HEAD differs from HTTP only for the join deadline (app/http_guard.py): a plain request
  head lifts it.
- FRAMES: every byte after the upgrade head is a frame. Every frame header (RFC 6455 section 5.2) is parsed as soon
  as its 2-14 bytes are in; the payload is then passed through without being looked at. A data message (its first
  frame plus continuations) longer than ``max_message_bytes`` is refused with close code 1009 before one byte of
  its payload is forwarded; reserved bits, unknown opcodes, unmasked client frames, oversized or fragmented control
  frames get 1002. Until the server has answered the upgrade (``response_started``), at most ``max_message_bytes``
  of frames may be pipelined (counted at their headers).
- A protocol switch the guard did not foresee (a 101 while no upgrade head is pending, e.g. h2c, or should the
  guard and h11 ever disagree on where a request ends) and a 101 that negotiates an extension are refused by
  ``response_started``: only an upgrade whose head this guard rewrote, and whose frames it therefore scans, may
  happen.
- REFUSED: nothing more is forwarded; the caller sends the close frame (``Refusal.close_code``) or the HTTP status
  and closes the socket at once.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

from .http_refusal import Refusal, RefusalReason
from .http_requests import RequestTracker

__all__ = ["InboundGuard", "Inbound", "Refusal", "RefusalReason", "Phase"]

CONTROL_OPCODES = frozenset({0x8, 0x9, 0xA})
DATA_OPCODES = frozenset({0x1, 0x2})
CONTINUATION = 0x0
MAX_CONTROL_PAYLOAD = 125


class Phase(enum.Enum):
    HEAD = "head"  # the first request head is not complete yet
    FRAMES = "frames"
    HTTP = "http"  # plain requests (at least one head complete); later ones are still delimited and inspected
    REFUSED = "refused"


@dataclass(frozen=True, slots=True, kw_only=True)
class Inbound:
    forward: bytes  # the bytes hypercorn may see (possibly rewritten), in order
    refusal: Refusal | None = None


class InboundGuard:
    """One connection's inbound byte stream, checked incrementally. ``feed`` every chunk read; tell
    ``response_started`` every chunk the server sends."""

    __slots__ = ("max_message_bytes", "max_head_bytes", "phase", "upgraded", "_requests", "_header",
                 "_payload_left", "_in_message", "_message_bytes", "_early_bytes")

    def __init__(self, *, max_message_bytes: int, max_head_bytes: int = 16 * 1024) -> None:
        self.max_message_bytes = max_message_bytes
        self.max_head_bytes = max_head_bytes
        self.phase = Phase.HEAD
        self.upgraded = False  # the server has answered 101 to the WebSocket upgrade
        self._requests = RequestTracker(max_head_bytes=max_head_bytes)
        self._header = bytearray()  # the frame header being collected
        self._payload_left = 0  # payload bytes of the current frame still to pass through
        self._in_message = False  # a fragmented data message is open
        self._message_bytes = 0
        self._early_bytes = 0  # frame bytes (headers and payloads) accepted before the upgrade was answered

    @property
    def head_done(self) -> bool:
        return self.phase is not Phase.HEAD

    # ------------------------------------------------------------------------------------------------- inbound

    def feed(self, data: bytes) -> Inbound:
        if self.phase is Phase.REFUSED:
            return Inbound(forward=b"")
        if self.phase in (Phase.HEAD, Phase.HTTP):
            return self._feed_requests(data)
        return self._feed_frames(data, b"")

    def _feed_requests(self, data: bytes) -> Inbound:
        step = self._requests.feed(data)
        if step.refusal is not None:
            self.phase = Phase.REFUSED
            return Inbound(forward=step.forward, refusal=step.refusal)
        if step.upgrade_head is not None:
            self.phase = Phase.FRAMES
            return self._feed_frames(step.after_upgrade, step.forward + step.upgrade_head)
        if self._requests.heads:
            self.phase = Phase.HTTP
        return Inbound(forward=step.forward)

    def _feed_frames(self, data: bytes, prefix: bytes) -> Inbound:
        """Pass ``data`` through up to the first frame header that breaks a rule; ``prefix`` goes first. A frame
        header is forwarded only once it is complete and accepted."""
        view = memoryview(data)
        pieces: list[bytes] = []
        position = 0
        while position < len(view):
            if self._payload_left:
                step = min(self._payload_left, len(view) - position)
                pieces.append(bytes(view[position: position + step]))
                self._payload_left -= step
                position += step
                continue
            need = _header_length(self._header, view[position:])
            take = min(need - len(self._header), len(view) - position)
            self._header += view[position: position + take]
            position += take
            if len(self._header) < need:
                break
            refusal = self._check_header(bytes(self._header))
            if refusal is None and not self.upgraded:
                self._early_bytes += len(self._header) + self._payload_left
                if self._early_bytes > self.max_message_bytes:
                    refusal = Refusal(reason=RefusalReason.EARLY_FRAMES, http_status=400,
                                      detail="frames sent before the upgrade was answered exceed the message limit")
            if refusal is not None:
                self.phase = Phase.REFUSED
                return Inbound(forward=prefix + b"".join(pieces), refusal=refusal)
            pieces.append(bytes(self._header))
            self._header = bytearray()
        return Inbound(forward=prefix + b"".join(pieces))

    def _check_header(self, header: bytes) -> Refusal | None:
        first, second = header[0], header[1]
        fin, reserved, opcode = first & 0x80, first & 0x70, first & 0x0F
        masked, length = second & 0x80, second & 0x7F
        if length == 126:
            length = struct.unpack_from("!H", header, 2)[0]
        elif length == 127:
            length = struct.unpack_from("!Q", header, 2)[0]
            if length >> 63:
                return self._bad("frame length has its most significant bit set")
        if reserved:
            return self._bad("reserved bits set (no extension was negotiated)")
        if not masked:
            return self._bad("client frames must be masked")
        if opcode in CONTROL_OPCODES:
            if not fin or length > MAX_CONTROL_PAYLOAD:
                return self._bad("control frames must be final and carry at most 125 bytes")
        elif opcode in DATA_OPCODES:
            if self._in_message:
                return self._bad("a new message started inside a fragmented one")
            self._message_bytes = 0
            self._in_message = True
        elif opcode == CONTINUATION:
            if not self._in_message:
                return self._bad("a continuation frame with no message to continue")
        else:
            return self._bad(f"unknown opcode {opcode:#x}")
        if opcode not in CONTROL_OPCODES:
            self._message_bytes += length
            if self._message_bytes > self.max_message_bytes:
                return Refusal(reason=RefusalReason.MESSAGE_TOO_BIG, close_code=1009,
                               detail=f"message over {self.max_message_bytes} bytes")
            if fin:
                self._in_message = False
        self._payload_left = length
        return None

    def _bad(self, detail: str) -> Refusal:
        return Refusal(reason=RefusalReason.BAD_FRAME, detail=detail, close_code=1002)

    # ------------------------------------------------------------------------------------------------ outbound

    def response_started(self, data: bytes) -> Refusal | None:
        """The server is about to send ``data``; refuse a protocol switch this guard did not foresee."""
        if not data.startswith(b"HTTP/1.1 101 "):
            return None
        if self.phase is Phase.FRAMES and not self.upgraded:
            if b"\r\nsec-websocket-extensions:" not in data.split(b"\r\n\r\n", 1)[0].lower():
                self.upgraded = True
                return None
            detail = "the server negotiated a WebSocket extension this guard had stripped from the request"
        else:
            detail = "a protocol switch answering no WebSocket upgrade head this guard saw"
        self.phase = Phase.REFUSED
        return Refusal(reason=RefusalReason.UNEXPECTED_UPGRADE, detail=detail)


def _header_length(collected: bytearray, more: memoryview) -> int:
    """How many bytes the frame header being collected has in all (2, 4 or 10, plus 4 for the mask)."""
    second = collected[1] if len(collected) > 1 else (more[1 - len(collected)] if len(more) > 1 - len(collected)
                                                       else None)
    if second is None:
        return 2
    extended = {126: 2, 127: 8}.get(second & 0x7F, 0)
    return 2 + extended + (4 if second & 0x80 else 0)
