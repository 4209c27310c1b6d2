"""``callsd serve`` as one node of a cluster (``cluster.enabled``; docs/cluster.md, docs/adr/0017).

What differs from a single server (app/server.py): there is no node-wide machine. Each channel's calls are hosted
by the node holding the channel's lease, on a hub of their own over the channel's log stream
(adapters/cluster/host.py); a client socket is served by this node's front (adapters/cluster/front.py), which
greets it and pipes it to wherever its channel is hosted. The same HTTP listener serves the clients' routes and the
node-to-node relay link (``/internal/v1/relay``, authenticated by a key derived from ``cluster.secret``).

Built here, where the configuration is known: the hub factory (settings, auth, TURN credentials, the shared
reconnect key, ``Configure`` when the call settings changed, recovery of a rebuilt channel) and the Quart app.
"""

from __future__ import annotations

import logging
import ssl
import time
from functools import partial
from typing import Any

import trio
from callsd.adapters.cluster.directory import Directory, NodeInfo
from callsd.adapters.cluster.host import MakeHub
from callsd.adapters.cluster.link import LINK_HEADER, LINK_PATH, authentic, reconnect_key
from callsd.adapters.cluster.node import ClusterNode
from callsd.adapters.metrics import render_metrics
from callsd.adapters.process_metrics import ProcessStats
from callsd.adapters.signaling import SignalingHub
from callsd.adapters.signaling_protocol import MAX_MESSAGE_BYTES, PROTOCOL_VERSION
from callsd.adapters.store.recorder import CallRecorder
from callsd.core.calls import events as ev
from callsd.core.calls.eventlog import EventLogError
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from quart import Response, request, websocket
from quart_trio import QuartTrio

from .auth import check_open_mode_allowed
from .config import Config
from .http_guard import TICKET_KEY, ConnectionTicket, GuardCounters, GuardSettings, serve_http
from .http_policy import HOST_EXEMPT_PATHS, metrics_authorized
from .http_routes import STATIC_DIR, NodeView, Unavailable, install_node_routes, rtc_health
from .quart_ws import LeanWebsocketConnection
from .server import (
    METRICS_MAX_CONNECTIONS,
    VERSION,
    ServerControl,
    ServerInfo,
    ShieldSend,
    StartupError,
    _authorize,
    _guard_settings,
    _hub_settings,
    _hypercorn_config,
    _make_plane,
    _metrics_hypercorn_config,
    _origin_allowed,
    _QuartTransport,
    _turn_credentials,
    _watch_signals,
    install_host_check,
)

__all__ = ["serve_cluster"]

log = logging.getLogger("callsd.cluster")


def _hub_factory(config: Config, node_plane: list[Any]) -> MakeHub:
    key = reconnect_key(config.cluster.secret)

    def make_hub(recorder: CallRecorder) -> SignalingHub:
        hub = SignalingHub(recorder, recorder.machine, settings=_hub_settings(config), authorize=_authorize(config),
                           turn_credentials=_turn_credentials(config), reconnect_key=key)
        wanted = (config.calls.max_participants, config.calls.reconnect_window_seconds * 1000,
                  config.calls.allow_screen_sharing)
        current = recorder.machine.config
        if (current.max_participants, current.reconnect_window_ms, current.allow_screen_sharing) != wanted:
            hub.feed(ev.Configure(at=int(time.time() * 1000), max_participants=wanted[0],
                                  reconnect_window_ms=wanted[1], allow_screen_sharing=wanted[2]))
        hub.recover()  # sessions of a dead owner are disconnected: their reconnect window starts now
        if node_plane:
            hub.plane = node_plane[0]
        return hub

    return make_hub


class _ClusterCollector:
    """Per-node cluster metrics (the node's name is the ``node`` label)."""

    def __init__(self, node: ClusterNode) -> None:
        self.node = node

    def collect(self) -> Any:
        node, c = self.node, self.node.counters
        labels = ["node"]
        name = [node.info.node_id]
        owned = GaugeMetricFamily("callsd_cluster_calls_owned", "Calls hosted on this node (it holds their lease)",
                                  labels=labels)
        owned.add_metric(name, node.calls_owned())
        yield owned
        hosted = GaugeMetricFamily("callsd_cluster_channels_hosted", "Channels whose lease this node holds",
                                   labels=labels)
        hosted.add_metric(name, sum(1 for h in node.hosts.values() if h.live))
        yield hosted
        sockets = GaugeMetricFamily("callsd_cluster_client_sockets",
                                    "Client WebSockets open on this node (served here or relayed to the owner)",
                                    labels=labels)
        sockets.add_metric(name, c.clients_open)
        yield sockets
        for metric, value, text in (
            ("client_sockets_accepted", c.clients_total, "Client WebSockets this node accepted"),
            ("relayed_out", c.relayed_out, "Relay links opened from this node to a call's owner"),
            ("relayed_in", c.relayed_in, "Relay links accepted by this node for calls it hosts"),
            ("sessions_resumed", c.resumed, "Sessions resumed on a new owner after theirs stopped"),
            ("leases_acquired", c.hosted_total, "Channel leases this node acquired"),
            ("lease_losses", c.lease_losses, "Hosted channels stopped because the lease was lost or refused"),
            ("lease_renewals", node.lease_renewals(), "Lease renewals of the channels this node hosted"),
        ):
            family = CounterMetricFamily(f"callsd_cluster_{metric}", text, labels=labels)
            family.add_metric(name, value)
            yield family
        latency = HistogramMetricFamily("callsd_cluster_store_seconds",
                                        "PostgreSQL latency of this node's writes: op=append is one group commit "
                                        "(every acknowledged input waits for it), op=renew_lease one lease renewal",
                                        labels=["node", "op"])
        for op, (buckets, total) in sorted(node.store_timing.snapshot().items()):
            latency.add_metric([*name, op], buckets, total)
        yield latency


def _metrics_response(config: Config, registry: CollectorRegistry) -> Response:
    """The node's Prometheus exposition, behind ``metrics.token`` when one is set."""
    if not metrics_authorized(request.headers.get("Authorization"), config.metrics.token):
        return Response("a bearer token is required (metrics.token)", status=401,
                        headers={"WWW-Authenticate": 'Bearer realm="callsd metrics"'})
    body, content_type = render_metrics(registry)
    return Response(body, content_type=content_type)


def _create_metrics_app(config: Config, registry: CollectorRegistry) -> QuartTrio:
    """The app of ``metrics.listen``: ``/metrics`` only, as on a single server."""
    app = QuartTrio(__name__, static_folder=None)

    @app.route("/metrics")
    async def metrics() -> Response:
        return _metrics_response(config, registry)

    return app


def _create_app(node: ClusterNode, config: Config, registry: CollectorRegistry, draining: list[bool],
                node_plane: list[Any], counters: GuardCounters) -> QuartTrio:
    app = QuartTrio(__name__, static_folder=str(STATIC_DIR), static_url_path="/static")
    app.asgi_websocket_class = LeanWebsocketConnection  # as on a single server (quart_ws.py)
    app.config["MAX_CONTENT_LENGTH"] = MAX_MESSAGE_BYTES

    install_host_check(app, config, counters, HOST_EXEMPT_PATHS | {LINK_PATH})  # node links authenticate instead

    def health() -> dict[str, Any]:
        return {"node": node.info.node_id, **rtc_health(node_plane[0] if node_plane else None)}

    async def calls() -> list[dict[str, Any]]:
        """The ongoing calls of the whole cluster, whichever node hosts them (same answer as a single server)."""
        try:
            return await node.ongoing_calls()
        except Exception as exc:  # the database is away: say so rather than list a part as the whole
            log.warning("listing the cluster's calls failed: %r", exc)
            raise Unavailable("the cluster's directory is unreachable") from exc

    async def metrics() -> Response:
        return _metrics_response(config, registry)

    install_node_routes(app, config, NodeView(version=VERSION, draining=lambda: bool(draining), health=health,
                                              metrics=metrics, calls=calls))

    @app.websocket("/api/v1/websocket")
    async def ws() -> Response | None:
        origin = websocket.headers.get("Origin")
        if origin is not None and not _origin_allowed(origin, websocket.headers.get("Host", ""), config):
            return Response("cross-origin WebSocket refused (see http.allowed_origins)", status=403)
        await websocket.accept()
        ticket = websocket.scope.get("state", {}).get(TICKET_KEY)
        transport = _QuartTransport(websocket._get_current_object(),  # type: ignore[attr-defined]
                                    ticket if isinstance(ticket, ConnectionTicket) else None)
        await node.serve_client(transport, websocket.args.get("token"))
        return None

    @app.websocket(LINK_PATH)
    async def relay() -> Response | None:
        if not authentic(websocket.headers.get(LINK_HEADER), config.cluster.secret):
            return Response("not a node of this cluster", status=403)
        channel, session = websocket.args.get("channel", ""), websocket.args.get("session", "")
        epoch = websocket.args.get("epoch", "")
        if not channel or not session or not epoch.isdigit():
            return Response("channel, session and epoch are required", status=400)
        host = await node.accept_link(channel, int(epoch))
        if host is None:
            return Response("not the owner of this channel at this epoch", status=409)
        await websocket.accept()
        ticket = websocket.scope.get("state", {}).get(TICKET_KEY)
        if isinstance(ticket, ConnectionTicket):
            ticket.joined()  # a node's link: the join deadline is its client's, enforced on the front node
        link = _QuartTransport(websocket._get_current_object())  # type: ignore[attr-defined]
        await node.serve_link(link, host, session, websocket.args.get("token"))
        return None

    return app


async def serve_cluster(config: Config, *, control: ServerControl | None = None, handle_signals: bool = False,
                        media: bool = True, plane_factory: Any = None, accept_broken_log: bool = False,
                        task_status: trio.TaskStatus[ServerInfo] = trio.TASK_STATUS_IGNORED) -> None:
    """Run this node until stopped; SIGTERM releases every lease (another node takes the calls at once)."""
    from callsd.adapters.store.postgres import PostgresStore

    if config.auth.mode == "open":
        problem = check_open_mode_allowed(config.http.listen)
        if problem is not None:
            raise StartupError(problem)
    control = control or ServerControl()
    url = config.store.url
    try:  # migrates the schema; its connection factory serves the directory (its own connection is not needed)
        base = await trio.to_thread.run_sync(partial(PostgresStore, url))
    except EventLogError as exc:
        raise StartupError(f"the event log: {exc}") from None
    base.close()
    cluster = config.cluster
    directory = Directory(base.connect, NodeInfo(cluster.node_id, cluster.advertise, cluster.is_handler),
                          alive_seconds=3 * cluster.lease_seconds)
    node_plane: list[Any] = []
    hub_settings = _hub_settings(config)
    link_ssl = ssl.create_default_context(cafile=cluster.link_ca or None) if cluster.link_tls else None
    node = ClusterNode(url=url, directory=directory, lease_seconds=cluster.lease_seconds, secret=cluster.secret,
                       make_hub=_hub_factory(config, node_plane), idle_seconds=cluster.idle_release_seconds,
                       link_ssl=link_ssl,
                       hello=lambda sid: {"session_id": sid, "protocol": PROTOCOL_VERSION, "protocol_minor": 0,
                                          "server_version": hub_settings.server_version,
                                          "auth_mode": hub_settings.auth_mode})
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ProcessStats("callsd"))
    registry.register(_ClusterCollector(node))
    draining: list[bool] = []
    http_counters = GuardCounters()
    app = ShieldSend(_create_app(node, config, registry, draining, node_plane, http_counters))
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(node.run)
            rtc_address = None
            if media:
                plane = (plane_factory or _make_plane)(config, node.emit)
                if plane is not None:
                    node_plane.append(plane)
                    rtc_address = await nursery.start(plane.serve)
            binds = await nursery.start(partial(serve_http, app, _hypercorn_config(config), _guard_settings(config),
                                                http_counters))
            metrics_url = ""
            if config.metrics.listen:  # its own caps: a flood of the HTTP port must not lock Prometheus out
                metrics_binds = await nursery.start(partial(
                    serve_http, ShieldSend(_create_metrics_app(config, registry)), _metrics_hypercorn_config(config),
                    GuardSettings(max_message_bytes=MAX_MESSAGE_BYTES, join_timeout=config.http.join_timeout,
                                  max_connections=METRICS_MAX_CONNECTIONS), GuardCounters()))
                metrics_url = metrics_binds[0].rstrip("/") + "/metrics"
                log.info("metrics on %s", metrics_url)
            if handle_signals:
                await nursery.start(_watch_signals, control)
            bound = binds[0].rstrip("/") + "/"
            host, _, port = binds[0].split("://", 1)[1].rpartition(":")
            log.info("cluster node %s (%s) serving %s, relay links on %s", cluster.node_id,
                     "handler" if cluster.is_handler else "not a handler", bound, cluster.advertise)
            task_status.started(ServerInfo(url=bound, http_host=host.strip("[]"), http_port=int(port),
                                           rtc_address=(str(rtc_address[0]), int(rtc_address[1])) if rtc_address
                                           else None, hub=node, metrics_url=metrics_url))
            await control.wait()
            draining.append(True)
            await node.release_all()  # drain or stop: hand every call to another node now
            with trio.move_on_after(1.0):
                await trio.sleep(0.2)  # the MOVED closes reach the relaying fronts
            nursery.cancel_scope.cancel()
    finally:
        directory.close()
        node.renewals.close()
