"""A scripted bottleneck link for the estimator's tests: a FIFO queue of a given capacity, with optional loss.

``run_link`` sends 1200-byte packets at ``rate(now_ms)`` (a function of time, or of the estimator's estimate for a
closed loop) through a link of ``capacity(now_ms)`` bit/s, and feeds the estimator one transport-cc-like report
every 100 ms, as a browser would. Everything is virtual time; the loss pattern is deterministic (every n-th
packet), so the scripted tests are exact.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from callsd.core.video import BandwidthEstimator, PacketResult

PACKET_BYTES = 1200
FEEDBACK_MS = 100.0
PROPAGATION_MS = 20.0


@dataclass
class LinkRun:
    estimates: list[tuple[float, int]] = field(default_factory=list)  # (time ms, estimate) after each report

    def at(self, t_ms: float) -> int:
        """The estimate after the last report at or before ``t_ms``."""
        return [e for t, e in self.estimates if t <= t_ms][-1]


def run_link(est: BandwidthEstimator, *, duration_ms: float, rate: Callable[[float, int], float],
             capacity: Callable[[float], float], lose_every: int = 0, start_ms: float = 0.0) -> LinkRun:
    """Drive ``est`` for ``duration_ms``; ``rate(now, estimate)`` is the send rate in bit/s."""
    run = LinkRun()
    now = start_ms
    link_free_at = 0.0
    pending: list[PacketResult] = []
    next_feedback = now + FEEDBACK_MS
    sent = 0
    while now < start_ms + duration_ms:
        send_bps = max(rate(now, est.estimate), 10_000.0)
        sent += 1
        if lose_every and sent % lose_every == 0:
            pending.append(PacketResult(send_ms=now, arrival_ms=None, size=PACKET_BYTES))
        else:
            service_ms = PACKET_BYTES * 8 * 1000.0 / capacity(now)
            link_free_at = max(link_free_at, now) + service_ms
            pending.append(PacketResult(send_ms=now, arrival_ms=link_free_at + PROPAGATION_MS, size=PACKET_BYTES))
        now += PACKET_BYTES * 8 * 1000.0 / send_bps
        if now >= next_feedback:
            report = [p for p in pending if p.arrival_ms is None or p.arrival_ms <= next_feedback]
            pending = [p for p in pending if p not in report]
            if report:
                est.on_packet_results(report, next_feedback)
            run.estimates.append((next_feedback, est.estimate))
            next_feedback += FEEDBACK_MS
    return run
