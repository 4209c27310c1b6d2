"""``PlaneRouter``: the media plane as N ``callsd rtcd`` worker processes, one call per worker (docs/adr/0007), or
as remote rtcd hosts behind one DNS name (``hosts=RtcdHosts(...)``, rtcd_hosts.py, docs/rtcd.md): one placement and
one recovery path for both.

Public API (the hub's ``MediaPlaneLike``, plus what the server and the metrics exporter read)
    router = PlaneRouter(rtc_config, emit, workers=N, socket_dir=Path, log_level="warning")
    address = await nursery.start(router.serve)   # starts the workers; reports worker 0's RTC (host, port)
    router.open_session / handle_signal / set_screen_stream / apply / close_session / restore_routes
    router.planes                                  # the RemotePlanes (metrics sums their counters)
    await router.refresh_counters()                # fresh counters from every live worker (bounded)

Placement: a channel (call) is placed, when its first session opens, on the live, accepting worker or host with the
fewest sessions among those whose ``cpu_load`` is within ``LOAD_STEP`` of the lightest (smaller differences are
noise; workers report none, so for them it is simply the fewest sessions),
and stays there while it has sessions; every session of the call, and every routing output naming the channel, goes
to that worker, so forwarding never crosses processes. Worker ``i`` binds RTC port ``ice_port_udp + i`` (or a free
port when ``ice_port_udp`` is 0) and advertises it in its candidates.

A worker that dies is not restarted: its ``RemotePlane`` reports every session it held closed (``SessionClosed``,
reason ``media_worker_lost``: the hub unpublishes their tracks, clients renegotiate or reconnect) and is never used
again; its calls move to a live worker when a session re-opens or sends a new offer. A session moved that way emits
``SessionMoved``: the hub answers with ``restore_routes`` (the routes the core has towards it), the same explicit
call that restores routes after a reconnect; the router keeps no copy of the routing table.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol, TypeVar

import trio
from callsd.core.calls import outputs as out
from callsd.core.calls.state import Route

from .events import MediaEvent, SessionMoved, SignalRejected
from .plane_session import PlaneSettings
from .remote import RemotePlane

__all__ = ["PlaneRouter", "WorkerStartError", "HostSource", "LOAD_STEP"]

log = logging.getLogger("callsd.media.router")

CONNECT_TIMEOUT = 20.0
LOAD_STEP = 0.05  # cpu_load differences below 5 % of a core do not decide placement (sessions do)
STOP_TIMEOUT = 5.0
_MAX_UNIX_PATH = 100  # sun_path is 108 bytes


class _OfChannel(Protocol):
    """What placement needs of a routing output or a route: the channel whose call it belongs to."""

    @property
    def channel_id(self) -> str: ...


_OfChannelT = TypeVar("_OfChannelT", bound=_OfChannel)


class HostSource(Protocol):
    """Where the router's planes come from when they are not local workers (rtcd_hosts.RtcdHosts): it adds them
    with ``router.add_plane`` and keeps their ``accepting``/``cpu_load`` current."""

    async def run(self, router: PlaneRouter, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None: ...


class WorkerStartError(RuntimeError):
    """A media worker did not come up (it exited, or its socket never accepted)."""


class _PassedIceServer(Protocol):
    @property
    def urls(self) -> Sequence[str]: ...
    def as_json(self) -> dict[str, Any]: ...


class WorkerSettings(PlaneSettings, Protocol):
    """The ``[rtc]`` settings the router starts its workers with (the app's ``RtcConfig``): a plane's settings, whose
    ICE servers it passes on to each worker as JSON."""

    @property
    def ice_servers(self) -> Sequence[_PassedIceServer]: ...


class PlaneRouter:
    """See the module docstring."""

    def __init__(self, config: WorkerSettings, emit: Callable[[MediaEvent], None], *, workers: int = 0,
                 socket_dir: Path = Path("."), log_level: str = "warning", hosts: HostSource | None = None) -> None:
        if workers < 1 and hosts is None:
            raise ValueError("PlaneRouter needs at least one worker, or remote hosts")
        self.config = config
        self._emit = emit
        self.emit = emit  # what a RemotePlane of this router emits into
        self.hosts = hosts
        self.count = workers
        self.socket_dir = Path(socket_dir)
        self.log_level = log_level
        self.planes: list[RemotePlane] = []
        self.processes: list[trio.Process] = []
        self.addresses: list[tuple[str, int]] = []
        self.channel_worker: dict[str, int] = {}
        self.session_worker: dict[str, int] = {}
        self.session_channel: dict[str, str] = {}
        self._channel_sessions: Counter[str] = Counter()
        self.session_simulcast: dict[str, bool] = {}  # calls.enable_simulcast per session, for a rehomed one

    # -- workers -----------------------------------------------------------------------------------------------
    def _socket_path(self, i: int) -> Path:
        path = self.socket_dir / f"rtcd-{os.getpid()}-{i}.sock"
        if len(str(path)) > _MAX_UNIX_PATH:
            path = Path(tempfile.mkdtemp(prefix="callsd-rtcd-")) / f"{i}.sock"
        return path

    def _command(self, i: int, path: Path) -> list[str]:
        c = self.config
        port = c.ice_port_udp + i if c.ice_port_udp else 0
        cmd = [sys.executable, "-m", "callsd.app.cli", "rtcd", "--listen", f"unix:{path}",
               "--rtc-address", c.ice_address_udp, "--rtc-port", str(port),
               "--udp-rcvbuf", str(c.udp_rcvbuf), "--udp-sndbuf", str(c.udp_sndbuf), "--log-level", self.log_level,
               "--ice-max-addresses", str(c.ice_max_addresses_per_session)]
        if c.ice_host_override:
            cmd += ["--ice-host-override", c.ice_host_override]
        if c.ice_host_port_override:
            cmd += ["--ice-host-port-override", str(c.ice_host_port_override + i)]
        return cmd

    def _network_env(self, i: int) -> dict[str, str]:
        """The networking settings worker ``i`` needs that its flags do not carry (docs/networking.md): STUN
        discovery, IPv6, ICE-TCP (worker i on ``ice_port_tcp + i``, like the UDP port), the ICE outcome timeout."""
        c = self.config
        return {
            "CALLSD_RTC_ICE_SERVERS": json.dumps([server.as_json() for server in c.ice_servers]),
            "CALLSD_RTC_ENABLE_IPV6": "true" if c.enable_ipv6 else "false",
            "CALLSD_RTC_ICE_PORT_TCP": str(c.ice_port_tcp + i if c.ice_port_tcp else 0),
            "CALLSD_RTC_ICE_CHECK_TIMEOUT": str(c.ice_check_timeout),
            "CALLSD_RTC_ADVERTISE_REFRESH_SECONDS": str(c.advertise_refresh_seconds),
        }

    async def serve(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Start every worker (in order), report worker 0's RTC address, run until cancelled; stops the workers.
        With remote hosts: link them (rtcd_hosts.py) and report the first one's RTC address."""
        if self.hosts is not None:
            await self.hosts.run(self, task_status=task_status)
            return
        self.socket_dir.mkdir(parents=True, exist_ok=True)
        async with trio.open_nursery() as nursery:
            for i in range(self.count):
                self.addresses.append(await nursery.start(self._run_worker, i))
            log.info("media workers up: %s", ", ".join(f"{h}:{p}" for h, p in self.addresses))
            task_status.started(self.addresses[0])

    async def _run_worker(self, i: int, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        path = self._socket_path(i)
        env = {**os.environ, **self._network_env(i)}
        proc = await trio.lowlevel.open_process(self._command(i, path), stdin=subprocess.DEVNULL, env=env)
        self.processes.append(proc)
        stream: trio.SocketStream | None = None
        try:
            stream = await self._connect(i, path, proc)
            remote = RemotePlane(stream, self._emit, name=f"worker {i} (pid {proc.pid})")
            self.planes.append(remote)
            await remote.serve(task_status=task_status)  # returns when the link broke: the worker is gone
            with trio.move_on_after(1.0):
                await proc.wait()
            log.error("media worker %d exited (code %s)", i, proc.returncode)
        finally:
            with trio.CancelScope(shield=True):
                if stream is not None:
                    await stream.aclose()  # the worker exits when its link closes
                with trio.move_on_after(STOP_TIMEOUT):
                    await proc.wait()
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()
                path.unlink(missing_ok=True)

    async def _connect(self, i: int, path: Path, proc: trio.Process) -> trio.SocketStream:
        with trio.move_on_after(CONNECT_TIMEOUT):
            while True:
                if proc.returncode is not None:
                    raise WorkerStartError(f"media worker {i} exited with code {proc.returncode} before accepting")
                if path.is_socket():
                    try:
                        return await trio.open_unix_socket(str(path))
                    except OSError:
                        pass
                await trio.sleep(0.05)
        raise WorkerStartError(f"media worker {i} did not accept on {path} within {CONNECT_TIMEOUT:g} s")

    # -- placement ---------------------------------------------------------------------------------------------
    def add_plane(self, plane: RemotePlane) -> int:
        """A remote host's plane joins placement. Indices are stable while anything refers to them, so a relinked
        host takes the slot of a lost plane nothing refers to any more (a flapping host does not grow the list)."""
        used = set(self.channel_worker.values()) | set(self.session_worker.values())
        for i, old in enumerate(self.planes):
            if not old.alive and i not in used:
                self.planes[i] = plane
                return i
        self.planes.append(plane)
        return len(self.planes) - 1

    def _live(self) -> list[int]:
        return [i for i, p in enumerate(self.planes) if p.alive and p.accepting]

    def _place(self, channel_id: str) -> int | None:
        """The channel's worker: its current one while alive, else the live worker with the fewest sessions."""
        i = self.channel_worker.get(channel_id)
        if i is not None and self.planes[i].alive:
            return i
        live = self._live()
        if not live:
            return None
        load = Counter(self.session_worker.values())
        lightest = min(self.planes[w].cpu_load for w in live)
        near = [w for w in live if self.planes[w].cpu_load <= lightest + LOAD_STEP]  # within noise of the lightest
        i = min(near, key=lambda w: (load[w], self.planes[w].cpu_load, w))
        self.channel_worker[channel_id] = i
        log.info("call %s placed on %s (of %s)", channel_id, self.planes[i].name,
                 "; ".join(f"{self.planes[w].name}: {load[w]} sessions, cpu {self.planes[w].cpu_load:.3f}"
                           for w in live))
        return i

    def _forget(self, session_id: str) -> None:
        self.session_worker.pop(session_id, None)
        self.session_simulcast.pop(session_id, None)
        channel = self.session_channel.pop(session_id, None)
        if channel is not None:
            self._channel_sessions[channel] -= 1
            if self._channel_sessions[channel] <= 0:
                del self._channel_sessions[channel]
                self.channel_worker.pop(channel, None)  # the call is over on the media side: place it afresh

    # -- MediaPlaneLike ----------------------------------------------------------------------------------------
    def open_session(self, session_id: str, channel_id: str, simulcast: bool = True) -> None:
        old = self.session_worker.get(session_id)
        self.session_simulcast[session_id] = simulcast
        i = self._place(channel_id)
        if old is not None and old != i:
            self.planes[old].close_session(session_id)
        if session_id not in self.session_channel:
            self.session_channel[session_id] = channel_id
            self._channel_sessions[channel_id] += 1
        if i is None:
            self.session_worker.pop(session_id, None)
            return
        self.session_worker[session_id] = i
        self.planes[i].open_session(session_id, channel_id, simulcast)

    def handle_signal(self, session_id: str, msg: dict[str, Any]) -> None:
        action = "ice" if msg.get("type") == "candidate" else "sdp"
        channel = self.session_channel.get(session_id)
        if channel is None:
            self._emit(SignalRejected(session_id=session_id, action=action, reason="unknown session"))
            return
        i = self.session_worker.get(session_id)
        if (i is None or not self.planes[i].alive) and msg.get("type") == "offer":
            i = self._rehome(session_id, channel)
        if i is None:
            self._emit(SignalRejected(session_id=session_id, action=action, reason="media worker unavailable"))
            return
        self.planes[i].handle_signal(session_id, msg)

    def _rehome(self, session_id: str, channel_id: str) -> int | None:
        """A session whose worker died offers again: open it on the call's (new) worker; ``SessionMoved`` asks the
        hub for its routes (``restore_routes``)."""
        i = self._place(channel_id)
        if i is None:
            return None
        self.session_worker[session_id] = i
        self.planes[i].open_session(session_id, channel_id, self.session_simulcast.get(session_id, True))
        self._emit(SessionMoved(session_id=session_id))
        log.info("session %s of call %s moved to media worker %d", session_id, channel_id, i)
        return i

    def set_screen_stream(self, session_id: str, stream_id: str | None) -> None:
        i = self.session_worker.get(session_id)
        if i is not None:
            self.planes[i].set_screen_stream(session_id, stream_id)

    def _by_worker(self, items: Iterable[_OfChannelT]) -> dict[int, list[_OfChannelT]]:
        """Group routing outputs (or routes) by the worker that holds their channel's call; drop the others."""
        groups: dict[int, list[_OfChannelT]] = {}
        for o in items:
            i = self.channel_worker.get(o.channel_id)
            if i is not None:
                groups.setdefault(i, []).append(o)
        return groups

    def apply(self, outputs: Iterable[out.OutputEvent]) -> None:
        routing = [o for o in outputs if isinstance(o, out.RoutingChange)]
        for i, group in self._by_worker(routing).items():
            self.planes[i].apply(group)

    def restore_routes(self, routes: Iterable[Route | out.RouteAdded]) -> None:
        for i, group in self._by_worker(routes).items():
            self.planes[i].restore_routes(group)

    def close_session(self, session_id: str) -> None:
        i = self.session_worker.get(session_id)
        if i is not None:
            self.planes[i].close_session(session_id)
        self._forget(session_id)

    # -- counters ----------------------------------------------------------------------------------------------
    async def refresh_counters(self, timeout: float = 1.0) -> None:
        async with trio.open_nursery() as nursery:
            for p in self.planes:
                nursery.start_soon(p.refresh_counters, timeout)

    @property
    def counters(self) -> dict[str, int]:
        """Every worker's plane + endpoint counters, summed (dead workers keep their last snapshot)."""
        total: Counter[str] = Counter()
        for p in self.planes:
            total.update(p.counters)
        return dict(total)

    def media_counters(self) -> dict[str, int]:
        return self.counters
