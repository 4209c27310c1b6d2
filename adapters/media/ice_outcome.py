"""Say when media does not come: each media session's ICE outcome, logged, counted and told to the call.

Theory of operation
-------------------
An ICE-lite server never sends checks, so when the advertised address is wrong (a private address behind NAT, a
firewall in the way) nothing at all reaches it: without this module the only trace is a peer closed with
``ice_timeout`` half a minute later, and the users hear silence. ``IceOutcomeWatch`` keeps, per session, when the
plane registered its peer (the client's offer) and what happened since:

- DTLS completed: state ``connected`` (logged with the client's address as the server sees it, after NAT);
- ``timeout`` seconds passed and no authenticated ICE check arrived: state ``failed``, reason ``no_ice_check``, and a
  warning that names the session and the advertised address ("is A reachable from clients?");
- checks arrived but DTLS did not complete in that time: state ``failed``, reason ``no_dtls`` (something drops
  the larger DTLS datagrams, or the certificate fingerprint is wrong);
- the media path died later (consent expired, DTLS closed): state ``disconnected`` with the transport's reason.

Each change is a ``MediaStateChanged`` event for the server, which tells the call (``user_media_state``,
docs/protocol.md); each outcome is counted once per peer in ``counters`` (exported by /metrics). The watch holds
no clock: ``now`` is passed in.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from .addresses import display_address
from .events import MediaStateChanged

__all__ = ["IceOutcomeWatch", "IceOutcomeCounters", "WatchedPeer"]

log = logging.getLogger("callsd.media.ice")


class _IceView(Protocol):
    @property
    def addresses(self) -> set[tuple[object, ...]]: ...


class WatchedPeer(Protocol):
    """What the watch reads of a transport peer (``transport.Peer``)."""

    @property
    def ice(self) -> _IceView: ...
    @property
    def connected(self) -> bool: ...


class IceOutcomeCounters:
    """Outcomes, one per registered peer (plain ints; /metrics reads them as ``callsd_rtc_ice_outcomes``)."""

    __slots__ = ("connected", "no_ice_check", "no_dtls", "disconnected")

    def __init__(self) -> None:
        self.connected = self.no_ice_check = self.no_dtls = self.disconnected = 0

    def as_dict(self) -> dict[str, int]:
        return {f"ice_outcome_{name}": getattr(self, name) for name in self.__slots__}


@dataclass(slots=True)
class _Watched:
    added_at: float
    state: str = "connecting"


_address = display_address


class IceOutcomeWatch:
    """See the module docstring. ``advertised()`` returns the advertised ``host:port`` list for the warning."""

    def __init__(self, *, timeout: float, advertised: Callable[[], str],
                 emit: Callable[[MediaStateChanged], None]) -> None:
        self.timeout = timeout
        self._advertised = advertised
        self._emit = emit
        self._sessions: dict[str, _Watched] = {}
        self.counters = IceOutcomeCounters()

    def state(self, session_id: str) -> str | None:
        watched = self._sessions.get(session_id)
        return watched.state if watched else None

    def peer_added(self, session_id: str, now: float) -> None:
        """The plane registered a (new) peer for the session: its clock starts."""
        self._sessions[session_id] = _Watched(added_at=now)

    def connected(self, session_id: str, address: object, now: float) -> None:
        watched = self._sessions.get(session_id)
        if watched is None or watched.state == "connected":
            return
        was_failed = watched.state == "failed"
        watched.state = "connected"
        self.counters.connected += 1
        log.info("media: session %s connected from %s in %.1f s%s", session_id, _address(address),
                 now - watched.added_at, " (after being reported failed)" if was_failed else "")
        self._emit(MediaStateChanged(session_id=session_id, state="connected", reason="",
                                     detail=_address(address)))

    def closed(self, session_id: str, reason: str) -> None:
        """The transport closed the peer. A peer that never connected was already (or is now) reported failed."""
        watched = self._sessions.pop(session_id, None)
        if watched is None:
            return
        if watched.state == "connecting":  # closed before the check period ended (e.g. a long ice_check_timeout)
            self.counters.no_ice_check += 1
            log.warning("media: session %s closed (%s) before its media connected", session_id, reason)
            self._emit(MediaStateChanged(session_id=session_id, state="failed", reason=reason, detail=""))
        elif watched.state == "connected":
            self.counters.disconnected += 1
            log.info("media: session %s lost its media connection (%s)", session_id, reason)
            self._emit(MediaStateChanged(session_id=session_id, state="disconnected", reason=reason, detail=""))

    def forget(self, session_id: str) -> None:
        """The session closed on the server's side (left the call): nothing to report."""
        self._sessions.pop(session_id, None)

    def check(self, now: float, peer_of: Callable[[str], WatchedPeer | None]) -> None:
        """Report sessions still connecting after ``timeout`` seconds (called periodically)."""
        for session_id, watched in self._sessions.items():
            if watched.state != "connecting" or now - watched.added_at < self.timeout:
                continue
            peer = peer_of(session_id)
            if peer is None or peer.connected:
                continue
            watched.state = "failed"
            if not peer.ice.addresses:
                self.counters.no_ice_check += 1
                reason = "no_ice_check"
                detail = self._advertised()
                log.warning("media: no ICE check received within %g s from session %s — is the advertised address "
                            "%s reachable from clients? (docs/networking.md, troubleshooting)", self.timeout,
                            session_id, detail)
            else:
                self.counters.no_dtls += 1
                reason = "no_dtls"
                detail = ", ".join(sorted(_address(a) for a in peer.ice.addresses))
                log.warning("media: session %s: ICE checks arrived from %s but DTLS did not complete within %g s",
                            session_id, detail, self.timeout)
            self._emit(MediaStateChanged(session_id=session_id, state="failed", reason=reason, detail=detail))
