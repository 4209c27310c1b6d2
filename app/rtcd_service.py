"""``callsd rtcd`` as a standalone, networked service (docs/rtcd.md, docs/adr/0018-rtcd-service.md).

One ``MediaPlane`` on the RTC UDP port (``[rtc]``), shared by every authenticated control link (``/ws``) through
``LinkPlanes``; the HTTP API of app/rtcd_api.py on ``[api]`` behind app/http_guard.py's listener (bounded
connections, 1 MiB WebSocket messages refused at the frame header); metrics under ``callsd_rtcd_``.

SIGTERM drains (``RtcdControl.drain``): ``/healthz`` answers 503 and ``/system`` ``"draining": true``, so servers
place no new call here; the calls running go on until their last session closes or ``api.drain_timeout`` passes;
then the process exits 0. A second SIGTERM or a SIGINT stops at once.
"""

from __future__ import annotations

import logging
import signal
import sys
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any, Protocol

import hypercorn.config
import trio
from callsd.adapters.media.rtcd_links import LinkPlanes
from callsd.adapters.metrics import render_metrics
from callsd.adapters.process_metrics import ProcessStats
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from .http_guard import GuardCounters, GuardSettings, serve_http
from .rtcd_api import LINK_MAX_MESSAGE, RtcdState, create_rtcd_app
from .rtcd_auth import BearerTokens, ClientStore, FailureLimiter
from .rtcd_config import RtcdConfig

__all__ = ["LoadFigure", "RtcdControl", "RtcdInfo", "run_service", "sample_cpu_load"]

log = logging.getLogger("callsd.rtcd")

CPU_SAMPLE_SECONDS = 1.0
CPU_SMOOTHING = 0.3  # EWMA weight of the newest one-second sample (~3 s to follow a change)


class RtcdControl:
    """How the service is told to drain or stop (signals, or a test)."""

    def __init__(self) -> None:
        self.mode = ""
        self._changed = trio.Event()

    def drain(self) -> None:
        if not self.mode:
            self.mode = "drain"
        self._changed.set()

    def stop(self) -> None:
        self.mode = "stop"
        self._changed.set()

    async def wait(self) -> None:
        await self._changed.wait()
        self._changed = trio.Event()


class RtcdInfo:
    def __init__(self, api_url: str, rtc_address: tuple[str, int], state: RtcdState) -> None:
        self.api_url = api_url
        self.rtc_address = rtc_address
        self.state = state


class RtcdCollector:
    """The reference's ``rtcd_*`` families under ``callsd_rtcd_`` (the process ones come from ProcessStats, as on serve)."""

    def __init__(self, state: RtcdState) -> None:
        self.state = state

    def collect(self) -> Iterator[Metric]:
        s = self.state
        media: dict[str, int] = {**s.plane.counters, **s.plane.endpoint.counters.snapshot()}
        states = CounterMetricFamily("callsd_rtcd_rtc_conn_states", "Media sessions that reached a state",
                                     labels=["type"])
        states.add_metric(["connected"], media.get("peers_connected", 0))
        states.add_metric(["closed"], media.get("peers_closed", 0))
        states.add_metric(["consent_expired"], media.get("consent_expired", 0))
        yield states
        errors = CounterMetricFamily("callsd_rtcd_rtc_errors", "Media errors and dropped packets by reason",
                                     labels=["type"])
        for name, value in sorted(media.items()):
            if name.startswith("drop_"):
                errors.add_metric([name[5:]], value)
        yield errors
        packets = CounterMetricFamily("callsd_rtcd_rtc_rtp_packets", "Media packets by direction and type",
                                      labels=["direction", "type"])
        octets = CounterMetricFamily("callsd_rtcd_rtc_rtp_bytes", "Media bytes by direction and type",
                                     labels=["direction", "type"])
        for direction in ("in", "out"):
            for kind in ("rtp", "rtcp"):
                packets.add_metric([direction, kind], media.get(f"{kind}_{direction}", 0))
                octets.add_metric([direction, kind], media.get(f"{kind}_bytes_{direction}", 0))
        yield packets
        yield octets
        yield GaugeMetricFamily("callsd_rtcd_rtc_sessions_total", "Media sessions open now", value=s.links.sessions)
        yield GaugeMetricFamily("callsd_rtcd_calls", "Calls with a session here", value=s.links.calls)
        yield CounterMetricFamily("callsd_rtcd_ws_connections", "Control links accepted", value=s.ws_accepted)
        messages = CounterMetricFamily("callsd_rtcd_ws_messages", "Control link messages", labels=["direction"])
        messages.add_metric(["in"], s.ws_messages_in)
        messages.add_metric(["out"], s.ws_messages_out)
        yield messages
        yield GaugeMetricFamily("callsd_rtcd_cpu_load", "CPU of the media event loop's thread (cores), smoothed",
                                value=s.cpu_load)
        yield GaugeMetricFamily("callsd_rtcd_draining", "1 while draining", value=1 if s.draining else 0)


def _hypercorn_config(config: RtcdConfig) -> hypercorn.config.Config:
    api = config.api
    hc = hypercorn.config.Config()
    hc.bind = [f"[{api.listen}]:{api.port}" if ":" in api.listen else f"{api.listen}:{api.port}"]
    hc.websocket_max_message_size = LINK_MAX_MESSAGE
    hc.websocket_ping_interval = 10.0  # a control link that stops answering is closed (read_timeout)
    hc.read_timeout = 30
    hc.graceful_timeout = 2.0
    hc.alpn_protocols = ["http/1.1"]
    hc.accesslog = None
    hc.errorlog = logging.getLogger("hypercorn.error")
    if api.tls_cert:
        hc.certfile, hc.keyfile = api.tls_cert, api.tls_key
    return hc


class LoadFigure(Protocol):
    """Where the sampler keeps its figure (``RtcdState``; a stand-in in a test)."""

    cpu_load: float


async def sample_cpu_load(state: LoadFigure) -> None:
    """Keep ``state.cpu_load`` (``/system``, what servers place calls by) at the CPU of the thread running this
    event loop, in cores, smoothed. The media plane (ICE, DTLS, SRTP, forwarding) runs on this thread: it is what
    calls load, and the core it saturates is the host's limit. Worker threads are left out: Argon2id hashing for
    ``/login`` and ``/register`` (~0.16 CPU-s each, on libargon2's own threads) is not load a call brings, and
    counted as process CPU two logins lifted an idle host from 0.02 to 0.10 for seconds, over the 0.05 a host may
    be above the lightest before placement skips it: a server whose login timed out and was retried under load saw
    the idle host as the busy one and placed a second call beside the first."""
    last_cpu, last_wall = time.thread_time(), trio.current_time()
    while True:
        await trio.sleep(CPU_SAMPLE_SECONDS)
        cpu, wall = time.thread_time(), trio.current_time()
        sample = (cpu - last_cpu) / max(wall - last_wall, 1e-3)
        state.cpu_load += CPU_SMOOTHING * (sample - state.cpu_load)
        last_cpu, last_wall = cpu, wall


async def _watch_signals(control: RtcdControl, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
    """Started with ``nursery.start``: the handlers are in place before the service says it is ready."""
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        task_status.started()
        async for signum in signals:
            if signum == signal.SIGTERM and not control.mode:
                print("callsd rtcd: SIGTERM received, draining (SIGTERM or SIGINT again to stop now)",
                      file=sys.stderr, flush=True)
                control.drain()
            else:
                control.stop()


async def run_service(config: RtcdConfig, *, version: str, control: RtcdControl | None = None,
                      handle_signals: bool = False, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
    """Run until stopped, or drained (see the module docstring)."""
    from callsd.adapters.media.plane import MediaPlane

    from .server import (
        ShieldSend,  # hypercorn 0.18's disconnect leak workaround, as for serve (app/server.py)
    )

    control = control or RtcdControl()
    data_dir = Path(config.store.data_dir)
    clients = ClientStore(data_dir)
    links = LinkPlanes()
    plane = MediaPlane(config.rtc, links.emit)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ProcessStats("callsd_rtcd"))
    state = RtcdState(config=config, plane=plane, links=links, clients=clients,
                      tokens=BearerTokens(data_dir, config.api.bearer_ttl_seconds),
                      limiter=FailureLimiter(config.api.max_failures, config.api.failure_window_seconds),
                      version=version,
                      render_metrics=lambda: render_metrics(registry))
    registry.register(RtcdCollector(state))
    settings = GuardSettings(max_message_bytes=LINK_MAX_MESSAGE, join_timeout=10.0, max_connections=1000,
                             max_connections_per_address=100)
    try:
        async with trio.open_nursery() as nursery:
            rtc_address = await nursery.start(plane.serve)
            binds = await nursery.start(partial(serve_http, ShieldSend(create_rtcd_app(state)), _hypercorn_config(config),
                                                settings, GuardCounters()))
            nursery.start_soon(sample_cpu_load, state)
            if handle_signals:
                await nursery.start(_watch_signals, control)
            log.info("rtcd: api on %s, media on udp %s:%s", binds[0], rtc_address[0], rtc_address[1])
            task_status.started(RtcdInfo(binds[0], (str(rtc_address[0]), int(rtc_address[1])), state))
            await control.wait()
            if control.mode == "drain":
                state.draining = True
                log.info("rtcd draining: %d sessions in %d calls; waiting up to %gs", links.sessions, links.calls,
                         config.api.drain_timeout)
                with trio.move_on_after(config.api.drain_timeout):
                    async with trio.open_nursery() as waiting:
                        async def stop_early() -> None:
                            while control.mode != "stop":
                                await control.wait()
                            waiting.cancel_scope.cancel()

                        waiting.start_soon(stop_early)
                        while links.sessions:
                            await trio.sleep(0.2)
                        waiting.cancel_scope.cancel()
                log.info("rtcd drain %s", "complete" if not links.sessions else "ended with sessions left")
            nursery.cancel_scope.cancel()
    finally:
        clients.close()
