"""``StoreTiming``: latency histograms of a node's PostgreSQL writes, for ``/metrics`` (docs/cluster.md).

What an owner's clients wait for is the commit: a client is answered only once its input's transaction committed
(ADR 0002), so the append's latency is added to every acknowledged input; a lease renewal that gets slow is the
first sign of a node about to lose its calls. Observed in the worker threads that run the statements, hence the
lock; read by the metrics collector.
"""

from __future__ import annotations

import threading
from bisect import bisect_left

__all__ = ["StoreTiming", "BUCKETS"]

BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class StoreTiming:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[str, list[int]] = {}  # op -> per-bucket counts (non-cumulative), +Inf last
        self._sums: dict[str, float] = {}

    def observe(self, op: str, seconds: float) -> None:
        with self._lock:
            counts = self._counts.setdefault(op, [0] * (len(BUCKETS) + 1))
            counts[bisect_left(BUCKETS, seconds)] += 1
            self._sums[op] = self._sums.get(op, 0.0) + seconds

    def snapshot(self) -> dict[str, tuple[list[tuple[str, int]], float]]:
        """op -> (cumulative ``(le, count)`` buckets ending with ``+Inf``, sum of seconds), Prometheus' shape."""
        with self._lock:
            out = {}
            for op, counts in self._counts.items():
                running, buckets = 0, []
                for bound, count in zip([*map(str, BUCKETS), "+Inf"], counts, strict=True):
                    running += count
                    buckets.append((bound, running))
                out[op] = (buckets, self._sums[op])
            return out
