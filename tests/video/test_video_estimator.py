"""The GCC estimator on scripted links: what a receiver's estimate does when its path is fine, queues or loses."""

from __future__ import annotations

from callsd.core.video import BandwidthEstimator, BandwidthUsage, EstimatorSettings, PacketResult
from video_link_model import run_link


def closed_loop(now: float, estimate: int) -> float:
    return float(estimate)  # the sender sends what the estimate allows, as the SFU's layer choice does


def test_a_steady_link_lets_the_estimate_grow_toward_its_capacity() -> None:
    est = BandwidthEstimator(EstimatorSettings(start_bps=300_000))
    run = run_link(est, duration_ms=30_000, rate=closed_loop, capacity=lambda now: 5_000_000)
    assert run.at(2_000) > 300_000
    assert run.at(30_000) > 1_200_000
    assert max(e for _, e in run.estimates) <= 5_000_000 * 1.6


def test_a_building_queue_is_overuse_and_the_estimate_falls_below_the_link() -> None:
    est = BandwidthEstimator(EstimatorSettings(start_bps=2_000_000))
    seen: set[BandwidthUsage] = set()

    def fixed_rate(now: float, estimate: int) -> float:
        seen.add(est.usage)
        return 2_000_000.0  # a sender ignoring the estimate: the queue grows without bound

    run = run_link(est, duration_ms=5_000, rate=fixed_rate, capacity=lambda now: 1_000_000)
    assert BandwidthUsage.OVERUSE in seen
    assert run.at(5_000) < 1_000_000


def test_the_estimate_follows_a_capacity_drop_in_a_closed_loop() -> None:
    est = BandwidthEstimator(EstimatorSettings(start_bps=2_500_000))
    run = run_link(est, duration_ms=20_000, rate=closed_loop,
                   capacity=lambda now: 3_000_000 if now < 10_000 else 800_000)
    assert run.at(9_900) > 1_500_000
    assert run.at(14_000) < 900_000
    tail = [e for t, e in run.estimates if t >= 15_000]
    assert min(tail) > 200_000, "after the drop the estimate settles near the new capacity, not at the floor"


def test_loss_above_ten_percent_decreases_and_below_two_percent_increases() -> None:
    est = BandwidthEstimator(EstimatorSettings(start_bps=1_000_000))
    assert est.on_loss_report(0.2, 0) == 900_000  # As *= 1 - 0.5 * 0.2
    assert est.on_loss_report(0.05, 1000) == 900_000  # 2..10 %: hold
    assert est.on_loss_report(0.0, 2000) == 945_000  # As *= 1.05
    assert est.on_loss_report(0.01, 3000) > 945_000


def test_feedback_with_fifteen_percent_loss_lowers_the_estimate() -> None:
    est = BandwidthEstimator(EstimatorSettings(start_bps=1_000_000))
    run = run_link(est, duration_ms=6_000, rate=lambda now, e: 800_000.0, capacity=lambda now: 10_000_000,
                   lose_every=7)
    assert run.at(6_000) < 800_000


def test_remb_caps_the_estimate_and_the_bounds_hold() -> None:
    est = BandwidthEstimator(EstimatorSettings(min_bps=100_000, start_bps=1_000_000, max_bps=2_000_000))
    assert est.on_remb(400_000, 0) == 400_000
    assert est.on_remb(10, 1) == 100_000
    assert est.on_remb(10**9, 2) == 1_000_000


def test_lost_and_garbage_results_do_not_poison_the_estimate() -> None:
    est = BandwidthEstimator()
    results = [PacketResult(send_ms=float(i), arrival_ms=None if i % 2 else float("nan"), size=1200)
               for i in range(50)]
    assert est.on_packet_results(results, 100.0) == est.estimate
    assert est.estimate > 0


def test_a_remb_near_what_the_receiver_is_sent_is_no_cap_but_a_low_one_is() -> None:
    est = BandwidthEstimator(EstimatorSettings(start_bps=1_000_000))
    assert est.on_remb(180_000, 0, received_bps=200_000) == 1_000_000  # it reports what it gets: no news
    assert est.on_remb(100_000, 1, received_bps=200_000) == 100_000  # half of what it is sent: congestion
    assert est.on_remb(100_000, 2) == 100_000  # without the sent rate, a REMB always caps
