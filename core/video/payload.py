"""What a simulcast switch needs to know about a video payload: is it the start of a key frame, and the VP8
picture ids to rewrite (RFC 7741 for VP8, RFC 6184 for H.264), pure.

A receiver can only start decoding a new layer at a key frame, so the SFU switches a receiver's layer on the first
packet of a key frame of the wanted layer. VP8 marks it in the payload header of the first partition (P bit 0);
H.264 in the NAL unit type (5: IDR slice, 7: SPS, which a sender puts before the IDR), whether the NAL unit is
sent alone, aggregated (STAP-A, type 24) or fragmented (FU-A, type 28: the start fragment names the type).

VP8's payload descriptor carries a picture id (7 or 15 bits) and TL0PICIDX that a decoder checks for continuity; a
layer switch joins two streams with unrelated numbering, so ``rewrite_vp8_ids`` re-numbers them in place (the
descriptor keeps its length: a 7-bit id stays 7 bits, and wraps at 128).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Vp8Descriptor", "parse_vp8_descriptor", "rewrite_vp8_ids", "is_keyframe_start", "H264_KEY_NAL_TYPES"]

H264_KEY_NAL_TYPES = frozenset({5, 7})
_STAP_A, _FU_A = 24, 28


@dataclass(frozen=True, slots=True, kw_only=True)
class Vp8Descriptor:
    """The fields of a VP8 payload descriptor a switch uses; offsets are into the payload, -1 when absent."""

    start_of_partition: bool
    partition_id: int
    picture_id: int | None
    picture_id_bits: int  # 0, 7 or 15
    picture_id_offset: int
    tl0picidx: int | None
    tl0_offset: int
    header_length: int  # bytes of descriptor before the VP8 payload header


def parse_vp8_descriptor(payload: bytes | bytearray | memoryview) -> Vp8Descriptor | None:
    """The VP8 payload descriptor at the start of ``payload``; None when it is truncated."""
    n = len(payload)
    if n < 1:
        return None
    b0 = payload[0]
    off = 1
    picture_id: int | None = None
    bits, pid_off, tl0, tl0_off = 0, -1, None, -1
    if b0 & 0x80:
        if off >= n:
            return None
        x = payload[off]
        off += 1
        if x & 0x80:  # I: picture id
            if off >= n:
                return None
            pid_off = off
            if payload[off] & 0x80:
                if off + 1 >= n:
                    return None
                picture_id, bits = (payload[off] & 0x7F) << 8 | payload[off + 1], 15
                off += 2
            else:
                picture_id, bits = payload[off] & 0x7F, 7
                off += 1
        if x & 0x40:  # L: TL0PICIDX
            if off >= n:
                return None
            tl0, tl0_off = payload[off], off
            off += 1
        if x & 0x30:  # T or K: TID/Y/KEYIDX
            if off >= n:
                return None
            off += 1
    return Vp8Descriptor(start_of_partition=bool(b0 & 0x10), partition_id=b0 & 0x07, picture_id=picture_id,
                         picture_id_bits=bits, picture_id_offset=pid_off, tl0picidx=tl0, tl0_offset=tl0_off,
                         header_length=off)


def rewrite_vp8_ids(payload: bytearray, picture_id: int | None, tl0picidx: int | None) -> bool:
    """Write ``picture_id`` (mod the descriptor's width) and ``tl0picidx`` (mod 256) into ``payload`` in place,
    where the descriptor has those fields; False when the descriptor is truncated."""
    d = parse_vp8_descriptor(payload)
    if d is None:
        return False
    if picture_id is not None and d.picture_id_bits == 15:
        payload[d.picture_id_offset] = 0x80 | (picture_id >> 8 & 0x7F)
        payload[d.picture_id_offset + 1] = picture_id & 0xFF
    elif picture_id is not None and d.picture_id_bits == 7:
        payload[d.picture_id_offset] = picture_id & 0x7F
    if tl0picidx is not None and d.tl0_offset >= 0:
        payload[d.tl0_offset] = tl0picidx & 0xFF
    return True


def _vp8_keyframe_start(payload: bytes | bytearray | memoryview) -> bool:
    d = parse_vp8_descriptor(payload)
    if d is None or not d.start_of_partition or d.partition_id != 0 or d.header_length >= len(payload):
        return False
    return payload[d.header_length] & 0x01 == 0  # P bit of the VP8 payload header: 0 = key frame


def _h264_keyframe_start(payload: bytes | bytearray | memoryview) -> bool:
    n = len(payload)
    if n < 1:
        return False
    nal_type = payload[0] & 0x1F
    if nal_type == _STAP_A:
        off = 1
        while off + 2 < n:
            size = payload[off] << 8 | payload[off + 1]
            if size == 0 or off + 2 + size > n:
                return False
            if payload[off + 2] & 0x1F in H264_KEY_NAL_TYPES:
                return True
            off += 2 + size
        return False
    if nal_type == _FU_A:
        return n >= 2 and bool(payload[1] & 0x80) and payload[1] & 0x1F in H264_KEY_NAL_TYPES
    return nal_type in H264_KEY_NAL_TYPES


def is_keyframe_start(codec: str, payload: bytes | bytearray | memoryview) -> bool:
    """Whether ``payload`` (an RTP payload of ``codec``: "vp8" or "h264", any case) starts a key frame."""
    name = codec.lower()
    if name == "vp8":
        return _vp8_keyframe_start(payload)
    if name == "h264":
        return _h264_keyframe_start(payload)
    return False
