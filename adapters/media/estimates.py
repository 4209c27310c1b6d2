"""Per-receiver bandwidth estimates, fed by the receiver's RTCP (docs/video.md, docs/adr/0019).

One ``core.video.BandwidthEstimator`` per receiving session. What a receiver tells the server about the streams it
gets is the input:

* REMB (``parse_remb``): the receiver's own delay-based estimate (a browser sends it for video sections whose
  server offer carried ``goog-remb``; aiortc always does) caps the estimate when it is below the rate the server
  sends that receiver (congestion); a REMB at or above it caps nothing (``BandwidthEstimator.on_remb``);
* transport-cc feedback (when the receiver negotiated it: its ``Peer`` has a ``TransportSequencer``): per packet
  the server stamped, its send time and the receiver's arrival time or loss, the input of the whole estimator
  (delay-based and loss-based);
* receiver-report blocks about the streams the server sends it: their fraction lost, averaged over the session's
  routes in the report, drives the loss-based controller (only without transport-cc, which counts losses itself).

The estimator is pure; this module only owns the clock (milliseconds of ``time.monotonic``), the table and its
counters. The layer choice reads ``estimate(session_id)`` once simulcast forwarding exists; until then the estimate is
observable through ``MediaPlane.estimates.estimate(session_id)`` and the ``remb_in``/``estimates`` counters.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from callsd.core.video import BandwidthEstimator, EstimatorSettings
from callsd.core.wire import rtcp
from callsd.core.wire.transport_cc import parse_transport_cc

from .twcc_send import TransportSequencer

__all__ = ["ReceiverEstimates"]

log = logging.getLogger("callsd.media.estimates")


class ReceiverEstimates:
    """The estimates of every receiving session; ``on_rtcp`` per parsed compound packet."""

    __slots__ = ("settings", "_by_session", "_sent", "_clock", "remb_in", "loss_reports", "twcc_in", "twcc_malformed")

    def __init__(self, settings: EstimatorSettings | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings or EstimatorSettings()
        self._by_session: dict[str, BandwidthEstimator] = {}
        self._sent: dict[str, tuple[float, int, float | None]] = {}  # session -> (time, octets sent, bit/s)
        self._clock = clock
        self.remb_in = 0
        self.loss_reports = 0
        self.twcc_in = 0
        self.twcc_malformed = 0

    def _of(self, session_id: str) -> BandwidthEstimator:
        est = self._by_session.get(session_id)
        if est is None:
            est = self._by_session[session_id] = BandwidthEstimator(self.settings)
        return est

    def _sent_rate(self, session_id: str, routes: Iterable[Any], now: float) -> float | None:
        """The bit/s the server sent this session's routes since the previous call (at least 0.5 s apart)."""
        octets = sum(int(r.octets) for r in routes)
        last = self._sent.get(session_id)
        if last is None:
            self._sent[session_id] = (now, octets, None)
            return None
        if now - last[0] < 0.5:
            return last[2]
        rate = (octets - last[1]) * 8 / (now - last[0])
        self._sent[session_id] = (now, octets, rate)
        return rate

    def on_rtcp(self, session_id: str, packets: Iterable[rtcp.RtcpPacket], sent: Mapping[int, Any],
                sequencer: TransportSequencer | None = None) -> None:
        """Apply a session's RTCP: REMB, transport-cc (``sequencer``: what was stamped toward it) and report
        blocks about ``sent`` (the server's routes to it, by SSRC; their ``octets`` give the rate it is sent,
        against which a REMB is read)."""
        now = self._clock()
        now_ms = now * 1000.0
        for p in packets:
            if isinstance(p, rtcp.Feedback):
                remb = rtcp.parse_remb(p)
                if remb is not None:
                    self.remb_in += 1
                    self._of(session_id).on_remb(remb[0], now_ms, self._sent_rate(session_id, sent.values(), now))
                elif sequencer is not None:
                    self._on_transport_cc(session_id, p, sequencer, now_ms)
            elif isinstance(p, rtcp.ReceiverReport | rtcp.SenderReport) and sequencer is None:
                fractions = [b.fraction_lost for b in p.reports if b.ssrc in sent]
                if fractions:
                    self.loss_reports += 1
                    self._of(session_id).on_loss_report(sum(fractions) / len(fractions) / 256.0, now_ms)

    def _on_transport_cc(self, session_id: str, p: rtcp.Feedback, sequencer: TransportSequencer,
                         now_ms: float) -> None:
        try:
            feedback = parse_transport_cc(p)
        except rtcp.RtcpError:
            self.twcc_malformed += 1
            return
        if feedback is None:
            return
        self.twcc_in += 1
        results = sequencer.results(feedback)
        if not results:
            return
        est = self._of(session_id)
        est.on_packet_results(results, now_ms)
        for probe in est.probes:  # one cluster every few seconds at most
            log.debug("estimate: probe %d to %s: %s (%d packets sent at %d bit/s, received at %d, %.0f %% lost); "
                     "estimate %d", probe.cluster, session_id, "ok" if probe.bps is not None else "failed",
                     probe.packets, probe.send_bps, probe.receive_bps, 100 * probe.lost_fraction, est.estimate)
        est.probes.clear()

    def estimate(self, session_id: str) -> int | None:
        """The session's estimate in bit/s, None before it reported anything."""
        est = self._by_session.get(session_id)
        return est.estimate if est is not None else None

    def proven(self, session_id: str) -> int | None:
        """The part of the session's estimate its path has shown it carries (``BandwidthEstimator.proven``): what
        a move up a layer and the probe schedule read. None before it reported anything."""
        est = self._by_session.get(session_id)
        return est.proven if est is not None else None

    def forget(self, session_id: str) -> None:
        self._by_session.pop(session_id, None)
        self._sent.pop(session_id, None)

    def counters(self) -> dict[str, int]:
        return {"remb_in": self.remb_in, "loss_reports": self.loss_reports, "estimates": len(self._by_session),
                "twcc_in": self.twcc_in, "twcc_malformed": self.twcc_malformed}
