"""Transport-wide congestion control toward one receiver: stamp, remember, read the feedback (docs/video.md).

When a receiver's answer accepted the transport-wide-cc header extension (``TWCC_URI``) on the sections the server
sends it, its ``Peer`` gets a ``TransportSequencer``: ``Peer.send_rtp`` passes every RTP packet through ``stamp``
(media, NACK answers, RTX, padding probes alike), which writes the next 16-bit transport sequence number into the
packet (``core.wire.transport_seq``) and records the send time and size in a ring (up to ``HISTORY`` entries). The
receiver reports, per sequence number, whether and when the packet arrived (RTCP transport feedback, PT 205 FMT 15,
``core.wire.transport_cc``); ``results`` turns one report into the ``PacketResult``s (send time on our clock,
arrival time on the receiver's, size) the receiver's ``BandwidthEstimator`` takes. Each sequence number is reported
to the estimator once; numbers the ring no longer holds are skipped.

Where the extension is built, the sequencer's numbers and history are a C record (``_engine.SequencerRecord``,
native/sequencer_record.h: C fields and one 20-byte record per history slot) whose ``stamp``, ``_grow`` and
``_take`` are C methods; the native step stamps on that record directly (ADR 0024, ADR 0033's addendum), then
protects and sends the stamped bytes, so both fast paths stamp the same numbers into this one object.
``SequencerTwin`` is the same sequencer in Python, the base where the extension is not built;
tests/media/test_route_record.py runs the Python path on both and requires identical outcomes.
"""

from __future__ import annotations

import time
from array import array
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from callsd.core.video import PacketResult
from callsd.core.wire.transport_cc import TransportCc
from callsd.core.wire.transport_seq import stamp_transport_seq

from .transport import PacketStamper

__all__ = ["TransportSequencer", "SequencerTwin", "HISTORY", "FIRST", "COVER_MS", "attach"]

# The ring starts small and doubles whenever it would overwrite a packet sent less than COVER_MS ago, up to HISTORY:
# it then holds at least COVER_MS of packets (feedback comes back within ~100 ms) at 19 bytes a packet. An audio
# receiver stays at 256 slots (4.75 KiB); 2048 slots cover 2 s of a 8 Mbit/s screen share. At a fixed 4096 slots of
# 33 bytes the ring was 132 KiB per receiver, the largest item of a session's memory (docs/performance.md,
# "Native SRTP on libcrypto").
HISTORY = 4096
FIRST = 256
COVER_MS = 2000.0


class SequencerTwin:
    """``_engine.SequencerRecord`` in Python: one receiving transport's counter and send history."""

    __slots__ = ("ext_id", "next_seq", "_clock", "_mask", "_send_ms", "_size", "_seq", "_reported", "_cluster",
                 "stamped", "unstampable", "sent_bytes", "cluster", "cluster_last")

    def __init__(self, ext_id: int, clock: Callable[[], float]) -> None:
        self.ext_id = ext_id
        self.next_seq = 0
        self._clock = clock
        self._mask = FIRST - 1
        self._send_ms = array("d", bytes(8 * FIRST))
        self._size = array("H", bytes(2 * FIRST))  # a UDP payload's size fits 16 bits
        self._seq = array("i", [-1]) * FIRST  # the full 16-bit sequence number each slot holds (-1: none)
        self._reported = bytearray(FIRST)
        self._cluster = array("i", bytes(4 * FIRST))  # probe cluster ids (negative: a cluster's last packet)
        self.cluster = 0  # the probe cluster being sent (probing.py sets it around its padding), 0: none
        self.cluster_last = False  # the next stamped packet is its cluster's last
        self.stamped = 0
        self.unstampable = 0
        self.sent_bytes = 0  # every stamped byte: the rate sent to this receiver (probes included)

    def stamp(self, plain: bytes) -> bytes:
        """``plain`` with the next transport sequence number; unchanged (and counted) if it is malformed."""
        seq = self.next_seq
        out = stamp_transport_seq(plain, self.ext_id, seq)
        if out is None:
            self.unstampable += 1
            return plain
        now_ms = self._clock() * 1000.0
        slot = seq & self._mask
        if self._seq[slot] >= 0 and now_ms - self._send_ms[slot] < COVER_MS and self._mask < HISTORY - 1:
            self._grow()
            slot = seq & self._mask
        self._send_ms[slot] = now_ms
        self._size[slot] = len(out)
        self._seq[slot] = seq
        self._reported[slot] = 0
        self._cluster[slot] = -self.cluster if self.cluster_last else self.cluster
        self.next_seq = (seq + 1) & 0xFFFF
        self.stamped += 1
        self.sent_bytes += len(out)
        return out

    def _grow(self) -> None:
        """Double the ring, each packet it holds moving to its slot in the larger one (the ring holds the last
        packets sent, so their sequence numbers stay distinct modulo the new size)."""
        size = 2 * (self._mask + 1)
        send_ms, sizes = array("d", bytes(8 * size)), array("H", bytes(2 * size))
        seqs, reported, cluster = array("i", [-1]) * size, bytearray(size), array("i", bytes(4 * size))
        for old, seq in enumerate(self._seq):
            if seq < 0:
                continue
            new = seq & (size - 1)
            send_ms[new], sizes[new], seqs[new] = self._send_ms[old], self._size[old], seq
            reported[new], cluster[new] = self._reported[old], self._cluster[old]
        self._send_ms, self._size, self._seq, self._reported, self._cluster = send_ms, sizes, seqs, reported, cluster
        self._mask = size - 1

    def _take(self, base_seq: int, count: int) -> list[tuple[int, float, int, int]]:
        """``(index, send_ms, size, cluster)`` of the numbers ``base_seq``.. (``count`` of them) this sequencer sent
        and has not reported, each now marked reported."""
        out: list[tuple[int, float, int, int]] = []
        for i in range(count):
            seq = (base_seq + i) & 0xFFFF
            slot = seq & self._mask
            if self._seq[slot] != seq or self._reported[slot]:
                continue
            self._reported[slot] = 1
            out.append((i, self._send_ms[slot], self._size[slot], self._cluster[slot]))
        return out


if TYPE_CHECKING:
    _Sequencer = SequencerTwin
else:
    try:
        from .native._engine import SequencerRecord as _Sequencer
    except ImportError:  # the extension is not built: the twin
        _Sequencer = SequencerTwin


class TransportSequencer(_Sequencer):
    """One receiving transport's counter and send history; ``ext_id`` is the id the receiver accepted."""

    __slots__ = ()

    def results(self, feedback: TransportCc) -> list[PacketResult]:
        """The packets ``feedback`` reports, in sequence order, that this sequencer sent and has not reported."""
        arrivals = [None if arrival is None else arrival / 1000.0 for arrival in feedback.arrivals]
        return [PacketResult(send_ms=send_ms, arrival_ms=arrivals[i], size=size, probe_cluster=abs(cluster),
                             probe_last=cluster < 0)  # a negative cluster: the cluster's last packet
                for i, send_ms, size, cluster in self._take(feedback.base_seq, len(arrivals))]


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
