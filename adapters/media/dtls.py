"""DTLS-SRTP over memory BIOs: certificates, the handshake pump and the keying-material exporter.

Theory of operation
-------------------
Nothing here touches a socket or a clock. A `DtlsSession` is fed whole datagrams (`feed`), asked for the datagrams
it wants to send (`take_datagrams`), and poked when its retransmission timer may have expired (`handle_timeout`,
`next_timeout`). The transport adapter owns the socket and the timer loop.

* The endpoint makes one ECDSA P-256 self-signed certificate at start (`Certificate.generate()`); its SHA-256
  fingerprint goes into every SDP answer as ``a=fingerprint:sha-256 AB:CD:...``.
* The remote certificate is required (``VERIFY_PEER | FAIL_IF_NO_PEER_CERT``). WebRTC certificates are self-signed,
  so instead of a chain check the verify callback compares the certificate's SHA-256 with the fingerprint the peer
  put in its SDP (kept as the connection's app data). A mismatch aborts the handshake with an alert, before our
  Finished is sent, so the impostor never gets keys; the check is repeated when the handshake completes.
  OpenSSL calls the callback twice for the one certificate (self-signed error, then the end of the chain): the
  second call finds the match already seen and hashes nothing. Renegotiation is off (``OP_NO_RENEGOTIATION``: no
  WebRTC peer renegotiates DTLS), so one connection never verifies a second certificate.
* SRTP profiles are offered in server preference order: AEAD_AES_128_GCM first, AES_CM_128_HMAC_SHA1_80 second.
  OpenSSL picks the first of the server's list that the client also offers.
* A memory BIO does not keep datagram boundaries: a flight of several records comes out as one byte string.
  `take_datagrams` splits it again on DTLS record boundaries and packs records into datagrams of at most `mtu`
  bytes, so a flight never needs IP fragmentation.
* Once the keys are exported the OpenSSL connection is freed (~93 KiB RSS per session) when the suite is one
  `dtls_records` handles (the AES-GCM suites WebRTC peers negotiate): alerts are then opened and our close_notify
  sealed by `EstablishedRecords` (its keys derived from the kept `RecordSecrets` the first time a record
  needs them, never during a join), and a retransmitted final flight from the peer gets our last flight again, as
  OpenSSL would have done. Other suites keep the connection.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import re
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from OpenSSL import SSL, crypto

from .dtls_records import (
    ALERT,
    CHANGE_CIPHER_SPEC,
    HANDSHAKE,
    EstablishedRecords,
    RecordSecrets,
    records,
    suite_key_length,
)

__all__ = [
    "Certificate",
    "DtlsSession",
    "DtlsError",
    "SrtpKeys",
    "SRTP_PROFILES",
    "parse_fingerprint",
]

# OpenSSL profile name -> (libsrtp profile id attribute name, key length, salt length)
SRTP_PROFILES: dict[bytes, tuple[str, int, int]] = {
    b"SRTP_AEAD_AES_128_GCM": ("SRTP_PROFILE_AEAD_AES_128_GCM", 16, 12),
    b"SRTP_AES128_CM_SHA1_80": ("SRTP_PROFILE_AES128_CM_SHA1_80", 16, 14),
}
_SRTP_OFFER = b":".join(SRTP_PROFILES)
_DTLS_MTU = 1200
_BIO_READ = 65536  # more than any flight: one read empties the BIO
_MAX_FLIGHT_REPEATS = 8  # answers to a peer's retransmitted final flight; more is a reflector, not a lost packet


class DtlsError(Exception):
    """The remote side broke the DTLS handshake or sent a fatal alert; the session is unusable."""


def _fingerprint_of_der(der: bytes) -> str:
    return hashlib.sha256(der).digest().hex(":").upper()


_SHA256_HEX = re.compile(r"(?:[0-9A-F]{2}:){31}[0-9A-F]{2}")


def parse_fingerprint(value: str) -> str:
    """Normalise ``"sha-256 ab:cd:..."`` (or bare ``"AB:CD:..."``) to upper-case colon hex; raise ValueError."""
    text = value.strip()
    if " " in text:
        algo, _, text = text.partition(" ")
        if algo.lower() != "sha-256":
            raise ValueError(f"unsupported fingerprint algorithm {algo!r} (only sha-256)")
    text = text.strip().upper()
    if _SHA256_HEX.fullmatch(text) is None:
        raise ValueError(f"not a sha-256 fingerprint: {value!r}")
    return text


def _verify_fingerprint(conn: SSL.Connection, cert: crypto.X509, _errno: int, depth: int, _ok: int) -> bool:
    if depth != 0:
        return True
    state = conn.get_app_data()  # [expected fingerprint, mismatch seen, match seen]
    if state[2]:  # this connection's one certificate, already found to match (module docstring)
        return True
    if _fingerprint_of_der(crypto.dump_certificate(crypto.FILETYPE_ASN1, cert)) == state[0]:
        state[2] = True
        return True
    state[1] = True
    return False


@dataclass(frozen=True, slots=True)
class Certificate:
    """A self-signed ECDSA P-256 certificate and its key."""

    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey
    fingerprint_hex: str  # "AB:CD:..." (sha-256 of the DER)

    @property
    def fingerprint(self) -> str:
        """The SDP form: ``"sha-256 AB:CD:..."``."""
        return f"sha-256 {self.fingerprint_hex}"

    @classmethod
    def generate(cls, common_name: str = "callsd") -> Certificate:
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        now = datetime.datetime.now(datetime.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .sign(key, hashes.SHA256())
        )
        return cls(cert=cert, key=key,
                   fingerprint_hex=_fingerprint_of_der(cert.public_bytes(serialization.Encoding.DER)))

    def to_pem(self) -> tuple[bytes, bytes]:
        """(certificate PEM, key PEM): lets a child process rebuild the same identity."""
        return (
            self.cert.public_bytes(serialization.Encoding.PEM),
            self.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                   serialization.NoEncryption()),
        )

    @classmethod
    def from_pem(cls, cert_pem: bytes, key_pem: bytes) -> Certificate:
        cert = x509.load_pem_x509_certificate(cert_pem)
        key = serialization.load_pem_private_key(key_pem, password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError("the key is not an ECDSA key")
        return cls(cert=cert, key=key,
                   fingerprint_hex=_fingerprint_of_der(cert.public_bytes(serialization.Encoding.DER)))

    def context(self) -> SSL.Context:
        """A DTLS context presenting this certificate, requesting the peer's, offering the SRTP profiles."""
        ctx = SSL.Context(SSL.DTLS_METHOD)
        ctx.use_certificate(self.cert)
        ctx.use_privatekey(self.key)
        ctx.set_verify(SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT, _verify_fingerprint)
        ctx.set_tlsext_use_srtp(_SRTP_OFFER)
        # No session tickets: a WebRTC peer never resumes a DTLS session (each connection has fresh keys and its
        # fingerprint is checked anew), so a ticket is an encryption and a record per handshake for nothing.
        ctx.set_options(SSL.OP_NO_QUERY_MTU | SSL.OP_NO_TICKET | SSL.OP_NO_RENEGOTIATION)
        return ctx


@dataclass(frozen=True, slots=True)
class SrtpKeys:
    """Keys exported after the handshake, already split into our direction and theirs."""

    profile: bytes  # OpenSSL name, a key of SRTP_PROFILES
    local_key: bytes  # master key + salt we protect with
    remote_key: bytes  # master key + salt we unprotect with


class DtlsSession:
    """One DTLS association. ``server=True`` is the passive side (``a=setup:passive``), which waits for ClientHello."""

    __slots__ = ("_conn", "_server", "_out", "done", "failed", "keys", "_remote_fp", "mtu", "started",
                 "_records", "_last_flight", "_flight_repeats", "_tx_sequence")

    def __init__(self, context: SSL.Context, *, server: bool, remote_fingerprint: str, mtu: int = _DTLS_MTU):
        conn = SSL.Connection(context, None)
        self._conn: SSL.Connection | None = conn
        # Set when the connection was freed after the handshake: its secrets, then the keys once a record needed them
        self._records: RecordSecrets | EstablishedRecords | None = None
        self._last_flight: list[bytes] = []
        self._flight_repeats = 0
        self._tx_sequence = 0  # next epoch-1 sequence number OpenSSL would use (tracked in `_pump`)
        self._server = server
        self._out: list[bytes] = []
        self._remote_fp = parse_fingerprint(remote_fingerprint)
        conn.set_app_data([self._remote_fp, False, False])
        self.mtu = mtu
        self.done = False
        self.failed: str | None = None
        self.keys: SrtpKeys | None = None
        self.started = False
        if server:
            conn.set_accept_state()
        else:
            conn.set_connect_state()
        conn.set_ciphertext_mtu(mtu)

    def start(self) -> None:
        """For the active (client) side: produce the ClientHello once. Harmless on the passive side or if repeated.

        Raises DtlsError if OpenSSL refuses to start."""
        if not self._server and not self.started and not self.done:
            self.started = True
            self._step()

    def feed(self, datagram: bytes) -> bool:
        """Feed one received DTLS datagram. Returns True exactly when this datagram completed the handshake.

        Raises DtlsError on a fatal error (the reason is kept in ``failed``)."""
        if self.failed:
            raise DtlsError(self.failed)
        if not datagram:
            return False  # OpenSSL's bio_write raises WantReadError on b"" (found by fuzz/targets.py dtls)
        if self._records is not None:
            self._feed_established(datagram)
            return False
        assert self._conn is not None
        self._conn.bio_write(datagram)
        if self.done:
            # Post-handshake traffic: alerts (close_notify) or retransmitted finished flights.
            try:
                self._conn.recv(1500)
            except SSL.WantReadError:
                pass
            except SSL.ZeroReturnError as exc:
                self.failed = "dtls_closed"
                raise DtlsError(self.failed) from exc
            except SSL.Error as exc:
                self.failed = "dtls_failed"
                raise DtlsError(self.failed) from exc
            self._pump()
            return False
        return self._step()

    def _established(self) -> EstablishedRecords:
        """The record keys, derived from the kept secrets the first time a record needs them."""
        recs = self._records
        assert recs is not None
        if isinstance(recs, RecordSecrets):
            recs = self._records = recs.derive()
        return recs

    def _feed_established(self, datagram: bytes) -> None:
        """Post-handshake traffic without OpenSSL: the peer's alerts end the session, its retransmitted final
        flight gets our last flight again; anything else (old-epoch alerts, data, forgeries) is ignored."""
        repeat = False
        for content_type, epoch, _seq, record in records(datagram):
            if content_type == ALERT and epoch == 1:
                plain = self._established().open(record)
                if plain is None or len(plain) != 2:
                    continue
                if plain[1] == 0:  # close_notify
                    self.failed = "dtls_closed"
                    raise DtlsError(self.failed)
                if plain[0] == 2:  # fatal
                    self.failed = "dtls_failed"
                    raise DtlsError(self.failed)
            elif content_type == CHANGE_CIPHER_SPEC or (content_type == HANDSHAKE and epoch == 0):
                repeat = True
        if repeat and self._last_flight and self._flight_repeats < _MAX_FLIGHT_REPEATS:
            self._flight_repeats += 1
            self._out.extend(self._last_flight)

    def _step(self) -> bool:
        assert self._conn is not None
        try:
            self._conn.do_handshake()
        except SSL.WantReadError:
            self._pump()
            return False
        except SSL.Error as exc:
            self._pump()
            self.failed = "fingerprint_mismatch" if self._conn.get_app_data()[1] else "dtls_failed"
            raise DtlsError(f"dtls handshake failed: {exc}") from exc
        self._pump()
        self._finish()
        return True

    def _finish(self) -> None:
        assert self._conn is not None
        _, mismatch, match = self._conn.get_app_data()
        if mismatch or not match:  # the verify callback saw the peer's certificate match, and nothing else: done
            self._check_peer_certificate(self._conn)
        profile = self._conn.get_selected_srtp_profile()
        if profile not in SRTP_PROFILES:
            self.failed = "no_srtp_profile"
            raise DtlsError(f"no SRTP profile agreed (got {profile!r})")
        _, key_len, salt_len = SRTP_PROFILES[profile]
        material = self._conn.export_keying_material(b"EXTRACTOR-dtls_srtp", 2 * (key_len + salt_len))
        client_key = material[:key_len]
        server_key = material[key_len : 2 * key_len]
        client_salt = material[2 * key_len : 2 * key_len + salt_len]
        server_salt = material[2 * key_len + salt_len :]
        client, server = client_key + client_salt, server_key + server_salt
        if self._server:
            self.keys = SrtpKeys(profile=profile, local_key=server, remote_key=client)
        else:
            self.keys = SrtpKeys(profile=profile, local_key=client, remote_key=server)
        self.done = True
        self._free_connection()

    def _check_peer_certificate(self, conn: SSL.Connection) -> None:
        """The fingerprint check again, for a handshake whose verify callback did not see a match (never taken
        with OpenSSL as configured here: ``VERIFY_FAIL_IF_NO_PEER_CERT`` and the callback refusing a mismatch
        end the handshake first; kept so that a change of configuration cannot skip the check)."""
        cert = conn.get_peer_certificate()
        if cert is None:
            self.failed = "fingerprint_mismatch"
            raise DtlsError("peer sent no certificate")
        got = _fingerprint_of_der(crypto.dump_certificate(crypto.FILETYPE_ASN1, cert))
        if got != self._remote_fp:
            self.failed = "fingerprint_mismatch"
            raise DtlsError(f"remote fingerprint {got} does not match the SDP's {self._remote_fp}")

    def _free_connection(self) -> None:
        """Swap OpenSSL's connection for `EstablishedRecords` when the suite allows (see the module docstring)."""
        conn = self._conn
        assert conn is not None
        master = conn.master_key()
        client_random, server_random = conn.client_random(), conn.server_random()
        if conn.get_protocol_version_name() != "DTLSv1.2" or master is None or not client_random or not server_random:
            return
        cipher_name = conn.get_cipher_name() or ""
        if suite_key_length(cipher_name) is None:
            return
        self._records = RecordSecrets(cipher_name=cipher_name, master_secret=master, client_random=client_random,
                                      server_random=server_random, server=self._server,
                                      tx_sequence=self._tx_sequence)
        if self._server:
            self._last_flight = list(self._out)  # what the peer must get again if its final flight repeats
        self._conn = None

    def _pump(self) -> None:
        """Move whatever OpenSSL wrote into its BIO to ``_out``, split into MTU-sized datagrams."""
        conn = self._conn
        assert conn is not None
        chunks = []
        while True:
            try:
                chunk = conn.bio_read(_BIO_READ)
            except SSL.WantReadError:
                break
            if not chunk:
                break
            chunks.append(chunk)
            if len(chunk) < _BIO_READ:  # a memory BIO hands out all it holds: drained, no WantReadError to raise
                break
        if not chunks:
            return
        data = b"".join(chunks)
        # Split on record boundaries: 13-byte header, length in bytes 11..12.
        pos, start, n = 0, 0, len(data)
        while pos + 13 <= n:
            end = pos + 13 + int.from_bytes(data[pos + 11 : pos + 13], "big")
            if data[pos + 3 : pos + 5] == b"\x00\x01":
                self._tx_sequence = max(self._tx_sequence, int.from_bytes(data[pos + 5 : pos + 11], "big") + 1)
            if end - start > self.mtu and pos > start:
                self._out.append(data[start:pos])
                start = pos
            pos = end
        if start < n:
            self._out.append(data[start:])

    @property
    def holds_openssl_connection(self) -> bool:
        """False once the handshake is done and the connection was swapped for `EstablishedRecords`."""
        return self._conn is not None

    def take_datagrams(self) -> list[bytes]:
        """The datagrams to send now (handshake flights, retransmissions, alerts); empties the queue."""
        out, self._out = self._out, []
        return out

    def next_timeout(self) -> float | None:
        """Seconds until the handshake retransmission timer fires, or None when no timer runs."""
        if self.done or self.failed or self._conn is None:
            return None
        return self._conn.DTLSv1_get_timeout()

    def handle_timeout(self) -> None:
        """Retransmit the last flight if its timer has expired (call when `next_timeout` says so)."""
        if self.done or self.failed or self._conn is None:
            return
        try:
            self._conn.DTLSv1_handle_timeout()
        except SSL.Error as exc:
            self.failed = "dtls_timeout"
            raise DtlsError(self.failed) from exc
        self._pump()

    def close(self) -> None:
        """Queue a close_notify alert (best effort)."""
        if self.done and not self.failed:
            if self._records is not None:
                self._out.append(self._established().seal(ALERT, b"\x01\x00"))  # warning, close_notify
            else:
                assert self._conn is not None
                with contextlib.suppress(SSL.Error):
                    self._conn.shutdown()
                self._pump()
        self.failed = self.failed or "closed"
