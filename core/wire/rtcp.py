"""RTCP compound packets (RFC 3550, RFC 4585, RFC 5104): parse and build, pure.

``parse_rtcp(data)`` splits a compound packet into typed packets, or raises ``RtcpError`` (the module's one declared
error) whatever the bytes. Known types:

* ``SenderReport`` (PT 200) and ``ReceiverReport`` (201) with their ``ReportBlock``s,
* ``SourceDescription`` (202; ``cname_of(ssrc)``), ``Bye`` (203),
* transport feedback (205): ``Nack`` (FMT 1, generic NACK as PID/BLP pairs, unfolded into sequence numbers),
* payload-specific feedback (206): ``Pli`` (FMT 1), ``Fir`` (FMT 4),
* anything else is kept opaque: ``Feedback`` (other FMTs of 205/206, e.g. transport-cc FMT 15, REMB FMT 15 "REMB")
  and ``UnknownRtcp`` (other packet types, e.g. XR 207). ``parse_remb`` decodes a REMB ``Feedback`` on demand.

``build_rtcp(packets)`` is the inverse (a compound packet); ``build_sr``, ``build_rr``, ``build_pli``,
``build_fir`` and ``build_nack`` are shortcuts for what an SFU sends. RTCP runs at a few packets per second per
stream, so these use small dataclasses; the RTP fast path is in core/wire/rtp.py.

RFC 5761 demultiplexing of RTP and RTCP on one port: ``core.rtp.is_rtcp``.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ..errors import RemoteProtocolError
from .rtp import is_rtcp

__all__ = [
    "RtcpError",
    "is_rtcp",
    "ReportBlock",
    "SenderReport",
    "ReceiverReport",
    "SdesChunk",
    "SourceDescription",
    "Bye",
    "Nack",
    "Pli",
    "Fir",
    "Feedback",
    "UnknownRtcp",
    "RtcpPacket",
    "parse_rtcp",
    "build_rtcp",
    "build_sr",
    "build_rr",
    "build_rr_fields",
    "SR_ALONE",
    "SR_ALONE_HEADER",
    "BlockFields",
    "build_pli",
    "build_fir",
    "build_nack",
    "nack_pairs",
    "parse_remb",
    "PT_SR",
    "PT_RR",
    "PT_SDES",
    "PT_BYE",
    "PT_RTPFB",
    "PT_PSFB",
]

PT_SR, PT_RR, PT_SDES, PT_BYE, PT_APP, PT_RTPFB, PT_PSFB = 200, 201, 202, 203, 204, 205, 206
SDES_CNAME = 1

_HDR = struct.Struct("!BBH")
_U32 = struct.Struct("!I")
_SR = struct.Struct("!IQIII")
_SR_ALONE = struct.Struct("!BBHIQIII")  # an SR with no report blocks, header included (what an SFU sends per stream)
# For a loop that builds many: ``SR_ALONE_HEADER + (ssrc, ntp, rtp_timestamp, packet_count, octet_count)`` packed
# with ``SR_ALONE`` is ``build_sr``'s bytes without its keyword call (half the cost of an SR in the reporting round)
SR_ALONE = _SR_ALONE
SR_ALONE_HEADER = (0x80, PT_SR, 6)  # V=2 and no blocks, SR, 6 words after the first
_BLOCK = struct.Struct("!IIIIII")
_FB = struct.Struct("!II")
_NACK = struct.Struct("!HH")
_FIR = struct.Struct("!IB3x")


class RtcpError(RemoteProtocolError):
    """An RTCP compound packet could not be parsed; the message names the packet index and the problem."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ReportBlock:
    """A reception report about ``ssrc``; ``cumulative_lost`` is signed 24-bit, ``lsr``/``dlsr`` per RFC 3550."""

    ssrc: int
    fraction_lost: int = 0
    cumulative_lost: int = 0
    highest_seq: int = 0
    jitter: int = 0
    lsr: int = 0
    dlsr: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class SenderReport:
    ssrc: int
    ntp_timestamp: int  # 64-bit NTP format: seconds << 32 | fraction
    rtp_timestamp: int
    packet_count: int
    octet_count: int
    reports: tuple[ReportBlock, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class ReceiverReport:
    ssrc: int
    reports: tuple[ReportBlock, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class SdesChunk:
    """One SSRC's items as ``(type, value)`` pairs (type 1 is CNAME)."""

    ssrc: int
    items: tuple[tuple[int, bytes], ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class SourceDescription:
    chunks: tuple[SdesChunk, ...] = ()

    def cname_of(self, ssrc: int) -> str | None:
        for chunk in self.chunks:
            if chunk.ssrc == ssrc:
                for kind, value in chunk.items:
                    if kind == SDES_CNAME:
                        return value.decode("utf-8", "replace")
        return None


@dataclass(frozen=True, slots=True, kw_only=True)
class Bye:
    ssrcs: tuple[int, ...] = ()
    reason: bytes | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Nack:
    """Generic NACK (RFC 4585 6.2.1): ``lost`` lists the missing sequence numbers of ``media_ssrc``, in wire order."""

    sender_ssrc: int
    media_ssrc: int
    lost: tuple[int, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Pli:
    """Picture Loss Indication (RFC 4585 6.3.1): ask ``media_ssrc``'s sender for a key frame."""

    sender_ssrc: int
    media_ssrc: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Fir:
    """Full Intra Request (RFC 5104 4.3.1): ``entries`` are ``(ssrc, command sequence number)``."""

    sender_ssrc: int
    entries: tuple[tuple[int, int], ...]
    media_ssrc: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class Feedback:
    """Feedback (PT 205/206) kept opaque: transport-cc, REMB and other FMTs; ``fci`` is the raw FCI."""

    packet_type: int
    fmt: int
    sender_ssrc: int
    media_ssrc: int
    fci: bytes = b""


@dataclass(frozen=True, slots=True, kw_only=True)
class UnknownRtcp:
    """A packet of another type (APP, XR...); ``count`` is the 5-bit field, ``body`` follows the 4-byte header."""

    packet_type: int
    count: int
    body: bytes = b""


RtcpPacket = SenderReport | ReceiverReport | SourceDescription | Bye | Nack | Pli | Fir | Feedback | UnknownRtcp


def parse_rtcp(data: bytes | bytearray | memoryview) -> list[RtcpPacket]:
    """Parse a compound RTCP packet; raise ``RtcpError`` when any part is malformed.

    Every packet must have version 2 and a length that fits; padding (P bit) is stripped. An empty input is an
    error (a compound packet holds at least one packet).
    """
    data = bytes(data)
    n = len(data)
    if n < 4:
        raise RtcpError(f"RTCP packet too short: {n} bytes")
    out: list[RtcpPacket] = []
    off = 0
    index = 0
    while off < n:
        if off + 4 > n:
            raise RtcpError(f"packet {index}: {n - off} trailing bytes are not an RTCP header")
        b0, pt, words = _HDR.unpack_from(data, off)
        if b0 >> 6 != 2:
            raise RtcpError(f"packet {index}: version must be 2, got {b0 >> 6}")
        end = off + 4 * (words + 1)
        if end > n:
            raise RtcpError(f"packet {index}: length {words} words overruns the compound packet")
        body = data[off + 4 : end]
        if b0 & 0x20:
            if not body or body[-1] == 0 or body[-1] > len(body):
                raise RtcpError(f"packet {index}: invalid padding")
            body = body[: len(body) - body[-1]]
        out.append(_parse_one(index, b0 & 0x1F, pt, body))
        off = end
        index += 1
    return out


def _parse_one(index: int, count: int, pt: int, body: bytes) -> RtcpPacket:
    where = f"packet {index} (PT {pt})"
    if pt == PT_SR:
        if len(body) < 24 + 24 * count:
            raise RtcpError(f"{where}: sender report with {count} blocks needs {24 + 24 * count} bytes")
        ssrc, ntp, rtp_ts, pkts, octets = _SR.unpack_from(body, 0)
        return SenderReport(ssrc=ssrc, ntp_timestamp=ntp, rtp_timestamp=rtp_ts, packet_count=pkts,
                            octet_count=octets, reports=_blocks(body, 24, count))
    if pt == PT_RR:
        if len(body) < 4 + 24 * count:
            raise RtcpError(f"{where}: receiver report with {count} blocks needs {4 + 24 * count} bytes")
        return ReceiverReport(ssrc=_U32.unpack_from(body, 0)[0], reports=_blocks(body, 4, count))
    if pt == PT_SDES:
        return SourceDescription(chunks=_sdes_chunks(where, body, count))
    if pt == PT_BYE:
        if len(body) < 4 * count:
            raise RtcpError(f"{where}: BYE with {count} SSRCs needs {4 * count} bytes")
        ssrcs = struct.unpack_from(f"!{count}I", body, 0)
        reason = None
        rest = body[4 * count :]
        if rest:
            if 1 + rest[0] > len(rest):
                raise RtcpError(f"{where}: BYE reason length {rest[0]} overruns the packet")
            reason = rest[1 : 1 + rest[0]]
        return Bye(ssrcs=tuple(ssrcs), reason=reason)
    if pt in (PT_RTPFB, PT_PSFB):
        if len(body) < 8:
            raise RtcpError(f"{where}: feedback needs 8 bytes of SSRCs, got {len(body)}")
        sender, media = _FB.unpack_from(body, 0)
        fci = body[8:]
        if pt == PT_RTPFB and count == 1:
            if len(fci) % 4:
                raise RtcpError(f"{where}: NACK FCI of {len(fci)} bytes is not a multiple of 4")
            lost: list[int] = []
            for i in range(0, len(fci), 4):
                pid, blp = _NACK.unpack_from(fci, i)
                lost.append(pid)
                lost.extend((pid + bit + 1) & 0xFFFF for bit in range(16) if blp >> bit & 1)
            return Nack(sender_ssrc=sender, media_ssrc=media, lost=tuple(lost))
        if pt == PT_PSFB and count == 1:
            return Pli(sender_ssrc=sender, media_ssrc=media)
        if pt == PT_PSFB and count == 4:
            if len(fci) % 8:
                raise RtcpError(f"{where}: FIR FCI of {len(fci)} bytes is not a multiple of 8")
            entries = tuple(_FIR.unpack_from(fci, i) for i in range(0, len(fci), 8))
            return Fir(sender_ssrc=sender, media_ssrc=media, entries=entries)
        return Feedback(packet_type=pt, fmt=count, sender_ssrc=sender, media_ssrc=media, fci=fci)
    return UnknownRtcp(packet_type=pt, count=count, body=body)


def _blocks(body: bytes, off: int, count: int) -> tuple[ReportBlock, ...]:
    blocks = []
    for i in range(count):
        ssrc, lost_word, highest, jitter, lsr, dlsr = _BLOCK.unpack_from(body, off + 24 * i)
        cumulative = lost_word & 0xFFFFFF
        if cumulative & 0x800000:
            cumulative -= 0x1000000
        blocks.append(ReportBlock(ssrc=ssrc, fraction_lost=lost_word >> 24, cumulative_lost=cumulative,
                                  highest_seq=highest, jitter=jitter, lsr=lsr, dlsr=dlsr))
    return tuple(blocks)


def _sdes_chunks(where: str, body: bytes, count: int) -> tuple[SdesChunk, ...]:
    chunks = []
    off = 0
    n = len(body)
    for c in range(count):
        if off + 4 > n:
            raise RtcpError(f"{where}: SDES chunk {c} has no SSRC")
        ssrc = _U32.unpack_from(body, off)[0]
        off += 4
        items: list[tuple[int, bytes]] = []
        while True:
            if off >= n:
                raise RtcpError(f"{where}: SDES chunk {c} is not terminated")
            kind = body[off]
            if kind == 0:
                off = (off + 4) & ~3  # the null item plus padding to the next 32-bit boundary
                break
            if off + 2 > n or off + 2 + body[off + 1] > n:
                raise RtcpError(f"{where}: SDES item {kind} in chunk {c} overruns the packet")
            length = body[off + 1]
            items.append((kind, body[off + 2 : off + 2 + length]))
            off += 2 + length
        chunks.append(SdesChunk(ssrc=ssrc, items=tuple(items)))
    return tuple(chunks)


# --- building ------------------------------------------------------------------------------------------------


def _packet(count: int, pt: int, body: bytes) -> bytes:
    if len(body) % 4:
        raise ValueError("an RTCP body must be a multiple of 4 bytes")
    if not 0 <= count <= 31:
        raise ValueError(f"an RTCP count field holds 0..31, got {count}")
    return _HDR.pack(0x80 | count, pt, len(body) // 4) + body


def _pack_blocks(reports: Sequence[ReportBlock]) -> bytes:
    return b"".join(
        _BLOCK.pack(r.ssrc, (r.fraction_lost & 0xFF) << 24 | (r.cumulative_lost & 0xFFFFFF), r.highest_seq,
                    r.jitter, r.lsr, r.dlsr)
        for r in reports
    )


def _serialize(p: RtcpPacket) -> bytes:
    if isinstance(p, SenderReport):
        body = _SR.pack(p.ssrc, p.ntp_timestamp, p.rtp_timestamp, p.packet_count, p.octet_count)
        return _packet(len(p.reports), PT_SR, body + _pack_blocks(p.reports))
    if isinstance(p, ReceiverReport):
        return _packet(len(p.reports), PT_RR, _U32.pack(p.ssrc) + _pack_blocks(p.reports))
    if isinstance(p, SourceDescription):
        sdes = bytearray()
        for chunk in p.chunks:
            sdes += _U32.pack(chunk.ssrc)
            for kind, value in chunk.items:
                if not 1 <= kind <= 255 or len(value) > 255:
                    raise ValueError("an SDES item has a type 1..255 and at most 255 bytes")
                sdes += bytes((kind, len(value))) + value
            sdes += bytes(4 - len(sdes) % 4)  # null terminator and padding: at least one zero byte
        return _packet(len(p.chunks), PT_SDES, bytes(sdes))
    if isinstance(p, Bye):
        body = struct.pack(f"!{len(p.ssrcs)}I", *p.ssrcs)
        if p.reason is not None:
            if len(p.reason) > 255:
                raise ValueError("a BYE reason has at most 255 bytes")
            reason = bytes((len(p.reason),)) + p.reason
            body += reason + bytes(-len(reason) % 4)
        return _packet(len(p.ssrcs), PT_BYE, body)
    if isinstance(p, Nack):
        return _packet(1, PT_RTPFB, _FB.pack(p.sender_ssrc, p.media_ssrc) + b"".join(
            _NACK.pack(pid, blp) for pid, blp in nack_pairs(p.lost)))
    if isinstance(p, Pli):
        return _packet(1, PT_PSFB, _FB.pack(p.sender_ssrc, p.media_ssrc))
    if isinstance(p, Fir):
        return _packet(4, PT_PSFB, _FB.pack(p.sender_ssrc, p.media_ssrc) + b"".join(
            _FIR.pack(ssrc, seq & 0xFF) for ssrc, seq in p.entries))
    if isinstance(p, Feedback):
        return _packet(p.fmt, p.packet_type, _FB.pack(p.sender_ssrc, p.media_ssrc) + p.fci)
    return _packet(p.count, p.packet_type, p.body)


def build_rtcp(packets: Iterable[RtcpPacket]) -> bytes:
    """Serialize packets into one compound RTCP packet (no padding). Raises ``ValueError`` for unencodable fields."""
    return b"".join(_serialize(p) for p in packets)


def nack_pairs(lost: Iterable[int]) -> list[tuple[int, int]]:
    """Fold sequence numbers into RFC 4585 (PID, BLP) pairs, in first-seen order, each PID covering 17 numbers."""
    pairs: list[tuple[int, int]] = []
    for seq in lost:
        seq &= 0xFFFF
        if pairs:
            pid, blp = pairs[-1]
            d = (seq - pid) & 0xFFFF
            if d == 0 or (1 <= d <= 16 and blp >> (d - 1) & 1):
                continue
            if 1 <= d <= 16:
                pairs[-1] = (pid, blp | 1 << (d - 1))
                continue
        pairs.append((seq, 0))
    return pairs


def build_sr(*, ssrc: int, ntp_timestamp: int, rtp_timestamp: int, packet_count: int, octet_count: int,
             reports: Sequence[ReportBlock] = ()) -> bytes:
    """One SR; without report blocks packed in one step (the server sends one per forwarded stream per second:
    ~13 x cheaper than the dataclass and ``build_rtcp``, same bytes)."""
    if not reports:
        return _SR_ALONE.pack(0x80, PT_SR, 6, ssrc, ntp_timestamp, rtp_timestamp, packet_count, octet_count)
    return build_rtcp([SenderReport(ssrc=ssrc, ntp_timestamp=ntp_timestamp, rtp_timestamp=rtp_timestamp,
                                    packet_count=packet_count, octet_count=octet_count, reports=tuple(reports))])


def build_rr(*, ssrc: int, reports: Sequence[ReportBlock] = ()) -> bytes:
    return build_rtcp([ReceiverReport(ssrc=ssrc, reports=tuple(reports))])


BlockFields = tuple[int, int, int, int, int, int, int]  # a ReportBlock's fields, in its order


def build_rr_fields(*, ssrc: int, blocks: Sequence[BlockFields]) -> bytes:
    """``build_rr`` from plain tuples of ``ReportBlock``'s fields (ssrc, fraction_lost, cumulative_lost,
    highest_seq, jitter, lsr, dlsr): the same bytes without a dataclass per block and per packet (the server
    builds one per session per second; ~10 x cheaper). Raises ``ValueError`` for more than 31 blocks."""
    if len(blocks) > 31:
        raise ValueError(f"an RTCP count field holds 0..31, got {len(blocks)}")
    pack = _BLOCK.pack
    return _HDR.pack(0x80 | len(blocks), PT_RR, 1 + 6 * len(blocks)) + _U32.pack(ssrc) + b"".join(
        [pack(b[0], (b[1] & 0xFF) << 24 | (b[2] & 0xFFFFFF), b[3], b[4], b[5], b[6]) for b in blocks])


def build_pli(*, sender_ssrc: int, media_ssrc: int) -> bytes:
    """A PLI asking ``media_ssrc``'s sender for a key frame (the SFU sends it to a publisher)."""
    return build_rtcp([Pli(sender_ssrc=sender_ssrc, media_ssrc=media_ssrc)])


def build_fir(*, sender_ssrc: int, media_ssrc: int, seq: int) -> bytes:
    """A FIR for ``media_ssrc`` with command sequence number ``seq`` (increment it per new request)."""
    return build_rtcp([Fir(sender_ssrc=sender_ssrc, entries=((media_ssrc, seq & 0xFF),))])


def build_nack(*, sender_ssrc: int, media_ssrc: int, lost: Iterable[int]) -> bytes:
    return build_rtcp([Nack(sender_ssrc=sender_ssrc, media_ssrc=media_ssrc, lost=tuple(lost))])


def parse_remb(fb: Feedback) -> tuple[int, tuple[int, ...]] | None:
    """Decode a REMB (draft-alvestrand-rmcat-remb): ``(bitrate bps, ssrcs)``, or None if ``fb`` is not one."""
    fci = fb.fci
    if fb.packet_type != PT_PSFB or fb.fmt != 15 or len(fci) < 8 or fci[:4] != b"REMB":
        return None
    num, exp_mant = fci[4], _U32.unpack_from(fci, 4)[0] & 0xFFFFFF
    exponent, mantissa = exp_mant >> 18, exp_mant & 0x3FFFF
    if len(fci) < 8 + 4 * num:
        return None
    return mantissa << exponent, tuple(struct.unpack_from(f"!{num}I", fci, 8))
