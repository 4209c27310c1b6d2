"""The advertised RTC address of a running media plane: planned at start, re-planned periodically, logged on change.

``Advertiser(settings)`` reads the ``[rtc]`` settings that bear on it (``AdvertiseSettings``). ``await
advertiser.start(bound_port)`` makes the first plan (with STUN discovery when the override is empty and a ``stun:``
URL is configured: up to 5 s), logs exactly what will be advertised and every warning, and returns it; ``await
advertiser.run()`` re-plans every ``advertise_refresh_seconds`` when something can change (a host-name override is
re-resolved, the STUN server asked again) and logs changes. ``current`` is what new SDP uses.

``plan_for(settings, bound_port)`` is the same planning, blocking, for ``callsd config check``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import trio

from .addresses import Advertised, interface_addresses, parse_host_override, plan_advertised
from .stun_discovery import StunAnswer, first_stun_url, query_stun

__all__ = ["AdvertiseSettings", "Advertiser", "plan_for", "advertised_by", "rtc_bind", "STUN_TIMEOUT"]

log = logging.getLogger("callsd.media.advertise")

STUN_TIMEOUT = 5.0


class _IceServer(Protocol):
    @property
    def urls(self) -> Sequence[str]: ...


class AdvertiseSettings(Protocol):
    """The ``[rtc]`` settings the advertised address depends on (``RtcConfig`` and ``PlaneConfig`` have them)."""

    @property
    def ice_address_udp(self) -> str: ...
    @property
    def ice_host_override(self) -> str: ...
    @property
    def ice_host_port_override(self) -> int: ...
    @property
    def ice_servers(self) -> Sequence[_IceServer]: ...
    @property
    def advertise_refresh_seconds(self) -> int: ...
    @property
    def enable_ipv6(self) -> bool: ...


def rtc_bind(settings: AdvertiseSettings) -> str:
    """The address the RTC socket binds: ``::`` (dual-stack) for a wildcard bind with ``rtc.enable_ipv6``."""
    return "::" if settings.enable_ipv6 and settings.ice_address_udp in ("0.0.0.0", "::") else settings.ice_address_udp


def _stun_url(settings: AdvertiseSettings) -> str | None:
    return first_stun_url(url for server in settings.ice_servers for url in server.urls)


def plan_for(settings: AdvertiseSettings, bound_port: int, *,
             stun_timeout: float = STUN_TIMEOUT) -> tuple[Advertised, StunAnswer | None]:
    """Plan the advertised addresses now (blocking: resolution and the STUN query). Also returns the STUN answer
    when discovery was tried."""
    override = parse_host_override(settings.ice_host_override)
    answer = None
    url = _stun_url(settings)
    bind = rtc_bind(settings)
    dual_stack = bind == "::" and settings.enable_ipv6
    if override.empty and url is not None:
        answer = query_stun(url, bind="0.0.0.0" if dual_stack else bind, timeout=stun_timeout)
    advertised = plan_advertised(
        bind=bind, port=bound_port, override=override,
        port_override=settings.ice_host_port_override, interfaces=interface_addresses(),
        discovered=answer.address if answer else None, discovered_via=f"STUN server {url}", dual_stack=dual_stack,
    )
    if answer is not None and answer.error:
        warning = (f"STUN discovery failed: {answer.error}; advertising {', '.join(advertised.addresses)} instead "
                   "(set rtc.ice_host_override if clients cannot reach it)")
        advertised = Advertised(addresses=advertised.addresses, port=advertised.port, source=advertised.source,
                                reason=advertised.reason, warnings=(warning, *advertised.warnings))
    return advertised, answer


class Advertiser:
    """See the module docstring."""

    def __init__(self, settings: AdvertiseSettings, *, stun_timeout: float = STUN_TIMEOUT) -> None:
        self.settings = settings
        self.stun_timeout = stun_timeout
        self.current: Advertised | None = None
        self._port = 0

    @property
    def changes_over_time(self) -> bool:
        """True when a re-plan can give another answer (a host name to re-resolve, a STUN server to ask)."""
        override = parse_host_override(self.settings.ice_host_override)
        return bool(override.hostname) or (override.empty and _stun_url(self.settings) is not None)

    async def _plan(self) -> tuple[Advertised, StunAnswer | None]:
        return await trio.to_thread.run_sync(
            lambda: plan_for(self.settings, self._port, stun_timeout=self.stun_timeout))

    async def start(self, bound_port: int) -> Advertised:
        self._port = bound_port
        self.current, _ = await self._plan()
        log.info("media: advertising %s", self.current.describe())
        for warning in self.current.warnings:
            log.warning("media: %s", warning)
        return self.current

    async def run(self) -> None:
        """Re-plan every ``advertise_refresh_seconds`` (when that can change anything); log what changed."""
        every = self.settings.advertise_refresh_seconds
        if not every or not self.changes_over_time:
            return
        while True:
            await trio.sleep(every)
            fresh, answer = await self._plan()
            old = self.current
            if answer is not None and answer.error and old is not None and old.source == "stun":
                log.warning("media: STUN re-check failed (%s); still advertising %s", answer.error, old.describe())
                continue  # a STUN outage does not move clients off an address that worked
            if old is None or (fresh.addresses, fresh.port) != (old.addresses, old.port):
                log.warning("media: the advertised address changed: now %s (was %s); new and renegotiating "
                            "sessions use it", fresh.describe(), old.describe() if old else "none")
            elif fresh.warnings != old.warnings:
                for warning in fresh.warnings:
                    log.warning("media: %s", warning)
            self.current = fresh


@runtime_checkable
class _AdvertisingPlane(Protocol):
    advertiser: Advertiser


def advertised_by(plane: object) -> Advertised | None:
    """What an in-process media plane advertises now (None for no plane, or media workers: each logs its own)."""
    return plane.advertiser.current if isinstance(plane, _AdvertisingPlane) else None
