"""Remote rtcd hosts behind one DNS name, as the hosts of ``PlaneRouter`` (docs/rtcd.md, "rtcd HA").

``RtcdHosts.run(router)`` is what ``PlaneRouter.serve`` runs instead of starting media workers: the same placement
(router.py: the accepting host with the lowest ``cpu_load``, ties by fewest sessions; a call stays on its host) and
the same recovery (a host whose link breaks: ``RemotePlane`` reports its sessions closed, their next offer moves
them, ``SessionMoved`` → ``restore_routes``) serve both.

- Every ``resolve_interval`` seconds the name of ``rtc.rtcd_url`` is resolved (the system resolver: /etc/hosts,
  DNS); every address is a host. A new address gets a control link (``POST /login``, then ``/ws``). An address that
  left the answer stops accepting new calls (``accepting = False``); its calls go on while its link lives. A
  failed resolution keeps the previous answer (a DNS outage should not stop placement).
- Every ``poll_interval`` seconds each linked host's ``GET /system`` gives its ``cpu_load`` and ``draining``; a
  host that does not answer, or drains, stops accepting new calls until it answers again.
- A link that breaks is not retried while its old plane is reported lost; the next resolution links the address
  afresh if it is still listed (a restarted rtcd comes back into placement by itself). However the link ends (the
  host closed it, or an exception in the link or its health poll cancelled the plane's pump), its plane is
  reported lost: a plane left "alive" on a dead link would take moved calls and never answer them.
"""

from __future__ import annotations

import logging
import socket
import ssl
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import trio

from .remote import RemotePlane
from .rtcd_client import RtcdApiError, RtcdEndpoint, login, open_link, system

if TYPE_CHECKING:
    from .router import PlaneRouter

__all__ = ["RtcdHosts", "HostState"]

log = logging.getLogger("callsd.media.rtcd")

FIRST_ROUND_TIMEOUT = 20.0


@dataclass(slots=True)
class HostState:
    """One address of the name: whether DNS lists it, whether it answers, its plane while linked."""

    endpoint: RtcdEndpoint
    listed: bool = True
    healthy: bool = True
    linking: bool = False
    plane: RemotePlane | None = None
    token: str = ""
    link_failures: int = 0  # consecutive failed link attempts (logged once, then at debug level)


class RtcdHosts:
    def __init__(self, url: str, client_id: str, auth_key: str, *, resolve_interval: float = 10.0,
                 poll_interval: float = 2.0, ssl_context: ssl.SSLContext | None = None) -> None:
        self.base = RtcdEndpoint.from_url(url)
        self.url = url
        self.client_id = client_id
        self._auth_key = auth_key
        self.resolve_interval = resolve_interval
        self.poll_interval = min(poll_interval, resolve_interval)
        self.ssl_context = ssl_context
        self.hosts: dict[str, HostState] = {}

    async def resolve(self) -> list[str] | None:
        """The name's addresses now (sorted), or None when resolution failed."""
        try:
            infos = await trio.socket.getaddrinfo(self.base.name, self.base.port, type=socket.SOCK_STREAM)
        except OSError as exc:
            log.warning("rtcd: cannot resolve %s: %s; keeping %d known hosts", self.base.name, exc, len(self.hosts))
            return None
        return sorted({str(info[4][0]) for info in infos})

    def _update(self, plane: RemotePlane | None, host: HostState) -> None:
        if plane is not None:
            plane.accepting = host.listed and host.healthy and not plane.draining

    async def run(self, router: PlaneRouter, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            await self._round(router, nursery)
            with trio.move_on_after(FIRST_ROUND_TIMEOUT):
                while any(h.linking for h in self.hosts.values()):
                    await trio.sleep(0.05)
            linked = [h.plane for h in self.hosts.values() if h.plane is not None]
            if not linked:
                log.error("rtcd: no host of %s could be linked yet; calls wait for one", self.url)
            task_status.started(linked[0].address if linked else None)
            while True:
                await trio.sleep(self.resolve_interval)
                await self._round(router, nursery)

    async def _round(self, router: PlaneRouter, nursery: trio.Nursery) -> None:
        addresses = await self.resolve()
        if addresses is None:
            return
        for address, known in self.hosts.items():
            if known.listed != (address in addresses):
                log.info("rtcd host %s %s DNS", known.endpoint.label, "is back in" if not known.listed else "left")
            known.listed = address in addresses
            self._update(known.plane, known)
        for address in addresses:
            host = self.hosts.get(address)
            if host is None:
                host = self.hosts[address] = HostState(endpoint=RtcdEndpoint(
                    tls=self.base.tls, name=self.base.name, port=self.base.port, address=address))
            if host.plane is None and not host.linking:
                host.linking = True
                nursery.start_soon(self._link, router, host)

    async def _link(self, router: PlaneRouter, host: HostState) -> None:
        """Log in, open the link, serve it until it breaks; the host is then unlinked (the next round relinks)."""
        step = "at POST /login"  # which step failed, for the log: a bare TooSlowError does not say
        try:
            host.token = await login(host.endpoint, self.client_id, self._auth_key, self.ssl_context)
            step = "at the /ws upgrade"
            async with open_link(host.endpoint, host.token, self.ssl_context) as stream, \
                    trio.open_nursery() as nursery:
                plane = RemotePlane(stream, router.emit, name=f"rtcd {host.endpoint.label}")
                plane.reports_counters = False  # the host's packets are its own metrics (callsd_rtcd_*)
                await nursery.start(plane.serve)
                host.plane = plane
                host.healthy = True
                host.link_failures = 0
                self._update(plane, host)
                router.add_plane(plane)
                host.linking = False
                log.info("rtcd host %s linked (media %s)", host.endpoint.label, plane.address)
                nursery.start_soon(self._poll, host, plane)
                step = "after linking"
                while plane.alive:
                    await trio.sleep(0.1)
                nursery.cancel_scope.cancel()
        except Exception as exc:  # OSError, RtcdApiError, TooSlowError, a refused upgrade, a TLS failure
            if host.plane is not None:  # the link was up: however it ended, its sessions are gone with it
                host.plane.lost(f"link failed: {exc!r}")
            host.link_failures += 1
            cause = f" ({exc.__cause__!r})" if exc.__cause__ is not None else ""  # trio wraps TLS errors
            log.log(logging.WARNING if host.link_failures == 1 else logging.DEBUG,
                    "rtcd host %s cannot be linked (%s): %r%s (retried every %gs while it is in DNS)",
                    host.endpoint.label, step, exc, cause, self.resolve_interval)
        finally:
            host.linking = False
            host.plane = None

    async def _poll(self, host: HostState, plane: RemotePlane) -> None:
        while plane.alive:
            try:
                try:
                    load = await system(host.endpoint, host.token, self.ssl_context)
                except RtcdApiError as exc:
                    if exc.status != 401:
                        raise
                    host.token = await login(host.endpoint, self.client_id, self._auth_key, self.ssl_context)
                    load = await system(host.endpoint, host.token, self.ssl_context)
                plane.cpu_load = float(load.get("cpu_load", 0.0))
                plane.draining = bool(load.get("draining", False))
                if not host.healthy:
                    log.info("rtcd host %s answers again", host.endpoint.label)
                host.healthy = True
            except (OSError, RtcdApiError, trio.TooSlowError, ValueError) as exc:
                if host.healthy:
                    log.warning("rtcd host %s failed its health check: %r", host.endpoint.label, exc)
                host.healthy = False
            self._update(plane, host)
            await trio.sleep(self.poll_interval)
