"""``ClusterNode``: this node of the cluster — the channels it hosts, where every other channel is, its counters.

Ownership (docs/adr/0017): a channel is hosted by the node that holds its lease. The first client of a channel
that lands on a handler node makes that node take the lease (``route``: no live lease → acquire); a client landing
anywhere else is relayed to the lease's owner, found in the database (``Directory.owner_of``). A non-handler node
(``cluster.is_handler = false``) never acquires: it asks a live handler to host the channel (a link at epoch 0).
When the owner dies, its lease expires after ``cluster.lease_seconds``; the next client frame routed to the
channel (a relaying front resuming its sessions, or a client reconnecting through the load balancer) finds no live
lease and a handler takes it at the next epoch, rebuilding the channel from its log.

The media plane is the node's (one UDP port); its events carry a session id and go to the hub of the channel whose
machine knows that session (``emit``).
"""

from __future__ import annotations

import logging
import secrets
import ssl
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import trio
from callsd.adapters.media.events import MediaEvent
from callsd.adapters.signaling_session import Transport
from callsd.adapters.store.lease_keeper import RenewalConnection
from callsd.adapters.store.pg_timing import StoreTiming

from .directory import Directory
from .front import Remote, serve_client
from .host import CallHost, MakeHub, open_host
from .link import link_key, unwrap, wrap

__all__ = ["ClusterNode", "ClusterCounters", "RouteFailed"]

log = logging.getLogger("callsd.cluster")

ROUTE_PAUSE = 0.2
PUBLISH_EVERY = 0.5  # how stale another node's part of /api/v1/channels may be, at most (plus a query)


class RouteFailed(Exception):
    """No node could host the channel in time (no handler alive, or the database unreachable)."""


@dataclass(slots=True)
class ClusterCounters:
    relayed_out: int = 0  # relay links this node opened for its clients
    relayed_in: int = 0  # relay links other nodes opened to calls hosted here
    resumed: int = 0  # sessions this node resumed on a new owner after theirs stopped
    hosted_total: int = 0  # channels this node took a lease for
    lease_losses: int = 0  # hosted channels that stopped for a reason other than this node stopping
    renewals_ended: int = 0  # lease renewals of channels no longer hosted (the current ones' are their keepers')
    clients_open: int = 0  # client WebSockets open on this node now (served here or relayed)
    clients_total: int = 0  # client WebSockets this node accepted


class ClusterNode:
    def __init__(self, *, url: str, directory: Directory, lease_seconds: float, secret: str, make_hub: MakeHub,
                 hello: Callable[[str], dict[str, Any]], idle_seconds: float = 60.0,
                 link_ssl: ssl.SSLContext | None = None) -> None:
        self.url = url
        self.directory = directory
        self.info = directory.node
        self.lease_seconds = lease_seconds
        self.link_key = link_key(secret)
        self.link_ssl = link_ssl  # relay links to other nodes over TLS (cluster.link_tls)
        self.make_hub = make_hub
        self._hello = hello
        self.hosts: dict[str, CallHost] = {}
        self.counters = ClusterCounters()
        self.store_timing = StoreTiming()  # append and lease renewal latency of every channel hosted here
        self.renewals = RenewalConnection(directory.connect)  # every hosted channel's lease renewals, in turn
        self.route_timeout = 2 * lease_seconds + 10
        self.idle_seconds = idle_seconds  # a hosted channel with no call and no socket this long is given up
        self._locks: defaultdict[str, trio.Lock] = defaultdict(trio.Lock)
        self._nursery: trio.Nursery | None = None
        # Set once at SIGTERM: this node hosts nothing more, and its fronts close their clients with
        # DRAINING_CLOSE so they reconnect through the balancer to a node that stays.
        self.draining = trio.Event()

    # ------------------------------------------------------------------ the front's Router

    def new_id(self) -> str:
        return secrets.token_urlsafe(12)

    def hello(self, session_id: str) -> dict[str, Any]:
        return self._hello(session_id)

    async def route(self, channel_id: str) -> CallHost | Remote:
        """Where the channel's calls run now: a host on this node, or another node's relay address."""
        with trio.move_on_after(self.route_timeout):
            while True:
                host = self.hosts.get(channel_id)
                if host is not None and host.live:
                    return host
                try:
                    owner = await self.directory.owner_of(channel_id)
                    if owner is not None and owner.live and owner.node_id != self.info.node_id and owner.advertise:
                        return Remote(owner.advertise, owner.epoch)
                    if owner is None or not owner.live:
                        if self.info.is_handler:
                            host = await self.host(channel_id)
                            if host is not None:
                                return host
                        else:
                            handler = await self.directory.a_handler()
                            if handler is not None:
                                return Remote(handler, 0)
                except Exception as exc:  # the database is away or refused: try again until the deadline
                    log.warning("routing channel %s failed: %r", channel_id, exc)
                await trio.sleep(ROUTE_PAUSE)
        raise RouteFailed(f"no node could host channel {channel_id!r} within {self.route_timeout:.0f} s")

    async def live_epoch(self, channel_id: str) -> int | None:
        """The epoch of the channel's live lease, None if no lease is live."""
        owner = await self.directory.owner_of(channel_id)
        return owner.epoch if owner is not None and owner.live else None

    @property
    def watch_every(self) -> float:
        return self.lease_seconds / 3

    # ------------------------------------------------------------------ hosting

    async def host(self, channel_id: str) -> CallHost | None:
        """Host the channel here if nobody's lease on it is live (a new epoch, rebuilt from its log)."""
        assert self._nursery is not None, "run() first"
        if self.draining.is_set():  # a released channel must not come back here: it would lapse, not be released
            return None
        async with self._locks[channel_id]:
            current = self.hosts.get(channel_id)
            if current is not None and current.live:
                return current
            host = await open_host(self.url, channel_id, self.info.node_id, self.lease_seconds, self.make_hub,
                                   self.store_timing, self.renewals)
            if host is None:
                return None
            self.hosts[channel_id] = host
            self.counters.hosted_total += 1
            await self._nursery.start(self._run_host, host)
            return host

    async def _run_host(self, host: CallHost, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            await host.run(idle_seconds=self.idle_seconds, task_status=task_status)
        finally:
            self.counters.renewals_ended += host.keeper.renewals
            if host.why not in ("node stopping", "node draining", "idle"):
                self.counters.lease_losses += 1
            if self.hosts.get(host.channel_id) is host:
                del self.hosts[host.channel_id]

    async def accept_link(self, channel_id: str, epoch: int) -> CallHost | None:
        """The host a relay link at ``epoch`` may talk to: this node's live host of the channel at that epoch
        (epoch 0: host it if nobody does); None to refuse (stale epoch, or another node owns it)."""
        host = self.hosts.get(channel_id)
        if host is None and epoch == 0 and self.info.is_handler:
            host = await self.host(channel_id)
        if host is None or not host.live or (epoch and epoch != host.epoch):
            return None
        return host

    async def serve_link(self, link: Transport, host: CallHost, session_id: str, query_token: str | None) -> None:
        """Serve one relayed client of ``host``: every frame carries the host's epoch, both ways."""
        self.counters.relayed_in += 1
        await link.send(wrap(host.epoch, ""))
        transport = _LinkTransport(link, host)
        async with trio.open_nursery() as nursery:
            async def watch() -> None:
                await host.stopped.wait()
                nursery.cancel_scope.cancel()

            nursery.start_soon(watch)
            await host.hub.serve_connection(transport, query_token=query_token, session_id=session_id, greet=False)
            nursery.cancel_scope.cancel()
        if not host.live:
            with trio.move_on_after(1):
                await link.close(4012, "call moved")

    async def serve_client(self, client: Transport, query_token: str | None) -> None:
        self.counters.clients_open += 1
        self.counters.clients_total += 1
        try:
            await serve_client(self, client, query_token)
        except RouteFailed as exc:
            log.error("%s", exc)
            with trio.move_on_after(1):
                await client.close(1013, "no node can host this call now; try again")
        finally:
            self.counters.clients_open -= 1

    # ------------------------------------------------------------------ the media plane's events

    def emit(self, event: MediaEvent) -> None:
        for host in list(self.hosts.values()):
            hub = host.hub
            if hub.machine.participant(event.session_id) is not None or event.session_id in hub.outbox.conns:
                hub.emit(event)
                return

    # ------------------------------------------------------------------ lifecycle

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        await self.directory.announce()
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            nursery.start_soon(self.directory.keep_announcing)
            nursery.start_soon(self._publish_calls)
            task_status.started()
            await trio.sleep_forever()

    async def release_all(self, timeout: float = 5.0) -> None:
        """Drain (SIGTERM): let every hosted channel's accepted inputs reach the log, then stop hosting it and
        release its lease, so the relaying nodes move its sessions to a new owner at once (not after the lease).
        From the start nothing is hosted here again (``host``), and this node's own clients are closed with
        ``DRAINING_CLOSE`` (the front): without both, a client of this node whose host stopped would be resumed
        here, re-taking the lease just released, and this node's exit would leave it to lapse."""
        self.draining.set()
        hosts = list(self.hosts.values())
        with trio.move_on_after(timeout / 2):
            for host in hosts:
                await host.hub.flush()
        for host in hosts:
            host.release_when_stopped = True
            host.stop("node draining")
        with trio.move_on_after(timeout / 2):
            for host in hosts:
                await host.ended.wait()

    async def ongoing_calls(self) -> list[dict[str, Any]]:
        """Every ongoing call of the cluster (``/api/v1/channels``): this node's hosted channels as they are now,
        the others' as their live owners last published them (every ``PUBLISH_EVERY`` seconds)."""
        listed = await self.directory.published_calls()
        for host in list(self.hosts.values()):
            if host.live:
                listed[host.channel_id] = _call_summaries(host)
        return [call for channel in sorted(listed) for call in listed[channel]]

    async def _publish_calls(self) -> None:
        """Publish each hosted channel's calls when they changed, at the channel's lease epoch (a stale owner's
        publication is hidden by the database: only the live lease's epoch is listed)."""
        published: dict[str, tuple[int, list[dict[str, Any]]]] = {}
        while True:
            await trio.sleep(PUBLISH_EVERY)
            for host in list(self.hosts.values()):
                calls = _call_summaries(host)
                if not host.live or published.get(host.channel_id) == (host.epoch, calls):
                    continue
                try:
                    await self.directory.publish_calls(host.channel_id, host.epoch, calls)
                    published[host.channel_id] = (host.epoch, calls)
                except Exception as exc:  # the database is away: the next round tries again
                    log.warning("publishing the calls of channel %s failed: %r", host.channel_id, exc)
            for gone in set(published) - set(self.hosts):
                del published[gone]

    def lease_renewals(self) -> int:
        """Lease renewals by this node since it started (a counter: it never goes down)."""
        return self.counters.renewals_ended + sum(host.keeper.renewals for host in self.hosts.values())

    def calls_owned(self) -> int:
        return sum(len(host.hub.machine.calls()) for host in self.hosts.values() if host.live)


def _call_summaries(host: CallHost) -> list[dict[str, Any]]:
    """The lobby's view of a hosted channel's ongoing calls (the single server's ``/api/v1/channels`` rows)."""
    return [{"channel_id": c.channel_id, "call_id": c.call_id, "participants": len(c.participants)}
            for c in host.hub.machine.calls()]


class _LinkTransport:
    """The hub's ``Transport`` for a relayed client: refuses frames of another epoch, stamps its own on each."""

    def __init__(self, link: Transport, host: CallHost) -> None:
        self.link, self.host = link, host

    async def receive(self) -> str | bytes | None:
        message = await self.link.receive()
        if message is None:
            return None
        epoch, frame = unwrap(message)
        if epoch != self.host.epoch or not self.host.live:
            log.warning("channel %s: relay frame of epoch %d refused (hosting epoch %d)", self.host.channel_id,
                        epoch, self.host.epoch)
            return None
        return frame

    async def send(self, text: str) -> None:
        if not self.host.live:
            raise RuntimeError("this node no longer hosts the call")
        await self.link.send(wrap(self.host.epoch, text))

    async def close(self, code: int, reason: str) -> None:
        await self.link.close(code, reason)
