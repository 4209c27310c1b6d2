"""Transport-wide congestion control feedback (draft-holmer-rmcat-transport-wide-cc-extensions-01), pure.

A receiver reports, per transport-wide sequence number (the RTP header extension
``http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01``, a 16-bit counter the sender stamps
on every packet of the transport), whether the packet arrived and when. The RTCP packet is transport feedback,
PT 205, FMT 15::

    | base sequence number (16) | packet status count (16) |
    | reference time (24, signed, x 64 ms) | fb pkt count (8) |
    | packet chunks (16 bits each) ... | receive deltas (1 or 2 bytes each) ... | zero padding |

A chunk is either a *run length* (``0 SS LLLLLLLLLLLLL``: one 2-bit symbol repeated 1..8191 times) or a *status
vector* (``1 S ...``: fourteen 1-bit symbols when S=0, seven 2-bit symbols when S=1). Symbols: 0 not received, 1
received with a small delta (one unsigned byte), 2 received with a large or negative delta (signed 16 bits), 3
reserved (an error here). Deltas are in units of 250 us; the first is relative to the reference time, each next
one to the previous arrival.

``parse_transport_cc(fb)`` decodes the opaque ``rtcp.Feedback`` that ``parse_rtcp`` returns for PT 205 FMT 15 into
a ``TransportCc`` (arrival times in microseconds, ``None`` for a lost packet), raising ``RtcpError`` for a
malformed one; ``build_transport_cc`` is the inverse (run-length chunks where a run is 8+ long, else 2-bit vectors).
This lives next to ``rtcp.py`` rather than inside it to keep that module to one screenful of packet types.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass

from .rtcp import PT_RTPFB, Feedback, RtcpError

__all__ = ["FMT_TRANSPORT_CC", "TransportCc", "parse_transport_cc", "build_transport_cc", "DELTA_US",
           "REFERENCE_US"]

FMT_TRANSPORT_CC = 15
DELTA_US = 250  # one receive-delta tick
REFERENCE_US = 64_000  # one reference-time tick
_HEAD = struct.Struct("!HHI")
_NOT_RECEIVED, _SMALL, _LARGE = 0, 1, 2


@dataclass(frozen=True, slots=True, kw_only=True)
class TransportCc:
    """One feedback packet: ``arrivals[i]`` is the arrival time, in microseconds on the receiver's clock, of the
    packet with transport sequence number ``base_seq + i`` (mod 2^16), or ``None`` if it was not received.

    Arrival times are multiples of 250 us; the first received one is ``reference_time * 64000`` plus its delta."""

    sender_ssrc: int
    media_ssrc: int
    base_seq: int
    reference_time: int  # signed 24-bit, units of 64 ms
    fb_count: int
    arrivals: tuple[int | None, ...]

    def __post_init__(self) -> None:
        if not 1 <= len(self.arrivals) <= 0xFFFF:
            raise ValueError(f"transport-cc reports 1..65535 packets, got {len(self.arrivals)}")
        if not -(1 << 23) <= self.reference_time < 1 << 23:
            raise ValueError(f"reference time {self.reference_time} does not fit 24 signed bits")


def parse_transport_cc(fb: Feedback) -> TransportCc | None:
    """Decode a transport-cc ``Feedback``; None if ``fb`` is another kind, ``RtcpError`` if it is malformed."""
    if fb.packet_type != PT_RTPFB or fb.fmt != FMT_TRANSPORT_CC:
        return None
    fci = fb.fci
    if len(fci) < 8:
        raise RtcpError(f"transport-cc FCI of {len(fci)} bytes is shorter than its 8-byte header")
    base_seq, count, ref_word = _HEAD.unpack_from(fci, 0)
    if count == 0:
        raise RtcpError("transport-cc reports no packet")
    reference = ref_word >> 8
    if reference & 0x800000:
        reference -= 0x1000000
    symbols: list[int] = []
    off = 8
    while len(symbols) < count:
        if off + 2 > len(fci):
            raise RtcpError(f"transport-cc: chunks end after {len(symbols)} of {count} packet statuses")
        chunk = fci[off] << 8 | fci[off + 1]
        off += 2
        if chunk & 0x8000 == 0:
            symbol, run = chunk >> 13 & 3, chunk & 0x1FFF
            if run == 0:
                raise RtcpError("transport-cc: a run-length chunk of length 0")
            symbols.extend([symbol] * min(run, count - len(symbols)))
        elif chunk & 0x4000 == 0:
            symbols.extend((chunk >> (13 - i)) & 1 for i in range(14))
        else:
            symbols.extend((chunk >> (12 - 2 * i)) & 3 for i in range(7))
    del symbols[count:]
    arrivals: list[int | None] = []
    now = reference * REFERENCE_US
    for symbol in symbols:
        if symbol == _NOT_RECEIVED:
            arrivals.append(None)
            continue
        if symbol == _SMALL:
            if off + 1 > len(fci):
                raise RtcpError("transport-cc: receive deltas end early")
            delta = fci[off]
            off += 1
        elif symbol == _LARGE:
            if off + 2 > len(fci):
                raise RtcpError("transport-cc: receive deltas end early")
            delta = struct.unpack_from("!h", fci, off)[0]
            off += 2
        else:
            raise RtcpError("transport-cc: reserved packet status symbol 3")
        now += delta * DELTA_US
        arrivals.append(now)
    return TransportCc(sender_ssrc=fb.sender_ssrc, media_ssrc=fb.media_ssrc, base_seq=base_seq,
                       reference_time=reference, fb_count=fci[7], arrivals=tuple(arrivals))


def _symbols_and_deltas(tcc: TransportCc) -> tuple[list[int], bytes]:
    symbols: list[int] = []
    deltas = bytearray()
    previous = tcc.reference_time * REFERENCE_US
    for arrival in tcc.arrivals:
        if arrival is None:
            symbols.append(_NOT_RECEIVED)
            continue
        if arrival % DELTA_US:
            raise ValueError(f"arrival {arrival} us is not a multiple of {DELTA_US} us")
        delta = (arrival - previous) // DELTA_US
        previous = arrival
        if 0 <= delta <= 0xFF:
            symbols.append(_SMALL)
            deltas.append(delta)
        elif -0x8000 <= delta <= 0x7FFF:
            symbols.append(_LARGE)
            deltas += struct.pack("!h", delta)
        else:
            raise ValueError(f"receive delta of {delta * DELTA_US} us does not fit 16 bits; split the report")
    return symbols, bytes(deltas)


def _chunks(symbols: Sequence[int]) -> bytes:
    out = bytearray()
    i, n = 0, len(symbols)
    while i < n:
        run = 1
        while i + run < n and symbols[i + run] == symbols[i] and run < 0x1FFF:
            run += 1
        if run >= 7 or i + run == n:
            out += struct.pack("!H", symbols[i] << 13 | run)
            i += run
            continue
        group = list(symbols[i : i + 7])
        group += [0] * (7 - len(group))
        word = 0xC000
        for k, symbol in enumerate(group):
            word |= symbol << (12 - 2 * k)
        out += struct.pack("!H", word)
        i += 7
    return bytes(out)


def build_transport_cc(tcc: TransportCc) -> Feedback:
    """The ``Feedback`` (PT 205 FMT 15) carrying ``tcc``; pass it to ``rtcp.build_rtcp``. Raises ``ValueError`` for
    arrivals that are not multiples of 250 us or whose deltas do not fit 16 signed bits."""
    symbols, deltas = _symbols_and_deltas(tcc)
    body = _HEAD.pack(tcc.base_seq & 0xFFFF, len(tcc.arrivals),
                      (tcc.reference_time & 0xFFFFFF) << 8 | (tcc.fb_count & 0xFF)) + _chunks(symbols) + deltas
    body += bytes(-len(body) % 4)
    return Feedback(packet_type=PT_RTPFB, fmt=FMT_TRANSPORT_CC, sender_ssrc=tcc.sender_ssrc,
                    media_ssrc=tcc.media_ssrc, fci=body)
