"""The RTCP the SFU originates: one reporting round per session, from the forwarder's statistics (RFC 3550 6.4).

The server terminates RTCP: it never forwards a receiver's RTCP to a publisher. Parsing what clients send and
building packets is ``core.rtcp``'s job; the plane reads SR, NACK, PLI and FIR with it (plane.py). This module only
turns the forwarder's counters into that round: an SR for each rewritten stream a session receives, and an RR with a
report block about each stream it publishes (loss per RFC 3550 A.3, LSR/DLSR from the publisher's last SR).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from callsd.core.wire.rtcp import SR_ALONE, SR_ALONE_HEADER, BlockFields, build_rr_fields

__all__ = ["ntp_now", "session_reports", "MAX_CHUNK"]

_NTP_EPOCH_OFFSET = 2_208_988_800  # seconds from 1900-01-01 to 1970-01-01
MAX_CHUNK = 1100  # bytes of one compound packet (before SRTCP), well under a path MTU
_MAX_BLOCKS = 31  # report blocks an RR can hold (5-bit count)


def ntp_now(wall: float) -> int:
    """The 64-bit NTP timestamp of a Unix time in seconds."""
    secs = int(wall)
    frac = int((wall - secs) * (1 << 32)) & 0xFFFFFFFF
    return ((secs + _NTP_EPOCH_OFFSET) << 32) | frac


def session_reports(rtcp_ssrc: int, routes: Iterable[Any], tracks: Iterable[Any], now: float, ntp: int,
                    sr_timestamp: Callable[[Any, float], int | None] | None = None) -> list[bytes]:
    """The compound packets (each at most ``MAX_CHUNK`` bytes) of one reporting round for one session.

    An SR per route the session receives that carried packets (``routes``: forwarder ``OutRoute``s; the RTP
    timestamp is extrapolated from the track's last packet, in the route's offset numbering, unless
    ``sr_timestamp(route, now)`` knows the route's own clock: a simulcast route's timestamps are rewritten per
    receiver, so only it can say), then an RR from
    ``rtcp_ssrc`` with one block per stream the session publishes (``tracks``: ``InTrack``s). Updates the tracks'
    interval counters. Always at least one packet (an empty RR when there is nothing to report).
    """
    wires: list[bytes] = []
    pack_sr = SR_ALONE.pack  # build_sr's bytes, positionally (rtcp.SR_ALONE)
    v, pt, length = SR_ALONE_HEADER
    for r in routes:
        if not r.packets:
            continue
        t = r.track
        own = sr_timestamp(r, now) if sr_timestamp is not None else None
        rtp_ts = own if own is not None else t.last_ts + int((now - t.last_rx) * t.clock_rate) + r.ts_offset
        wires.append(pack_sr(v, pt, length, r.ssrc, ntp, rtp_ts & 0xFFFFFFFF, r.packets & 0xFFFFFFFF,
                             r.octets & 0xFFFFFFFF))
    blocks: list[BlockFields] = []
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
        cumulative = max(-0x800000, min(0x7FFFFF, expected - t.packets))
        # ReportBlock's fields, in its order (ssrc, fraction, cumulative, highest, jitter, lsr, dlsr)
        blocks.append((t.ssrc, min(fraction, 255), cumulative, ext_max & 0xFFFFFFFF, 0, t.sr_ntp_mid,
                       dlsr & 0xFFFFFFFF))
    for i in range(0, len(blocks), _MAX_BLOCKS):
        wires.append(build_rr_fields(ssrc=rtcp_ssrc, blocks=blocks[i : i + _MAX_BLOCKS]))
    if not wires:
        wires.append(build_rr_fields(ssrc=rtcp_ssrc, blocks=()))
    if sum(map(len, wires)) <= MAX_CHUNK:  # the usual case: one compound packet
        return [b"".join(wires)]
    out: list[bytes] = []
    chunk = b""
    for wire in wires:
        if chunk and len(chunk) + len(wire) > MAX_CHUNK:
            out.append(chunk)
            chunk = b""
        chunk += wire
    if chunk:
        out.append(chunk)
    return out
