"""Probe clusters toward a receiver: scheduled while it wants a higher layer than its estimate allows, paced RTX
padding that carries transport-wide numbers and the cluster id, and feedback that raises the estimate."""

from __future__ import annotations

from typing import Any

import trio
import trio.testing
from callsd.adapters.media.probing import IDLE_S, PADDING, ProbeSender
from callsd.adapters.media.twcc_send import TransportSequencer
from callsd.core.video import BandwidthEstimator, EstimatorSettings, ProbePolicy
from callsd.core.wire.rtp import parse_rtp
from callsd.core.wire.transport_cc import TransportCc
from callsd.core.wire.transport_seq import read_transport_seq


class Clock:
    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


class Peer:
    def __init__(self, clock: Clock) -> None:
        self.twcc = TransportSequencer(5, clock)
        self.sent: list[bytes] = []

    def send_rtp(self, plain: bytes) -> bool:
        self.sent.append(self.twcc.stamp(plain))
        return True


class Route:
    rtx_pt, rtx_ssrc, rtx_seq, ts_offset, negotiated, removed = 97, 0xCAFE, 10, 1234, True, False


class Session:
    def __init__(self, clock: Clock) -> None:
        self.session_id, self.closed = "B", False
        self.peer = Peer(clock)
        self.routes_in: dict[str, Any] = {"t": Route()}


def test_a_receiver_that_wants_more_is_probed_with_paced_rtx_padding_and_a_clean_cluster_raises_its_estimate() -> None:
    clock = Clock()
    session = Session(clock)
    est = BandwidthEstimator(EstimatorSettings(start_bps=120_000))
    wanted: list[int | None] = [400_000]
    sender = ProbeSender(lambda: [session], lambda sid: wanted[0], lambda sid: est.estimate,  # type: ignore[arg-type, list-item]
                         ProbePolicy(duration_ms=300, overshoot=1.5, first_after_ms=2000, interval_ms=4000), clock)
    sender.tick()
    clock.now += 1.9
    sender.tick()
    assert sender.clusters == 0, "not before first_after_ms"
    clock.now += 0.1
    sender.tick()
    assert sender.clusters == 1
    while clock.now < 52.5:
        clock.now += 0.01
        sender.tick()
    packets = session.peer.sent
    sent_bytes = sum(len(p) for p in packets)
    assert 0.9 * 600_000 * 0.3 / 8 <= sent_bytes <= 1.1 * 600_000 * 0.3 / 8  # 1.5 x wanted for 300 ms
    head = parse_rtp(packets[0])
    assert (head.ssrc, head.payload_type, head.padding, head.payload_end - head.payload_offset) == (0xCAFE, 97,
                                                                                                   PADDING, 0)
    assert [read_transport_seq(p, 5) for p in packets] == list(range(len(packets)))
    # the receiver got every packet at the rate it was sent (20 ms later); one more packet closes the cluster
    count = len(packets)
    session.peer.send_rtp(b"\x80\x60" + bytes(10))
    sent_ms = _send_times(session.peer.twcc, count + 1)
    arrivals = tuple(20_000 + round((t - sent_ms[0]) * 4) * 250 for t in sent_ms)
    results = session.peer.twcc.results(TransportCc(sender_ssrc=1, media_ssrc=0, base_seq=0, reference_time=0,
                                                    fb_count=0, arrivals=arrivals))
    assert [r.probe_cluster for r in results] == [1] * count + [0]
    est.on_packet_results(results, clock.now * 1000)
    assert [p.bps is not None for p in est.probes] == [True]
    assert est.estimate >= 0.9 * 600_000 * 0.95
    assert sender.packets == count


def _send_times(sequencer: TransportSequencer, count: int) -> list[float]:
    return [sequencer._send_ms[i] for i in range(count)]  # noqa: SLF001 - the history the feedback is read against


def test_no_probe_without_a_want_or_when_the_estimate_already_covers_it() -> None:
    clock = Clock()
    session = Session(clock)
    for wanted, estimate in ((None, 100_000), (300_000, 400_000)):
        sender = ProbeSender(lambda: [session], lambda sid, w=wanted: w, lambda sid, e=estimate: e,  # type: ignore[misc]
                             ProbePolicy(first_after_ms=0), clock)
        for _ in range(50):
            clock.now += 0.1
            sender.tick()
        assert sender.clusters == 0


def test_a_tick_with_nothing_wanted_anywhere_does_not_walk_the_sessions() -> None:
    """No simulcast track (every audio-only call): the 10 Hz tick returns before walking every session, which
    would have found nothing to probe; once something can be wanted, it walks them again."""
    walked: list[int] = []

    def sessions() -> list[Any]:
        walked.append(1)
        return []

    wanted = [False]
    probes = ProbeSender(sessions, lambda _sid: None, lambda _sid: None, any_wanted=lambda: wanted[0])
    probes.tick()
    assert walked == []
    wanted[0] = True
    probes.tick()
    assert walked == [1]


async def test_with_nothing_wanted_anywhere_the_task_sleeps_until_woken(
        autojump_clock: trio.testing.MockClock) -> None:
    """No simulcast track: ``run`` does not wake ten times a second for nothing; ``wake`` (the plane calls it when a
    simulcast track appears) has it tick again at once, and it ticks every ``IDLE_S`` while something is wanted."""
    asked: list[float] = []
    wanted = [False]

    def any_wanted() -> bool:
        asked.append(trio.current_time())
        return wanted[0]

    probes = ProbeSender(lambda: [], lambda _sid: None, lambda _sid: None, any_wanted=any_wanted)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(probes.run)
        await trio.sleep(10.0)
        assert len(asked) <= 2  # the first tick's checks, then nothing for 10 s
        wanted[0] = True
        probes.wake()
        await trio.sleep(IDLE_S * 10.5)
        assert 10 <= len(asked) - 2 <= 2 * 11  # woken at once, then a tick per IDLE_S
        nursery.cancel_scope.cancel()


def test_the_plane_wakes_the_probe_task_for_a_simulcast_track_only() -> None:
    from .test_media_plane import Rig
    from .test_media_simulcast import simulcast_offer

    rig = Rig()
    woken: list[int] = []
    rig.plane.probes.wake = lambda: woken.append(1)  # type: ignore[method-assign]
    rig.join("A", ("audio", "0", "sendrecv", 7))
    assert woken == []  # an audio track: nothing can be wanted, the task stays asleep
    rig.plane.open_session("B", "chan")
    rig.plane.handle_signal("B", {"type": "offer", "sdp": simulcast_offer().replace("uA", "uB")})
    assert woken == [1] and rig.plane.simulcast.tracks  # a simulcast track: it looks again
