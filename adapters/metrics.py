"""Prometheus metrics, read from plain integer counters at scrape time.

Nothing on the hot path touches prometheus_client: the media endpoint does ``counters.rtp_in += 1`` and the signaling
hub bumps its own ``HubCounters``; ``CallsdCollector.collect()`` turns them into metric families only when
``/metrics`` is scraped. Families (all prefixed ``callsd_``):

- process: ``callsd_process_cpu_seconds_total``, ``..._open_fds``, ``..._max_fds``, ``..._resident_memory_bytes``,
  ``..._virtual_memory_bytes``, ``..._start_time_seconds`` (prometheus_client's ProcessCollector's families, read
  without walking the descriptor table: process_metrics.py)
- ``callsd_rtc_conn_states_total{type}``: media sessions that reached a state (connected, closed, consent_expired)
- ``callsd_rtc_ice_outcomes_total{outcome}``: connected, no_ice_check, no_dtls, disconnected (docs/networking.md)
- ``callsd_rtc_errors_total{type}``: dropped packets by reason (malformed, srtp_auth, replay, ...) and SDP refusals
- ``callsd_rtc_rtp_packets_total{direction,type}``, ``callsd_rtc_rtp_bytes_total{direction,type}``: type is rtp or
  rtcp (packets also count stun and dtls); direction in or out
- ``callsd_rtc_sessions_total``: media sessions opened
- video (docs/video.md): ``callsd_rtc_repair_total{type}`` (NACK, RTX, PLI), ``callsd_rtc_simulcast_packets_total`` and
  ``..._bytes_total{direction,layer}``, ``callsd_rtc_simulcast_switches_total``,
  ``callsd_rtc_bandwidth_feedback_total{type}`` (``BANDWIDTH_FEEDBACK``) and the gauge ``callsd_rtc_bandwidth_estimates``
- ``callsd_websocket_connections_total`` and the gauge ``callsd_websocket_connections``
- ``callsd_websocket_events_total{direction,type}``: messages by type (in: client actions, out: server events)
- ``callsd_store_ops_total{op}``: event-store operations (open, append, close)
- gauges ``callsd_calls`` and ``callsd_participants``, and ``callsd_info{version,draining}`` (always 1)
- gauge ``callsd_trio_tasks``: tasks alive in the server's Trio run at scrape time (a leak of per-connection tasks
  shows here first; ``python -m bench.soak`` watches it)

The text is written by exposition.py: ``generate_latest``'s bytes, with the names, labels and header lines kept
between scrapes (the scrape runs on the event loop, once a second under the load tool).
"""

from __future__ import annotations

from collections.abc import Iterator

import trio
from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from .exposition import CONTENT_TYPE, KeptFamily, TextExposition
from .process_metrics import ProcessStats
from .signaling import SignalingHub
from .signaling_session import MediaPlaneLike

__all__ = ["CallsdCollector", "build_registry", "render_metrics", "BANDWIDTH_FEEDBACK"]

# callsd_rtc_bandwidth_feedback_total{type}: transport-cc reports from receivers (read, malformed) and to publishers
# (sent), REMBs and loss-bearing receiver reports read, probe clusters and their packets sent
BANDWIDTH_FEEDBACK = ("twcc_in", "twcc_malformed", "twcc_out", "remb_in", "loss_reports", "probe_clusters",
                      "probe_packets")


class CallsdCollector(Collector):
    """Reads the hub's and the media plane's counters and the machine's calls at scrape time."""

    def __init__(self, hub: SignalingHub, plane: MediaPlaneLike | None = None, version: str = "") -> None:
        self.hub = hub
        self.plane = plane
        self.version = version

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        hub = self.hub
        c = hub.counters
        media = self.plane.media_counters() if self.plane is not None else {}
        get = media.get

        yield _INFO.series([((self.version, "true" if hub.draining else "false"), 1)])
        yield _CONN_STATES.series([(("connected",), get("peers_connected", c.rtc_conn_states.get("connected", 0))),
                                   (("closed",), get("peers_closed", c.rtc_conn_states.get("closed", 0))),
                                   (("consent_expired",), get("consent_expired", 0))])
        yield _ICE_OUTCOMES.series([(key, get(name, 0)) for key, name in _ICE_OUTCOME_SERIES])
        ordered = sorted(media.items())
        errors = [((name[5:],), value) for name, value in ordered if name.startswith("drop_")]
        errors.extend(((name,), value) for name, value in sorted(c.rtc_errors.items()))
        yield _ERRORS.series(errors)
        yield _PACKETS.series([(key, get(name, 0)) for key, name in _PACKET_SERIES])
        yield _OCTETS.series([(key, get(name, 0)) for key, name in _OCTET_SERIES])
        layer_packets: list[tuple[tuple[str, ...], float]] = []
        layer_octets: list[tuple[tuple[str, ...], float]] = []
        for name, value in ordered:
            if name.startswith(("simulcast_rtp_", "simulcast_bytes_")):
                _, kind, direction, layer = name.split("_")
                (layer_packets if kind == "rtp" else layer_octets).append(
                    ((direction, layer.removeprefix("l")), value))
        yield _LAYER_PACKETS.series(layer_packets)
        yield _LAYER_OCTETS.series(layer_octets)
        yield _REPAIR.series([(key, get(name, 0)) for key, name in _REPAIR_SERIES])
        yield _SWITCHES.value(get("simulcast_switches", 0))
        yield _FEEDBACK.series([(key, get(name, 0)) for key, name in _FEEDBACK_SERIES])
        yield _ESTIMATES.value(get("estimates", 0))

        yield _SESSIONS.value(c.rtc_sessions_total)
        yield _WS_CONNECTIONS.value(c.ws_connections_total)
        yield _WS_OPEN.value(c.ws_connections_open)
        yield _WS_EVENTS.series(sorted(c.ws_events.items()))
        yield _WS_FRAMES.value(c.ws_frames_out)
        yield _STORE_OPS.series([((op,), value) for op, value in sorted(c.store_ops.items())])

        calls, participants = hub.machine.census()  # counts only: no view per participant every scrape
        yield _CALLS.value(calls)
        yield _PARTICIPANTS.value(participants)


# The families above, kept between scrapes (exposition.KeptFamily), and their fixed series: (label values, the
# media counter read).
_INFO = KeptFamily("callsd_info", "The running callsd", "gauge", ("version", "draining"))
_CONN_STATES = KeptFamily("callsd_rtc_conn_states", "Media sessions that reached a state", "counter", ("type",))
_ICE_OUTCOMES = KeptFamily("callsd_rtc_ice_outcomes", "Media sessions by ICE outcome (adapters/media/ice_outcome.py)",
                           "counter", ("outcome",))
_ICE_OUTCOME_SERIES = [((o,), f"ice_outcome_{o}") for o in ("connected", "no_ice_check", "no_dtls", "disconnected")]
_ERRORS = KeptFamily("callsd_rtc_errors", "Media errors and dropped packets by reason", "counter", ("type",))
_PACKETS = KeptFamily("callsd_rtc_rtp_packets", "Media packets by direction and type", "counter",
                      ("direction", "type"))
_PACKET_SERIES = [((d, k), f"{k}_{d}") for d in ("in", "out") for k in ("rtp", "rtcp", "stun", "dtls")]
_OCTETS = KeptFamily("callsd_rtc_rtp_bytes", "Media bytes by direction and type", "counter", ("direction", "type"))
_OCTET_SERIES = [((d, k), f"{k}_bytes_{d}") for d in ("in", "out") for k in ("rtp", "rtcp")]
_LAYER_PACKETS = KeptFamily(
    "callsd_rtc_simulcast_packets",
    "Simulcast video packets by direction and layer (0 = the first RID of a=simulcast; docs/video.md)", "counter",
    ("direction", "layer"))
_LAYER_OCTETS = KeptFamily("callsd_rtc_simulcast_bytes", "Simulcast video bytes by direction and layer", "counter",
                           ("direction", "layer"))
_REPAIR = KeptFamily("callsd_rtc_repair",
                     "NACKs, RTX and key-frame requests by type (docs/video.md, Retransmission)", "counter", ("type",))
_REPAIR_SERIES = [((n,), n) for n in ("nack_in", "nack_answered", "nack_forwarded", "nack_out", "rtx_in", "rtx_out",
                                     "pli_in", "pli_out")]
_SWITCHES = KeptFamily("callsd_rtc_simulcast_switches", "Layer switches of simulcast receivers", "counter")
_FEEDBACK = KeptFamily("callsd_rtc_bandwidth_feedback",
                       "Bandwidth-estimation input and probes by type (docs/video.md, Bandwidth estimation)", "counter",
                       ("type",))
_FEEDBACK_SERIES = [((n,), n) for n in BANDWIDTH_FEEDBACK]
_ESTIMATES = KeptFamily("callsd_rtc_bandwidth_estimates", "Receivers the server has a bandwidth estimate of", "gauge")
_SESSIONS = KeptFamily("callsd_rtc_sessions", "Media sessions opened", "counter")
_WS_CONNECTIONS = KeptFamily("callsd_websocket_connections", "WebSocket connections accepted", "counter")
_WS_OPEN = KeptFamily("callsd_websocket_connections_open", "WebSocket connections open now", "gauge")
_WS_EVENTS = KeptFamily("callsd_websocket_events", "WebSocket messages by direction and type", "counter",
                        ("direction", "type"))
_WS_FRAMES = KeptFamily("callsd_websocket_frames_sent",
                        "WebSocket frames sent to clients (several events share one batch frame)", "counter")
_STORE_OPS = KeptFamily("callsd_store_ops", "Event store operations", "counter", ("op",))
_CALLS = KeptFamily("callsd_calls", "Calls in progress", "gauge")
_PARTICIPANTS = KeptFamily("callsd_participants", "Participants in calls", "gauge")


class _TaskCount(trio.abc.Instrument):
    """Tasks alive in a Trio run, kept up to date by the run itself: one walk of the task tree when installed, then
    +1 per spawn and -1 per exit (hooks Trio calls only for what a task does, never per step or per packet)."""

    def __init__(self, root: trio.lowlevel.Task) -> None:
        self.root = root  # which run it counts
        self.alive = 0
        stack = [root]
        while stack:
            task = stack.pop()
            self.alive += 1
            for nursery in task.child_nurseries:
                stack.extend(nursery.child_tasks)

    def task_spawned(self, task: trio.lowlevel.Task) -> None:
        self.alive += 1

    def task_exited(self, task: trio.lowlevel.Task) -> None:
        self.alive -= 1


class TrioTaskCollector(Collector):
    """``callsd_trio_tasks``: the tasks alive in the server's Trio run at scrape time (nothing when scraped outside
    a Trio run, e.g. a registry rendered by a test).

    The first scrape in a run walks the task tree and installs a counting instrument; later scrapes read its count.
    Walking every scrape cost 32 ms at 800 sessions, on the event loop, once a second under the load tool."""

    def __init__(self) -> None:
        self._count: _TaskCount | None = None  # the instrument of the last run scraped (it ends with its run)

    def collect(self) -> Iterator[Metric]:
        try:
            root = trio.lowlevel.current_root_task()
        except RuntimeError:
            return
        if root is None:
            return
        count = self._count
        if count is None or count.root is not root:
            count = self._count = _TaskCount(root)
            trio.lowlevel.add_instrument(count)
        yield GaugeMetricFamily("callsd_trio_tasks", "Tasks alive in the server's Trio run", value=count.alive)


def build_registry(hub: SignalingHub, plane: MediaPlaneLike | None = None, version: str = "") -> CollectorRegistry:
    """A private registry with the process collector and ours (so tests can run several servers in one process)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ProcessStats("callsd"))
    registry.register(CallsdCollector(hub, plane, version))
    registry.register(TrioTaskCollector())
    return registry


_EXPOSITION = TextExposition()  # its caches are keyed by content: one serves every registry of the process


def render_metrics(registry: CollectorRegistry) -> tuple[bytes, str]:
    """The Prometheus text exposition of ``registry`` (``generate_latest``'s bytes) and its content type."""
    return _EXPOSITION.render(registry), CONTENT_TYPE
