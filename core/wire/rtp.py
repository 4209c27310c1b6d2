"""RTP packets (RFC 3550) and their header extensions (RFC 8285), read and rewritten for an SFU.

Two kinds of functions live here:

* A full parser, ``parse_rtp(data) -> RtpHeader``, and its inverse ``build_rtp(header, payload)``: for tests, tools
  and anything off the hot path. ``parse_rtp`` either returns a header or raises ``RtpError`` (the module's one
  declared error), whatever the bytes.
* Hot-path helpers for the forwarder, called at tens of thousands of packets per second. They take ``bytes`` or a
  ``bytearray`` and work with ``struct`` at fixed offsets; they allocate nothing per packet beyond small ints:
  ``peek_ssrc``, ``peek_seq``, ``find_extension``, ``read_audio_level``, ``read_mid``, ``rewrite_rtp`` and
  ``StreamRewriter.rewrite``. They assume a packet that has been accepted once by the transport (version 2, at least
  12 bytes) and guard every offset they read, returning ``None``/``-1`` rather than raising on a short packet.

Header-extension remapping. Each receiver negotiated its own extension ids; the forwarder rewrites the publisher's
ids into the receiver's in place with an ``ExtensionRemap`` (a 256-byte table built once per route by
``make_extension_remap``). An extension the receiver did not negotiate is overwritten with zero bytes: id 0 is the
padding id in both the one-byte and the two-byte forms (RFC 8285 section 4.2/4.3), so the packet keeps its length and
receivers skip the bytes.

Sequence numbers. ``seq_newer``/``seq_diff`` compare 16-bit numbers modulo 2**16 (RFC 3550 A.1);
``ExtendedSeq`` unwraps them into a monotone 64-bit count; ``StreamRewriter`` gives one outgoing stream (one track
to one receiver) continuous sequence numbers and timestamps across pauses and publisher switches. The core has no
clock: the caller passes ``now_ms`` and the rewriter turns elapsed time into timestamp ticks with the clock rate.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from ..errors import RemoteProtocolError

__all__ = [
    "RtpError",
    "RtpHeader",
    "ExtensionRemap",
    "ONE_BYTE_PROFILE",
    "TWO_BYTE_PROFILE_MASK",
    "parse_rtp",
    "build_rtp",
    "is_rtcp",
    "peek_ssrc",
    "peek_seq",
    "peek_payload_type",
    "payload_offset",
    "find_extension",
    "read_audio_level",
    "read_mid",
    "make_extension_remap",
    "rewrite_rtp",
    "seq_newer",
    "seq_diff",
    "ExtendedSeq",
    "StreamRewriter",
    "rewrite_rtx",
]

ONE_BYTE_PROFILE = 0xBEDE
TWO_BYTE_PROFILE_MASK = 0x1000  # 0x100X: the low 4 bits are "appbits"

_HDR = struct.Struct("!BBHII")
_SEQ_TS_SSRC = struct.Struct("!HII")
_U16 = struct.Struct("!H")
_U32 = struct.Struct("!I")
_EXT_HDR = struct.Struct("!HH")


class RtpError(RemoteProtocolError):
    """An RTP packet could not be parsed; the message says which field is wrong."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RtpHeader:
    """A parsed RTP fixed header, CSRC list and header-extension block.

    ``extensions`` are ``(id, data)`` pairs in wire order (padding dropped); ``extension_profile`` is 0xBEDE for the
    one-byte form, 0x100X for the two-byte form, another value for a non-RFC 8285 block (kept as ``extension_raw``)
    and ``None`` without an extension. ``payload_offset``/``payload_end`` delimit the payload inside the packet
    (padding excluded); ``padding`` is the count of padding bytes (0 without the P bit).
    """

    marker: bool
    payload_type: int
    sequence: int
    timestamp: int
    ssrc: int
    csrcs: tuple[int, ...] = ()
    extension_profile: int | None = None
    extensions: tuple[tuple[int, bytes], ...] = ()
    extension_raw: bytes = b""
    padding: int = 0
    payload_offset: int = 12
    payload_end: int = 12

    def extension(self, ext_id: int) -> bytes | None:
        """The data of extension ``ext_id``, or None when the packet does not carry it."""
        for i, d in self.extensions:
            if i == ext_id:
                return d
        return None


def is_rtcp(data: bytes | bytearray | memoryview) -> bool:
    """RFC 5761 section 4 demultiplexing: RTCP when the second byte (the RTCP packet type) is in 192..223.

    RTP payload types 64..95 (with or without the marker bit) would collide, which is why RFC 5761 forbids them.
    """
    return len(data) >= 2 and 192 <= data[1] <= 223


def peek_ssrc(data: bytes | bytearray | memoryview) -> int:
    """The SSRC of an RTP packet (bytes 8..11), or -1 when the packet is too short."""
    if len(data) < 12:
        return -1
    return int(_U32.unpack_from(data, 8)[0])


def peek_seq(data: bytes | bytearray | memoryview) -> int:
    """The sequence number of an RTP packet, or -1 when the packet is too short."""
    if len(data) < 4:
        return -1
    return int(_U16.unpack_from(data, 2)[0])


def peek_payload_type(data: bytes | bytearray | memoryview) -> int:
    """The payload type (7 bits) of an RTP packet, or -1 when the packet is too short."""
    if len(data) < 2:
        return -1
    return data[1] & 0x7F


def payload_offset(data: bytes | bytearray | memoryview) -> int:
    """Offset of the payload (after CSRCs and the extension block), or -1 when the header does not fit."""
    n = len(data)
    if n < 12:
        return -1
    b0 = data[0]
    off = 12 + 4 * (b0 & 0x0F)
    if b0 & 0x10:
        if off + 4 > n:
            return -1
        off += 4 + 4 * _U16.unpack_from(data, off + 2)[0]
    return off if off <= n else -1


def parse_rtp(data: bytes | bytearray | memoryview) -> RtpHeader:
    """Parse an RTP packet's header; raise ``RtpError`` for anything that is not a valid RTP version 2 packet."""
    n = len(data)
    if n < 12:
        raise RtpError(f"RTP packet too short: {n} bytes, the fixed header is 12")
    b0, b1, seq, ts, ssrc = _HDR.unpack_from(data, 0)
    if b0 >> 6 != 2:
        raise RtpError(f"RTP version must be 2, got {b0 >> 6}")
    cc = b0 & 0x0F
    off = 12 + 4 * cc
    if off > n:
        raise RtpError(f"CSRC count {cc} needs {off} bytes, packet has {n}")
    csrcs = struct.unpack_from(f"!{cc}I", data, 12) if cc else ()
    profile: int | None = None
    exts: tuple[tuple[int, bytes], ...] = ()
    raw = b""
    if b0 & 0x10:
        if off + 4 > n:
            raise RtpError("extension bit set but the extension header does not fit")
        profile, words = _EXT_HDR.unpack_from(data, off)
        start = off + 4
        end = start + 4 * words
        if end > n:
            raise RtpError(f"header extension of {words} words overruns the packet")
        raw = bytes(data[start:end])
        exts = _parse_extension_block(profile, raw)
        off = end
    pad = 0
    end_payload = n
    if b0 & 0x20:
        if n == off:
            raise RtpError("padding bit set but the packet has no payload bytes")
        pad = data[n - 1]
        if pad == 0 or off + pad > n:
            raise RtpError(f"padding count {pad} is invalid for {n - off} payload bytes")
        end_payload = n - pad
    return RtpHeader(
        marker=bool(b1 & 0x80), payload_type=b1 & 0x7F, sequence=seq, timestamp=ts, ssrc=ssrc,
        csrcs=tuple(csrcs), extension_profile=profile, extensions=exts,
        extension_raw=b"" if profile in (ONE_BYTE_PROFILE,) or _is_two_byte(profile) else raw,
        padding=pad, payload_offset=off, payload_end=end_payload,
    )


def _is_two_byte(profile: int | None) -> bool:
    return profile is not None and profile & 0xFFF0 == TWO_BYTE_PROFILE_MASK


def _parse_extension_block(profile: int, block: bytes) -> tuple[tuple[int, bytes], ...]:
    out: list[tuple[int, bytes]] = []
    n = len(block)
    i = 0
    if profile == ONE_BYTE_PROFILE:
        while i < n:
            b = block[i]
            ext_id = b >> 4
            if ext_id == 0:
                i += 1
                continue
            if ext_id == 15:  # reserved: stop parsing (RFC 8285 section 4.2)
                break
            length = (b & 0x0F) + 1
            if i + 1 + length > n:
                raise RtpError(f"one-byte extension id {ext_id} of {length} bytes overruns the block")
            out.append((ext_id, block[i + 1 : i + 1 + length]))
            i += 1 + length
    elif _is_two_byte(profile):
        while i < n:
            ext_id = block[i]
            if ext_id == 0:
                i += 1
                continue
            if i + 2 > n:
                raise RtpError(f"two-byte extension id {ext_id} has no length byte")
            length = block[i + 1]
            if i + 2 + length > n:
                raise RtpError(f"two-byte extension id {ext_id} of {length} bytes overruns the block")
            out.append((ext_id, block[i + 2 : i + 2 + length]))
            i += 2 + length
    return tuple(out)


def build_rtp(header: RtpHeader, payload: bytes = b"") -> bytes:
    """Serialize ``header`` and ``payload`` into an RTP packet; the inverse of ``parse_rtp``.

    Extensions are written in the header's form (one-byte when ``extension_profile`` is 0xBEDE, two-byte for
    0x100X, ``extension_raw`` verbatim otherwise), zero-padded to a 32-bit boundary. Padding of ``header.padding``
    bytes is appended when non-zero. Raises ``ValueError`` for a header that cannot be encoded.
    """
    cc = len(header.csrcs)
    if cc > 15:
        raise ValueError("at most 15 CSRCs")
    if not 0 <= header.payload_type <= 127:
        raise ValueError("payload type must be 0..127")
    b0 = 0x80 | cc | (0x20 if header.padding else 0) | (0x10 if header.extension_profile is not None else 0)
    b1 = (0x80 if header.marker else 0) | header.payload_type
    parts = [_HDR.pack(b0, b1, header.sequence, header.timestamp, header.ssrc)]
    if cc:
        parts.append(struct.pack(f"!{cc}I", *header.csrcs))
    if header.extension_profile is not None:
        profile = header.extension_profile
        if profile == ONE_BYTE_PROFILE:
            block = bytearray()
            for ext_id, d in header.extensions:
                if not 1 <= ext_id <= 14 or not 1 <= len(d) <= 16:
                    raise ValueError(f"one-byte extension id {ext_id} with {len(d)} bytes is not encodable")
                block.append((ext_id << 4) | (len(d) - 1))
                block += d
        elif _is_two_byte(profile):
            block = bytearray()
            for ext_id, d in header.extensions:
                if not 1 <= ext_id <= 255 or len(d) > 255:
                    raise ValueError(f"two-byte extension id {ext_id} with {len(d)} bytes is not encodable")
                block.append(ext_id)
                block.append(len(d))
                block += d
        else:
            block = bytearray(header.extension_raw)
        while len(block) % 4:
            block.append(0)
        parts.append(_EXT_HDR.pack(profile, len(block) // 4))
        parts.append(bytes(block))
    parts.append(payload)
    if header.padding:
        if not 1 <= header.padding <= 255:
            raise ValueError("padding must be 1..255 bytes")
        parts.append(bytes(header.padding - 1) + bytes((header.padding,)))
    return b"".join(parts)


# --- hot path: header extensions -----------------------------------------------------------------------------


def find_extension(data: bytes | bytearray | memoryview, ext_id: int) -> tuple[int, int] | None:
    """Locate extension ``ext_id``: ``(offset, length)`` of its data inside ``data``, or None.

    Works on both RFC 8285 forms; returns None for a packet without an extension block, with another profile, or
    whose block is truncated. ``ext_id`` 0 never matches.
    """
    n = len(data)
    if n < 16 or not data[0] & 0x10 or ext_id <= 0:
        return None
    off = 12 + 4 * (data[0] & 0x0F)
    if off + 4 > n:
        return None
    profile, words = _EXT_HDR.unpack_from(data, off)
    i = off + 4
    end = i + 4 * words
    if end > n:
        return None
    if profile == ONE_BYTE_PROFILE:
        while i < end:
            b = data[i]
            eid = b >> 4
            if eid == 0:
                i += 1
                continue
            if eid == 15:
                return None
            length = (b & 0x0F) + 1
            if i + 1 + length > end:
                return None
            if eid == ext_id:
                return i + 1, length
            i += 1 + length
    elif profile & 0xFFF0 == TWO_BYTE_PROFILE_MASK:
        while i < end:
            eid = data[i]
            if eid == 0:
                i += 1
                continue
            if i + 2 > end:
                return None
            length = data[i + 1]
            if i + 2 + length > end:
                return None
            if eid == ext_id:
                return i + 2, length
            i += 2 + length
    return None


def read_audio_level(data: bytes | bytearray | memoryview, ext_id: int) -> int:
    """The RFC 6464 client-to-mixer audio level: ``-1`` when absent, else the raw byte.

    Bit 0x80 is the voice-activity flag, ``byte & 0x7F`` is the level in -dBov (0 loudest, 127 silence). An int and
    not a tuple so that the per-packet call allocates nothing.
    """
    loc = find_extension(data, ext_id)
    if loc is None or loc[1] < 1:
        return -1
    return int(data[loc[0]])


def read_mid(data: bytes | bytearray | memoryview, ext_id: int) -> str | None:
    """The RTP stream's MID (urn:ietf:params:rtp-hdrext:sdes:mid, RFC 8843) or None; undecodable bytes → None."""
    loc = find_extension(data, ext_id)
    if loc is None:
        return None
    try:
        return bytes(data[loc[0] : loc[0] + loc[1]]).decode("ascii")
    except UnicodeDecodeError:
        return None


class ExtensionRemap:
    """A per-route table mapping the publisher's extension ids to the receiver's (0 = drop the element).

    ``identity`` is True when no id changes and nothing is dropped, so that ``rewrite_rtp`` skips the block.
    """

    __slots__ = ("table", "identity")

    def __init__(self, table: bytes) -> None:
        if len(table) != 256:
            raise ValueError("an extension remap table has 256 entries")
        self.table = table
        self.identity = all(table[i] == i for i in range(1, 256))

    def __repr__(self) -> str:
        pairs = {i: self.table[i] for i in range(1, 256) if self.table[i] != i}
        return f"ExtensionRemap({pairs})"


def make_extension_remap(mapping: dict[int, int]) -> ExtensionRemap:
    """Build the remap table: ``mapping`` is publisher id → receiver id; ids not in it are dropped.

    Typically built from two ``uri → id`` dicts: ``{pub[u]: rcv[u] for u in pub if u in rcv}``.
    """
    table = bytearray(256)
    for src, dst in mapping.items():
        if not 1 <= src <= 255 or not 0 <= dst <= 255:
            raise ValueError(f"extension ids must be 1..255, got {src} -> {dst}")
        table[src] = dst
    return ExtensionRemap(bytes(table))


def rewrite_rtp(
    buf: bytearray, ssrc: int, seq: int, ts: int, pt: int, remap: ExtensionRemap | None = None
) -> bool:
    """Rewrite an RTP packet in place for one receiver: SSRC, sequence number, timestamp, payload type (marker
    kept) and, with ``remap``, header-extension ids. Returns False (``buf`` possibly half-rewritten, to be dropped)
    when the header is too short or the extension block is malformed.

    ``seq`` and ``ts`` are masked to 16 and 32 bits. Dropped extensions become padding bytes (id 0), so the packet
    length never changes and no bytes move.
    """
    n = len(buf)
    if n < 12:
        return False
    buf[1] = (buf[1] & 0x80) | (pt & 0x7F)
    _SEQ_TS_SSRC.pack_into(buf, 2, seq & 0xFFFF, ts & 0xFFFFFFFF, ssrc & 0xFFFFFFFF)
    if remap is None or remap.identity or not buf[0] & 0x10:
        return True
    off = 12 + 4 * (buf[0] & 0x0F)
    if off + 4 > n:
        return False
    profile, words = _EXT_HDR.unpack_from(buf, off)
    i = off + 4
    end = i + 4 * words
    if end > n:
        return False
    table = remap.table
    if profile == ONE_BYTE_PROFILE:
        while i < end:
            b = buf[i]
            eid = b >> 4
            if eid == 0:
                i += 1
                continue
            if eid == 15:
                return True
            length = (b & 0x0F) + 1
            if i + 1 + length > end:
                return False
            new = table[eid]
            if new == 0 or new > 14:
                buf[i : i + 1 + length] = bytes(1 + length)
            elif new != eid:
                buf[i] = (new << 4) | (b & 0x0F)
            i += 1 + length
        return True
    if profile & 0xFFF0 == TWO_BYTE_PROFILE_MASK:
        while i < end:
            eid = buf[i]
            if eid == 0:
                i += 1
                continue
            if i + 2 > end:
                return False
            length = buf[i + 1]
            if i + 2 + length > end:
                return False
            new = table[eid]
            if new == 0:
                buf[i : i + 2 + length] = bytes(2 + length)
            else:
                buf[i] = new
            i += 2 + length
        return True
    return True


# --- sequence numbers ----------------------------------------------------------------------------------------


def seq_diff(a: int, b: int) -> int:
    """``a - b`` modulo 2**16 as a signed value in -32768..32767 (positive when ``a`` is newer)."""
    d = (a - b) & 0xFFFF
    return d - 0x10000 if d >= 0x8000 else d


def seq_newer(a: int, b: int) -> bool:
    """True when 16-bit sequence number ``a`` comes after ``b`` (RFC 3550 A.1 wraparound rule)."""
    return a != b and ((a - b) & 0xFFFF) < 0x8000


class ExtendedSeq:
    """Unwraps 16-bit sequence numbers into a monotone extended count (cycles * 65536 + seq).

    ``update(seq)`` returns the extended value of ``seq``: later packets after a wrap get +65536, reordered
    packets from before the last wrap get the previous cycle. ``highest`` is the largest extended value seen
    (-1 before the first packet).
    """

    __slots__ = ("highest",)

    def __init__(self) -> None:
        self.highest = -1

    def update(self, seq: int) -> int:
        seq &= 0xFFFF
        if self.highest < 0:
            self.highest = seq
            return seq
        ext = self.highest + seq_diff(seq, self.highest & 0xFFFF)
        if ext < 0:  # reordered packet before the very first one, across a wrap
            ext += 0x10000
        if ext > self.highest:
            self.highest = ext
        return ext


class StreamRewriter:
    """Continuous sequence numbers and timestamps for one outgoing stream (one track sent to one receiver).

    The input may change under it: the publisher's SSRC changes (a publisher switch, a restarted encoder), or the
    route is paused then resumed (muted audio: the publisher keeps its numbering, the receiver saw a hole). At such
    a point the rewriter re-bases: the next output sequence number is one more than the highest one sent, and the
    output timestamp advances by the wall-clock time elapsed since the last packet sent (``now_ms`` × clock rate),
    at least 1 tick. Between re-bases output = input + offset (mod 2**16 / 2**32), so reordering and loss pass
    through unchanged. Packets older than the re-base point are refused (``rewrite`` returns False): their output
    numbers would collide with numbers already sent.

    ``initial_seq``/``initial_ts`` are the first output values (random in production; the caller draws them).
    """

    __slots__ = (
        "ssrc", "payload_type", "remap", "clock_rate", "_in_ssrc", "_seq_off", "_ts_off", "_base_in_seq",
        "_max_out_seq", "_max_out_ts", "_last_ms", "_rebase", "_started",
    )

    def __init__(
        self, *, ssrc: int, payload_type: int, clock_rate: int, initial_seq: int = 0, initial_ts: int = 0,
        remap: ExtensionRemap | None = None,
    ) -> None:
        if clock_rate <= 0:
            raise ValueError("clock_rate must be positive")
        self.ssrc = ssrc
        self.payload_type = payload_type
        self.remap = remap
        self.clock_rate = clock_rate
        self._in_ssrc = -1
        self._seq_off = 0
        self._ts_off = 0
        self._base_in_seq = 0
        self._max_out_seq = (initial_seq - 1) & 0xFFFF
        self._max_out_ts = initial_ts & 0xFFFFFFFF
        self._last_ms = 0
        self._rebase = True
        self._started = False

    def pause(self) -> None:
        """The route stops forwarding; the next packet after it re-bases (see the class docstring)."""
        self._rebase = True

    def translate(self, in_ssrc: int, in_seq: int, in_ts: int, now_ms: int) -> tuple[int, int] | None:
        """Output ``(seq, ts)`` for an input packet, updating the state; None when the packet must be dropped."""
        if in_ssrc != self._in_ssrc or self._rebase:
            out_seq = (self._max_out_seq + 1) & 0xFFFF
            if self._started:
                ticks = max(1, (now_ms - self._last_ms) * self.clock_rate // 1000)
                out_ts = (self._max_out_ts + ticks) & 0xFFFFFFFF
            else:
                out_ts = self._max_out_ts
            self._seq_off = (out_seq - in_seq) & 0xFFFF
            self._ts_off = (out_ts - in_ts) & 0xFFFFFFFF
            self._in_ssrc = in_ssrc
            self._base_in_seq = in_seq
            self._rebase = False
            self._started = True
            self._max_out_seq = out_seq
            self._max_out_ts = out_ts
            self._last_ms = now_ms
            return out_seq, out_ts
        if ((in_seq - self._base_in_seq) & 0xFFFF) >= 0x8000:
            return None
        out_seq = (in_seq + self._seq_off) & 0xFFFF
        out_ts = (in_ts + self._ts_off) & 0xFFFFFFFF
        if ((out_seq - self._max_out_seq) & 0xFFFF) < 0x8000:
            self._max_out_seq = out_seq
            if ((out_ts - self._max_out_ts) & 0xFFFFFFFF) < 0x80000000:
                self._max_out_ts = out_ts
            self._last_ms = now_ms
        return out_seq, out_ts

    def map_seq(self, in_seq: int) -> int:
        """The output number of input ``in_seq`` under the current offset, without changing state (for RTX OSN
        rewriting and NACK translation in reverse use ``unmap_seq``)."""
        return (in_seq + self._seq_off) & 0xFFFF

    def map_ts(self, in_ts: int) -> int:
        """The output timestamp of input ``in_ts`` under the current offset (for sender reports and RTX)."""
        return (in_ts + self._ts_off) & 0xFFFFFFFF

    def unmap_seq(self, out_seq: int) -> int:
        """The input sequence number that produced output ``out_seq`` under the current offset (for NACKs)."""
        return (out_seq - self._seq_off) & 0xFFFF

    def rewrite(self, buf: bytearray, now_ms: int) -> bool:
        """Rewrite RTP packet ``buf`` in place for this stream (SSRC, seq, ts, PT, extension ids).

        Returns False when the packet must be dropped (too short, older than the re-base point, malformed
        extension block).
        """
        if len(buf) < 12:
            return False
        in_seq, in_ts, in_ssrc = _SEQ_TS_SSRC.unpack_from(buf, 2)
        out = self.translate(in_ssrc, in_seq, in_ts, now_ms)
        if out is None:
            return False
        return rewrite_rtp(buf, self.ssrc, out[0], out[1], self.payload_type, self.remap)


def rewrite_rtx(buf: bytearray, rtx: StreamRewriter, media: StreamRewriter, now_ms: int) -> bool:
    """Rewrite an RTX packet (RFC 4588) in place: the RTX stream's own SSRC/seq from ``rtx``, the timestamp and the
    original sequence number (the first two payload bytes) through ``media``, the route's media stream.

    Returns False (drop) for a packet without an OSN, e.g. the padding-only RTX packets browsers send as bandwidth
    probes, or when ``rtx`` refuses the packet.
    """
    n = len(buf)
    off = payload_offset(buf)
    end = n - buf[n - 1] if n and buf[0] & 0x20 else n
    if off < 0 or off + 2 > end:
        return False
    in_seq, in_ts, in_ssrc = _SEQ_TS_SSRC.unpack_from(buf, 2)
    out = rtx.translate(in_ssrc, in_seq, in_ts, now_ms)
    if out is None:
        return False
    _U16.pack_into(buf, off, media.map_seq(_U16.unpack_from(buf, off)[0]))
    return rewrite_rtp(buf, rtx.ssrc, out[0], media.map_ts(in_ts), rtx.payload_type, rtx.remap)
