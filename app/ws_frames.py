"""The server side of RFC 6455 framing for the direct signaling socket, after ``InboundGuard`` (pure: bytes in,
events out; bytes of frames to send).

Why (docs/performance.md, "Session 8: the socket open"): wsproto's ``Connection`` is a general codec (client and
server, extensions, incremental UTF-8, a frame parser built from generators); on the signaling socket it cost
~11 µs per small message received, and building one ~17 µs of each socket's open. Everything it checks about a
frame's *header* is already checked, before this code sees a byte, by the guard (app/http_inbound.py: reserved
bits, masking, opcodes, control frames final and ≤ 125 bytes, continuations only inside a message, the message
size), so what is left is small: find each frame's end, unmask its payload, join a message's fragments, check a
text message's UTF-8 and a close frame's code, and answer the close handshake.

``FrameReader.receive`` returns, in order, whole messages (``str`` for text, ``bytes`` for binary), ``Ping`` (to
be answered with a pong), ``Close`` (the peer's close frame, with its code and reason) and ``Broken`` (the peer's
bytes broke a rule the guard does not check: bad UTF-8 is 1007, a bad close frame 1002; the socket answers with
that code and stops reading). Pongs are dropped. Nothing after a ``Close`` or ``Broken`` is parsed.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["FrameReader", "Ping", "Close", "Broken", "Received", "text_frame", "close_frame", "pong_frame",
           "PING_FRAME", "NO_STATUS"]

NO_STATUS = 1005  # a close frame without a code (RFC 6455 section 7.4.1); never sent on the wire
PING_FRAME = b"\x89\x00"  # a server ping without payload
_VALID_CLOSE_CODES = frozenset((*range(1000, 1004), *range(1007, 1014), *range(3000, 5000)))
_TEXT, _BINARY, _CLOSE, _PING = 0x1, 0x2, 0x8, 0x9


@dataclass(frozen=True, slots=True)
class Ping:
    payload: bytes


@dataclass(frozen=True, slots=True)
class Close:
    code: int
    reason: str


@dataclass(frozen=True, slots=True)
class Broken:
    code: int  # the close code to answer with


Received = str | bytes | Ping | Close | Broken


def _header(opcode: int, length: int) -> bytes:
    if length < 126:
        return bytes((0x80 | opcode, length))
    if length < 1 << 16:
        return bytes((0x80 | opcode, 126)) + length.to_bytes(2, "big")
    return bytes((0x80 | opcode, 127)) + length.to_bytes(8, "big")


def text_frame(text: str) -> bytes:
    """One unmasked, final text frame."""
    payload = text.encode("utf-8")
    return _header(_TEXT, len(payload)) + payload


def pong_frame(payload: bytes) -> bytes:
    return _header(0xA, len(payload)) + payload


def close_frame(code: int, reason: str) -> bytes:
    """A close frame; ``NO_STATUS`` sends none (an empty payload), as the answer to a close that had none."""
    if code == NO_STATUS:
        return _header(_CLOSE, 0)
    payload = code.to_bytes(2, "big") + reason.encode("utf-8")[:123]
    return _header(_CLOSE, len(payload)) + payload


def _unmask(mask: bytes, payload: bytes) -> bytes:
    size = len(payload)
    if not size:
        return b""
    key = (mask * (size // 4 + 1))[:size]
    return (int.from_bytes(payload, "little") ^ int.from_bytes(key, "little")).to_bytes(size, "little")


class FrameReader:
    """One connection's incoming frames (module docstring); ``receive`` every chunk the guard forwards."""

    __slots__ = ("_pending", "_parts", "_opcode", "_done")

    def __init__(self) -> None:
        self._pending = b""  # the start of a frame whose end has not arrived
        self._parts: list[bytes] = []  # the fragments of the message being received
        self._opcode = 0  # its opcode (text or binary)
        self._done = False  # a close or a broken rule was returned: nothing more is parsed

    def receive(self, data: bytes) -> list[Received]:
        if self._done:
            return []
        buffer = self._pending + data if self._pending else data
        size, position, events = len(buffer), 0, list[Received]()
        while size - position >= 2 and not self._done:
            first, length = buffer[position], buffer[position + 1] & 0x7F
            start = position + 2
            if length == 126:
                length, start = int.from_bytes(buffer[start:start + 2], "big"), start + 2
            elif length == 127:
                length, start = int.from_bytes(buffer[start:start + 8], "big"), start + 8
            start += 4  # the guard forwards only masked frames
            end = start + length
            if end > size:
                break
            payload = _unmask(buffer[start - 4:start], buffer[start:end])
            position = end
            opcode = first & 0x0F
            if opcode < _CLOSE:  # data: a new message or a continuation (the guard keeps them in order)
                if opcode:
                    self._opcode = opcode
                self._parts.append(payload)
                if first & 0x80:
                    message = self._message()
                    events.append(message)
                    self._done = isinstance(message, Broken)
            elif opcode == _PING:
                events.append(Ping(payload))
            elif opcode == _CLOSE:
                events.append(_close(payload))
                self._done = True
        self._pending = buffer[position:]
        return events

    def _message(self) -> str | bytes | Broken:
        parts, self._parts = self._parts, []
        whole = parts[0] if len(parts) == 1 else b"".join(parts)
        if self._opcode == _BINARY:
            return whole
        try:
            return whole.decode("utf-8")
        except UnicodeDecodeError:
            return Broken(1007)


def _close(payload: bytes) -> Close | Broken:
    if not payload:
        return Close(NO_STATUS, "")
    code = int.from_bytes(payload[:2], "big")
    if len(payload) < 2 or code not in _VALID_CLOSE_CODES:
        return Broken(1002)
    try:
        return Close(code, payload[2:].decode("utf-8"))
    except UnicodeDecodeError:
        return Broken(1007)
