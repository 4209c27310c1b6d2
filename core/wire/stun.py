"""STUN binding requests and their success responses, as an ICE-lite agent sees them (RFC 8489, RFC 8445 7.3), pure.

Theory of operation
-------------------
An ICE-lite server never sends checks: the only STUN it must read is a client's binding request, and the only STUN
it writes is the success response. This codec does exactly that and nothing more, with no generic message object:

* ``parse_binding_request(datagram)`` walks the attribute TLVs once and keeps what ICE needs: the transaction id,
  USERNAME (``<server ufrag>:<client ufrag>``), USE-CANDIDATE, and where MESSAGE-INTEGRITY sits. It checks
  FINGERPRINT (CRC-32 of what precedes it, XOR ``0x5354554e``) on the way. Attributes after MESSAGE-INTEGRITY are
  not authenticated and are ignored (RFC 8489 14.5), except FINGERPRINT, which must be the last attribute.
* ``StunBindingRequest.verify(key)`` checks MESSAGE-INTEGRITY (HMAC-SHA1 with the server's ICE password over the
  message up to the attribute, its header length counting the attribute, RFC 8489 14.5). Verifying is a separate
  step so that an adapter can refuse a request by its USERNAME alone before it pays for an HMAC.
* ``binding_success(transaction_id, ip, port, key)`` writes XOR-MAPPED-ADDRESS, MESSAGE-INTEGRITY and FINGERPRINT.
  ``ip`` is the packed address (4 or 16 bytes): turning text into bytes is the adapter's business (sockets).

Why not aioice's ``stun.Message``: it decodes every attribute into a dict and builds the response through the same
generic objects, ~32 µs per check in Python; three checks per join. Its encoder stays the reference: a Hypothesis
test requires this codec to read what aioice writes and to write, byte for byte, what aioice writes
(tests/media/test_media_stun_codec.py).

Bad input raises ``StunError`` and nothing else; its ``reason`` is the transport's drop counter: ``malformed`` (the
bytes are not a well-formed STUN message, or FINGERPRINT does not match), ``stun_other`` (well-formed, not a binding
request), ``stun_integrity`` (a binding request without USERNAME ``a:b``, MESSAGE-INTEGRITY or FINGERPRINT).
"""

from __future__ import annotations

import enum
import hmac
import struct
import zlib
from dataclasses import dataclass

from ..errors import RemoteProtocolError

__all__ = ["StunReason", "StunError", "StunBindingRequest", "parse_binding_request", "binding_success",
           "MAGIC_COOKIE"]

MAGIC_COOKIE = b"\x21\x12\xa4\x42"
_HEADER = 20
_BINDING_REQUEST = 0x0001
_BINDING_SUCCESS = 0x0101
_USERNAME = 0x0006
_MESSAGE_INTEGRITY = 0x0008
_XOR_MAPPED_ADDRESS = 0x0020
_USE_CANDIDATE = 0x0025
_FINGERPRINT = 0x8028
_FINGERPRINT_XOR = 0x5354554E
_INTEGRITY_SIZE = 24  # the attribute: 4-byte TLV head and the 20-byte HMAC-SHA1
_FINGERPRINT_SIZE = 8
_pack_head = struct.Struct(">HH").pack
_unpack_head = struct.Struct(">HH").unpack_from


class StunReason(enum.StrEnum):
    """Why a datagram is refused: the transport counts each as a drop reason of this name."""

    MALFORMED = "malformed"
    NOT_BINDING_REQUEST = "stun_other"
    NO_CREDENTIALS = "stun_integrity"


class StunError(RemoteProtocolError):
    """A datagram this codec refuses; ``reason`` says which kind of refusal it is."""

    def __init__(self, reason: StunReason, detail: str) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason


@dataclass(frozen=True, slots=True, kw_only=True)
class StunBindingRequest:
    """A binding request, parsed and FINGERPRINT-checked, not yet authenticated (``verify``)."""

    transaction_id: bytes
    username: str
    use_candidate: bool
    signed: bytes  # what MESSAGE-INTEGRITY covers: the message up to it, the header length counting it
    integrity: bytes  # the 20-byte HMAC the client sent

    @property
    def local_ufrag(self) -> str:
        """The server's ufrag: the first half of USERNAME."""
        return self.username.partition(":")[0]

    @property
    def remote_ufrag(self) -> str:
        """The client's ufrag: the second half of USERNAME."""
        return self.username.partition(":")[2]

    def verify(self, key: bytes) -> bool:
        """Whether MESSAGE-INTEGRITY verifies with ``key`` (the server's ICE password, RFC 8445 7.2.2)."""
        return hmac.compare_digest(self.integrity, hmac.digest(key, self.signed, "sha1"))


def _with_length(message: bytes, length: int) -> bytes:
    """``message`` with its header's length field set to ``length``."""
    return message[:2] + length.to_bytes(2, "big") + message[4:]


def parse_binding_request(data: bytes) -> StunBindingRequest:
    """Parse a datagram the demultiplexer handed to STUN; raise ``StunError`` (and nothing else) when refused."""
    n = len(data)
    if n < _HEADER or n & 3:
        raise StunError(StunReason.MALFORMED, f"a STUN message is a multiple of 4 bytes and at least 20, got {n}")
    kind, length = _unpack_head(data, 0)
    if length + _HEADER != n or data[4:8] != MAGIC_COOKIE:
        raise StunError(StunReason.MALFORMED, "bad STUN header (length or magic cookie)")
    if kind != _BINDING_REQUEST:
        raise StunError(StunReason.NOT_BINDING_REQUEST, f"message type 0x{kind:04x} is not a binding request")
    username: str | None = None
    use_candidate = False
    integrity_at = -1
    fingerprinted = False
    pos = _HEADER
    while pos < n:
        if fingerprinted:
            raise StunError(StunReason.MALFORMED, "an attribute follows FINGERPRINT")
        if pos + 4 > n:
            raise StunError(StunReason.MALFORMED, "truncated attribute header")
        attr, size = _unpack_head(data, pos)
        value_at = pos + 4
        end = value_at + size
        if end > n:
            raise StunError(StunReason.MALFORMED, f"attribute 0x{attr:04x} overruns the message")
        if attr == _FINGERPRINT:
            if size != 4:
                raise StunError(StunReason.MALFORMED, f"FINGERPRINT of {size} bytes")
            expected = zlib.crc32(_with_length(data[:pos], pos - _HEADER + _FINGERPRINT_SIZE)) ^ _FINGERPRINT_XOR
            if int.from_bytes(data[value_at:end], "big") != expected:
                raise StunError(StunReason.MALFORMED, "FINGERPRINT does not match")
            fingerprinted = True
        elif integrity_at >= 0:
            pass  # after MESSAGE-INTEGRITY: not authenticated, ignored (RFC 8489 14.5)
        elif attr == _USERNAME:
            try:
                username = data[value_at:end].decode()
            except UnicodeDecodeError:
                raise StunError(StunReason.MALFORMED, "USERNAME is not UTF-8") from None
        elif attr == _USE_CANDIDATE:
            use_candidate = True
        elif attr == _MESSAGE_INTEGRITY:
            if size != 20:
                raise StunError(StunReason.MALFORMED, f"MESSAGE-INTEGRITY of {size} bytes")
            integrity_at = pos
        pos = end + (-size & 3)
    if pos != n:
        raise StunError(StunReason.MALFORMED, "the last attribute's padding overruns the message")
    if username is None or username.count(":") != 1:
        raise StunError(StunReason.NO_CREDENTIALS, "missing or malformed USERNAME")
    if integrity_at < 0 or not fingerprinted:
        raise StunError(StunReason.NO_CREDENTIALS, "MESSAGE-INTEGRITY or FINGERPRINT missing")
    return StunBindingRequest(
        transaction_id=data[8:_HEADER], username=username, use_candidate=use_candidate,
        signed=_with_length(data[:integrity_at], integrity_at - _HEADER + _INTEGRITY_SIZE),
        integrity=data[integrity_at + 4:integrity_at + _INTEGRITY_SIZE])


def binding_success(transaction_id: bytes, ip: bytes, port: int, key: bytes) -> bytes:
    """The success response to a verified request from ``ip`` (packed, 4 or 16 bytes) and ``port``, signed with
    ``key``: XOR-MAPPED-ADDRESS (RFC 8489 14.2), MESSAGE-INTEGRITY, FINGERPRINT. Raises ``ValueError`` for an
    address of another size or a transaction id that is not 12 bytes (the adapter's mistake, not the peer's)."""
    if len(transaction_id) != 12:
        raise ValueError(f"a transaction id is 12 bytes, got {len(transaction_id)}")
    if len(ip) == 4:
        family, pad = 1, MAGIC_COOKIE
    elif len(ip) == 16:
        family, pad = 2, MAGIC_COOKIE + transaction_id
    else:
        raise ValueError(f"a packed IP address is 4 or 16 bytes, got {len(ip)}")
    if not 0 <= port <= 0xFFFF:
        raise ValueError(f"port {port} out of range")
    xored = (int.from_bytes(ip, "big") ^ int.from_bytes(pad, "big")).to_bytes(len(ip), "big")
    mapped = _pack_head(_XOR_MAPPED_ADDRESS, 4 + len(ip)) + bytes((0, family)) + (
        port ^ 0x2112).to_bytes(2, "big") + xored
    body = len(mapped)
    signed = _pack_head(_BINDING_SUCCESS, body + _INTEGRITY_SIZE) + MAGIC_COOKIE + transaction_id + mapped
    message = _with_length(signed + _pack_head(_MESSAGE_INTEGRITY, 20) + hmac.digest(key, signed, "sha1"),
                           body + _INTEGRITY_SIZE + _FINGERPRINT_SIZE)
    return message + _pack_head(_FINGERPRINT, 4) + (
        (zlib.crc32(message) ^ _FINGERPRINT_XOR).to_bytes(4, "big"))
