"""Transport-wide congestion control toward one receiver: stamp, remember, read the feedback (docs/video.md).

When a receiver's answer accepted the transport-wide-cc header extension (``TWCC_URI``) on the sections the server
sends it, its ``Peer`` gets a ``TransportSequencer``: ``Peer.send_rtp`` passes every RTP packet through ``stamp``
(media, NACK answers, RTX, padding probes alike), which writes the next 16-bit transport sequence number into the
packet (``core.wire.transport_seq``) and records the send time and size in a ring of ``HISTORY`` entries. The
receiver reports, per sequence number, whether and when the packet arrived (RTCP transport feedback, PT 205 FMT 15,
``core.wire.transport_cc``); ``results`` turns one report into the ``PacketResult``s (send time on our clock,
arrival time on the receiver's, size) the receiver's ``BandwidthEstimator`` takes. Each sequence number is reported
to the estimator once; numbers the ring no longer holds (older than ``HISTORY`` packets) are skipped.

The native step does what ``stamp`` does itself, on this object's fields (native/twcc_step.h, ADR 0024: the same
number, the same history entries, the time from ``_clock``), then protects and sends the stamped bytes; so both fast
paths stamp the same numbers into this one object. Its fields are therefore a contract with the C step: ``ext_id``,
``next_seq``, ``cluster``, ``cluster_last``, the counters, and the history arrays with their item types.
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


class TransportSequencer:
    """One receiving transport's counter and send history; ``ext_id`` is the id the receiver accepted."""

    __slots__ = ("ext_id", "next_seq", "_clock", "_send_ms", "_size", "_seq", "_reported", "_cluster", "stamped",
                 "unstampable", "sent_bytes", "cluster", "cluster_last")

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

    def stamp(self, plain: bytes) -> bytes:
        """``plain`` with the next transport sequence number; unchanged (and counted) if it is malformed."""
        seq = self.next_seq
        out = stamp_transport_seq(plain, self.ext_id, seq)
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
