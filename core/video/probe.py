"""Bandwidth probes: how much more a receiver's path carries than it is sent, measured, pure (docs/video.md).

Why. An estimator only learns about the rate it sees: GCC never raises its estimate far above 1.5 x what arrived
(``delay_based``), and a receiver held on a low simulcast layer receives little. After a link limit lifts, nothing
the receiver is sent would show it. So the server sends a *probe cluster* now and then: for ``duration_ms`` it
adds RTX padding toward the receiver (adapters/media/probing.py) at the rate it wants to know about (the next
layer's bitrate with a margin), and every packet of the cluster carries the cluster's id in
the send history. From the transport-cc feedback of those packets (as libwebrtc's ProbeBitrateEstimator does)::

    send rate    = bytes sent but the last packet / (last send - first send)
    receive rate = bytes received but the first one / (last arrival - first arrival)
    result       = min(send rate, receive rate), if at most MAX_LOSS of the cluster was lost

A path narrower than the probe spreads its packets out (receive rate < send rate) or, behind a policer, loses them:
either way the result is no more than what the path carried, and a lossy cluster gives no result at all. A
cluster is complete when the report of its last packet comes (received or lost: the receiver reports in send
order, so every packet of the cluster has been reported by then). Padding is paced in bursts, so a gap between
two probe packets says nothing about the cluster's end.

``ProbeSchedule`` is the when: a receiver that wants more than its path has shown is probed ``first_after_ms``
after it started wanting, then every ``interval_ms`` (3 s), so an unchanged limit costs one short burst per
interval and a lifted one is found within an interval. The schedule can back off (the wait doubles after each
cluster that did not end the want, up to ``max_interval_ms``), but by default it does not: the issue allows 10 s
from a lift to the move up, and that is the next cluster, its feedback, the 3-s layer hold and a key frame; with
a 5-s cap a loaded run took 11.5 s (the first cluster after the lift met the shaper's draining queue and failed,
the next came 5 s later). Short clusters are what make the probes cheap (``ProbePolicy.cluster_ms``).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ProbeOutcome", "ProbeClusters", "ProbePolicy", "ProbeSchedule", "MAX_LOSS", "SETTLE_MS", "MIN_PACKETS"]

MAX_LOSS = 0.1
SETTLE_MS = 1000.0  # longer than any cluster: a packet sent this long after its last one ends it
MIN_PACKETS = 5


@dataclass(frozen=True, slots=True, kw_only=True)
class ProbeOutcome:
    """What one cluster showed: ``bps`` is the rate the path carried (None: the cluster failed, too lossy or
    too small)."""

    cluster: int
    bps: float | None
    send_bps: float
    receive_bps: float
    lost_fraction: float
    packets: int


class _Cluster:
    __slots__ = ("first_send", "last_send", "last_size", "sent_bytes", "packets", "received", "first_arrival",
                 "last_arrival", "first_size", "received_bytes")

    def __init__(self, send_ms: float) -> None:
        self.first_send = self.last_send = send_ms
        self.last_size = 0
        self.sent_bytes = 0
        self.packets = 0
        self.received = 0
        self.first_arrival = self.last_arrival = 0.0
        self.first_size = 0
        self.received_bytes = 0

    def add(self, send_ms: float, arrival_ms: float | None, size: int) -> None:
        self.packets += 1
        self.sent_bytes += size
        self.first_send = min(self.first_send, send_ms)
        if send_ms >= self.last_send:
            self.last_send, self.last_size = send_ms, size
        if arrival_ms is None:
            return
        if self.received == 0 or arrival_ms < self.first_arrival:
            self.first_arrival, self.first_size = arrival_ms, size
        self.last_arrival = max(self.last_arrival, arrival_ms) if self.received else arrival_ms
        self.received += 1
        self.received_bytes += size

    def outcome(self, cluster: int) -> ProbeOutcome:
        lost = 1.0 - self.received / self.packets if self.packets else 1.0
        send_span = self.last_send - self.first_send
        send_bps = (self.sent_bytes - self.last_size) * 8000.0 / send_span if send_span > 0 else 0.0
        receive_span = self.last_arrival - self.first_arrival
        receive_bps = (self.received_bytes - self.first_size) * 8000.0 / receive_span if receive_span > 0 else 0.0
        ok = lost <= MAX_LOSS and self.received >= MIN_PACKETS and send_bps > 0 and receive_bps > 0
        return ProbeOutcome(cluster=cluster, bps=min(send_bps, receive_bps) if ok else None, send_bps=send_bps,
                            receive_bps=receive_bps, lost_fraction=lost, packets=self.packets)


class ProbeClusters:
    """Collects the feedback of probe packets per cluster; ``add`` returns the outcomes that completed."""

    __slots__ = ("_open",)

    def __init__(self) -> None:
        self._open: dict[int, _Cluster] = {}

    def add(self, cluster: int, send_ms: float, arrival_ms: float | None, size: int, *,
            last: bool = False) -> list[ProbeOutcome]:
        """One reported packet (``cluster`` 0: not a probe packet); ``last``: the cluster's last packet, whose
        report completes it (reports come in send order, so every packet of the cluster has been reported)."""
        done: list[ProbeOutcome] = []
        for cid, c in list(self._open.items()):
            if cid != cluster and send_ms > c.last_send + SETTLE_MS:  # its last packet's report never came
                del self._open[cid]
                done.append(c.outcome(cid))
        if cluster:
            current = self._open.get(cluster)
            if current is None:
                if len(self._open) >= 8:  # a receiver that stopped reporting: forget the oldest
                    self._open.pop(next(iter(self._open)))
                current = self._open[cluster] = _Cluster(send_ms)
            current.add(send_ms, arrival_ms, size)
            if last:
                del self._open[cluster]
                done.append(current.outcome(cluster))
        return done


@dataclass(frozen=True, slots=True, kw_only=True)
class ProbePolicy:
    """``duration_ms`` of padding per cluster (longer if that is fewer than ``min_packets``), up to ``overshoot`` x
    the wanted rate; ``first_after_ms`` after a receiver starts wanting more than its path has shown, then after
    ``interval_ms`` (doubling after each cluster that did not end the want, up to ``max_interval_ms`` if set)."""

    duration_ms: float = 60.0
    min_packets: int = MIN_PACKETS + 3
    overshoot: float = 1.2
    first_after_ms: float = 2000.0
    interval_ms: float = 3000.0
    max_interval_ms: float | None = None  # None: no backoff, every ``interval_ms``

    def __post_init__(self) -> None:
        if (self.duration_ms <= 0 or self.overshoot < 1.0 or self.first_after_ms < 0 or self.interval_ms <= 0
                or (self.max_interval_ms is not None and self.max_interval_ms < self.interval_ms)
                or self.min_packets < 1):
            raise ValueError(f"bad probe policy {self}")

    def cluster_ms(self, bps: float, packet_bytes: int) -> float:
        """How long a cluster at ``bps`` of ``packet_bytes`` packets lasts: ``duration_ms``, or the time
        ``min_packets`` take (the measure needs ``MIN_PACKETS`` of them received).

        Short, because a cluster's cost on a link at its limit is the queue it builds, which grows with its
        length; its measure does not need length: a narrower path spreads even a few packets out (their receive
        rate) or drops them (a failed cluster)."""
        return max(self.duration_ms, self.min_packets * packet_bytes * 8000.0 / max(bps, 1.0))


class ProbeSchedule:
    """When to probe one receiver: ``due(wants, now_ms)`` is True when a cluster should start now.

    A cluster that did not end the want (the receiver still wants more than its path has shown when the next one
    is due) found the limit unchanged; with ``max_interval_ms`` above ``interval_ms`` the next one then waits twice
    as long, up to that cap (fewer bursts for a receiver at its limit, a lifted limit found later); the want
    ending (a clean cluster, a move, a layer gone) starts over."""

    __slots__ = ("policy", "_next_ms", "_interval_ms")

    def __init__(self, policy: ProbePolicy = ProbePolicy()) -> None:
        self.policy = policy
        self._next_ms: float | None = None
        self._interval_ms: float | None = None  # the wait after the last cluster of this want (None: none yet)

    @property
    def interval_ms(self) -> float | None:
        """The wait before the next cluster, once one was sent for the current want."""
        return self._interval_ms

    def due(self, wants: bool, now_ms: float) -> bool:
        """``wants``: the receiver would move up if what its path has shown were higher. Starting a probe is
        the caller's job once this says True."""
        if not wants:
            self._next_ms = self._interval_ms = None
            return False
        if self._next_ms is None:
            self._next_ms = now_ms + self.policy.first_after_ms
        if now_ms < self._next_ms:
            return False
        p = self.policy
        cap = p.max_interval_ms if p.max_interval_ms is not None else p.interval_ms
        self._interval_ms = p.interval_ms if self._interval_ms is None else min(2 * self._interval_ms, cap)
        self._next_ms = now_ms + self._interval_ms
        return True
