"""A receiver's bandwidth estimate: Google Congestion Control (draft-ietf-rmcat-gcc-02), delay- and loss-based, pure.

The SFU keeps one ``BandwidthEstimator`` per receiver (per transport). It is fed with what the receiver reports:

* ``on_packet_results(results, now_ms)``: per forwarded packet, its send time (the SFU's clock), its arrival time
  (the receiver's clock, from transport-cc feedback; ``None`` if lost) and its size. This drives the delay-based
  controller (``delay_based.py``: inter-arrival groups, trendline filter, over-use detector, AIMD) and the
  loss-based controller, and measures the incoming rate R (media bytes that arrived over the last 500 ms of arrivals,
  but the first packet's; not a probe's padding, which leaves a queue as a burst faster than the path's rate: R
  counting it passed for a 125 kbit/s path behind a 120 kbit/s shaper in a test run);
* ``on_loss_report(fraction_lost, now_ms)``: the fraction lost from an RTCP receiver report (when the receiver
  did not negotiate transport-cc) drives the loss-based controller alone;
* ``on_remb(bps, now_ms)``: a receiver-side estimate (REMB) caps the result.

The loss-based controller (draft section 6) runs once per report interval (at least ``LOSS_INTERVAL_MS`` and
``LOSS_MIN_PACKETS`` of feedback, or one receiver report): loss above 10 % -> ``As *= 1 - 0.5 p``, and with
transport-cc further down toward R, the rate that did arrive, by at most a factor ``1 - p`` per interval (a
policer drops what exceeds its rate without building a queue, so the delay-based half sees nothing; what got
through is the best measure of the path, and waiting for ``As`` to creep down by ``1 - 0.5 p`` steps is seconds
of freezing, while one bad interval of a busy receiver should not halve it); below 2 % -> ``As *= 1.05``; in
between hold. With
transport-cc an increase goes no higher than 1.5 R + 10 kbit/s (a bound on increases: it never lowers a rate).

Probe clusters (``PacketResult.probe_cluster``, ``probe.py``): a cluster that arrived with little loss shows the
path carries its rate; both halves are raised to 0.95 x that at once, so a receiver held on a low simulcast layer
can be found able to take a higher one (``probes``: the outcomes, for the caller's schedule and counters). A
probe's own losses do not count for the loss-based half (they say the probe's rate was too high, which its
outcome already says); its delays do count for the delay-based half (a queue the probe built is the path's).

The estimate is ``min(A_delay, As, REMB)`` (A_delay once transport-cc has measured R) clamped to ``[min_bps,
max_bps]``; it is always finite.

``proven`` is the part of the estimate the path has shown it carries, what a move *up* a layer may rely on. GCC
lets both halves grow to 1.5 R + 10 kbit/s while nothing is wrong, so that a sender that then sends at its
estimate finds the path's limit by its own traffic. An SFU does not send at the estimate: a receiver held on a low
layer receives R and no more, so the queue that would stop the growth never builds, and the estimate of a receiver
behind a 120 kbit/s link receiving 60 kbit/s rose to 137 kbit/s in 6 s of "normal" (a recorded run,
tests/data/limited_receiver_twcc.jsonl), above what the full layer seemed to need, and the receiver was
moved up into a link that could not carry it. So with transport-cc ``proven`` is the estimate capped by the most
the path did carry: the highest R, or the result of a probe cluster that arrived whole, within ``PROOF_MS`` and
since the last decrease (a queue or loss says the path changed since). The highest R and not the last one: a
receiver that got the full layer a second ago has shown its path carries it, also while the publisher paused
that layer (which leaves the receiver on a lower one until it resumes). Without transport-cc (no R, no probes) it
is the estimate. A move down reads the estimate itself.

Times are milliseconds as floats, passed in; nothing here reads a clock, so a recorded feedback stream replays to
the same estimates.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

from .delay_based import AimdRateController, BandwidthUsage, InterArrival, OveruseDetector, TrendlineFilter
from .probe import ProbeClusters, ProbeOutcome

__all__ = ["EstimatorSettings", "PacketResult", "BandwidthEstimator", "LOSS_INTERVAL_MS", "RATE_WINDOW_MS", "PROOF_MS"]

LOSS_INTERVAL_MS = 500.0
LOSS_MIN_PACKETS = 20
PROBE_TRUST = 0.95
RATE_WINDOW_MS = 500.0
LOSS_HIGH, LOSS_LOW = 0.10, 0.02
REMB_CONGESTED = 0.75
PROOF_MS = 10_000.0  # how long a rate counts as shown (several probe intervals, longer than the layer hold)


@dataclass(frozen=True, slots=True, kw_only=True)
class EstimatorSettings:
    """Bounds of the estimate (bit/s) and where it starts."""

    min_bps: int = 50_000
    start_bps: int = 1_000_000
    max_bps: int = 20_000_000

    def __post_init__(self) -> None:
        if not 0 < self.min_bps <= self.start_bps <= self.max_bps:
            raise ValueError(f"need 0 < min_bps <= start_bps <= max_bps, got {self.min_bps}, {self.start_bps}, "
                             f"{self.max_bps}")


@dataclass(frozen=True, slots=True, kw_only=True)
class PacketResult:
    """One sent packet as the receiver reported it: ``arrival_ms`` is None for a packet reported lost;
    ``probe_cluster`` names the probe cluster it belonged to (0: none)."""

    send_ms: float
    arrival_ms: float | None
    size: int
    probe_cluster: int = 0
    probe_last: bool = False  # the cluster's last packet: its report completes the cluster


class BandwidthEstimator:
    """GCC for one receiver; ``estimate`` (bit/s) is the value the layer choice reads."""

    __slots__ = ("settings", "usage", "_inter_arrival", "_trendline", "_detector", "_aimd", "_loss_rate",
                 "_remb", "_arrivals", "_window_sent", "_window_lost", "_window_start_ms", "incoming_bps",
                 "_clusters", "probes", "_shown_bps", "_shown_ms", "_now_ms")

    def __init__(self, settings: EstimatorSettings | None = None) -> None:
        self.settings = settings or EstimatorSettings()
        s = self.settings
        self.usage = BandwidthUsage.NORMAL
        self._inter_arrival = InterArrival()
        self._trendline = TrendlineFilter()
        self._detector = OveruseDetector()
        self._aimd = AimdRateController(start_bps=s.start_bps, min_bps=s.min_bps, max_bps=s.max_bps)
        self._loss_rate = float(s.start_bps)
        self._remb: float | None = None
        self._arrivals: deque[tuple[float, int]] = deque()  # (arrival ms, size) within the rate window
        self._window_sent = 0
        self._window_lost = 0
        self._window_start_ms: float | None = None
        self.incoming_bps: float | None = None
        self._clusters = ProbeClusters()
        self.probes: list[ProbeOutcome] = []  # completed probe clusters, oldest first (the caller may clear it)
        self._shown_bps = 0.0  # the most R or a clean probe cluster showed (bit/s) since a decrease, and when
        self._shown_ms = 0.0
        self._now_ms = 0.0  # the newest feedback time

    @property
    def estimate(self) -> int:
        """The current estimate in bit/s: min of the delay-based, loss-based and REMB rates, within the bounds."""
        s = self.settings
        delay_rate = self._aimd.rate if self.incoming_bps is not None else math.inf  # fed by transport-cc only
        value = min(delay_rate, self._loss_rate, self._remb if self._remb is not None else math.inf)
        return int(min(max(value, s.min_bps), s.max_bps))

    @property
    def proven(self) -> int:
        """The estimate capped by what the path has shown it carries (module docstring): what a move up reads."""
        if self.incoming_bps is None:
            return self.estimate
        fresh = self._now_ms - self._shown_ms <= PROOF_MS
        shown = max(self.incoming_bps, self._shown_bps if fresh else 0.0, float(self.settings.min_bps))
        return int(min(self.estimate, shown))

    def set_rtt(self, rtt_ms: float) -> None:
        """The round-trip time (from RTCP), which sets the additive increase's response time."""
        if math.isfinite(rtt_ms) and rtt_ms >= 0:
            self._aimd.rtt_ms = min(rtt_ms, 10_000.0)

    def on_packet_results(self, results: Iterable[PacketResult], now_ms: float) -> int:
        """Feed one transport-cc report's packets (in sequence order); returns the new estimate."""
        self._now_ms = max(self._now_ms, now_ms) if math.isfinite(now_ms) else self._now_ms
        received = sent = 0
        for result in results:
            if not result.probe_cluster:  # a probe's losses say its rate was too high, not the media's
                sent += 1
            if not math.isfinite(result.send_ms):
                continue
            arrival = result.arrival_ms if result.arrival_ms is not None and math.isfinite(result.arrival_ms) else None
            for outcome in self._clusters.add(result.probe_cluster, result.send_ms, arrival, result.size,
                                              last=result.probe_last):
                self._on_probe(outcome)
            if arrival is None:
                continue
            received += not result.probe_cluster
            if not result.probe_cluster:  # R is the media's rate: a probe is measured by its cluster (below)
                self._count_arrival(arrival, result.size)
            delta = self._inter_arrival.add(result.send_ms, arrival)
            if delta is None:
                continue
            trend = self._trendline.update(delta)
            self.usage = self._detector.detect(trend, delta.send_delta_ms, self._trendline.deltas, now_ms)
        if sent:
            before = self._aimd.rate
            if self._aimd.update(self.usage, self.incoming_bps, now_ms) < before:
                self._shown_bps = 0.0  # a queue built: what the path showed before may no longer hold
            self._count_loss(sent, sent - received, now_ms)
        return self.estimate

    def on_loss_report(self, fraction_lost: float, now_ms: float) -> int:
        """Apply a receiver report's fraction lost (0..1) to the loss-based controller; returns the estimate."""
        if math.isfinite(fraction_lost):
            self._apply_loss(min(max(fraction_lost, 0.0), 1.0))
        return self.estimate

    def on_remb(self, bps: int, now_ms: float, received_bps: float | None = None) -> int:
        """A receiver's own estimate caps ours (the most recent REMB wins).

        With ``received_bps`` (what the receiver is being sent), a REMB above ``REMB_CONGESTED`` (3/4) of it caps
        nothing: a receive-side estimator never reports much more than it receives (GCC's own 1.5 x incoming
        bound) and wanders around it, so such a REMB says the path carries the current rate, not that it cannot
        carry more; an SFU that does not probe would otherwise never move a receiver up a layer. A REMB well
        below what the receiver is sent is congestion, and caps."""
        value = float(max(bps, 0))
        self._remb = None if received_bps is not None and value >= REMB_CONGESTED * received_bps else value
        return self.estimate

    def _on_probe(self, outcome: ProbeOutcome) -> None:
        self.probes.append(outcome)
        del self.probes[:-16]
        if outcome.bps is None or not math.isfinite(outcome.bps):
            return
        s = self.settings
        floor = min(PROBE_TRUST * outcome.bps, s.max_bps)
        self._aimd.rate = max(self._aimd.rate, floor)
        self._loss_rate = max(self._loss_rate, floor)
        self._show(floor)

    def _count_arrival(self, arrival_ms: float, size: int) -> None:
        arrivals = self._arrivals
        arrivals.append((arrival_ms, size))
        while arrivals and arrivals[0][0] < arrival_ms - RATE_WINDOW_MS:
            arrivals.popleft()
        span = arrival_ms - arrivals[0][0]
        if span >= RATE_WINDOW_MS / 2:  # the first packet arrived at the span's start: its bytes are before it
            self.incoming_bps = (sum(n for _, n in arrivals) - arrivals[0][1]) * 8 * 1000.0 / max(span, 1.0)
            self._show(self.incoming_bps)

    def _show(self, bps: float) -> None:
        """The path carried ``bps``: the most it showed within ``PROOF_MS`` (a stale maximum gives way)."""
        if bps >= self._shown_bps or self._now_ms - self._shown_ms > PROOF_MS:
            self._shown_bps, self._shown_ms = bps, self._now_ms

    def _count_loss(self, sent: int, lost: int, now_ms: float) -> None:
        if self._window_start_ms is None:
            self._window_start_ms = now_ms
        self._window_sent += sent
        self._window_lost += lost
        if now_ms - self._window_start_ms >= LOSS_INTERVAL_MS and self._window_sent >= LOSS_MIN_PACKETS:
            self._apply_loss(self._window_lost / self._window_sent)
            self._window_sent = self._window_lost = 0
            self._window_start_ms = now_ms

    def _apply_loss(self, fraction: float) -> None:
        s = self.settings
        if fraction > LOSS_HIGH:
            self._shown_bps = 0.0  # the path lost what it was sent: what it showed before no longer holds
            before = self._loss_rate
            self._loss_rate *= 1 - 0.5 * fraction
            if self.incoming_bps is not None:  # toward what arrived (a policer's rate), by at most 1 - p at once
                self._loss_rate = min(self._loss_rate, max(self.incoming_bps, before * (1 - fraction)))
        elif fraction < LOSS_LOW:
            before = self._loss_rate
            self._loss_rate *= 1.05
            if self.incoming_bps is not None:  # no higher than the path has shown, so a later loss bites at once
                self._loss_rate = min(self._loss_rate, max(before, 1.5 * self.incoming_bps + 10_000, s.min_bps))
        self._loss_rate = min(max(self._loss_rate, s.min_bps), s.max_bps)
