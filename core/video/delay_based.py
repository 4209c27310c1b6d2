"""The delay-based half of Google Congestion Control (draft-ietf-rmcat-gcc-02, section 5), pure.

Theory of operation. A sender that pushes more than the path carries builds a queue, and a growing queue shows up
as a growing *one-way delay gradient* long before packets are lost. Per pair of packet groups (packets sent within
a 5 ms burst form one group, since a pacer or an encoder emits a frame as a burst)::

    d(i) = (arrival(i) - arrival(i-1)) - (send(i) - send(i-1))

The *arrival-time filter* turns the noisy d(i) into a trend. The draft describes a Kalman filter; this module uses
the trendline filter that replaced it in libwebrtc (same inputs, same role): accumulate d(i), smooth it
exponentially (coefficient 0.9), and fit a least-squares line through the last 20 (arrival time, smoothed delay)
points. Its slope, scaled by ``min(deltas, 60) * 4``, is the modified trend m(i).

The *over-use detector* compares m(i) with an adaptive threshold gamma(i) (draft section 5.4)::

    gamma(i) = gamma(i-1) + dt * k * (|m(i)| - gamma(i-1)),  k = k_up if |m| > gamma else k_down

clamped to [6, 600], and not updated on outliers (``|m| - gamma > 15``), so the threshold follows the noise of the
path but a real queue still exceeds it. Over-use is signalled only after m(i) stayed above gamma for 10 ms and is
not falling; under-use when m(i) < -gamma; otherwise normal. (k_up 0.0087, k_down 0.039 and the initial 12.5 are
the trendline constants; the draft's 0.01/0.00018 belong to its Kalman filter's units.)

The *rate controller* (draft section 5.5) is a three-state AIMD: over-use -> decrease to ``beta * R`` (beta 0.85,
R the rate the receiver measured over the last 500 ms) then hold; under-use -> hold (the queue drains); normal ->
increase, multiplicatively (8 % per second) far from the last known capacity, additively (about one packet per
response time) near it. An increase never goes past 1.5 R plus 10 kbit/s: a sender cannot learn the capacity of a
path it does not use (probing is the adapter's job; a probe's result may set the rate above that bound, and the
bound does not pull it back).

Everything takes ``now_ms`` (or per-packet times) as arguments; nothing reads a clock.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from enum import Enum

__all__ = ["BandwidthUsage", "PacketGroupDelta", "InterArrival", "TrendlineFilter", "OveruseDetector",
           "AimdRateController"]

BURST_MS = 5.0
TRENDLINE_WINDOW = 20
SMOOTHING = 0.9
THRESHOLD_GAIN = 4.0
MAX_DELTAS = 60
K_UP, K_DOWN = 0.0087, 0.039
INITIAL_THRESHOLD, MIN_THRESHOLD, MAX_THRESHOLD = 12.5, 6.0, 600.0
MAX_ADAPT_OFFSET = 15.0
OVERUSE_TIME_MS = 10.0
BETA = 0.85


class BandwidthUsage(Enum):
    """The over-use detector's signal."""

    NORMAL = "normal"
    OVERUSE = "overuse"
    UNDERUSE = "underuse"


@dataclass(frozen=True, slots=True, kw_only=True)
class PacketGroupDelta:
    """The difference between two consecutive packet groups: send and arrival spacing of their last packets."""

    send_delta_ms: float
    arrival_delta_ms: float
    arrival_ms: float


class InterArrival:
    """Groups packets into 5 ms send bursts and yields one ``PacketGroupDelta`` per completed group pair.

    Packets must come in send order (the order of their transport-wide sequence numbers); a packet sent before the
    current group started (reordered in the feedback) is ignored."""

    __slots__ = ("_first_send", "_last_send", "_last_arrival", "_prev_send", "_prev_arrival")

    def __init__(self) -> None:
        self._first_send: float | None = None
        self._last_send = 0.0
        self._last_arrival = 0.0
        self._prev_send: float | None = None
        self._prev_arrival = 0.0

    def add(self, send_ms: float, arrival_ms: float) -> PacketGroupDelta | None:
        if self._first_send is None:
            self._first_send, self._last_send, self._last_arrival = send_ms, send_ms, arrival_ms
            return None
        if send_ms < self._first_send:
            return None
        if send_ms - self._first_send <= BURST_MS:
            self._last_send = max(self._last_send, send_ms)
            self._last_arrival = max(self._last_arrival, arrival_ms)
            return None
        delta = None
        if self._prev_send is not None:
            delta = PacketGroupDelta(send_delta_ms=self._last_send - self._prev_send,
                                     arrival_delta_ms=self._last_arrival - self._prev_arrival,
                                     arrival_ms=self._last_arrival)
        self._prev_send, self._prev_arrival = self._last_send, self._last_arrival
        self._first_send, self._last_send, self._last_arrival = send_ms, send_ms, arrival_ms
        return delta


class TrendlineFilter:
    """The arrival-time filter: the slope of the smoothed accumulated delay over recent groups, scaled."""

    __slots__ = ("_points", "_accumulated", "_smoothed", "_first_arrival", "deltas", "modified_trend")

    def __init__(self) -> None:
        self._points: deque[tuple[float, float]] = deque(maxlen=TRENDLINE_WINDOW)
        self._accumulated = 0.0
        self._smoothed = 0.0
        self._first_arrival: float | None = None
        self.deltas = 0
        self.modified_trend = 0.0

    def update(self, delta: PacketGroupDelta) -> float:
        """Feed one group delta; returns the modified trend m(i) in ms (0 until the window is full)."""
        if self._first_arrival is None:
            self._first_arrival = delta.arrival_ms
        self.deltas = min(self.deltas + 1, 1000)
        self._accumulated += delta.arrival_delta_ms - delta.send_delta_ms
        self._smoothed = SMOOTHING * self._smoothed + (1 - SMOOTHING) * self._accumulated
        self._points.append((delta.arrival_ms - self._first_arrival, self._smoothed))
        if len(self._points) == TRENDLINE_WINDOW:
            slope = _slope(self._points)
            if slope is not None:
                self.modified_trend = min(self.deltas, MAX_DELTAS) * slope * THRESHOLD_GAIN
        return self.modified_trend


def _slope(points: deque[tuple[float, float]]) -> float | None:
    n = len(points)
    mean_x = sum(x for x, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    denominator = sum((x - mean_x) ** 2 for x, _ in points)
    if denominator == 0.0:
        return None
    slope = sum((x - mean_x) * (y - mean_y) for x, y in points) / denominator
    return slope if math.isfinite(slope) else None


class OveruseDetector:
    """Compares the modified trend with the adaptive threshold gamma; see the module docstring."""

    __slots__ = ("threshold", "_last_update_ms", "_over_ms", "_over_count", "_previous_trend", "state")

    def __init__(self) -> None:
        self.threshold = INITIAL_THRESHOLD
        self._last_update_ms: float | None = None
        self._over_ms = -1.0
        self._over_count = 0
        self._previous_trend = 0.0
        self.state = BandwidthUsage.NORMAL

    def detect(self, trend: float, send_delta_ms: float, deltas: int, now_ms: float) -> BandwidthUsage:
        if deltas < 2:
            return BandwidthUsage.NORMAL
        if trend > self.threshold:
            self._over_ms = send_delta_ms / 2 if self._over_ms < 0 else self._over_ms + send_delta_ms
            self._over_count += 1
            if self._over_ms > OVERUSE_TIME_MS and self._over_count > 1 and trend >= self._previous_trend:
                self._over_ms, self._over_count = 0.0, 0
                self.state = BandwidthUsage.OVERUSE
        elif trend < -self.threshold:
            self._over_ms, self._over_count = -1.0, 0
            self.state = BandwidthUsage.UNDERUSE
        else:
            self._over_ms, self._over_count = -1.0, 0
            self.state = BandwidthUsage.NORMAL
        self._previous_trend = trend
        self._adapt(trend, now_ms)
        return self.state

    def _adapt(self, trend: float, now_ms: float) -> None:
        if self._last_update_ms is None:
            self._last_update_ms = now_ms
        magnitude = abs(trend)
        if magnitude > self.threshold + MAX_ADAPT_OFFSET:
            self._last_update_ms = now_ms  # an outlier (a sudden route change): do not follow it
            return
        k = K_DOWN if magnitude < self.threshold else K_UP
        dt = min(max(now_ms - self._last_update_ms, 0.0), 100.0)
        self.threshold += k * (magnitude - self.threshold) * dt
        self.threshold = min(max(self.threshold, MIN_THRESHOLD), MAX_THRESHOLD)
        self._last_update_ms = now_ms


class AimdRateController:
    """The delay-based rate A(i) in bit/s, driven by the detector's signal and the measured incoming rate."""

    __slots__ = ("rate", "_min", "_max", "_hold", "_last_change_ms", "_last_decrease_ms", "_capacity", "_capacity_var", "rtt_ms")

    def __init__(self, *, start_bps: float, min_bps: float, max_bps: float) -> None:
        self._min, self._max = float(min_bps), float(max_bps)
        self.rate = min(max(float(start_bps), self._min), self._max)
        self._hold = False  # True after a decrease, until the next normal signal
        self._last_change_ms: float | None = None
        self._last_decrease_ms: float | None = None
        self._capacity: float | None = None  # kbit/s: average of R at decreases (the "link capacity")
        self._capacity_var = 0.4
        self.rtt_ms = 100.0

    def update(self, usage: BandwidthUsage, incoming_bps: float | None, now_ms: float) -> float:
        """Apply one detector signal at ``now_ms``; returns the new rate (bit/s), always within [min, max]."""
        last = self._last_change_ms if self._last_change_ms is not None else now_ms
        dt_ms = min(max(now_ms - last, 0.0), 1000.0)
        self._last_change_ms = now_ms
        if usage is BandwidthUsage.OVERUSE:
            # decrease at most once per response time: a queue takes that long to show the previous decrease
            since = now_ms - self._last_decrease_ms if self._last_decrease_ms is not None else math.inf
            if since >= 100.0 + self.rtt_ms:
                target = BETA * incoming_bps if incoming_bps else BETA * self.rate
                self.rate = min(self.rate, target)
                self._last_decrease_ms = now_ms
                if incoming_bps:
                    self._learn_capacity(incoming_bps)
            self._hold = True
        elif usage is BandwidthUsage.UNDERUSE:
            self._hold = True
        elif self._hold:
            self._hold = False  # hold -> increase takes one normal signal (draft 5.5's state table)
        else:
            before = self.rate
            if self._near_capacity(incoming_bps):
                response_ms = 100.0 + self.rtt_ms
                packet_bits = 1200 * 8
                self.rate += max(1000.0, packet_bits * dt_ms / response_ms)
            else:
                self.rate *= 1.08 ** (dt_ms / 1000.0)
            if incoming_bps:  # a bound on the increase, not a decrease (a probe may have shown more)
                self.rate = min(self.rate, max(before, 1.5 * incoming_bps + 10_000))
        self.rate = min(max(self.rate, self._min), self._max) if math.isfinite(self.rate) else self._min
        return self.rate

    def _near_capacity(self, incoming_bps: float | None) -> bool:
        if self._capacity is None or not incoming_bps:
            return False
        kbps = incoming_bps / 1000  # the variance is normalized in kbit/s, as in libwebrtc
        deviation = math.sqrt(self._capacity_var * self._capacity)
        if kbps > self._capacity + 3 * deviation:
            self._capacity = None  # the path got faster: forget the old capacity, grow multiplicatively
            return False
        return True

    def _learn_capacity(self, incoming_bps: float) -> None:
        kbps = incoming_bps / 1000
        if self._capacity is None:
            self._capacity = kbps
            return
        alpha = 0.05
        self._capacity = (1 - alpha) * self._capacity + alpha * kbps
        norm = max(self._capacity, 1.0)
        self._capacity_var = (1 - alpha) * self._capacity_var + alpha * (self._capacity - kbps) ** 2 / norm
        self._capacity_var = min(max(self._capacity_var, 0.4), 2.5)
