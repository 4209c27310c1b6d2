"""Receive-side measurements: per-stream loss and RFC 3550 jitter, one-way delay histograms, percentiles.

Loss is computed from the (rewritten) RTP sequence numbers a receiver sees, the way RFC 3550 §6.4.1 defines
"cumulative number of packets lost": expected = extended highest sequence - first sequence + 1, lost = expected -
received (never negative: duplicates are not credit). Jitter is the RFC 3550 §6.4.1 interarrival jitter estimate in
RTP clock units, reported in milliseconds. One-way delay uses the sender's ``time.monotonic_ns()`` embedded in the
payload; senders and receivers run on the same machine, so CLOCK_MONOTONIC is shared across processes.

Everything here is plain Python over ints so that a load process can ship it to its parent as JSON-able dicts.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

__all__ = ["StreamStats", "Histogram", "percentile", "summarize"]


class StreamStats:
    """One received RTP stream (one SSRC at one receiver). ``update`` is the per-packet hot path."""

    __slots__ = (
        "kind",
        "clock_khz",
        "base_seq",
        "max_seq",
        "cycles",
        "received",
        "jitter",
        "last_transit",
        "started",
        "sender",
        "first_counter",
        "first_index",
        "last_counter",
        "last_index",
    )

    def __init__(self, kind: str, clock_rate: int) -> None:
        self.kind = kind
        self.clock_khz = clock_rate / 1000.0
        self.base_seq = 0
        self.max_seq = 0
        self.cycles = 0
        self.received = 0
        self.jitter = 0.0  # in RTP timestamp units
        self.last_transit = 0.0
        self.started = False
        # End-to-end accounting from the sender's own packet counter, read from decrypted (sampled) packets:
        # between two samples, the sender sent (counter difference) packets and we received (index difference).
        self.sender = -1
        self.first_counter = self.first_index = self.last_counter = self.last_index = 0

    def sample(self, sender: int, counter: int) -> None:
        """Note that the packet just counted by ``update`` (the ``received``-th) carried ``counter`` of ``sender``."""
        if sender != self.sender:  # a new source on this SSRC: start over
            self.sender = sender
            self.first_counter, self.first_index = counter, self.received
        self.last_counter, self.last_index = counter, self.received

    @property
    def e2e_expected(self) -> int:
        return max(0, self.last_counter - self.first_counter + 1) if self.sender >= 0 else 0

    @property
    def e2e_lost(self) -> int:
        """Packets the sender sent between the first and last sampled packets that never arrived, wherever they
        were lost (the tool's socket, the server's socket, inside the server); not hidden by sequence rewriting."""
        if self.sender < 0:
            return 0
        return max(0, self.e2e_expected - (self.last_index - self.first_index + 1))

    def update(self, seq: int, rtp_ts: int, arrival_ms: float) -> None:
        """Account one packet with sequence ``seq`` and RTP timestamp ``rtp_ts`` that arrived at ``arrival_ms``."""
        transit = arrival_ms * self.clock_khz - rtp_ts
        if not self.started:
            self.started = True
            self.base_seq = self.max_seq = seq
            self.last_transit = transit
            self.received = 1
            return
        self.received += 1
        delta = (seq - self.max_seq) & 0xFFFF
        if 0 < delta < 0x8000:
            if seq < self.max_seq:
                self.cycles += 0x10000
            self.max_seq = seq
        d = transit - self.last_transit
        self.last_transit = transit
        if d < 0:
            d = -d
        # Timestamps wrap at 2**32: a jump of more than a minute is a wrap or a new source, not jitter.
        if d < 60_000 * self.clock_khz:
            self.jitter += (d - self.jitter) / 16.0

    @property
    def expected(self) -> int:
        if not self.started:
            return 0
        return self.cycles + self.max_seq - self.base_seq + 1

    @property
    def lost(self) -> int:
        return max(0, self.expected - self.received)

    @property
    def jitter_ms(self) -> float:
        return self.jitter / self.clock_khz if self.clock_khz else 0.0


class Histogram:
    """Fixed-bucket histogram of milliseconds (0.1 ms buckets up to ``max_ms``, 10 s by default; the last bucket
    also holds everything above)."""

    __slots__ = ("resolution", "buckets", "count", "total", "maximum")

    def __init__(self, max_ms: float = 10_000.0, resolution: float = 0.1) -> None:
        self.resolution = resolution
        self.buckets = [0] * (int(max_ms / resolution) + 1)
        self.count = 0
        self.total = 0.0
        self.maximum = 0.0

    def add(self, value_ms: float) -> None:
        index = int(value_ms / self.resolution)
        if index < 0:
            index = 0
        elif index >= len(self.buckets):
            index = len(self.buckets) - 1
        self.buckets[index] += 1
        self.count += 1
        self.total += value_ms
        if value_ms > self.maximum:
            self.maximum = value_ms

    def merge(self, other: Histogram) -> None:
        for i, c in enumerate(other.buckets):
            if c:
                self.buckets[i] += c
        self.count += other.count
        self.total += other.total
        self.maximum = max(self.maximum, other.maximum)

    def quantile(self, q: float) -> float | None:
        if self.count == 0:
            return None
        rank = q * self.count
        seen = 0
        for i, c in enumerate(self.buckets):
            seen += c
            if seen >= rank and c:
                return round((i + 0.5) * self.resolution, 3)
        return self.maximum

    def to_json(self) -> dict[str, object]:
        sparse = {str(i): c for i, c in enumerate(self.buckets) if c}
        return {"resolution": self.resolution, "count": self.count, "total": self.total, "max": self.maximum,
                "buckets": sparse, "size": len(self.buckets)}

    @classmethod
    def from_json(cls, data: dict[str, object]) -> Histogram:
        h = cls()
        h.resolution = float(data["resolution"])  # type: ignore[arg-type]
        h.buckets = [0] * int(data["size"])  # type: ignore[call-overload]
        for k, v in dict(data["buckets"]).items():  # type: ignore[call-overload]
            h.buckets[int(k)] = int(v)
        h.count = int(data["count"])  # type: ignore[call-overload]
        h.total = float(data["total"])  # type: ignore[arg-type]
        h.maximum = float(data["max"])  # type: ignore[arg-type]
        return h


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q`` quantile (0..1) of ``values`` by linear interpolation; None for an empty sequence."""
    if not values:
        return None
    ordered = sorted(values)
    pos = q * (len(ordered) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def summarize(values: Iterable[float]) -> dict[str, float | int | None]:
    """count, mean, p50, p90, p95, p99 and max of ``values`` (milliseconds), rounded to 0.01."""
    data = list(values)

    def r(x: float | None) -> float | None:
        return None if x is None else round(x, 2)

    return {
        "count": len(data),
        "mean": r(sum(data) / len(data)) if data else None,
        "p50": r(percentile(data, 0.50)),
        "p90": r(percentile(data, 0.90)),
        "p95": r(percentile(data, 0.95)),
        "p99": r(percentile(data, 0.99)),
        "max": r(max(data)) if data else None,
    }
