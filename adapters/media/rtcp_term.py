"""RTCP on the server side of the SFU: the few packet types it reads and writes (RFC 3550, 4585, 5104).

The server terminates RTCP: it never forwards a receiver's RTCP to a publisher. It reads
- SR (200) from publishers, to fill LSR/DLSR in the receiver reports it sends back;
- RTPFB generic NACK (205/1) from receivers, answered from the track's packet cache or passed on to the publisher;
- PSFB PLI (206/1) and FIR (206/4) from receivers, turned into one rate-limited PLI to the publisher;
and writes SR (for each rewritten outgoing stream), RR (report blocks about each published stream), PLI and NACK.

``iter_rtcp(data)`` walks a compound packet and yields ``(packet_type, fmt, sender_ssrc, media_ssrc, body)``;
it raises ``RtcpError`` on a truncated or malformed packet (the caller counts it and drops the rest).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator
from typing import Any

__all__ = [
    "RtcpError",
    "SR",
    "RR",
    "SDES",
    "BYE",
    "RTPFB",
    "PSFB",
    "iter_rtcp",
    "nack_seqs",
    "build_pli",
    "build_fir",
    "build_nack",
    "build_sr",
    "build_rr",
    "ReportBlock",
    "ntp_now",
    "session_reports",
]

SR, RR, SDES, BYE, APP, RTPFB, PSFB = 200, 201, 202, 203, 204, 205, 206
_NTP_EPOCH_OFFSET = 2_208_988_800  # seconds from 1900-01-01 to 1970-01-01


class RtcpError(ValueError):
    """A compound RTCP packet could not be walked."""


_HDR = struct.Struct("!BBH")
_II = struct.Struct("!II")


def iter_rtcp(data: bytes) -> Iterator[tuple[int, int, int, int, bytes]]:
    """Yield ``(pt, fmt, sender_ssrc, media_ssrc, body)`` for each packet of a compound RTCP packet.

    ``fmt`` is the five-bit count/format field. ``media_ssrc`` is only meaningful for feedback packets (205, 206);
    ``body`` is what follows the first eight bytes (the FCI for feedback, report blocks for RR, sender info for SR).
    """
    pos, end = 0, len(data)
    while pos < end:
        if end - pos < 8:
            raise RtcpError("truncated RTCP header")
        b0, pt, length = _HDR.unpack_from(data, pos)
        if b0 >> 6 != 2:
            raise RtcpError("bad RTCP version")
        size = (length + 1) * 4
        if pos + size > end:
            raise RtcpError("RTCP length beyond datagram")
        sender = int.from_bytes(data[pos + 4 : pos + 8], "big")
        media = int.from_bytes(data[pos + 8 : pos + 12], "big") if size >= 12 else 0
        yield pt, b0 & 0x1F, sender, media, data[pos + 8 : pos + size]
        pos += size


def nack_seqs(fci: bytes) -> list[int]:
    """Sequence numbers named by a generic NACK's FCI (after the media SSRC): PID + bitmask of the next 16."""
    out: list[int] = []
    for i in range(4, len(fci) - 3, 4):
        pid = (fci[i] << 8) | fci[i + 1]
        blp = (fci[i + 2] << 8) | fci[i + 3]
        out.append(pid)
        for bit in range(16):
            if blp & (1 << bit):
                out.append((pid + bit + 1) & 0xFFFF)
    return out


def build_pli(sender_ssrc: int, media_ssrc: int) -> bytes:
    return struct.pack("!BBHII", 0x81, PSFB, 2, sender_ssrc, media_ssrc)


def build_fir(sender_ssrc: int, media_ssrc: int, seq_nr: int) -> bytes:
    return struct.pack("!BBHIIIB3x", 0x84, PSFB, 4, sender_ssrc, 0, media_ssrc, seq_nr & 0xFF)


def build_nack(sender_ssrc: int, media_ssrc: int, seqs: Iterable[int]) -> bytes:
    """A generic NACK naming ``seqs`` (grouped into PID/BLP pairs)."""
    pairs: list[tuple[int, int]] = []
    for s in sorted(set(seqs)):
        if pairs:
            pid, blp = pairs[-1]
            d = (s - pid) & 0xFFFF
            if 1 <= d <= 16:
                pairs[-1] = (pid, blp | (1 << (d - 1)))
                continue
        pairs.append((s, 0))
    fci = b"".join(struct.pack("!HH", p, b) for p, b in pairs)
    return struct.pack("!BBHII", 0x81, RTPFB, 2 + len(pairs), sender_ssrc, media_ssrc) + fci


class ReportBlock:
    """One reception report (RFC 3550 6.4.1) about ``ssrc``."""

    __slots__ = ("ssrc", "fraction_lost", "cumulative_lost", "highest_seq", "jitter", "lsr", "dlsr")

    def __init__(
        self, *, ssrc: int, fraction_lost: int, cumulative_lost: int, highest_seq: int, jitter: int, lsr: int,
        dlsr: int,
    ) -> None:
        self.ssrc = ssrc
        self.fraction_lost = fraction_lost
        self.cumulative_lost = cumulative_lost
        self.highest_seq = highest_seq
        self.jitter = jitter
        self.lsr = lsr
        self.dlsr = dlsr

    def pack(self) -> bytes:
        lost = max(-0x800000, min(0x7FFFFF, self.cumulative_lost)) & 0xFFFFFF
        return struct.pack(
            "!IIIIII", self.ssrc, ((self.fraction_lost & 0xFF) << 24) | lost, self.highest_seq & 0xFFFFFFFF,
            self.jitter & 0xFFFFFFFF, self.lsr & 0xFFFFFFFF, self.dlsr & 0xFFFFFFFF,
        )


def ntp_now(wall: float) -> int:
    """The 64-bit NTP timestamp of a Unix time in seconds."""
    secs = int(wall)
    frac = int((wall - secs) * (1 << 32)) & 0xFFFFFFFF
    return ((secs + _NTP_EPOCH_OFFSET) << 32) | frac


def build_sr(ssrc: int, ntp: int, rtp_ts: int, packets: int, octets: int) -> bytes:
    return struct.pack(
        "!BBHIQIII", 0x80, SR, 6, ssrc, ntp, rtp_ts & 0xFFFFFFFF, packets & 0xFFFFFFFF, octets & 0xFFFFFFFF
    )


def build_rr(ssrc: int, blocks: list[ReportBlock]) -> bytes:
    blocks = blocks[:31]
    return struct.pack("!BBHI", 0x80 | len(blocks), RR, 1 + 6 * len(blocks), ssrc) + b"".join(
        b.pack() for b in blocks
    )


def sr_info(body: bytes) -> tuple[int, int]:
    """``(ntp, rtp_ts)`` of an SR body (the bytes after the sender SSRC)."""
    if len(body) < 12:
        raise RtcpError("truncated SR")
    ntp, rtp_ts = struct.unpack_from("!QI", body, 0)
    return ntp, rtp_ts


def session_reports(rtcp_ssrc: int, routes: Iterable[Any], tracks: Iterable[Any], now: float, ntp: int) -> list[bytes]:
    """The compound packets (each at most ~1100 bytes) of one reporting round for one session.

    An SR per route the session receives that carried packets (``routes``: forwarder ``OutRoute``s; the RTP
    timestamp is extrapolated from the track's last packet, in the route's offset numbering), then an RR from
    ``rtcp_ssrc`` with one block per stream the session publishes (``tracks``: ``InTrack``s; loss per RFC 3550
    A.3, LSR/DLSR from the publisher's last SR). Updates the tracks' interval counters.
    """
    parts: list[bytes] = []
    for r in routes:
        if not r.packets:
            continue
        t = r.track
        rtp_ts = t.last_ts + int((now - t.last_rx) * t.clock_rate) + r.ts_offset
        parts.append(build_sr(r.ssrc, ntp, rtp_ts, r.packets, r.octets))
    blocks: list[ReportBlock] = []
    for t in tracks:
        if not t.started or t.ssrc is None:
            continue
        ext_max = t.cycles + t.max_seq
        expected = ext_max - t.base_seq + 1
        exp_int = expected - t.expected_prior
        rec_int = t.packets - t.received_prior
        t.expected_prior, t.received_prior = expected, t.packets
        lost_int = exp_int - rec_int
        fraction = (lost_int << 8) // exp_int if exp_int > 0 and lost_int > 0 else 0
        dlsr = int((now - t.sr_rx) * 65536) if t.sr_ntp_mid else 0
        blocks.append(ReportBlock(ssrc=t.ssrc, fraction_lost=fraction, cumulative_lost=expected - t.packets,
                                  highest_seq=ext_max, jitter=0, lsr=t.sr_ntp_mid, dlsr=dlsr))
    if blocks or not parts:
        parts.append(build_rr(rtcp_ssrc, blocks))
    out: list[bytes] = []
    chunk = b""
    for p in parts:
        if chunk and len(chunk) + len(p) > 1100:
            out.append(chunk)
            chunk = b""
        chunk += p
    if chunk:
        out.append(chunk)
    return out
