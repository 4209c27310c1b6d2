"""The callsd server: a Quart-Trio app on Hypercorn's Trio worker, the signaling hub, the media plane, the store.

``serve(config, task_status=...)`` runs everything in one Trio nursery and reports a ``ServerInfo`` (the URL to open,
the RTC address) once every listener is bound; ``ServerControl`` stops it: ``drain()`` (what SIGTERM does: refuse
new joins, send ``server_shutdown``, wait up to ``shutdown.drain_timeout`` for calls to end, then exit) or
``stop()`` (SIGINT: close every socket now and exit). Either way each dropped session is logged as a ``Disconnect``
input, and the event store is closed only after the last input is durable and its effects have run (the recorder
group-commits records off the event loop; the hub acts on an input only once it is durable, docs/adr/0006).

HTTP routes (same port as the WebSocket): ``/`` (app/static/index.html), ``/static/...``, ``/healthz``,
``/version``, ``/metrics``, ``/api/v1/config``, ``/api/v1/channels`` and the WebSocket ``/api/v1/websocket``.

The HTTP listener is app/http_guard.py's ``serve_http`` (hypercorn's connection handler with callsd's guards: one
connection's failure never ends the server; docs/adr/0008-http-guard.md).

Known issue handled here: with quart-trio 0.12 on hypercorn 0.18, a client disconnect cancels the task that is
sending the close frame, so hypercorn's close path never runs and the connection leaks. ``ShieldSend`` wraps the ASGI
app and shields every ``send`` from cancellation (bounded by a timeout so a dead peer cannot hold a task forever).
"""

from __future__ import annotations

import logging
import resource
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Protocol

import hypercorn.config
import trio
from callsd.adapters.loop_holds import LoopHoldCollector, install_loop_holds
from callsd.adapters.media.advertiser import advertised_by
from callsd.adapters.media.plane import MediaPlane
from callsd.adapters.media.router import PlaneRouter
from callsd.adapters.metrics import build_registry, render_metrics
from callsd.adapters.signaling import Authorize, HubSettings, MediaPlaneLike, SignalingHub, open_authorize
from callsd.adapters.signaling_protocol import (
    MAX_MESSAGE_BYTES,
    SignalingError,
)
from callsd.adapters.signaling_session import TurnCredentials
from callsd.core.calls import events as ev
from callsd.core.calls.eventlog import EventLogError
from quart import Response, request, websocket
from quart_trio import QuartTrio

from .auth import TokenError, check_open_mode_allowed, turn_credentials, verify_token
from .config import Config
from .http_guard import TICKET_KEY, ConnectionTicket, GuardCollector, GuardCounters, GuardSettings, serve_http
from .http_policy import HOST_EXEMPT_PATHS, host_allowed, host_name, metrics_authorized
from .http_routes import STATIC_DIR, NodeView, install_node_routes, json_response, rtc_health
from .quart_ws import LeanWebsocketConnection
from .secret_files import read_or_create_secret
from .signaling_socket import (
    SIGNALING_PATH,
    SignalingUpgrade,
    acknowledges_join,
    origin_allowed,
)

__all__ = ["serve", "ServerInfo", "ServerControl", "StartupError", "ServerFailed", "create_app", "ShieldSend", "VERSION"]

log = logging.getLogger("callsd.server")

SEND_SHIELD_TIMEOUT = 10.0
METRICS_MAX_CONNECTIONS = 32  # on metrics.listen: scrapers need one or two
RECEIVE_DRAIN_TIMEOUT = 10.0
RECEIVE_DRAIN_IDLE = 0.25

try:
    from importlib.metadata import version as _dist_version

    VERSION = _dist_version("callsd")
except Exception:  # pragma: no cover - not installed
    VERSION = "0+unknown"


class StartupError(Exception):
    """The server cannot start with this configuration (the message says why and what to change)."""


class ServerFailed(Exception):
    """The server stopped because it could not go on safely (the event log failed)."""


@dataclass(frozen=True, slots=True)
class ServerInfo:
    url: str  # the page to open, e.g. http://127.0.0.1:8080/
    http_host: str
    http_port: int
    rtc_address: tuple[str, int] | None
    hub: Any = None  # the SignalingHub, for tests and embedding
    metrics_url: str = ""  # http://IP:PORT/metrics when metrics.listen is set
    rtc_advertised: str = ""  # what the RTC port advertises and why (docs/networking.md), "" without a plane


class ServerControl:
    """Ask a running ``serve`` to stop: gracefully (``drain``) or promptly (``stop``)."""

    def __init__(self) -> None:
        self._requested = trio.Event()
        self.mode = ""

    def drain(self) -> None:
        if not self.mode:
            self.mode = "drain"
        self._requested.set()

    def stop(self) -> None:
        self.mode = "stop"
        self._requested.set()

    async def wait(self) -> None:
        await self._requested.wait()


class ShieldSend:
    """ASGI middleware: every ``send`` runs shielded from cancellation (see the module docstring), and a WebSocket
    app's unread inbound messages are drained after it returns (``_drain_receive``)."""

    def __init__(self, app: Callable[..., Awaitable[None]]) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        async def shielded_send(message: Any) -> None:
            with trio.CancelScope(shield=True, deadline=trio.current_time() + SEND_SHIELD_TIMEOUT):
                await send(message)

        try:
            await self.app(scope, receive, shielded_send)
        finally:
            if scope.get("type") == "websocket":
                await _drain_receive(receive)


async def _drain_receive(receive: Any) -> None:
    """Consume a finished WebSocket app's pending inbound messages until the disconnect (bounded, shielded).

    hypercorn 0.18 hands each inbound message to the app through a queue of ``max_app_queue_size`` (10); once the
    app has stopped receiving (its handler ended: a server-side close, a failed send to a reset peer), a client still
    sending fills that queue and hypercorn's reader blocks on it forever, never seeing the socket's EOF/reset, so the
    connection leaks. Draining here lets the reader reach the close.
    """
    with trio.CancelScope(shield=True, deadline=trio.current_time() + RECEIVE_DRAIN_TIMEOUT):
        while True:
            message = None
            with trio.move_on_after(RECEIVE_DRAIN_IDLE):
                message = await receive()
            if message is None or message.get("type") == "websocket.disconnect":
                return  # the peer went quiet (hypercorn does not always deliver the disconnect) or left


# ---------------------------------------------------------------------------------------------------- the app


def install_host_check(app: QuartTrio, config: Config, counters: GuardCounters,
                       exempt_paths: frozenset[str] = HOST_EXEMPT_PATHS) -> None:
    """DNS rebinding (app/http_policy.py): only the names this server is reached by, on every request and WebSocket
    upgrade but ``exempt_paths`` (probes; a cluster's authenticated node links); a refusal is a 421, counted."""

    def refuse_host(host: str | None, path: str) -> Response | None:
        if path in exempt_paths or host_allowed(host, auth_mode=config.auth.mode,
                                                allowed_hosts=config.http.allowed_hosts):
            return None
        counters.refused["host_not_allowed"] += 1
        return Response(f"host {host_name(host or '')!r} is not served here (see http.allowed_hosts)", status=421)

    @app.before_request
    async def check_request_host() -> Response | None:
        return refuse_host(request.headers.get("Host"), request.path)

    @app.before_websocket
    async def check_websocket_host() -> Response | None:
        return refuse_host(websocket.headers.get("Host"), websocket.path)


def create_app(hub: SignalingHub, config: Config, registry: Any, http_counters: GuardCounters | None = None) -> QuartTrio:
    """The Quart-Trio app: thin HTTP handlers and the WebSocket pump entry."""
    app = QuartTrio(__name__, static_folder=str(STATIC_DIR), static_url_path="/static")
    app.asgi_websocket_class = LeanWebsocketConnection  # no hold on the last message received (quart_ws.py)
    app.config["MAX_CONTENT_LENGTH"] = MAX_MESSAGE_BYTES
    counters = http_counters or GuardCounters()

    install_host_check(app, config, counters)

    async def calls() -> list[dict[str, Any]]:
        return [{"channel_id": c.channel_id, "call_id": c.call_id, "participants": len(c.participants)}
                for c in hub.machine.calls()]

    install_node_routes(app, config, NodeView(
        version=VERSION, draining=lambda: hub.draining, health=lambda: rtc_health(hub.plane), calls=calls,
        metrics=lambda: _metrics_response(hub, registry, config.metrics.token)))

    @app.websocket(SIGNALING_PATH)
    async def ws() -> Response | None:
        origin = websocket.headers.get("Origin")
        if origin is not None and not _origin_allowed(origin, websocket.headers.get("Host", ""), config):
            hub.counters.ws_events["in", "origin_refused"] += 1
            return Response("cross-origin WebSocket refused (see http.allowed_origins)", status=403)
        query_token = websocket.args.get("token")
        if config.auth.mode == "token" and query_token is not None:
            try:  # a bad token is refused before the upgrade: no socket, no frames, no session
                verify_token(query_token, secret=config.auth.secret, now=time.time())
            except TokenError as exc:
                hub.counters.ws_events["in", "token_refused"] += 1
                return json_response({"error": {"code": exc.code, "message": exc.message}}, 401)
        await websocket.accept()
        ticket = websocket.scope.get("state", {}).get(TICKET_KEY)
        transport = _QuartTransport(websocket._get_current_object(),  # type: ignore[attr-defined]
                                    ticket if isinstance(ticket, ConnectionTicket) else None)
        await hub.serve_connection(transport, query_token=query_token, batch_allowed=True)
        return None

    return app


async def _metrics_response(hub: SignalingHub, registry: Any, token: str) -> Response:
    """The Prometheus exposition, behind ``metrics.token`` when one is set."""
    if not metrics_authorized(request.headers.get("Authorization"), token):
        return Response("a bearer token is required (metrics.token)", status=401,
                        headers={"WWW-Authenticate": 'Bearer realm="callsd metrics"'})
    with trio.move_on_after(2.0):  # media workers: fetch their counters first
        await hub.plane.refresh_counters()
    body, content_type = render_metrics(registry)
    return Response(body, content_type=content_type)


def create_metrics_app(hub: SignalingHub, config: Config, registry: Any) -> QuartTrio:
    """The app of ``metrics.listen``: ``/metrics`` only (Prometheus scrapes it; nothing else is reachable there)."""
    app = QuartTrio(__name__, static_folder=None)

    @app.route("/metrics")
    async def metrics() -> Response:
        return await _metrics_response(hub, registry, config.metrics.token)

    return app


_origin_allowed = origin_allowed  # the name app/cluster_server.py imports


class _QuartTransport:
    """The hub's ``Transport`` over Quart's websocket; it lifts the connection's join deadline (app/http_guard.py)
    when the hub acknowledges a join or reconnect."""

    def __init__(self, ws: Any, ticket: ConnectionTicket | None = None) -> None:
        self._ws = ws
        self._ticket = ticket

    async def receive(self) -> str | bytes | None:
        return await self._ws.receive()  # type: ignore[no-any-return]

    async def send(self, text: str) -> None:
        if self._ticket is not None and not self._ticket.is_joined and acknowledges_join(text):
            self._ticket.joined()
        await self._ws.send(text)

    async def close(self, code: int, reason: str) -> None:
        await self._ws.close(code, reason)


# ---------------------------------------------------------------------------------------------------- serving


def _open_recorder(config: Config, *, group_commit: bool = True, accept_broken_log: bool = False) -> Any:
    """Open the configured event store and rebuild the calls it records (checkpoint + tail), refusing a corrupt log
    or one whose tail fails verification unless ``accept_broken_log`` (adapters/store/startup.py): a
    ``StartupError`` with one line. ``group_commit`` (the default) writes records in batches from a worker thread
    (adapters/store/recorder.py); False appends each one synchronously on the event loop (kept for benchmarks)."""
    from callsd.adapters.store import open_store
    from callsd.adapters.store.compaction import Retention, archive_dir_of
    from callsd.adapters.store.startup import LogRefused, open_verified

    url = config.store.effective_url()
    if not config.store.url:
        Path(config.store.data_dir).mkdir(parents=True, exist_ok=True)
    try:
        store = open_store(url)
    except EventLogError as exc:  # the store says which: corrupt, or cannot be opened (a full disk...)
        raise StartupError(f"the event log: {exc}") from None
    days, archive = config.store.retention_days, config.store.retention_action == "archive"
    retention = (Retention(days=days, archive_dir=archive_dir_of(store, Path(config.store.data_dir)) if archive else None)
                 if days else None)
    try:
        return open_verified(store, accept_broken=accept_broken_log, checkpoint_every=1000,
                             group_commit=group_commit, retention=retention, now_ms=int(time.time() * 1000))
    except LogRefused as exc:
        store.close()
        raise StartupError(str(exc)) from None
    except BaseException:
        store.close()
        raise


def _advertised_line(plane: ServedPlane | None) -> str:
    advertised = advertised_by(plane)
    return advertised.describe() if advertised is not None else ""


class ServedPlane(MediaPlaneLike, Protocol):
    """A media plane the server runs: what the hub uses, plus ``serve`` (reports the bound RTC ``(host, port)``)."""

    async def serve(self, *, task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED) -> None: ...


def _make_plane(config: Config, emit: Callable[[Any], None]) -> ServedPlane:
    """The in-process ``MediaPlane``, or with ``rtc.media_workers = N`` a ``PlaneRouter`` over N ``callsd rtcd``
    processes (docs/adr/0007-media-workers.md)."""
    if config.rtc.rtcd_url:
        from callsd.adapters.media.rtcd_hosts import RtcdHosts

        hosts = RtcdHosts(config.rtc.rtcd_url, config.rtc.rtcd_client_id, config.rtc.rtcd_auth_key,
                          resolve_interval=config.rtc.rtcd_resolve_interval)
        return PlaneRouter(config.rtc, emit, hosts=hosts)  # remote rtcd hosts (docs/rtcd.md)
    if config.rtc.media_workers > 0:
        router = PlaneRouter(config.rtc, emit, workers=config.rtc.media_workers,
                             socket_dir=Path(config.store.data_dir), log_level=config.log.level)
        return router
    return MediaPlane(config.rtc, emit)


def _hub_settings(config: Config) -> HubSettings:
    return HubSettings(
        auth_mode=config.auth.mode,
        ice_servers=tuple(s.as_json() for s in config.rtc.ice_servers),
        server_version=VERSION,
        simulcast=config.calls.enable_simulcast,
    )


def _authorize(config: Config) -> Authorize:
    """The hub's ``Authorize``: open mode takes the display name; token mode checks the token (app/auth.py) and
    answers with its user id, a refused token becoming the protocol error of its code."""
    if config.auth.mode != "token":
        return open_authorize
    secret = config.auth.secret

    def token_authorize(*, channel_id: str, data: dict[str, Any], query_token: str | None, now_s: float,
                        action: str) -> str:
        try:
            return verify_token(data.get("token") or query_token, secret=secret, now=now_s,
                                channel_id=channel_id).user_id
        except TokenError as exc:
            raise SignalingError(exc.code, exc.message, action) from None

    return token_authorize


def _reconnect_key(config: Config) -> bytes:
    """The key reconnect secrets derive from (adapters/signaling_reconnect.py), kept in the data directory so that
    sessions that dropped before a restart can still reconnect; created (mode 0600) on first start."""
    path = Path(config.store.data_dir) / "reconnect.key"
    key = read_or_create_secret(path)
    if len(key) < 16:
        raise StartupError(f"{path} is damaged (shorter than 16 bytes): delete it to make a new one")
    return key


def _turn_credentials(config: Config) -> TurnCredentials | None:
    secret, ttl = config.rtc.turn_static_auth_secret, config.rtc.turn_credentials_expiration_minutes * 60
    if not secret:
        return None
    return lambda session_id, now_s: turn_credentials(secret=secret, session_id=session_id, now=now_s,
                                                      ttl_seconds=ttl)


def _guard_settings(config: Config) -> GuardSettings:
    """The listener's limits; ``http.max_connections`` is kept below the process's file descriptor limit."""
    wanted = config.http.max_connections
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    room = soft - 64 if soft != resource.RLIM_INFINITY else wanted  # sockets, the log, media workers' pipes
    if room > 0 and (wanted == 0 or wanted > room):
        log.log(logging.INFO if wanted == 0 else logging.WARNING,
                "http.max_connections = %s is over what the file descriptor limit (%s) allows; using %s",
                wanted or "0 (no limit)", soft, room)
        wanted = room
    return GuardSettings(max_message_bytes=MAX_MESSAGE_BYTES, join_timeout=config.http.join_timeout,
                         max_connections=wanted, max_connections_per_address=config.http.max_connections_per_address)


def _hypercorn_config(config: Config) -> hypercorn.config.Config:
    hc = hypercorn.config.Config()
    host = config.http.listen
    hc.bind = [f"[{host}]:{config.http.port}" if ":" in host else f"{host}:{config.http.port}"]
    hc.websocket_max_message_size = MAX_MESSAGE_BYTES
    hc.graceful_timeout = 2.0
    # Liveness: a socket silent for idle_timeout/3 s is pinged (the direct socket by its reader, ADR 0045; hypercorn's
    # every idle_timeout/3 s) and browsers answer with pongs, so a socket that stays silent
    # for idle_timeout s (a vanished peer, no FIN/RST) is closed and its session disconnected, rather than kept as
    # "connected" until TCP gives up minutes later.
    hc.websocket_ping_interval = max(1.0, config.http.idle_timeout / 3)
    hc.read_timeout = config.http.idle_timeout
    hc.alpn_protocols = ["http/1.1"]  # WebSockets over HTTP/2 would bypass app/http_inbound.py's frame checks
    hc.accesslog = None
    hc.errorlog = logging.getLogger("hypercorn.error")
    if config.http.tls_cert:
        hc.certfile = config.http.tls_cert
        hc.keyfile = config.http.tls_key
    return hc


def _metrics_hypercorn_config(config: Config) -> hypercorn.config.Config:
    hc = _hypercorn_config(config)
    address = config.metrics.address
    assert address is not None
    host, port = address
    hc.bind = [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]
    hc.certfile = hc.keyfile = None  # plain HTTP, like most Prometheus targets (put TLS in front if needed)
    return hc


async def serve(
    config: Config,
    *,
    control: ServerControl | None = None,
    handle_signals: bool = False,
    media: bool = True,
    plane_factory: Callable[[Config, Callable[[Any], None]], ServedPlane | None] | None = None,
    accept_broken_log: bool = False,
    task_status: trio.TaskStatus[ServerInfo] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run the server until ``control`` (or SIGTERM/SIGINT when ``handle_signals``) stops it.

    Raises ``StartupError`` before binding anything when the configuration is unsafe (open mode off loopback), when
    the event log is corrupt or fails verification (unless ``accept_broken_log``), or when the records written at
    start (recovery, configuration) cannot be made durable (a full disk): it never reports ready when it is not.
    """

    if config.cluster.enabled:  # one node of a cluster: app/cluster_server.py
        from .cluster_server import serve_cluster

        return await serve_cluster(config, control=control, handle_signals=handle_signals, media=media,
                                   plane_factory=plane_factory, accept_broken_log=accept_broken_log,
                                   task_status=task_status)
    if config.auth.mode == "open":
        problem = check_open_mode_allowed(config.http.listen)
        if problem is not None:
            raise StartupError(problem)
    control = control or ServerControl()
    recorder = _open_recorder(config, accept_broken_log=accept_broken_log)
    machine = recorder.machine
    hub: SignalingHub | None = None
    uninstall_holds: Callable[[], None] = _nothing
    try:
        hub = SignalingHub(recorder, machine, settings=_hub_settings(config), authorize=_authorize(config),
                           turn_credentials=_turn_credentials(config), reconnect_key=_reconnect_key(config))
        hub.on_fatal = lambda exc: control.stop()
        hub.counters.store_ops["open"] += 1
        wanted = (config.calls.max_participants, config.calls.reconnect_window_seconds * 1000,
                  config.calls.allow_screen_sharing)
        current = machine.config
        if (current.max_participants, current.reconnect_window_ms, current.allow_screen_sharing) != wanted:
            hub.feed(ev.Configure(at=int(time.time() * 1000), max_participants=wanted[0],
                                  reconnect_window_ms=wanted[1], allow_screen_sharing=wanted[2]))
        plane: ServedPlane | None = None
        if media:
            plane = (plane_factory or _make_plane)(config, hub.emit)
            if plane is not None:
                hub.plane = plane
        registry = build_registry(hub, plane, VERSION)
        if config.metrics.loop_holds:  # how long the event loop is held, and by what (adapters/loop_holds.py)
            holds, uninstall_holds = install_loop_holds()
            registry.register(LoopHoldCollector(holds))
        if isinstance(plane, PlaneRouter):
            from callsd.adapters.media.placement_metrics import PlacementCollector

            registry.register(PlacementCollector(plane))
        http_counters = GuardCounters()
        registry.register(GuardCollector(http_counters))
        app = ShieldSend(create_app(hub, config, registry, http_counters))
        async with trio.open_nursery() as nursery:
            await nursery.start(hub.run)
            await hub.flush()  # what start-up recorded is durable before anything is bound or called ready
            if hub.fatal is not None:
                raise StartupError(f"the event log cannot record: {hub.fatal.__cause__ or hub.fatal}")
            rtc_address = None
            if plane is not None:
                rtc_address = await nursery.start(plane.serve)
            # After the new configuration, and once nothing but the listener is left to start: sessions still
            # connected when the last process stopped drop now, under this process's reconnect window, so the window
            # runs while their clients can reach the server, not while the media plane starts (worker processes,
            # rtcd logins: seconds under load); those that dropped before keep their deadline (docs/protocol.md).
            hub.recover()
            await hub.flush()
            if hub.fatal is not None:
                raise StartupError(f"the event log cannot record: {hub.fatal.__cause__ or hub.fatal}")
            direct = SignalingUpgrade(hub, config, http_counters) if config.http.signaling_socket == "direct" else None
            binds = await nursery.start(partial(serve_http, app, _hypercorn_config(config), _guard_settings(config),
                                                http_counters, direct=direct))
            metrics_url = ""
            if config.metrics.listen:
                # Its own counters and caps: a flood of the HTTP port must not lock Prometheus out, nor the reverse.
                metrics_binds = await nursery.start(partial(
                    serve_http, ShieldSend(create_metrics_app(hub, config, registry)), _metrics_hypercorn_config(config),
                    GuardSettings(max_message_bytes=MAX_MESSAGE_BYTES, join_timeout=config.http.join_timeout,
                                  max_connections=METRICS_MAX_CONNECTIONS), GuardCounters()))
                metrics_url = metrics_binds[0].rstrip("/") + "/metrics"
                log.info("metrics on %s", metrics_url)
            if handle_signals:
                await nursery.start(_watch_signals, control)
            url = binds[0].rstrip("/") + "/"
            host, _, port = binds[0].split("://", 1)[1].rpartition(":")
            info = ServerInfo(url=url, http_host=host.strip("[]"), http_port=int(port),
                              rtc_address=(str(rtc_address[0]), int(rtc_address[1])) if rtc_address else None,
                              hub=hub, metrics_url=metrics_url,
                              rtc_advertised=_advertised_line(plane))
            task_status.started(info)
            await control.wait()
            if control.mode == "drain":
                log.info("draining: waiting up to %ss for calls to end", config.shutdown.drain_timeout)
                drained = await _drain(hub, control, config.shutdown.drain_timeout)
                log.info("drain %s", "complete" if drained else "timed out")
            with trio.move_on_after(5.0):  # the last events (call_ended...) wait for their commit: send them
                await hub.flush()
            hub.close_all(1001, "server shutting down")
            with trio.move_on_after(1.0):
                while hub.open_connections:
                    await trio.sleep(0.01)
            with trio.move_on_after(10.0):  # the Disconnects of the closed sockets reach the log
                await hub.flush()
            nursery.cancel_scope.cancel()
        if hub.fatal is not None:
            raise ServerFailed(f"stopped: the event log failed ({hub.fatal!r}); restart to recover from the log")
    finally:
        uninstall_holds()
        recorder.store.close()
        if hub is not None:
            hub.counters.store_ops["close"] += 1


def _nothing() -> None:
    """What there is to undo when nothing was installed."""


async def _drain(hub: SignalingHub, control: ServerControl, timeout: float) -> bool:
    """Drain, but let a later ``stop()`` (a second signal) cut it short."""
    result = False
    async with trio.open_nursery() as nursery:

        async def watch_stop() -> None:
            while control.mode != "stop":
                await trio.sleep(0.05)
            nursery.cancel_scope.cancel()

        nursery.start_soon(watch_stop)
        result = await hub.drain(timeout)
        nursery.cancel_scope.cancel()
    return result


async def _watch_signals(control: ServerControl, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
    """SIGTERM drains, a second signal (or SIGINT) stops. Started with ``nursery.start``: the handlers are in place
    before the server says it is ready, so a SIGTERM right after "ready" drains instead of killing the process."""
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        task_status.started()
        async for signum in signals:
            if signum == signal.SIGTERM and not control.mode:
                print("callsd: SIGTERM received, draining (SIGINT or SIGTERM again to stop now)", file=sys.stderr,
                      flush=True)
                control.drain()
            else:
                print(f"callsd: {signal.Signals(signum).name} received, stopping", file=sys.stderr, flush=True)
                control.stop()
