"""The media plane's face to the network: the addresses its SDP advertises, ICE-TCP, and the start-up system check.

``MediaPlane`` owns one ``PlaneNetwork``. Before ``start`` the candidate is planned without name resolution or STUN
(``candidate()`` is usable at once, e.g. for sessions opened before the port is bound); ``await
network.start(nursery, endpoint)`` plans it for real (addresses.py, advertiser.py: STUN discovery may take up to
5 s), logs the system check (system_check.py), keeps the plan fresh in the background and, with
``rtc.ice_port_tcp``, opens the ICE-TCP listener (ice_tcp.py) in front of the endpoint's UDP port.
"""

from __future__ import annotations

import logging
from typing import Any

import trio

from .addresses import display_address, parse_host_override, plan_advertised
from .advertiser import Advertiser, rtc_bind
from .ice_tcp import IceTcpListener
from .plane_session import PlaneSettings
from .system_check import check_system
from .transport import UdpEndpoint

__all__ = ["PlaneNetwork"]

log = logging.getLogger("callsd.media.plane")


class PlaneNetwork:
    """See the module docstring. ``config``: the ``[rtc]`` settings (``RtcConfig`` or ``PlaneConfig``)."""

    def __init__(self, config: PlaneSettings) -> None:
        self.config = config
        self.bind = rtc_bind(config)
        self.advertiser = Advertiser(config)
        self.ice_tcp: IceTcpListener | None = None
        self.tcp_port = 0

    async def start(self, nursery: trio.Nursery, endpoint: UdpEndpoint) -> None:
        assert endpoint.address is not None, "the endpoint is bound first"
        await self.advertiser.start(endpoint.address[1])
        self._log_system_check(endpoint)
        nursery.start_soon(self.advertiser.run)
        if self.config.ice_port_tcp:
            self.ice_tcp = IceTcpListener(host=self.bind, port=self.config.ice_port_tcp, udp_address=endpoint.address)
            self.tcp_port = await nursery.start(self.ice_tcp.serve)

    def candidate(self) -> tuple[tuple[str, ...], int]:
        """The advertised addresses and UDP port (before ``start``: planned without STUN or name resolution)."""
        adv = self.advertiser.current
        if adv is None:
            c = self.config
            adv = plan_advertised(bind=self.bind, port=c.ice_port_udp, dual_stack=c.enable_ipv6,
                                  override=parse_host_override(c.ice_host_override),
                                  port_override=c.ice_host_port_override, resolve=lambda name: [name])
        return adv.addresses, adv.port

    def advertised_text(self) -> str:
        hosts, port = self.candidate()
        return ", ".join(display_address((host, port)) for host in hosts)

    def client_address(self, address: Any) -> Any:
        """Where a peer really is: the TCP client behind an ICE-TCP relay address, else ``address`` itself."""
        over_tcp = self.ice_tcp.client_address(address) if self.ice_tcp is not None else None
        return over_tcp or address

    def counters(self) -> dict[str, int]:
        return self.ice_tcp.counters.as_dict() if self.ice_tcp is not None else {}

    @staticmethod
    def _log_system_check(endpoint: UdpEndpoint) -> None:
        sizes = endpoint.buffer_sizes
        if sizes is None:
            return
        report = check_system(rcvbuf=endpoint.config.rcvbuf, sndbuf=endpoint.config.sndbuf,
                              got=(sizes.rcvbuf // 2, sizes.sndbuf // 2))
        if report.ok:
            log.info("system: %s", "; ".join(report.lines()))
        else:
            log.warning("system: %s", "\n  ".join(report.lines()))
