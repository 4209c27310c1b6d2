"""Stamping the transport-wide sequence number on an outgoing RTP packet (draft-holmer-rmcat-transport-wide-cc-
extensions-01, section 2), pure.

Transport-cc feedback names packets by a 16-bit counter the *sender of the transport* writes into every RTP packet it
sends on it, whatever the stream: the header extension ``TWCC_URI`` with two bytes of data. An SFU is that sender
toward each receiver, so the counter is per receiving session and the element is written on the way out, after the
route's rewrite (the publisher's own transport-wide numbers, if any, belong to the publisher's transport and are
blanked by the route's remap).

``stamp_transport_seq(packet, ext_id, seq)`` returns a copy of ``packet`` carrying ``seq`` under ``ext_id``:

* an element with that id and two bytes of data is overwritten in place (same length);
* otherwise the element is appended after the block's last element: into the block's trailing padding when it has
  room (3 bytes in the one-byte form, 4 in the two-byte form), else the block grows by one 32-bit word;
* a packet without an extension block gets one (one-byte form, 8 bytes: ``BEDE 0001 | id/len seq seq 00``).

RTP padding (the P bit) sits at the end of the payload and is not touched. ``None`` for a packet whose header or
extension block is malformed (or of another profile), for which the caller sends it unstamped.
"""

from __future__ import annotations

import struct

from .rtp import ONE_BYTE_PROFILE, TWO_BYTE_PROFILE_MASK

__all__ = ["stamp_transport_seq", "read_transport_seq"]

_EXT_HDR = struct.Struct("!HH")


def _elements_end(packet: bytes, start: int, end: int, two_byte: bool) -> int | None:
    """The offset just after the last element of the block between ``start`` and ``end`` (trailing zero bytes are
    padding); None if the block is malformed or ends with the one-byte form's stop id (15)."""
    i = last = start
    while i < end:
        if two_byte:
            if packet[i] == 0:
                i += 1
                continue
            if i + 2 > end:
                return None
            i += 2 + packet[i + 1]
        else:
            b = packet[i]
            if b == 0:
                i += 1
                continue
            if b >> 4 == 15:
                return None
            i += 1 + (b & 0x0F) + 1
        if i > end:
            return None
        last = i
    return last


def _find(packet: bytes, start: int, end: int, two_byte: bool, ext_id: int) -> int | None:
    """The offset of the 2 data bytes of element ``ext_id`` in the block, if it is there with length 2."""
    i = start
    while i < end:
        if two_byte:
            eid = packet[i]
            if eid == 0:
                i += 1
                continue
            if i + 2 > end:
                return None
            length = packet[i + 1]
            if eid == ext_id and length == 2 and i + 4 <= end:
                return i + 2
            i += 2 + length
        else:
            b = packet[i]
            if b == 0:
                i += 1
                continue
            if b >> 4 == 15:
                return None
            length = (b & 0x0F) + 1
            if b >> 4 == ext_id and length == 2 and i + 3 <= end:
                return i + 1
            i += 1 + length
    return None


def stamp_transport_seq(packet: bytes, ext_id: int, seq: int) -> bytes | None:
    """``packet`` with transport-wide sequence number ``seq`` (mod 2^16) under extension id ``ext_id`` (1..14, or
    up to 255 in a two-byte block); None if the packet is malformed or the id does not fit its block."""
    n = len(packet)
    if n < 12 or packet[0] >> 6 != 2 or not 1 <= ext_id <= 255:
        return None
    hi, lo = seq >> 8 & 0xFF, seq & 0xFF
    off = 12 + 4 * (packet[0] & 0x0F)
    if off > n:
        return None
    if not packet[0] & 0x10:
        if ext_id > 14:
            return None
        block = bytes((0xBE, 0xDE, 0, 1, ext_id << 4 | 1, hi, lo, 0))
        return bytes((packet[0] | 0x10,)) + packet[1:off] + block + packet[off:]
    if off + 4 > n:
        return None
    profile, words = _EXT_HDR.unpack_from(packet, off)
    two_byte = profile & 0xFFF0 == TWO_BYTE_PROFILE_MASK
    if profile != ONE_BYTE_PROFILE and not two_byte:
        return None
    if not two_byte and ext_id > 14:
        return None
    start, end = off + 4, off + 4 + 4 * words
    if end > n:
        return None
    at = _find(packet, start, end, two_byte, ext_id)
    if at is not None:
        return packet[:at] + bytes((hi, lo)) + packet[at + 2 :]
    last = _elements_end(packet, start, end, two_byte)
    if last is None:
        return None
    element = bytes((ext_id, 2, hi, lo)) if two_byte else bytes((ext_id << 4 | 1, hi, lo))
    if end - last >= len(element):
        return packet[:last] + element + packet[last + len(element) :]
    used = last - start + len(element)
    size = -(-used // 4) * 4
    if size // 4 > 0xFFFF:
        return None
    block = packet[start:last] + element + bytes(size - used)
    return packet[:off] + _EXT_HDR.pack(profile, size // 4) + block + packet[end:]


def read_transport_seq(packet: bytes, ext_id: int) -> int | None:
    """The transport-wide sequence number a packet carries under ``ext_id``, or None (for tests and tools)."""
    n = len(packet)
    if n < 16 or not packet[0] & 0x10:
        return None
    off = 12 + 4 * (packet[0] & 0x0F)
    if off + 4 > n:
        return None
    profile, words = _EXT_HDR.unpack_from(packet, off)
    two_byte = profile & 0xFFF0 == TWO_BYTE_PROFILE_MASK
    if profile != ONE_BYTE_PROFILE and not two_byte:
        return None
    start, end = off + 4, off + 4 + 4 * words
    if end > n:
        return None
    at = _find(packet, start, end, two_byte, ext_id)
    return None if at is None else packet[at] << 8 | packet[at + 1]
