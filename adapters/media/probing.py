"""Probing a receiver's path with RTX padding, so that a receiver held on a low simulcast layer can move up.

Theory of operation. The layer choice moves a receiver up only when its estimate covers the next layer (plus a
margin), but an estimate cannot grow much past what the receiver is sent (``core.video.delay_based``). So when a
receiver would move up if it could (``SimulcastForwarder.wanted_bps``) and what its path has shown it carries
(``ReceiverEstimates.proven``, the ``estimate`` callable here: the estimate capped by the rate received and the
last clean probe; the layer choice moves up on that, not on GCC's estimate) says it cannot, the server
sends it a *probe cluster* on the schedule of ``core.video.probe.ProbeSchedule``: for ``duration_ms`` it adds
padding at ``overshoot`` x the wanted rate (on top of the media: the cluster's own rate is what is measured). The padding is RTX
(RFC 4588) padding-only packets on one of the receiver's video routes that negotiated RTX (the receiver's RTX
stream discards them, as libwebrtc's own padding is discarded), 255 bytes of padding each; each carries the
transport-wide sequence number and, in the send history, the cluster's id (``TransportSequencer.cluster``). The
receiver's transport-cc feedback then tells the estimator whether the cluster arrived whole and how fast
(``core.video.probe.ProbeClusters``); a clean cluster raises the estimate at once, and the layer choice follows.

Only receivers with transport-cc get probes (without feedback a probe shows nothing). Padding is paced over the
cluster by the ``run`` task (one burst per ``TICK_S``), not sent in one burst, so the receiver sees the rate.
"""

from __future__ import annotations

import logging
import math
import struct
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

import trio
from callsd.core.video import ProbePolicy, ProbeSchedule

from .twcc_send import TransportSequencer

if TYPE_CHECKING:
    from .forwarder import OutRoute
    from .plane_session import Session

__all__ = ["ProbeSender", "TICK_S", "IDLE_S", "PADDING"]

log = logging.getLogger("callsd.media.probing")
TICK_S = 0.01
IDLE_S = 0.1
PADDING = 255  # the most RFC 3550 padding one packet can carry (its last byte counts it)
_HDR = struct.Struct("!BBHII")
_PADDING_BODY = bytes(PADDING - 1) + bytes((PADDING,))


class _Cluster:
    __slots__ = ("cluster", "route", "end", "bps", "credit", "last", "first_packet")

    def __init__(self, cluster: int, route: OutRoute, now: float, end: float, bps: float) -> None:
        self.cluster = cluster
        self.route = route
        self.end = end
        self.bps = bps
        self.credit = 0.0  # bytes due and not yet sent
        self.last = now
        self.first_packet = 0  # the sender's packet count when it started


class ProbeSender:
    """Per receiving session: its probe schedule and the cluster being sent."""

    def __init__(self, sessions: Callable[[], Iterable[Session]], wanted_bps: Callable[[str], int | None],
                 estimate: Callable[[str], int | None], policy: ProbePolicy | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 any_wanted: Callable[[], bool] = lambda: True) -> None:
        """``any_wanted``: False when ``wanted_bps`` is None for every session (no simulcast track at all)."""
        self._sessions = sessions
        self._wanted = wanted_bps
        self._any_wanted = any_wanted
        self._estimate = estimate
        self.policy = policy or ProbePolicy()
        self._clock = clock
        self._schedules: dict[str, ProbeSchedule] = {}
        self._active: dict[str, _Cluster] = {}
        self._next_cluster = 1
        self.clusters = 0
        self.packets = 0
        self._woken = trio.Event()  # set by ``wake``: something may be wanted now

    def counters(self) -> dict[str, int]:
        return {"probe_clusters": self.clusters, "probe_packets": self.packets}

    def wake(self) -> None:
        """A simulcast track appeared: ``any_wanted`` may be true now, and a ``run`` waiting for it checks again."""
        self._woken.set()

    async def run(self) -> None:
        """Check the schedules and pace the clusters being sent, until cancelled. While nothing can be wanted (no
        simulcast track: every audio-only server), it waits for ``wake`` instead of waking ten times a second to
        find nothing."""
        while True:
            self.tick()
            if self._active:
                await trio.sleep(TICK_S)
            elif self._schedules or self._any_wanted():
                await trio.sleep(IDLE_S)
            else:
                self._woken = trio.Event()
                await self._woken.wait()

    def tick(self) -> None:
        if not self._active and not self._schedules and not self._any_wanted():
            return  # what the walk would do: nothing (audio-only calls: every session, 10 times a second)
        now = self._clock()
        seen: set[str] = set()
        for s in list(self._sessions()):
            seen.add(s.session_id)
            sequencer = s.peer.twcc if s.peer is not None else None
            if not isinstance(sequencer, TransportSequencer) or s.closed:
                self._forget(s.session_id)
                continue
            active = self._active.get(s.session_id)
            if active is None:
                self._maybe_start(s, now)
            else:
                self._pace(s, sequencer, active, now)
        for gone in [k for k in self._schedules if k not in seen]:
            self._forget(gone)

    def _maybe_start(self, s: Session, now: float) -> None:
        wanted = self._wanted(s.session_id)
        if wanted is None:  # nothing above what it gets: a fresh schedule is what due(False) would leave
            self._schedules.pop(s.session_id, None)  # (every receiver of an audio-only call, 10 times a second)
            return
        estimate = self._estimate(s.session_id)
        wants = estimate is not None and estimate < wanted
        schedule = self._schedules.setdefault(s.session_id, ProbeSchedule(self.policy))
        if not schedule.due(wants, now * 1000.0):
            return
        route = next((r for r in s.routes_in.values() if r.rtx_pt is not None and r.rtx_ssrc is not None
                      and r.negotiated), None)
        if route is None:
            return
        # the cluster alone at overshoot x wanted: its result (its packets' rates) must cover the wanted rate
        padding_bps = wanted * self.policy.overshoot
        cluster = self._next_cluster
        self._next_cluster = self._next_cluster % 0x7FFFFFFF + 1
        duration_s = self.policy.cluster_ms(padding_bps, _HDR.size + PADDING) / 1000.0
        self._active[s.session_id] = active = _Cluster(cluster, route, now, now + duration_s, padding_bps)
        active.first_packet = self.packets
        self.clusters += 1

    def _pace(self, s: Session, sequencer: TransportSequencer, c: _Cluster, now: float) -> None:
        peer = s.peer
        route = c.route
        if peer is None or route.removed or route.rtx_pt is None or route.rtx_ssrc is None:
            del self._active[s.session_id]
            return
        c.credit += c.bps / 8 * (min(now, c.end) - c.last)
        c.last = now
        size = _HDR.size + PADDING
        count = math.floor(c.credit / size)
        c.credit -= count * size
        ending = now >= c.end
        if ending:
            count = max(count, 1)  # the last packet, marked so its report completes the cluster
        sequencer.cluster = c.cluster
        try:
            for i in range(count):
                sequencer.cluster_last = ending and i == count - 1
                packet = _HDR.pack(0xA0, route.rtx_pt, route.rtx_seq, route.ts_offset, route.rtx_ssrc) + _PADDING_BODY
                route.rtx_seq = (route.rtx_seq + 1) & 0xFFFF
                peer.send_rtp(packet)
                self.packets += 1
        finally:
            sequencer.cluster = 0
            sequencer.cluster_last = False
        if ending:
            del self._active[s.session_id]
            log.debug("probing: cluster %d to %s: %d packets at %d bit/s", c.cluster, s.session_id,
                     self.packets - c.first_packet, c.bps)

    def _forget(self, session_id: str) -> None:
        self._schedules.pop(session_id, None)
        self._active.pop(session_id, None)
