"""RTX retransmission packets (RFC 4588), pure: wrap a packet into its RTX form, unwrap one back.

An RTX packet is the original packet sent on a separate stream: its own SSRC, payload type and sequence numbers,
the original timestamp, marker and header extensions, and a payload that starts with the original sequence number
(OSN, 2 bytes) followed by the original payload. A receiver that negotiated RTX tells retransmissions apart from
late originals by SSRC, which keeps its loss and jitter statistics honest (a plain resend on the media SSRC counts
as a duplicate).

``wrap_rtx`` builds the RTX form of a packet already rewritten for a receiver (its sequence number becomes the
OSN); padding of the original is dropped (it is not media). ``unwrap_rtx`` restores the original from a
publisher's RTX packet, given the media SSRC and payload type it repairs; ``None`` when the packet carries no OSN
(an RTX padding-only packet, which senders use as bandwidth probes) or is malformed.
"""

from __future__ import annotations

import struct

__all__ = ["wrap_rtx", "unwrap_rtx", "header_length"]

_HDR = struct.Struct("!BBHII")


def header_length(packet: bytes | bytearray | memoryview) -> int | None:
    """Bytes of fixed header, CSRCs and header extension; None if they do not fit ``packet``."""
    n = len(packet)
    if n < 12 or packet[0] >> 6 != 2:
        return None
    off = 12 + 4 * (packet[0] & 0x0F)
    if packet[0] & 0x10:
        if off + 4 > n:
            return None
        off += 4 + 4 * (packet[off + 2] << 8 | packet[off + 3])
    return off if off <= n else None


def _payload_end(packet: bytes | bytearray | memoryview, start: int) -> int | None:
    end = len(packet)
    if packet[0] & 0x20:
        pad = packet[-1]
        if pad == 0 or end - pad < start:
            return None
        end -= pad
    return end


def wrap_rtx(packet: bytes, *, ssrc: int, seq: int, payload_type: int) -> bytes | None:
    """The RTX packet retransmitting ``packet`` on stream ``ssrc`` with RTX sequence number ``seq``."""
    start = header_length(packet)
    if start is None:
        return None
    end = _payload_end(packet, start)
    if end is None:
        return None
    b0, b1, osn, ts, _ = _HDR.unpack_from(packet)
    head = _HDR.pack(b0 & ~0x20 & 0xFF, (b1 & 0x80) | (payload_type & 0x7F), seq & 0xFFFF, ts, ssrc)
    return head + bytes(packet[12:start]) + struct.pack("!H", osn) + bytes(packet[start:end])


def unwrap_rtx(packet: bytes, *, ssrc: int, payload_type: int) -> bytes | None:
    """The original packet of ``ssrc`` (payload type ``payload_type``) that the RTX ``packet`` carries."""
    start = header_length(packet)
    if start is None:
        return None
    end = _payload_end(packet, start)
    if end is None or end - start < 2:
        return None
    b0, b1, _, ts, _ = _HDR.unpack_from(packet)
    osn = packet[start] << 8 | packet[start + 1]
    head = _HDR.pack(b0 & ~0x20 & 0xFF, (b1 & 0x80) | (payload_type & 0x7F), osn, ts, ssrc)
    return head + bytes(packet[12:start]) + bytes(packet[start + 2 : end])
