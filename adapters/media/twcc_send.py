"""Transport-wide congestion control toward one receiver: stamp, remember, read the feedback (docs/video.md).

When a receiver's answer accepted the transport-wide-cc header extension (``TWCC_URI``) on the sections the server
sends it, its ``Peer`` gets a ``TransportSequencer``: ``Peer.send_rtp`` passes every RTP packet through ``stamp``
(media, NACK answers, RTX, padding probes alike), which writes the next 16-bit transport sequence number into the
packet (``core.wire.transport_seq``) and records the send time and size in a ring of ``HISTORY`` entries. The
receiver reports, per sequence number, whether and when the packet arrived (RTCP transport feedback, PT 205 FMT 15,
``core.wire.transport_cc``); ``results`` turns one report into the ``PacketResult``s (send time on our clock,
arrival time on the receiver's, size) the receiver's ``BandwidthEstimator`` takes. Each sequence number is reported
to the estimator once; numbers the ring no longer holds (older than ``HISTORY`` packets) are skipped.

The native step calls ``stamp`` for each packet to a peer with a sequencer and then protects and sends the stamped
bytes itself (``_engine.c``), so both fast paths stamp the same numbers through this one object.

``stamp`` runs once per egress packet in Python on both paths: a steady-window profile of the capacity shape put it
first among the Python the server runs (docs/performance.md, 2026-11-29 13:15). Where the number goes depends only
on the packet's first byte and its extension block (``core.wire.transport_seq``'s rules read nothing else), and a
route sends blocks of few distinct shapes, so the sequencer remembers, per (first byte, block), the bytes that
replace the block around the two bytes of the number (``_Layout``), learned from ``stamp_transport_seq`` itself;
a packet then costs one dict lookup and a join of slices instead of a walk over its elements. The key holds the
block's data bytes too (an audio level), so the memo is bounded: once full, a miss takes the walk as before (never
slower than without the memo) until the sequence number wraps and it starts afresh. tests/media/test_media_twcc_memo.py
holds it to the pure function byte for byte.
"""

from __future__ import annotations

import time
from array import array
from collections.abc import Callable
from typing import Protocol

from callsd.core.video import PacketResult
from callsd.core.wire.transport_cc import TransportCc
from callsd.core.wire.transport_seq import stamp_transport_seq

from .transport import PacketStamper

__all__ = ["TransportSequencer", "HISTORY", "attach"]

HISTORY = 4096  # ~10 s of a 3 Mbit/s receiver; feedback comes back within ~100 ms
_MASK = HISTORY - 1
_MAX_LAYOUTS = 256  # distinct (first byte, extension block) a sequencer remembers (then misses take the walk)


class _Layout:
    """How ``stamp_transport_seq`` changes packets of one (first byte, extension block): the packet's first byte,
    then its bytes up to ``off``, then ``head``, the number's two bytes, ``tail``, then its bytes from ``end``."""

    __slots__ = ("first", "off", "end", "head", "tail")

    def __init__(self, first: bytes, off: int, end: int, head: bytes, tail: bytes) -> None:
        self.first, self.off, self.end, self.head, self.tail = first, off, end, head, tail


def _learn(packet: bytes, ext_id: int, off: int, end: int) -> _Layout | None:
    """The layout of ``packet`` (whole header and block present), from the pure function stamping two numbers whose
    bytes all differ; None when it refuses the packet."""
    low, high = stamp_transport_seq(packet, ext_id, 0), stamp_transport_seq(packet, ext_id, 0xFFFF)
    if low is None or high is None:
        return None
    at = next(i for i in range(len(low)) if low[i] != high[i])
    stop = len(low) - (len(packet) - end)
    return _Layout(low[:1], off, end, low[off:at], low[at + 2 : stop])


class TransportSequencer:
    """One receiving transport's counter and send history; ``ext_id`` is the id the receiver accepted."""

    __slots__ = ("ext_id", "next_seq", "_clock", "_send_ms", "_size", "_seq", "_reported", "_cluster", "stamped",
                 "unstampable", "sent_bytes", "cluster", "cluster_last", "_layouts")

    def __init__(self, ext_id: int, clock: Callable[[], float]) -> None:
        self.ext_id = ext_id
        self.next_seq = 0
        self._clock = clock
        self._send_ms = array("d", bytes(8 * HISTORY))
        self._size = array("l", bytes(array("l").itemsize * HISTORY))
        self._seq = array("l", [-1]) * HISTORY  # the full sequence number each slot holds (-1: none)
        self._reported = bytearray(HISTORY)
        self._cluster = array("l", bytes(array("l").itemsize * HISTORY))
        self.cluster = 0  # the probe cluster being sent (probing.py sets it around its padding), 0: none
        self.cluster_last = False  # the next stamped packet is its cluster's last
        self.stamped = 0
        self.unstampable = 0
        self.sent_bytes = 0  # every stamped byte: the rate sent to this receiver (probes included)
        self._layouts: dict[bytes, _Layout | None] = {}  # first byte + extension block -> its layout (module doc)

    def _stamped(self, plain: bytes, seq: int) -> bytes | None:
        """``stamp_transport_seq(plain, self.ext_id, seq)``, through the layout memo when the header is whole."""
        n = len(plain)
        if n < 12:
            return None
        first = plain[0]
        off = 12 + 4 * (first & 0x0F)
        if first & 0x10:
            if off + 4 > n:
                return None
            end = off + 4 + 4 * (plain[off + 2] << 8 | plain[off + 3])
        else:
            end = off
        if end > n:
            return None
        key = plain[:1] + plain[off:end]
        layouts = self._layouts
        try:
            layout = layouts[key]
        except KeyError:
            if len(layouts) >= _MAX_LAYOUTS:  # blocks that vary more than that (their data bytes differ: audio
                # levels of many streams): the walk costs what it did before the memo; it starts afresh at each
                # wrap of the sequence number, in case what it holds went stale (a renegotiation)
                if seq:
                    return stamp_transport_seq(plain, self.ext_id, seq)
                layouts.clear()
            layout = layouts[key] = _learn(plain, self.ext_id, off, end)
        if layout is None:
            return None
        return b"".join((layout.first, plain[1:off], layout.head, bytes((seq >> 8 & 0xFF, seq & 0xFF)), layout.tail,
                         plain[end:]))

    def stamp(self, plain: bytes) -> bytes:
        """``plain`` with the next transport sequence number; unchanged (and counted) if it is malformed."""
        seq = self.next_seq
        out = self._stamped(plain, seq)
        if out is None:
            self.unstampable += 1
            return plain
        slot = seq & _MASK
        self._send_ms[slot] = self._clock() * 1000.0
        self._size[slot] = len(out)
        self._seq[slot] = seq
        self._reported[slot] = 0
        self._cluster[slot] = -self.cluster if self.cluster_last else self.cluster
        self.next_seq = (seq + 1) & 0xFFFF
        self.stamped += 1
        self.sent_bytes += len(out)
        return out

    def results(self, feedback: TransportCc) -> list[PacketResult]:
        """The packets ``feedback`` reports, in sequence order, that this sequencer sent and has not reported."""
        out: list[PacketResult] = []
        for i, arrival in enumerate(feedback.arrivals):
            seq = (feedback.base_seq + i) & 0xFFFF
            slot = seq & _MASK
            if self._seq[slot] != seq or self._reported[slot]:
                continue
            self._reported[slot] = 1
            cluster = self._cluster[slot]  # negative: the cluster's last packet
            out.append(PacketResult(send_ms=self._send_ms[slot],
                                    arrival_ms=None if arrival is None else arrival / 1000.0,
                                    size=self._size[slot], probe_cluster=abs(cluster), probe_last=cluster < 0))
        return out


class _Stamped(Protocol):
    twcc: PacketStamper | None


def attach(peer: _Stamped | None, ext_id: int, clock: Callable[[], float] = time.monotonic) -> None:
    """Give ``peer`` a sequencer for ``ext_id`` (0: none), keeping the one it has when the id is unchanged, so the
    numbering and its history survive a renegotiation."""
    if peer is None:
        return
    current = peer.twcc
    if not ext_id:
        peer.twcc = None
    elif not isinstance(current, TransportSequencer) or current.ext_id != ext_id:
        peer.twcc = TransportSequencer(ext_id, clock)
