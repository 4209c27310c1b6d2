"""One simulated peer's WebRTC transport: a UDP socket, ICE as the controlling agent, DTLS, SRTP.

Theory of operation
-------------------
A `PeerTransport` is what a browser's peer connection does on the wire against callsd's ICE-lite server, and
nothing more: one host candidate, no gathering, no SDP (the owner exchanges credentials: the load tool through its
signaling, a test by calling ``endpoint.add_peer``).

    new -> checking -> dtls -> connected        (any state -> failed, with `error`; -> closed by `close`)

* ``start`` connects the socket to the server's candidate (so ``send``/``recv`` skip address handling and the
  kernel filters strangers) and sends a binding request with USE-CANDIDATE, ICE-CONTROLLING, MESSAGE-INTEGRITY and
  FINGERPRINT (aioice's STUN codec). `maintain` retransmits it every 200 ms and gives up after 10 s.
* The first verified success response starts DTLS: as the client (the server answered ``a=setup:passive``) or, with
  ``dtls_server=True``, as the server waiting for the callsd endpoint's ClientHello. pyOpenSSL memory BIOs; the
  retransmission timer is polled by `maintain`.
* When the handshake completes, the server's certificate must match the SDP fingerprint, and the SRTP keys come
  from the DTLS exporter (RFC 5764 §4.2): client write key/salt for what the DTLS client sends.
* Connected: `maintain` refreshes consent every `consent_interval` seconds (None: never, for tests that drive it).

This code is the peer's own: it shares no DTLS, SRTP or STUN glue with the server (only the certificate recipe),
so a bug in the server's handshake is not mirrored by the client that tests it.

Datagrams are fed by the owner (`feed_control` for STUN and DTLS); the owner reads media itself, because what it
does with media differs: the load tool counts packets in the clear and decrypts one in N, a test decrypts all.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import time
from typing import Any, Protocol

import pylibsrtp
from aioice import stun
from callsd.adapters.media.dtls import Certificate
from cryptography.hazmat.primitives import hashes
from OpenSSL import SSL

__all__ = ["Identity", "PeerTransport", "SrtpPair", "TransportStats", "CHECK_INTERVAL", "ICE_TIMEOUT"]

CHECK_INTERVAL = 0.2  # seconds between ICE binding requests until one is answered
ICE_TIMEOUT = 10.0  # seconds of unanswered checks before the transport fails
DTLS_TIMEOUT = 15.0  # seconds for the DTLS handshake
CONSENT_LOST = 30.0  # seconds without a consent answer before the transport fails (RFC 7675)
_SRTP_PROFILES = {
    b"SRTP_AEAD_AES_128_GCM": (16, 12, pylibsrtp.Policy.SRTP_PROFILE_AEAD_AES_128_GCM),
    b"SRTP_AES128_CM_SHA1_80": (16, 14, pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80),
}


class Identity:
    """A certificate and its DTLS context, shared by every transport of a process (one per load process)."""

    def __init__(self, certificate: Certificate | None = None) -> None:
        identity = certificate or Certificate.generate("callsd-peer")
        self.certificate = identity
        self.fingerprint = identity.fingerprint
        ctx = SSL.Context(SSL.DTLS_METHOD)
        ctx.use_certificate(identity.cert)
        ctx.use_privatekey(identity.key)
        ctx.set_verify(SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT, lambda *args: True)
        ctx.set_tlsext_use_srtp(b"SRTP_AEAD_AES_128_GCM:SRTP_AES128_CM_SHA1_80")
        self.context = ctx


class TransportStats:
    """Plain counters, shared by all transports of an engine (or owned by one client)."""

    __slots__ = ("send_drops", "refused", "malformed", "stun_errors", "stun_responses", "failures")

    def __init__(self) -> None:
        self.send_drops = 0  # sends that would block
        self.refused = 0  # ICMP port unreachable reported by the kernel (nobody listens at the server's port)
        self.malformed = 0
        self.stun_errors = 0  # responses that failed MESSAGE-INTEGRITY
        self.stun_responses = 0
        self.failures: dict[str, int] = {}  # failed transports by stage (ice, dtls, fingerprint, srtp, consent...)


class SrtpSession(Protocol):
    """One direction's SRTP session: pylibsrtp's (raises ``pylibsrtp.Error``) or the native engine's
    (``callsd.peer._fastpeer.SrtpSession``, returns None on failure)."""

    def protect(self, packet: bytes) -> bytes | None: ...
    def protect_rtcp(self, packet: bytes) -> bytes | None: ...
    def unprotect(self, packet: bytes) -> bytes | None: ...
    def unprotect_rtcp(self, packet: bytes) -> bytes | None: ...


def _guarded(fn: object, data: bytes) -> bytes | None:
    try:
        out = fn(data)  # type: ignore[operator]
    except pylibsrtp.Error:
        return None
    return None if out is None else bytes(out)


class SrtpPair:
    """The two SRTP sessions of a connected transport; the ``*_rtp``/``*_rtcp`` calls return None on failure."""

    __slots__ = ("tx", "rx", "profile")

    def __init__(self, tx: SrtpSession, rx: SrtpSession, profile: bytes) -> None:
        self.tx = tx
        self.rx = rx
        self.profile = profile

    def protect_rtp(self, plain: bytes) -> bytes | None:
        return _guarded(self.tx.protect, plain)

    def protect_rtcp(self, plain: bytes) -> bytes | None:
        return _guarded(self.tx.protect_rtcp, plain)

    def unprotect_rtp(self, data: bytes) -> bytes | None:
        return _guarded(self.rx.unprotect, data)

    def unprotect_rtcp(self, data: bytes) -> bytes | None:
        return _guarded(self.rx.unprotect_rtcp, data)


class PeerTransport:
    """See the module docstring. `sock` is non-blocking; the owner waits for readability and calls `feed_control`
    for STUN (first byte 0-3) and DTLS (20-63) datagrams."""

    def __init__(self, identity: Identity, *, ufrag: str | None = None, pwd: str | None = None,
                 stats: TransportStats | None = None, host: str = "127.0.0.1", rcvbuf: int = 1 << 20,
                 dtls_server: bool = False, consent_interval: float | None = 5.0, native_srtp: bool = False,
                 sock: Any = None) -> None:
        """``sock``: a socket-like handle to use instead of a socket of its own (peer/shared_port.LegSocket)."""
        self.identity = identity
        self.native_srtp = native_srtp  # SRTP sessions of callsd.peer._fastpeer (the native media engine's)
        self.local_ufrag = ufrag or os.urandom(4).hex()
        self.local_pwd = pwd or os.urandom(16).hex()
        self.stats = stats or TransportStats()
        self.dtls_server = dtls_server
        self.consent_interval = consent_interval
        self.sock: Any = sock if sock is not None else socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setblocking(False)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.bind((host, 0))
        self.local_address: tuple[str, int] = self.sock.getsockname()
        self.server: tuple[str, int] | None = None
        self.state = "new"
        self.error = ""
        self.remote_ufrag = ""
        self.remote_pwd = ""
        self.remote_fingerprint = ""
        self.tie_breaker = int.from_bytes(os.urandom(8), "big")
        self.ssl: SSL.Connection | None = None
        self.srtp: SrtpPair | None = None
        self.tx: SrtpSession | None = None  # = srtp.tx, for the load tool's send loop
        self.rx: SrtpSession | None = None
        self.mapped_address: tuple[str, int] | None = None  # XOR-MAPPED-ADDRESS of the last success response
        self.transactions: list[bytes] = []  # outstanding binding requests (the last few)
        self.checks_sent = 0
        self.state_since = time.monotonic()
        self.last_check = 0.0
        self.consent_ok_at = 0.0
        self.connected_ns = 0

    # -- control ---------------------------------------------------------------------------------------------
    def start(self, *, remote_ufrag: str, remote_pwd: str, remote_fingerprint: str, address: tuple[str, int],
              check: bool = True) -> None:
        """Begin ICE towards the server candidate ``address`` (no-op unless ``new``); ``check=False`` leaves the
        first binding request to the caller (or to `maintain`)."""
        if self.state != "new":
            return
        self.remote_ufrag = remote_ufrag
        self.remote_pwd = remote_pwd
        self.remote_fingerprint = remote_fingerprint.strip()
        try:
            self.sock.connect(address)
        except OSError as exc:
            self._fail(f"connect: {exc}")
            return
        self.server = address
        self._set_state("checking")
        if check:
            self.send_check(use_candidate=True)

    def rebind(self, host: str = "127.0.0.1") -> socket.socket:
        """Move to a new local socket (the client "changed network"): same credentials and keys. Returns the old
        socket, still open, for the caller to close. Send a check with USE-CANDIDATE to move the media."""
        old: socket.socket = self.sock
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setblocking(False)
        self.sock.bind((host, 0))
        if self.server is not None:
            self.sock.connect(self.server)
        self.local_address = self.sock.getsockname()
        return old

    def close(self) -> None:
        if self.state != "closed":
            self._set_state("closed")
        self.sock.close()

    def send_close_notify(self) -> None:
        """End DTLS politely (the server closes the session with ``dtls_closed``)."""
        if self.ssl is not None:
            with contextlib.suppress(SSL.Error):
                self.ssl.shutdown()
            self._dtls_flush()

    # -- sending ---------------------------------------------------------------------------------------------
    def send_raw(self, data: bytes) -> None:
        try:
            self.sock.send(data)
        except (BlockingIOError, InterruptedError):
            self.stats.send_drops += 1
        except OSError as exc:
            if exc.errno == errno.ECONNREFUSED:
                self.stats.refused += 1
            else:
                self._fail(f"send: {exc}")

    def send_check(self, *, use_candidate: bool, pwd: str | None = None) -> bytes:
        """Send a binding request; returns its transaction id. ``pwd`` overrides the key (tests of bad input)."""
        msg = stun.Message(message_method=stun.Method.BINDING, message_class=stun.Class.REQUEST)
        msg.attributes["USERNAME"] = f"{self.remote_ufrag}:{self.local_ufrag}"
        msg.attributes["PRIORITY"] = 1853824767
        msg.attributes["ICE-CONTROLLING"] = self.tie_breaker
        if use_candidate:
            msg.attributes["USE-CANDIDATE"] = None
        msg.add_message_integrity((self.remote_pwd if pwd is None else pwd).encode())
        self.transactions = [*self.transactions[-7:], msg.transaction_id]
        self.checks_sent += 1
        self.last_check = time.monotonic()
        self.send_raw(bytes(msg))
        return bytes(msg.transaction_id)

    # -- receiving -------------------------------------------------------------------------------------------
    def feed_control(self, data: bytes) -> None:
        """Handle a STUN or DTLS datagram from the server."""
        b0 = data[0]
        if b0 < 4:
            self._on_stun(data)
        elif 20 <= b0 <= 63:
            self._on_dtls(data)
        else:
            self.stats.malformed += 1

    def _on_stun(self, data: bytes) -> None:
        try:
            msg = stun.parse_message(data)
        except ValueError:
            self.stats.malformed += 1
            return
        if msg.message_method != stun.Method.BINDING:
            return
        if msg.message_class == stun.Class.REQUEST:
            # An ICE-lite server never checks, but answer politely if it does. Before `start` the socket has no
            # destination (a full agent that already had our candidate checks early): it will check again.
            if self.server is None:
                return
            resp = stun.Message(stun.Method.BINDING, stun.Class.RESPONSE, transaction_id=msg.transaction_id)
            if self.server is not None:
                resp.attributes["XOR-MAPPED-ADDRESS"] = self.server
            resp.add_message_integrity(self.local_pwd.encode())
            self.send_raw(bytes(resp))
            return
        if msg.transaction_id not in self.transactions:
            return
        if msg.message_class != stun.Class.RESPONSE or not msg.check_message_integrity(self.remote_pwd.encode()):
            self.stats.stun_errors += 1
            return
        self.transactions.remove(msg.transaction_id)
        self.stats.stun_responses += 1
        mapped = msg.attributes.get("XOR-MAPPED-ADDRESS")
        if mapped is not None:
            self.mapped_address = (str(mapped[0]), int(mapped[1]))
        self.consent_ok_at = time.monotonic()
        if self.state == "checking":
            self._set_state("dtls")
            conn = SSL.Connection(self.identity.context, None)
            if self.dtls_server:
                conn.set_accept_state()
            else:
                conn.set_connect_state()
            self.ssl = conn
            if not self.dtls_server:
                self._dtls_step()

    def _on_dtls(self, data: bytes) -> None:
        if self.ssl is None:
            return
        self.ssl.bio_write(data)
        if self.state == "dtls":
            self._dtls_step()
            return
        try:
            self.ssl.recv(1500)
        except SSL.ZeroReturnError:
            pass
        except SSL.Error:
            pass
        self._dtls_flush()

    def _dtls_flush(self) -> None:
        assert self.ssl is not None
        while True:
            try:
                out = self.ssl.bio_read(1500)
            except SSL.WantReadError:
                return
            if not out:
                return
            self.send_raw(out)

    def _dtls_step(self) -> None:
        assert self.ssl is not None
        try:
            self.ssl.do_handshake()
        except SSL.WantReadError:
            self._dtls_flush()
            return
        except SSL.Error as exc:
            self._dtls_flush()
            self._fail(f"dtls: {exc}")
            return
        self._dtls_flush()
        self._on_handshake_done()

    def _on_handshake_done(self) -> None:
        assert self.ssl is not None
        cert = self.ssl.get_peer_certificate(as_cryptography=True)
        if cert is None:
            self._fail("dtls: no peer certificate")
            return
        algo, _, expected = self.remote_fingerprint.partition(" ")
        got = ":".join(f"{b:02X}" for b in cert.fingerprint(hashes.SHA256()))
        if algo.lower() != "sha-256" or got != expected.upper():
            self._fail("fingerprint: server certificate does not match the SDP fingerprint")
            return
        profile = self.ssl.get_selected_srtp_profile()
        if profile not in _SRTP_PROFILES:
            self._fail(f"srtp: no usable SRTP profile negotiated ({profile!r})")
            return
        key_len, salt_len, srtp_profile = _SRTP_PROFILES[profile]
        material = self.ssl.export_keying_material(b"EXTRACTOR-dtls_srtp", 2 * (key_len + salt_len))
        client_key = material[:key_len]
        server_key = material[key_len : 2 * key_len]
        client_salt = material[2 * key_len : 2 * key_len + salt_len]
        server_salt = material[2 * key_len + salt_len :]
        mine, theirs = (client_key + client_salt, server_key + server_salt)
        if self.dtls_server:
            mine, theirs = theirs, mine
        if self.native_srtp:  # same policy (replay window 1024), SRTP on libcrypto through the native engine
            from ._fastpeer import SrtpSession as NativeSession

            self.srtp = SrtpPair(NativeSession(int(srtp_profile), mine, True),
                                 NativeSession(int(srtp_profile), theirs, False), profile)
        else:
            tx_policy = pylibsrtp.Policy(key=mine, ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND,
                                         srtp_profile=srtp_profile)
            rx_policy = pylibsrtp.Policy(key=theirs, ssrc_type=pylibsrtp.Policy.SSRC_ANY_INBOUND,
                                         srtp_profile=srtp_profile)
            rx_policy.window_size = 1024
            self.srtp = SrtpPair(pylibsrtp.Session(tx_policy), pylibsrtp.Session(rx_policy), profile)
        self.tx, self.rx = self.srtp.tx, self.srtp.rx
        self.connected_ns = time.monotonic_ns()
        self._set_state("connected")
        self.on_connected()

    def on_connected(self) -> None:
        """Called once SRTP is ready (subclasses note the time, start sending...)."""

    def on_failed(self) -> None:
        """Called once when the transport fails (``error`` says why): whoever waits on it need not poll."""

    # -- timers ----------------------------------------------------------------------------------------------
    def maintain(self, now: float) -> None:
        """ICE retransmission (every 200 ms, fail after 10 s), DTLS timeouts, consent refresh. ``now``: monotonic."""
        state = self.state
        if state == "checking":
            if now - self.state_since > ICE_TIMEOUT:
                self._fail(f"ice: no binding response from the server in {ICE_TIMEOUT:g} s")
            elif now - self.last_check >= CHECK_INTERVAL:
                self.send_check(use_candidate=True)
        elif state == "dtls":
            if now - self.state_since > DTLS_TIMEOUT:
                self._fail(f"dtls: handshake did not complete in {DTLS_TIMEOUT:g} s")
                return
            assert self.ssl is not None
            timeout = self.ssl.DTLSv1_get_timeout()
            if timeout is not None and timeout <= 0:
                self.ssl.DTLSv1_handle_timeout()
                self._dtls_flush()
        elif state == "connected" and self.consent_interval is not None \
                and now - self.last_check >= self.consent_interval:
            if self.consent_ok_at and now - self.consent_ok_at > CONSENT_LOST:
                self._fail("consent: server stopped answering consent checks")
                return
            self.send_check(use_candidate=False)

    def next_wakeup(self, now: float) -> float:
        """Seconds until `maintain` has something to do (an upper bound; at most one check interval)."""
        if self.state == "dtls" and self.ssl is not None:
            timeout = self.ssl.DTLSv1_get_timeout()
            if timeout is not None:
                return max(0.0, min(CHECK_INTERVAL, timeout))
        if self.state == "checking":
            return max(0.0, self.last_check + CHECK_INTERVAL - now)
        return CHECK_INTERVAL

    # -- internals -------------------------------------------------------------------------------------------
    def _set_state(self, state: str) -> None:
        self.state = state
        self.state_since = time.monotonic()

    def _fail(self, error: str) -> None:
        if self.state in ("failed", "closed"):
            return
        self.error = error
        self._set_state("failed")
        stage = error.split(":")[0]
        self.stats.failures[stage] = self.stats.failures.get(stage, 0) + 1
        self.on_failed()
