"""The UDP media endpoint: one socket on the RTC port carrying STUN, DTLS and SRTP for every peer.

Public API (what the media-plane glue calls)
--------------------------------------------
    endpoint = UdpEndpoint(TransportConfig(host="127.0.0.1", port=8443), handler)
    await nursery.start(endpoint.serve)          # binds; task_status.started((host, port)); runs until cancelled
    endpoint.fingerprint                         # "sha-256 AB:CD:..." for a=fingerprint
    endpoint.address                             # (host, port) actually bound (port 0 in tests picks one)
    peer = endpoint.add_peer(session_id, local_ufrag, local_pwd, remote_ufrag, remote_pwd,
                             remote_fingerprint, dtls_role="passive")
    endpoint.remove_peer(session_id)             # silent: no on_closed; sends a DTLS close_notify if connected
    endpoint.peer(session_id) -> Peer | None
    peer.send_rtp(plain: bytes) -> bool          # SRTP-protect + sendto the nominated address, counted
    peer.send_rtcp(plain: bytes) -> bool         # SRTCP-protect + sendto
    peer.session_id, peer.connected, peer.address, peer.srtp_profile, peer.data (free slot for the glue)
    endpoint.counters                            # TransportCounters: plain ints (see counters.py)

The handler is any object with four *synchronous* methods, called from the receive loop (they must not block;
they may call `send_rtp`/`send_rtcp` on any peer, `add_peer` and `remove_peer`):

    handler.on_connected(peer)                   # ICE nominated/authenticated + DTLS done + fingerprint verified
    handler.on_closed(peer, reason)              # "consent_expired", "ice_timeout", "dtls_failed", "dtls_closed",
                                                 # "dtls_timeout", "fingerprint_mismatch", "no_srtp_profile"
    handler.on_rtp(peer, plain: bytes)           # one authenticated, decrypted RTP packet
    handler.on_rtcp(peer, plain: bytes)          # one authenticated, decrypted RTCP compound packet

``dtls_role`` is the *server's* a=setup: "passive" (the server is the DTLS server; answer this when the client
offers actpass or active) or "active" (the server sends ClientHello once ICE has authenticated an address; answer
this when the client offers passive).

Theory of operation
-------------------
The receive loop drains the non-blocking socket with plain ``recvmsg`` calls until it would block, then awaits
``trio.lowlevel.wait_readable``: one await per burst instead of one per packet (a Trio await per packet costs 10–20
µs, more than the SRTP work itself). After `batch` packets in a row it yields with a checkpoint so other tasks run
under a flood, unless other tasks held the loop before this turn: then it keeps draining full batches for as long
as it was away (at most `catch_up` seconds), so that long passes of other work (a join wave's hundreds of steps)
cannot leave the socket drained at one batch per pass, slower than it fills (docs/adr/0043). With `coalesce` > 0 it sleeps that long after a non-empty read instead of waiting for readability,
so that at moderate load one wakeup serves several packets (docs/adr/0005-media-transport.md has the figures). Each datagram is classified by its first byte (RFC 7983) through a 256-entry table:

* STUN -> ICE-lite (ice.py): authenticated by USERNAME + MESSAGE-INTEGRITY, answered at once, source address
  recorded for the peer; USE-CANDIDATE nominates it. Looked up by ufrag, so it works before any address is known.
  An unknown ufrag is refused from a peek at USERNAME (no full parse, no HMAC); a source IP that keeps failing is
  rate-limited in a fixed-size table; a session authenticates at most `max_addresses_per_session` addresses.
* DTLS -> the peer owning the source address (unknown address: dropped), fed to its memory-BIO session (dtls.py).
* RTP/RTCP -> the peer owning the source address, SRTP-unprotected with its context (srtp.py), handed to the
  handler. RTCP is told from RTP by the packet-type byte (RFC 5761).

A housekeeping task wakes every `tick` seconds to retransmit DTLS flights whose timer expired and to close peers
that did not connect within `connect_timeout`: only the peers still handshaking are walked each tick. Every peer is
walked for consent expiry (ICE-lite, RFC 7675: no authenticated binding request for `consent_timeout` seconds) at
most every `consent_walk(consent_timeout)` seconds: at 1,600 connected peers a walk of them all ten times a second
cost ~1.5 % of a core for a 30 s timeout that a check a second serves as well.
Everything is counted in `counters`; nothing is logged per packet.
"""

from __future__ import annotations

import logging
import socket
import time
from dataclasses import dataclass
from typing import Any, Protocol

import trio

from .counters import TransportCounters
from .dtls import Certificate, DtlsError, DtlsSession
from .ice import FailureLimiter, IceLiteState, StunRejected, parse_binding_request, peek_username
from .paths import PythonPath, ReceivePath, SrtpContextLike
from .route_record import SendStateOwner
from .srtp import ERR_AUTH, ERR_REPLAY, ERR_REPLAY_OLD, MAX_PACKET, Direction, srtp_protect
from .udp import (
    CLASSIFY,
    KIND_DTLS,
    KIND_RTP,
    KIND_STUN,
    STAMP_SPACE,
    BufferSizes,
    kernel_arrival,
    kernel_drops,
    open_socket,
)

__all__ = ["TransportConfig", "UdpEndpoint", "Peer", "TransportHandler"]

log = logging.getLogger("callsd.media.transport")

_RECV_SIZE = 2048


@dataclass(frozen=True, slots=True, kw_only=True)
class TransportConfig:
    """Settings of the RTC port. `port=0` binds an ephemeral port (tests)."""

    host: str = "127.0.0.1"
    port: int = 8443
    rcvbuf: int = 8 * 1024 * 1024
    sndbuf: int = 8 * 1024 * 1024
    consent_timeout: float = 30.0  # seconds without an authenticated binding request before a peer is closed
    connect_timeout: float = 30.0  # seconds from add_peer to a finished DTLS handshake before a peer is closed
    tick: float = 0.1  # housekeeping period: DTLS retransmissions, consent checks
    batch: int = 256  # datagrams handled before yielding to other tasks
    catch_up: float = 0.025  # the longest the receive loop keeps draining full batches after the loop was held
    coalesce: float = 0.0  # after a non-empty drain, sleep this long before reading again (0: wait for readable)
    max_addresses_per_session: int = 16  # distinct source addresses (ICE candidates) one ICE session may use
    stun_failures_per_second: float = 5.0  # refill rate of the STUN failure buckets: per source IP, per session
    stun_failure_burst: float = 20.0  # failures a source IP (or integrity failures a session) may make at once

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port out of range: {self.port}")
        if self.consent_timeout <= 0 or self.connect_timeout <= 0 or self.tick <= 0 or self.batch <= 0:
            raise ValueError("consent_timeout, connect_timeout, tick and batch must be positive")
        if not 0 <= self.catch_up <= 1.0:
            raise ValueError("catch_up must be between 0 and 1 s")
        if not 0 <= self.coalesce <= 0.02:
            raise ValueError("coalesce must be between 0 and 0.02 s")
        if self.max_addresses_per_session < 1:
            raise ValueError("max_addresses_per_session must be at least 1")
        if self.stun_failures_per_second <= 0 or self.stun_failure_burst < 1:
            raise ValueError("stun_failures_per_second must be positive and stun_failure_burst at least 1")


class TransportHandler(Protocol):
    def on_connected(self, peer: Peer) -> None: ...
    def on_closed(self, peer: Peer, reason: str) -> None: ...
    def on_rtp(self, peer: Peer, plain: bytes) -> None: ...
    def on_rtcp(self, peer: Peer, plain: bytes) -> None: ...


class PacketStamper(Protocol):
    """Rewrites each outgoing RTP packet just before SRTP (the transport-wide sequence number, twcc_send.py)."""

    def stamp(self, plain: bytes) -> bytes: ...


class ArrivalSink(Protocol):
    """Notes the arrival of each RTP packet a publisher sends (its transport-wide sequence number, twcc_recv.py)."""

    @property
    def ext_id(self) -> int: ...

    def on_packet(self, plain: bytes, now: float) -> None: ...

    def arrived(self, seq: int, ssrc: int, now: float) -> None: ...


class Peer(SendStateOwner):
    """One client session on the endpoint: ICE-lite state, DTLS session, SRTP context, send address.

    A ``SendStateOwner``: writing ``_tx``, ``address`` or ``twcc`` tells the native step that the routes toward this
    peer must read their cached send state again (route_record.py)."""

    __slots__ = ("session_id", "ice", "dtls", "srtp", "address", "connected", "closed", "data", "added_at",
                 "_server_role", "_sendto", "_counters", "_tx", "twcc", "twcc_in")

    def __init__(self, session_id: str, ice: IceLiteState, dtls: DtlsSession, server_role: bool,
                 sendto: Any, counters: TransportCounters) -> None:
        self.session_id = session_id
        self.ice = ice
        self.dtls = dtls
        self.srtp: SrtpContextLike | None = None
        self.address: Any = None  # where media goes: the nominated address (or the first authenticated one)
        self.connected = False
        self.closed = False
        self.data: Any = None  # free for the owner of the endpoint
        self.added_at = ice.last_consent
        self._server_role = server_role
        self._sendto = sendto
        self._counters = counters
        self._tx: Direction | None = None  # set when SRTP is ready; send_rtp inlines the protect step with it
        self.twcc: PacketStamper | None = None  # set when the receiver negotiated transport-wide cc
        self.twcc_in: ArrivalSink | None = None  # set when the publisher negotiated transport-wide cc

    @property
    def srtp_profile(self) -> str | None:
        return self.srtp.profile.decode() if self.srtp else None

    def send_rtp(self, plain: bytes) -> bool:
        """Protect one RTP packet and send it to the peer. False (and a drop counted) if it could not be sent.

        The hot path of the SFU: SRTP protect is inlined (libsrtp through cffi, into the peer's own buffer) and the
        datagram is sent from a memoryview of that buffer, without an intermediate bytes object."""
        tx = self._tx
        c = self._counters
        if tx is None:
            c.drop_not_ready += 1
            return False
        if self.twcc is not None:
            plain = self.twcc.stamp(plain)
        n = len(plain)
        if n > MAX_PACKET:
            c.drop_srtp_other += 1
            return False
        tx.buf[0:n] = plain
        lenp = tx.lenp
        lenp[0] = n
        if srtp_protect(tx.srtp, tx.cbuf, lenp):
            c.drop_srtp_other += 1
            return False
        n = lenp[0]
        if not self.send_datagram(tx.view[:n]):
            return False
        c.rtp_out += 1
        c.rtp_bytes_out += n
        return True

    def send_datagram(self, data: bytes | memoryview) -> bool:
        """Send one protected datagram to the peer. False, and the drop counted, if the socket refused it: its send
        buffer full, or another error. What every send of a peer ends with (RTP, RTCP, the native slow path)."""
        try:
            self._sendto(data, self.address)
        except BlockingIOError:
            self._counters.drop_send_buffer_full += 1
            return False
        except OSError:
            self._counters.drop_send_error += 1
            return False
        return True

    def send_rtcp(self, plain: bytes) -> bool:
        """Protect one RTCP compound packet and send it. False (and a drop counted) if it could not be sent."""
        srtp = self.srtp
        c = self._counters
        if srtp is None or self._tx is None:
            c.drop_not_ready += 1
            return False
        data = srtp.protect_rtcp(plain)
        if data is None:
            c.drop_srtp_other += 1
            return False
        if not self.send_datagram(data):
            return False
        c.rtcp_out += 1
        c.rtcp_bytes_out += len(data)
        return True

    def __repr__(self) -> str:
        return f"<Peer {self.session_id} address={self.address} connected={self.connected}>"


class UdpEndpoint:
    """The RTC port. See the module docstring for the API and the theory of operation."""

    def __init__(self, config: TransportConfig, handler: TransportHandler, *,
                 certificate: Certificate | None = None, path: ReceivePath | None = None) -> None:
        self.config = config
        self.handler = handler
        self.certificate = certificate or Certificate.generate()
        self._context = self.certificate.context()
        self.counters = TransportCounters()
        self.address: tuple[str, int] | None = None
        self.buffer_sizes: BufferSizes | None = None
        self._sock: socket.socket | None = None
        self._by_session: dict[str, Peer] = {}
        self._by_ufrag: dict[str, Peer] = {}
        self._by_addr: dict[Any, Peer] = {}
        self._handshaking: dict[str, Peer] = {}  # added, not yet connected: the peers the housekeeping tick walks
        self._next_consent_walk = 0.0
        self.stun_limiter = FailureLimiter(rate=config.stun_failures_per_second, burst=config.stun_failure_burst)
        # the per-packet machinery (paths.py): the Python loop below, or the native step
        self.path: ReceivePath = path if path is not None else PythonPath()
        self.path.bind(self)

    @property
    def fingerprint(self) -> str:
        """``"sha-256 AB:CD:..."``, the value of the SDP a=fingerprint attribute."""
        return self.certificate.fingerprint

    # --- peers ------------------------------------------------------------------------------------------------------

    def add_peer(self, session_id: str, local_ufrag: str, local_pwd: str, remote_ufrag: str, remote_pwd: str,
                 remote_fingerprint: str, dtls_role: str = "passive") -> Peer:
        """Register a session so its STUN, DTLS and SRTP are accepted. Replaces an existing peer of that session.

        Raises ValueError for a bad fingerprint or role, or a local ufrag already used by another session."""
        if dtls_role not in ("passive", "active"):
            raise ValueError(f"dtls_role must be 'passive' or 'active', not {dtls_role!r}")
        other = self._by_ufrag.get(local_ufrag)
        if other is not None and other.session_id != session_id:
            raise ValueError(f"local ufrag {local_ufrag!r} is already used by session {other.session_id!r}")
        if session_id in self._by_session:
            self.remove_peer(session_id)
        server_role = dtls_role == "passive"
        dtls = DtlsSession(self._context, server=server_role, remote_fingerprint=remote_fingerprint)
        ice = IceLiteState(local_ufrag=local_ufrag, local_pwd=local_pwd, remote_ufrag=remote_ufrag,
                           remote_pwd=remote_pwd, consent_timeout=self.config.consent_timeout,
                           last_consent=self._now(), max_addresses=self.config.max_addresses_per_session,
                           failure_rate=self.config.stun_failures_per_second,
                           failure_burst=self.config.stun_failure_burst,
                           _failure_level=self.config.stun_failure_burst)
        sendto = self._sock.sendto if self._sock is not None else _not_bound
        peer = self.path.peer_type(session_id, ice, dtls, server_role, sendto, self.counters)
        self._by_session[session_id] = peer
        self._handshaking[session_id] = peer
        self._by_ufrag[local_ufrag] = peer
        return peer

    def send_rtcp_round(self, packets: list[tuple[Peer, bytes]]) -> None:
        """RTCP compound packets the server originates, each to its peer, handed to the path at once: the Python
        path sends them one by one (``Peer.send_rtcp``), the native one protects and sends them in one ``sendmmsg``
        with the same bytes and counting (docs/adr/0042)."""
        self.path.send_rtcp(self._sock, packets)

    def remove_peer(self, session_id: str) -> None:
        """Forget a session (no on_closed callback). Unknown ids are ignored."""
        peer = self._by_session.get(session_id)
        if peer is None:
            return
        if peer.connected and peer.address is not None:
            peer.dtls.close()
            self._flush_dtls(peer, peer.address)
        self._forget(peer)

    def peer(self, session_id: str) -> Peer | None:
        return self._by_session.get(session_id)

    @property
    def peers(self) -> list[Peer]:
        return list(self._by_session.values())

    def _forget(self, peer: Peer) -> None:
        peer.closed = True
        peer.connected = False
        peer._tx = None
        if self._by_session.get(peer.session_id) is peer:
            del self._by_session[peer.session_id]
        if self._handshaking.get(peer.session_id) is peer:
            del self._handshaking[peer.session_id]
        if self._by_ufrag.get(peer.ice.local_ufrag) is peer:
            del self._by_ufrag[peer.ice.local_ufrag]
        for addr in peer.ice.addresses:
            if self._by_addr.get(addr) is peer:
                del self._by_addr[addr]

    def _close(self, peer: Peer, reason: str) -> None:
        if peer.closed:
            return
        self._forget(peer)
        self.counters.peers_closed += 1
        try:
            self.handler.on_closed(peer, reason)
        except Exception:
            self.handler_error()

    # --- serving ----------------------------------------------------------------------------------------------------

    async def serve(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Bind the socket, report ``(host, port)`` through task_status, and run until cancelled."""
        sock, self.buffer_sizes = open_socket(self.config.host, self.config.port,
                                              rcvbuf=self.config.rcvbuf, sndbuf=self.config.sndbuf)
        self._sock = sock
        for peer in self._by_session.values():
            peer._sendto = sock.sendto
        name = sock.getsockname()
        self.address = (name[0], name[1])
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._housekeeping)
                task_status.started(self.address)
                await self._receive_loop(sock)
        finally:
            self._sock = None
            sock.close()

    def socket_drops(self) -> int:
        """Datagrams the kernel dropped at the RTC socket because its receive buffer was full: the loss a held event
        loop causes (``callsd_rtc_errors{type="socket_full"}``); 0 before the socket is open."""
        return kernel_drops(self._sock) if self._sock is not None else 0

    @staticmethod
    def _now() -> float:
        try:
            return trio.current_time()
        except RuntimeError:  # add_peer called outside Trio (unit tests of the bookkeeping)
            return 0.0

    async def _receive_loop(self, sock: socket.socket) -> None:
        wait_readable = trio.lowlevel.wait_readable
        checkpoint = trio.lowlevel.checkpoint
        drain = self.path.drain
        sleep = trio.sleep
        clock = time.perf_counter
        batch = self.config.batch
        coalesce = self.config.coalesce
        catch_up = self.config.catch_up
        left = clock()  # when this loop last gave the event loop back
        while True:
            started = clock()
            n = drain(sock, batch)
            # Held away for `started - left` (other tasks' steps, a GC): the socket filled meanwhile. One batch per
            # turn would drain it at `batch` per held pass, slower than it fills when passes are long (a join
            # wave): keep draining full batches for as long as we were away, up to `catch_up`.
            if n >= batch:
                budget = min(catch_up, started - left)
                while n >= batch and clock() - started < budget:
                    n = drain(sock, batch)
            left = clock()
            if n >= batch:
                await checkpoint()
            elif n and coalesce:
                await sleep(coalesce)
            else:
                await wait_readable(sock)

    def _drain(self, recvmsg: Any, batch: int) -> int:
        """The Python path's loop (``recvmsg``: the socket's): handle up to `batch` datagrams; returns how many were
        read (fewer means the socket is empty)."""
        handle = self.handle_datagram
        for i in range(batch):
            try:
                data, ancillary, _flags, addr = recvmsg(_RECV_SIZE, STAMP_SPACE)
            except BlockingIOError:
                return i
            except OSError:  # e.g. ICMP port unreachable reported on the next read
                self.counters.drop_send_error += 1
                continue
            handle(data, addr, kernel_arrival(ancillary) if ancillary else None)
        return batch

    def handle_datagram(self, data: bytes, addr: Any, arrival: float | None = None) -> None:
        """Demultiplex and handle one datagram (either path hands every datagram it does not handle itself here).
        ``arrival``: when the kernel received it (``time.monotonic`` seconds), None: now (udp.kernel_arrival)."""
        c = self.counters
        c.datagrams_in += 1
        c.bytes_in += len(data)
        if len(data) < 4:
            c.drop_malformed += 1
            return
        kind = CLASSIFY[data[0]]
        try:
            if kind == KIND_RTP:
                peer = self._by_addr.get(addr)
                if peer is None:
                    c.drop_unknown_address += 1
                    return
                srtp = peer.srtp
                if srtp is None:
                    c.drop_not_ready += 1
                    return
                if len(data) < 12:
                    c.drop_malformed += 1
                    return
                if 192 <= data[1] <= 223:
                    plain = srtp.unprotect_rtcp(data)
                    if plain is None:
                        self._srtp_drop(srtp.last_error)
                        return
                    c.rtcp_in += 1
                    c.rtcp_bytes_in += len(data)
                    self.handler.on_rtcp(peer, plain)
                else:
                    plain = srtp.unprotect_rtp(data)
                    if plain is None:
                        self._srtp_drop(srtp.last_error)
                        return
                    c.rtp_in += 1
                    c.rtp_bytes_in += len(data)
                    if peer.twcc_in is not None:
                        peer.twcc_in.on_packet(plain, time.monotonic() if arrival is None else arrival)
                    self.handler.on_rtp(peer, plain)
            elif kind == KIND_STUN:
                self._on_stun(data, addr)
            elif kind == KIND_DTLS:
                self._on_dtls(data, addr)
            else:
                c.drop_malformed += 1
        except Exception:
            self.handler_error()

    def handler_error(self) -> None:
        """Count (and log the first 10, then every 1000th) an exception raised while handling a datagram."""
        n = self.counters.handler_errors = self.counters.handler_errors + 1
        if n <= 10 or n % 1000 == 0:
            log.exception("error while handling a datagram (%d so far)", n)

    def _srtp_drop(self, rc: int) -> None:
        c = self.counters
        if rc == ERR_AUTH:
            c.drop_srtp_auth += 1
        elif rc in (ERR_REPLAY, ERR_REPLAY_OLD):
            c.drop_replay += 1
        else:
            c.drop_srtp_other += 1

    def _on_stun(self, data: bytes, addr: Any) -> None:
        """Answer an authenticated binding request. Refusals that need no HMAC come first (ice.py, "Cheap
        refusals"): unknown server ufrag from a peek at USERNAME, then, for an address the peer has not yet
        authenticated, the session's address cap and the source IP's failure budget."""
        c = self.counters
        c.stun_in += 1
        limiter = self.stun_limiter
        peer: Peer | None = None
        try:
            username = peek_username(data)
            peer = self._by_ufrag.get(username.partition(":")[0])
            if peer is None:
                c.drop_stun_unknown_user += 1  # cheap to refuse: not charged to the source
                return
            if self._by_addr.get(addr) is not peer:
                if peer.ice.full(addr):
                    raise StunRejected("stun_address_cap")
                now = self._now()
                if limiter.limited(addr[0], now) or peer.ice.limited(now):
                    c.drop_stun_rate_limited += 1
                    return
            request = parse_binding_request(data)
            response, newly_nominated = peer.ice.accept(request, addr, self._now())
        except StunRejected as rejected:
            reason = rejected.reason
            c.count_drop(reason)
            if reason not in ("stun_other", "malformed"):
                now = self._now()
                limiter.failed(addr[0], now)
                if reason == "stun_integrity" and peer is not None:
                    peer.ice.failed(now)
            return
        owner = self._by_addr.get(addr)
        if owner is not peer:
            if owner is not None:
                self._release_address(owner, addr)
            self._by_addr[addr] = peer
        self._send(response, addr)
        c.stun_out += 1
        if newly_nominated or peer.address is None:
            peer.address = addr
            if peer.connected and peer._tx is None and peer.srtp is not None:
                peer._tx = peer.srtp.tx  # it had lost its only address; media may flow again
        dtls = peer.dtls
        if not peer._server_role and not dtls.started and dtls.failed is None:
            try:
                dtls.start()
            except DtlsError:
                self._close(peer, "dtls_failed")
                return
            self._flush_dtls(peer, addr)

    @staticmethod
    def _release_address(owner: Peer, addr: Any) -> None:
        """Another peer authenticated from `addr` (a NAT reused the port): `owner` stops using it."""
        owner.ice.addresses.discard(addr)
        if owner.ice.nominated == addr:
            owner.ice.nominated = None
        if owner.address == addr:
            owner.address = next(iter(owner.ice.addresses), None)
            if owner.address is None:
                owner._tx = None  # nowhere to send until the client authenticates again

    def _on_dtls(self, data: bytes, addr: Any) -> None:
        c = self.counters
        c.dtls_in += 1
        peer = self._by_addr.get(addr)
        if peer is None:
            c.drop_unknown_address += 1
            return
        if len(data) < 13 or 13 + int.from_bytes(data[11:13], "big") > len(data):
            c.drop_malformed += 1
            return
        dtls = peer.dtls
        try:
            completed = dtls.feed(data)
        except DtlsError:
            c.drop_dtls += 1
            self._flush_dtls(peer, addr)
            self._close(peer, dtls.failed or "dtls_failed")
            return
        self._flush_dtls(peer, addr)
        if completed:
            assert dtls.keys is not None
            srtp = self.path.srtp_context(dtls.keys)
            peer.srtp = srtp
            peer._tx = srtp.tx
            if peer.address is None:
                peer.address = addr
            peer.connected = True
            if self._handshaking.get(peer.session_id) is peer:
                del self._handshaking[peer.session_id]
            c.peers_connected += 1
            self.handler.on_connected(peer)

    def _flush_dtls(self, peer: Peer, addr: Any) -> None:
        for datagram in peer.dtls.take_datagrams():
            self._send(datagram, addr)
            self.counters.dtls_out += 1

    def _send(self, data: bytes, addr: Any) -> None:
        sock = self._sock
        if sock is None:
            return
        try:
            sock.sendto(data, addr)
        except BlockingIOError:
            self.counters.drop_send_buffer_full += 1
        except OSError:
            self.counters.drop_send_error += 1

    async def _housekeeping(self) -> None:
        tick = self.config.tick
        while True:
            await trio.sleep(tick)
            self.check_timers(trio.current_time())

    def check_timers(self, now: float) -> None:
        """Close peers whose consent expired or whose handshake did not finish within `connect_timeout`, and
        retransmit DTLS flights whose timer fired (called every tick). The peers still handshaking are walked every
        call; all of them, for consent, once `consent_walk` has passed since the last such walk."""
        if now >= self._next_consent_walk:
            self._next_consent_walk = now + consent_walk(self.config.consent_timeout)
            peers = list(self._by_session.values())
        else:
            peers = list(self._handshaking.values())
        for peer in peers:
            if peer.ice.expired(now):
                if peer.connected:
                    self.counters.consent_expired += 1
                self._close(peer, "consent_expired" if peer.connected else "ice_timeout")
                continue
            dtls = peer.dtls
            if not peer.connected and now - peer.added_at >= self.config.connect_timeout:
                self._close(peer, "dtls_timeout")
                continue
            if dtls.done or dtls.failed or peer.address is None:
                continue
            timeout = dtls.next_timeout()
            if timeout is not None and timeout <= 0:
                try:
                    dtls.handle_timeout()
                except DtlsError:
                    self._close(peer, "dtls_timeout")
                    continue
                self._flush_dtls(peer, peer.address)


def consent_walk(consent_timeout: float) -> float:
    """How often every peer is checked for consent expiry: a tenth of the timeout, at most a second (a 30 s
    consent is then noticed within 1 s of expiring; tests' short timeouts keep a proportional precision)."""
    return min(1.0, consent_timeout / 10)


def _not_bound(data: bytes, addr: Any) -> int:
    raise OSError("the endpoint is not serving yet")
