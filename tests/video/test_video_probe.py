"""Policed links and probe clusters: the estimate finds a policer's rate at once, and a probe finds freed capacity."""

from __future__ import annotations

from callsd.core.video import BandwidthEstimator, EstimatorSettings, PacketResult
from callsd.core.video.probe import ProbeClusters, ProbePolicy, ProbeSchedule


class Policer:
    """A token bucket that drops what exceeds ``bps`` (burst ``burst`` bytes): no queue, no delay, only loss."""

    def __init__(self, bps: float, burst: int = 4000) -> None:
        self.bps, self.burst, self.tokens, self.last = bps, burst, float(burst), 0.0

    def passes(self, now_ms: float, size: int) -> bool:
        self.tokens = min(self.burst, self.tokens + (now_ms - self.last) * self.bps / 8000.0)
        self.last = now_ms
        if self.tokens < size:
            return False
        self.tokens -= size
        return True


def send(est: BandwidthEstimator, start_ms: float, seconds: float, bps: float, policer: Policer | None,
         cluster: int = 0, size: int = 1000) -> float:
    """Packets of ``size`` at ``bps`` for ``seconds``, one feedback report per 100 ms; returns the end time."""
    gap = size * 8000.0 / bps
    now, report, pending = start_ms, start_ms + 100.0, []
    while now < start_ms + seconds * 1000.0:
        arrived = policer is None or policer.passes(now, size)
        last = cluster != 0 and now + gap >= start_ms + seconds * 1000.0
        pending.append(PacketResult(send_ms=now, arrival_ms=now + 20.0 if arrived else None, size=size,
                                    probe_cluster=cluster, probe_last=last))
        now += gap
        if now >= report:
            est.on_packet_results(pending, report)
            pending, report = [], report + 100.0
    if pending:
        est.on_packet_results(pending, now)
    return now


def test_a_policer_brings_the_estimate_to_its_rate_within_a_second() -> None:
    est = BandwidthEstimator(EstimatorSettings(start_bps=1_000_000))
    t = send(est, 0.0, 3.0, 600_000, None)
    assert est.estimate >= 600_000
    send(est, t, 1.2, 600_000, Policer(300_000))
    assert est.estimate <= 330_000, "the rate that arrived, not a slow halving"
    assert est.estimate >= 200_000


def test_a_probe_over_a_free_path_raises_the_estimate_and_over_a_policer_does_not() -> None:
    est = BandwidthEstimator(EstimatorSettings(start_bps=150_000))
    t = send(est, 0.0, 3.0, 100_000, None)
    low = est.estimate
    assert low < 200_000, "1.5 x what arrives bounds the increase"
    t = send(est, t, 0.3, 900_000, None, cluster=1)
    t = send(est, t, 0.3, 100_000, None)
    assert [p.cluster for p in est.probes] == [1] and est.probes[0].bps is not None
    assert est.estimate >= 0.95 * 850_000
    policed = BandwidthEstimator(EstimatorSettings(start_bps=150_000))
    link = Policer(150_000)
    t = send(policed, 0.0, 3.0, 100_000, link)
    before = policed.estimate
    t = send(policed, t, 0.3, 900_000, link, cluster=1)
    send(policed, t, 0.3, 100_000, link)
    assert policed.probes[0].bps is None and policed.probes[0].lost_fraction > 0.5
    assert policed.estimate <= before


def test_a_cluster_completes_with_the_report_of_its_last_packet_or_long_after() -> None:
    clusters = ProbeClusters()
    for i in range(9):
        assert clusters.add(3, 10.0 * i, 10.0 * i + 5, 1000) == []
    assert clusters.add(0, 500.0, 505.0, 1000) == []  # a pause in the padding is not the end
    (done,) = clusters.add(3, 90.0, 95.0, 1000, last=True)
    assert done.cluster == 3 and done.packets == 10 and done.bps is not None
    assert abs(done.bps - 800_000) < 1  # 9 packets of 8000 bits in 90 ms, both ways
    clusters.add(4, 2000.0, None, 1000)
    (lost,) = clusters.add(0, 3100.0, 3105.0, 1000)  # its last packet's report never came
    assert lost.cluster == 4 and lost.bps is None


def test_the_schedule_waits_then_probes_every_interval_while_wanted() -> None:
    sched = ProbeSchedule(ProbePolicy(first_after_ms=2000, interval_ms=4000))
    assert not sched.due(True, 0)
    assert not sched.due(True, 1999)
    assert sched.due(True, 2000)
    assert not sched.due(True, 5999)
    assert sched.due(True, 6000)
    assert not sched.due(False, 7000)
    assert not sched.due(True, 8000)  # wanting again starts the wait again
    assert sched.due(True, 10_000)


def test_clusters_that_find_the_limit_unchanged_come_less_often_until_the_want_ends() -> None:
    sched = ProbeSchedule(ProbePolicy(first_after_ms=2000, interval_ms=3000, max_interval_ms=12_000))
    times = [t for t in range(0, 60_000, 100) if sched.due(True, t)]
    assert times[:5] == [2000, 5000, 11_000, 23_000, 35_000]  # 3, 6, 12, then 12 s apart
    assert sched.interval_ms == 12_000
    assert not sched.due(False, 60_000)  # a clean cluster (or a move) ends the want
    assert sched.interval_ms is None
    assert [t for t in range(60_000, 70_000, 100) if sched.due(True, t)] == [62_000, 65_000]


def test_a_cluster_lasts_its_duration_or_as_long_as_its_minimum_packets_take() -> None:
    policy = ProbePolicy(duration_ms=60, min_packets=8)
    assert policy.cluster_ms(2_000_000, 267) == 60
    assert round(policy.cluster_ms(200_000, 267)) == round(8 * 267 * 8000 / 200_000)  # 85 ms
