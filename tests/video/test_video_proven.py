"""What a move up a layer may rely on: the estimate capped by what the path has shown (``BandwidthEstimator.proven``).

The recorded case (tests/data/limited_receiver_twcc.jsonl, the transport-cc feedback the server got from the
limited Chromium receiver of tests/net/test_net_video_layers.py in a run that failed): the publisher's layers were
~42 kbit/s (q) and ~92 kbit/s (f, 60-137 kbit/s from one second to the next), the link 120 kbit/s from ~13 s on.
The server moved the receiver down at 19.3 s, then its estimate grew in "normal" state from 55 to 137 kbit/s by
26.6 s (GCC's increase runs up to 1.5 x the rate received, and the low layer never fills the link), above 1.2 x the
full layer's last-second bitrate (95 kbit/s): the server moved the receiver back up into the limited link. The one
probe of that time arrived at 99.6 kbit/s: that, not 137, is what the path had shown.
"""

from __future__ import annotations

import json
from pathlib import Path

from callsd.core.video import (
    BandwidthEstimator,
    EstimatorSettings,
    Layer,
    LayerChoice,
    LayerPolicy,
    PacketResult,
    choose_layer,
)
from callsd.core.video.estimator import PROOF_MS

RECORDED = Path(__file__).parents[1] / "data" / "limited_receiver_twcc.jsonl"
LAYERS = [Layer(rid="q", bitrate=38_112), Layer(rid="f", bitrate=94_987)]  # as the server measured them then
DOWN_MS = 19_300.0  # the server's move down in the recorded run (feedback time)
# The recorded run held the estimate above the full layer x 1.2 for the 3 s hold (it counted the first packet of
# the rate window in R, so its 1.5 R bound was higher); the replay's R does not, and its estimate crosses that line
# 1.8 s before the recording ends: a 1 s hold shows the same move.
POLICY = LayerPolicy(hold_ms=1_000.0)


def recorded() -> list[tuple[float, list[PacketResult]]]:
    reports = []
    for line in RECORDED.read_text().splitlines():
        row = json.loads(line)
        reports.append((float(row["now"]), [PacketResult(send_ms=s, arrival_ms=a, size=n, probe_cluster=c,
                                                         probe_last=bool(last))
                                            for s, a, n, c, last in row["packets"]]))
    return reports


def replay(use_proven: bool) -> tuple[list[tuple[float, int, int]], list[tuple[float, int]]]:
    """The estimator over the recording, and the layer choice from the move down on: (time, estimate, proven)
    per report, and each (time, layer) the choice moved to."""
    est = BandwidthEstimator()
    seen: list[tuple[float, int, int]] = []
    moves: list[tuple[float, int]] = []
    choice: LayerChoice | None = None
    for now, packets in recorded():
        est.on_packet_results(packets, now)
        seen.append((now, est.estimate, est.proven))
        if now < DOWN_MS:
            continue
        before = choice.index if choice is not None else 0
        choice = choose_layer(est.estimate, LAYERS, choice or LayerChoice(index=0), now, POLICY,
                              proven=est.proven if use_proven else None)
        if choice.index != before:
            moves.append((now, choice.index))
    return seen, moves


def test_the_recorded_estimate_outgrew_the_limited_link_while_what_it_had_shown_did_not() -> None:
    seen, _ = replay(use_proven=True)
    after = [(t, e, p) for t, e, p in seen if t >= 22_000]
    assert max(e for _, e, _ in after) > 1.2 * LAYERS[1].bitrate  # the estimate alone would move up
    assert all(p < 1.2 * LAYERS[1].bitrate for _, _, p in after), after  # what was shown does not
    assert all(p <= e for _, e, p in seen)


def test_the_layer_choice_on_the_recording_stays_low_on_what_was_shown_and_moved_up_on_the_estimate() -> None:
    _, moves = replay(use_proven=True)
    assert moves == []
    _, moves = replay(use_proven=False)
    assert moves and moves[0][1] == 1  # the failure of the recorded run, reproduced


def probe_cluster(est: BandwidthEstimator, cluster: int, start_ms: float, bps: float, *,
                  lost_every: int = 0) -> None:
    """A 150 ms probe cluster of 267-byte packets at ``bps`` over a free path, reported at once."""
    size = 267
    gap = size * 8000.0 / bps
    n = int(150 / gap) + 1
    packets = [PacketResult(send_ms=start_ms + i * gap,
                            arrival_ms=None if lost_every and i % lost_every == 1 else start_ms + i * gap + 20,
                            size=size, probe_cluster=cluster, probe_last=i == n - 1) for i in range(n)]
    est.on_packet_results(packets, start_ms + 200)


def steady(est: BandwidthEstimator, start_ms: float, duration_ms: float, bps: float, *, lose_every: int = 0) -> None:
    """A receiver sent ``bps`` in 300-byte packets over a path with room to spare (no queue: each arrives 20 ms
    after it was sent; ``lose_every``: every n-th is lost), reported every 100 ms."""
    gap = 300 * 8000.0 / bps
    n = 0
    for report in range(int(duration_ms // 100)):
        end = start_ms + (report + 1) * 100
        packets = []
        while start_ms + n * gap < end:
            lost = lose_every and n % lose_every == 0
            packets.append(PacketResult(send_ms=start_ms + n * gap,
                                        arrival_ms=None if lost else start_ms + n * gap + 20, size=300))
            n += 1
        est.on_packet_results(packets, end)


def test_a_receiver_on_a_low_layer_has_shown_only_what_it_receives_until_a_probe_shows_more() -> None:
    est = BandwidthEstimator(EstimatorSettings(start_bps=1_000_000))
    steady(est, 0.0, 5_000, 60_000)
    assert est.estimate == 1_000_000  # GCC never lowers what it was not shown to be wrong
    assert 50_000 <= est.proven <= 70_000  # what arrived
    probe_cluster(est, 1, 5_100, 400_000)
    assert est.proven >= 0.95 * 400_000 * 0.95
    steady(est, 5_300, 3_000, 60_000)
    assert est.proven >= 0.95 * 400_000 * 0.95  # the probe's result still counts
    steady(est, 8_300, PROOF_MS, 60_000)
    assert est.proven <= 70_000  # and not for ever


def test_a_lossy_probe_shows_nothing_and_loss_voids_what_an_earlier_probe_showed() -> None:
    est = BandwidthEstimator()
    steady(est, 0.0, 3_000, 60_000)
    probe_cluster(est, 1, 3_100, 400_000, lost_every=3)
    assert est.proven <= 70_000  # and its padding is not R: a burst out of a queue is not the path's rate
    probe_cluster(est, 2, 3_400, 400_000)
    assert est.proven > 300_000
    steady(est, 3_700, 2_000, 60_000, lose_every=4)  # 25 % loss: the path changed since the probe
    assert est.proven <= 70_000


def test_without_transport_cc_what_was_shown_is_the_estimate() -> None:
    est = BandwidthEstimator()
    est.on_loss_report(0.0, 1_000.0)
    assert est.proven == est.estimate
    est.on_remb(300_000, 2_000.0)
    assert est.proven == est.estimate == 300_000


def test_choose_layer_moves_down_on_the_estimate_and_up_on_what_was_shown() -> None:
    layers = [Layer(rid="q", bitrate=50_000), Layer(rid="f", bitrate=250_000)]
    low = LayerChoice(index=0)
    held = choose_layer(400_000, layers, low, 0.0, proven=100_000)
    assert held == low
    pending = choose_layer(400_000, layers, low, 0.0, proven=320_000)
    assert pending.index == 0 and pending.up_since_ms == 0.0
    assert choose_layer(400_000, layers, pending, 3_000.0, proven=320_000).index == 1
    assert choose_layer(200_000, layers, LayerChoice(index=1), 0.0, proven=200_000).index == 0
    assert choose_layer(300_000, layers, LayerChoice(index=1), 0.0, proven=60_000).index == 1  # no move down


def test_a_move_up_needs_the_layers_peak_and_a_move_down_reads_its_bitrate() -> None:
    layers = [Layer(rid="q", bitrate=40_000, peak=60_000), Layer(rid="f", bitrate=90_000, peak=140_000)]
    pending = choose_layer(150_000, layers, LayerChoice(index=0), 0.0, proven=150_000)
    assert choose_layer(150_000, layers, pending, 3_000.0, proven=150_000).index == 0  # 1.2 x 140k > 150k
    pending = choose_layer(170_000, layers, LayerChoice(index=0), 0.0, proven=170_000)
    assert choose_layer(170_000, layers, pending, 3_000.0, proven=170_000).index == 1
    assert choose_layer(100_000, layers, LayerChoice(index=1), 0.0).index == 1  # carries its 90k, not its peak
    assert choose_layer(80_000, layers, LayerChoice(index=1), 0.0).index == 0


def test_what_a_receiver_received_lately_counts_as_shown_when_it_gets_less() -> None:
    """The publisher paused the full layer for a second: the receiver, back on the low one, has still shown its
    path carries the full one, and moves back up on the hold alone, without a probe."""
    est = BandwidthEstimator()
    steady(est, 0.0, 3_000, 300_000)
    steady(est, 3_000, 2_000, 60_000)
    assert 290_000 <= est.proven <= 310_000
    steady(est, 5_000, PROOF_MS, 60_000)
    assert est.proven <= 70_000  # for PROOF_MS
