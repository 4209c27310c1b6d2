"""The native receive path: the C step of _engine.c behind the ``paths.ReceivePath`` protocol.

What C reads from Python (the contract the Python objects keep; the Python path reads the same fields):

* the endpoint's ``_by_addr`` dict (source address -> ``Peer``) and its ``TransportCounters``;
* per ``Peer``: ``srtp`` (a ``NativeSrtpContext``: C handles the datagram only if ``srtp._rx`` is a native
  ``SrtpSession``), ``_tx``, ``address``, ``data``, ``twcc`` (a ``TransportSequencer``, whose numbers and send
  history are a C record, ``_engine.SequencerRecord``: C stamps the packet and records it there; any other
  stamper's ``stamp`` is called) and, as a fallback for foreign
  contexts, ``send_rtp``;
* per session (``peer.data``, a ``ForwardingSession``): ``closed`` and ``inbound`` (SSRC -> ``InTrack``);
* per ``InTrack`` and ``OutRoute``: the fields ``Forwarder.on_rtp`` reads and writes, written back at once (a
  route's numbering and counters are C fields of its base class, ``_engine.RouteRecord``: route_record.py);
* the ``Forwarder``'s ``counters``, ``_clock`` and ``_on_voice``;
* per session also ``inbound_rtx`` (RTX SSRC -> ``InTrack``) and ``simulcast_in`` (simulcast layer or layer-RTX
  SSRC -> ``SimulcastStream``), and through them the ``SimulcastTrack``, its routes' switch state and the
  ``SimulcastForwarder``'s per-layer counters, with its decisions (``_decide``, ``_route_state``, ``_switched``,
  ``_keyframe``, ``SimulcastTrack.roll``) called only when due (simulcast_step.h, docs/adr/0024);
* per publisher ``Peer`` with a transport-cc feedback sender, ``twcc_in.ext_id`` and ``twcc_in.log`` (an
  ``ArrivalLog`` the step creates and appends to; ``twcc_in.drain()`` empties it).

Anything the C step does not handle comes back in arrival order: a raw datagram goes to
``UdpEndpoint.handle_datagram`` (STUN, DTLS, SRTCP, unknown address, no SRTP yet), a decrypted RTP packet whose SSRC
the session does not know goes to the handler's ``on_rtp`` (the plane learns it from the MID extension, or a
simulcast layer's from its RID).
"""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING, Any, Protocol

from pylibsrtp import Policy

from ..counters import TransportCounters
from ..dtls import SRTP_PROFILES, SrtpKeys
from ..transport import Peer
from ._engine import MAX_PACKET, Engine, SrtpSession, send_rtcp_batch

if TYPE_CHECKING:
    from ..forwarder import Forwarder, InTrack
    from ..simulcast_fwd import SimulcastForwarder
    from ..transport import UdpEndpoint

__all__ = ["NativePath", "NativePeer", "NativeSrtpContext", "SrtpSession", "ForwardingSession", "STEP_EMPTY",
           "STEP_BUDGET", "STEP_RAW", "STEP_RTP", "STEP_ERROR"]

STEP_EMPTY, STEP_BUDGET, STEP_RAW, STEP_RTP, STEP_ERROR = range(5)
# libsrtp's srtp_profile_t values, as pylibsrtp exposes them (the same library's enum)
_PROFILE_IDS = {name: int(getattr(Policy, attr)) for name, (attr, _, _) in SRTP_PROFILES.items()}


class ForwardingSession(Protocol):
    """What ``peer.data`` is when the endpoint forwards natively (the plane's ``Session``)."""

    closed: bool
    inbound: dict[int, InTrack]


class NativeSrtpContext:
    """``srtp.SrtpContext`` on libcrypto through the extension (srtp_transform.h): one session per direction, shared
    by the C step (SRTP) and Python (SRTCP, NACK answers), so each direction has one replay window and one ROC."""

    __slots__ = ("tx", "_tx", "_rx", "last_error", "profile")

    def __init__(self, keys: SrtpKeys) -> None:
        profile = _PROFILE_IDS[keys.profile]
        self.profile = keys.profile
        self._tx = self.tx = SrtpSession(profile, keys.local_key, True)
        self._rx = SrtpSession(profile, keys.remote_key, False)
        self.last_error = 0

    def _done(self, session: SrtpSession, out: bytes | None) -> bytes | None:
        if out is None:
            self.last_error = session.last_error
        return out

    def protect_rtp(self, packet: bytes) -> bytes | None:
        return self._done(self._tx, self._tx.protect(packet))

    def protect_rtcp(self, packet: bytes) -> bytes | None:
        return self._done(self._tx, self._tx.protect_rtcp(packet))

    def unprotect_rtp(self, packet: bytes) -> bytes | None:
        return self._done(self._rx, self._rx.unprotect(packet))

    def unprotect_rtcp(self, packet: bytes) -> bytes | None:
        return self._done(self._rx, self._rx.unprotect_rtcp(packet))


class NativePeer(Peer):
    """A ``Peer`` whose ``send_rtp`` protects with a native session (the Python slow path: NACK answers, packets
    of an SSRC just learned); the C step sends everything else itself, with the same counting."""

    __slots__ = ()

    def send_rtp(self, plain: bytes) -> bool:
        tx: Any = self._tx
        c = self._counters
        if tx is None:
            c.drop_not_ready += 1
            return False
        if self.twcc is not None:
            plain = self.twcc.stamp(plain)
        data = tx.protect(plain) if len(plain) <= MAX_PACKET else None
        if data is None:
            c.drop_srtp_other += 1
            return False
        if not self.send_datagram(data):
            return False
        c.rtp_out += 1
        c.rtp_bytes_out += len(data)
        return True


class NativePath:
    """``paths.ReceivePath`` on the C step. ``forwarder`` None: C decrypts, Python's handler gets every packet.
    ``simulcast``: the plane's simulcast forwarder, whose learnt layers the step forwards too."""

    name = "native"

    def __init__(self, forwarder: Forwarder | None, simulcast: SimulcastForwarder | None = None) -> None:
        self._forwarder = forwarder
        self._simulcast = simulcast
        self._endpoint: UdpEndpoint | None = None
        self._engine: Engine | None = None

    @property
    def peer_type(self) -> type[Peer]:
        return NativePeer

    def bind(self, endpoint: UdpEndpoint) -> None:
        from ..forwarder import VAD_MAX, VAD_ON, VAD_THRESHOLD

        self._endpoint = endpoint
        counters: TransportCounters = endpoint.counters
        self._engine = Engine(endpoint._by_addr, counters,  # noqa: SLF001 - the table the endpoint keeps
                              self._forwarder, (VAD_THRESHOLD, VAD_ON, VAD_MAX), self._simulcast)

    def srtp_context(self, keys: SrtpKeys) -> NativeSrtpContext:
        return NativeSrtpContext(keys)

    def send_rtcp(self, sock: socket.socket | None, packets: list[tuple[Peer, bytes]]) -> None:
        """The tick's RTCP in one C call (rtcp_batch.h): SRTCP with each peer's native session, one ``sendmmsg``,
        counted as ``Peer.send_rtcp`` counts. A peer not ready or with a foreign context goes through its own
        ``send_rtcp`` (which counts the drop or sends it the Python way)."""
        items: list[tuple[SrtpSession, bytes, Any]] = []
        for peer, plain in packets:
            tx = peer._tx if isinstance(peer, NativePeer) else None  # noqa: SLF001 - set when SRTP became ready
            if sock is None or not isinstance(tx, SrtpSession) or peer.address is None:
                peer.send_rtcp(plain)
            else:
                items.append((tx, plain, peer.address))
        if not items or sock is None:
            return
        assert self._endpoint is not None, "bind() first"
        sent, sent_bytes, would_block, errors, srtp_failed, bad = send_rtcp_batch(sock.fileno(), items)
        c: TransportCounters = self._endpoint.counters
        c.rtcp_out += sent
        c.rtcp_bytes_out += sent_bytes
        c.drop_send_buffer_full += would_block
        c.drop_send_error += errors
        c.drop_srtp_other += srtp_failed + bad

    def drain(self, sock: socket.socket, batch: int) -> int:
        endpoint = self._endpoint
        assert endpoint is not None and self._engine is not None, "bind() first"
        step = self._engine.step
        handle = endpoint.handle_datagram
        on_rtp = endpoint.handler.on_rtp
        fd = sock.fileno()
        total: int = 0
        while True:
            read: int
            read, kind, a, b = step(fd, batch - total if batch > total else 0)
            total += read
            if kind == STEP_RAW:
                handle(a, b)
            elif kind == STEP_RTP:
                try:
                    on_rtp(a, b)
                except Exception:
                    endpoint.handler_error()
            elif kind == STEP_ERROR:
                try:
                    raise a
                except Exception:
                    endpoint.handler_error()
            elif kind == STEP_BUDGET:
                return max(total, batch)
            else:
                return total
