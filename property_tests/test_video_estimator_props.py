"""Properties of the bandwidth estimator, the layer choice and transport-cc feedback, on arbitrary inputs."""

from __future__ import annotations

import contextlib
import math

from callsd.core.video import (
    BandwidthEstimator,
    BandwidthUsage,
    EstimatorSettings,
    Layer,
    LayerChoice,
    LayerPolicy,
    PacketResult,
    choose_layer,
)
from callsd.core.wire.rtcp import Feedback, RtcpError
from callsd.core.wire.transport_cc import TransportCc, build_transport_cc, parse_transport_cc
from hypothesis import given
from hypothesis import strategies as st

floats = st.floats(allow_nan=True, allow_infinity=True, width=64)
results = st.builds(PacketResult, send_ms=floats, arrival_ms=st.none() | floats, size=st.integers(0, 1500),
                    probe_cluster=st.integers(0, 3), probe_last=st.booleans())
settings_ = st.tuples(st.integers(1, 10**6), st.integers(0, 10**7), st.integers(0, 10**8)).map(
    lambda t: EstimatorSettings(min_bps=t[0], start_bps=t[0] + t[1], max_bps=t[0] + t[1] + t[2]))
steps = st.lists(st.one_of(
    st.tuples(st.just("results"), st.lists(results, max_size=30), floats),
    st.tuples(st.just("loss"), floats, floats),
    st.tuples(st.just("remb"), st.integers(-10, 10**9), floats),
    st.tuples(st.just("rtt"), floats, floats),
), max_size=40)


@given(settings_, steps)
def test_the_estimate_stays_within_bounds_and_is_never_nan(settings: EstimatorSettings, script: list) -> None:
    est = BandwidthEstimator(settings)
    for kind, arg, now in script:
        if kind == "results":
            est.on_packet_results(arg, now)
        elif kind == "loss":
            est.on_loss_report(arg, now)
        elif kind == "remb":
            est.on_remb(arg, now)
        else:
            est.set_rtt(arg)
        value = est.estimate
        assert settings.min_bps <= value <= settings.max_bps
        assert not math.isnan(value)
        assert settings.min_bps <= est.proven <= value  # what the path has shown is part of the estimate


@given(st.integers(300_000, 5_000_000), st.floats(1.3, 3.0), st.integers(20, 60))
def test_sustained_overuse_decreases_the_estimate(start: int, ratio: float, seconds: int) -> None:
    """A sender that keeps sending ``ratio`` times what the link carries: the queue grows, the estimate falls."""
    est = BandwidthEstimator(EstimatorSettings(start_bps=start))
    capacity = start / ratio
    packet_ms_send = 1200 * 8 * 1000.0 / start
    packet_ms_link = 1200 * 8 * 1000.0 / capacity
    batch: list[PacketResult] = []
    link_free = 0.0
    now = 0.0
    overused = False
    for i in range(int(seconds * 1000 / packet_ms_send)):
        send = i * packet_ms_send
        link_free = max(link_free, send) + packet_ms_link
        batch.append(PacketResult(send_ms=send, arrival_ms=link_free, size=1200))
        if send - now >= 100:
            now = send
            est.on_packet_results(batch, now)
            overused |= est.usage is BandwidthUsage.OVERUSE
            batch = []
        if now > 3000 and overused:
            break
    assert overused
    assert est.estimate < start


layers_ = st.lists(st.integers(1, 10**7), min_size=1, max_size=4).map(
    lambda rates: tuple(Layer(rid=str(i), bitrate=r) for i, r in enumerate(sorted(rates))))


@given(layers_, st.lists(st.tuples(st.integers(0, 2 * 10**7), st.floats(0, 1000)), max_size=40))
def test_layer_choice_goes_down_at_once_and_up_only_after_the_hold(layers: tuple[Layer, ...],
                                                                                script: list) -> None:
    policy = LayerPolicy(up_margin=1.2, hold_ms=3000)
    choice: LayerChoice | None = None
    now = 0.0
    for estimate, step in script:
        now += step
        previous = choice
        choice = choose_layer(estimate, layers, choice, now, policy)
        assert 0 <= choice.index < len(layers)
        assert choice.index == 0 or layers[choice.index].bitrate <= estimate, "down at once"
        if previous is not None and choice.index > previous.index:
            assert previous.up_since_ms is not None and now - previous.up_since_ms >= policy.hold_ms


@given(layers_, st.lists(st.tuples(st.integers(0, 2 * 10**7), st.integers(0, 2 * 10**7), st.floats(0, 1000)),
                         max_size=40))
def test_a_layer_choice_moves_up_only_on_what_was_shown_and_down_on_the_estimate(layers: tuple[Layer, ...],
                                                                                script: list) -> None:
    policy = LayerPolicy(up_margin=1.2, hold_ms=3000)
    choice: LayerChoice | None = None
    now = 0.0
    for estimate, proven, step in script:
        now += step
        previous = choice
        choice = choose_layer(estimate, layers, choice, now, policy, proven=proven)
        assert choice.index == 0 or layers[choice.index].bitrate <= estimate, "down at once, on the estimate"
        if previous is not None and choice.index > previous.index:
            assert layers[choice.index].bitrate * policy.up_margin <= min(estimate, proven), "up on what was shown"
            assert previous.up_since_ms is not None and now - previous.up_since_ms >= policy.hold_ms


arrival_lists = st.lists(st.none() | st.integers(-2000, 2000).map(lambda t: t * 250), min_size=1, max_size=300)


@given(arrival_lists, st.integers(0, 0xFFFF), st.integers(-1000, 1000), st.integers(0, 255))
def test_transport_cc_roundtrips(deltas: list[int | None], base: int, ref: int, count: int) -> None:
    arrivals: list[int | None] = []
    now = ref * 64_000
    for delta in deltas:
        if delta is None:
            arrivals.append(None)
        else:
            now += delta
            arrivals.append(now)
    tcc = TransportCc(sender_ssrc=1, media_ssrc=2, base_seq=base, reference_time=ref, fb_count=count,
                      arrivals=tuple(arrivals))
    assert parse_transport_cc(build_transport_cc(tcc)) == tcc


@given(st.binary(max_size=80))
def test_any_transport_cc_fci_parses_or_raises_the_one_error(fci: bytes) -> None:
    with contextlib.suppress(RtcpError):
        parse_transport_cc(Feedback(packet_type=205, fmt=15, sender_ssrc=1, media_ssrc=2, fci=fci))
