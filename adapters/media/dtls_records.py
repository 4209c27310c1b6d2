"""The few DTLS 1.2 records an established DTLS-SRTP association still exchanges, without OpenSSL's connection.

Why this exists
---------------
Once the SRTP keys are exported, DTLS carries almost nothing: the peer's close_notify (or a fatal alert) when it
hangs up, our close_notify when we do, and, on the passive side, a copy of our last flight whenever the peer
retransmits its final flight because ours was lost. Keeping OpenSSL's `SSL` object alive for that cost ~93 KiB of
RSS per session (141 KiB handed out by malloc: record-layer buffers for both epochs, the handshake buffers; measured
by ``python -m bench.memory parts``), about half of what a whole session costs. So after the handshake
`DtlsSession` keeps an `EstablishedRecords` (keys of a few dozen bytes, the last flight's bytes) and frees the
connection.

Only the AEAD suites a WebRTC peer negotiates with our ECDSA certificate are handled here
(``ECDHE-ECDSA-AES128-GCM-SHA256``, ``ECDHE-ECDSA-AES256-GCM-SHA384``, RFC 5288/5289 in DTLS 1.2, RFC 6347);
anything else (another suite, another protocol version) keeps the OpenSSL connection as before, so this is an
optimisation, never a restriction. The AEAD itself is `cryptography`'s AES-GCM (OpenSSL underneath); this module
only derives the key block with the TLS 1.2 PRF (RFC 5246 §5, §6.3) and lays out nonce and additional data
(RFC 5288 §3, RFC 6347 §4.1.2.1).
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = ["EstablishedRecords", "RecordSecrets", "records", "suite_key_length", "ALERT", "HANDSHAKE", "CHANGE_CIPHER_SPEC"]

CHANGE_CIPHER_SPEC = 20
ALERT = 21
HANDSHAKE = 22
_VERSION = b"\xfe\xfd"  # DTLS 1.2
_EXPLICIT_NONCE = 8
_TAG = 16

# OpenSSL cipher name -> (AES key length, PRF hash)
_SUITES: dict[str, tuple[int, str]] = {
    "ECDHE-ECDSA-AES128-GCM-SHA256": (16, "sha256"),
    "ECDHE-ECDSA-AES256-GCM-SHA384": (32, "sha384"),
}


def suite_key_length(cipher_name: str | None) -> tuple[int, str] | None:
    """(key length, PRF hash) for a suite this module handles, None for any other."""
    return _SUITES.get(cipher_name or "")


def _prf(secret: bytes, label: bytes, seed: bytes, length: int, digest: str) -> bytes:
    """TLS 1.2 PRF: P_hash(secret, label + seed) truncated to ``length`` (RFC 5246 §5)."""
    seed = label + seed
    out, a = b"", seed
    while len(out) < length:
        a = hmac.digest(secret, a, digest)  # one-shot: OpenSSL's HMAC without a Python HMAC object
        out += hmac.digest(secret, a + seed, digest)
    return out[:length]


@dataclass(slots=True)
class EstablishedRecords:
    """What one side of an established DTLS 1.2 AES-GCM association needs to open the peer's alerts and seal ours.

    ``tx_sequence`` is the next epoch-1 sequence number we send with (the handshake used the ones before it)."""

    rx: AESGCM
    rx_salt: bytes
    tx: AESGCM
    tx_salt: bytes
    tx_sequence: int

    @classmethod
    def derive(cls, *, cipher_name: str, master_secret: bytes, client_random: bytes, server_random: bytes,
               server: bool, tx_sequence: int) -> EstablishedRecords | None:
        suite = suite_key_length(cipher_name)
        if suite is None:
            return None
        key_len, digest = suite
        block = _prf(master_secret, b"key expansion", server_random + client_random, 2 * key_len + 8, digest)
        client_key, server_key = block[:key_len], block[key_len : 2 * key_len]
        client_salt, server_salt = block[2 * key_len : 2 * key_len + 4], block[2 * key_len + 4 :]
        if server:
            return cls(AESGCM(client_key), client_salt, AESGCM(server_key), server_salt, tx_sequence)
        return cls(AESGCM(server_key), server_salt, AESGCM(client_key), client_salt, tx_sequence)

    def open(self, record: bytes) -> bytes | None:
        """The plaintext of one protected record (13-byte header included in ``record``), None if it does not
        authenticate."""
        if len(record) < 13 + _EXPLICIT_NONCE + _TAG:
            return None
        body = record[13:]
        plain_len = len(body) - _EXPLICIT_NONCE - _TAG
        aad = record[3:11] + record[0:3] + plain_len.to_bytes(2, "big")
        try:
            return self.rx.decrypt(self.rx_salt + body[:_EXPLICIT_NONCE], body[_EXPLICIT_NONCE:], aad)
        except InvalidTag:  # a forged or damaged record
            return None

    def seal(self, content_type: int, plaintext: bytes) -> bytes:
        """One epoch-1 record carrying ``plaintext``; uses up one sequence number."""
        epoch_seq = (1 << 48 | self.tx_sequence).to_bytes(8, "big")
        self.tx_sequence += 1
        header = bytes([content_type]) + _VERSION
        aad = epoch_seq + header + len(plaintext).to_bytes(2, "big")
        body = epoch_seq + self.tx.encrypt(self.tx_salt + epoch_seq, plaintext, aad)
        return header + epoch_seq + len(body).to_bytes(2, "big") + body


@dataclass(frozen=True, slots=True)
class RecordSecrets:
    """What `EstablishedRecords.derive` needs, kept at the handshake's end in place of its result.

    Why: the key block (the PRF) and the two AES-GCM contexts are needed only when a record must be opened or
    sealed: the peer's alert, our close_notify. A join never needs them, so they are not made on its path (issue
    13 part 2, docs/performance.md "Joins, session 9"); `DtlsSession` derives them the first time a record asks.
    Only made for a suite `suite_key_length` knows, so `derive` never returns None for one."""

    cipher_name: str
    master_secret: bytes
    client_random: bytes
    server_random: bytes
    server: bool
    tx_sequence: int

    def derive(self) -> EstablishedRecords:
        recs = EstablishedRecords.derive(cipher_name=self.cipher_name, master_secret=self.master_secret,
                                         client_random=self.client_random, server_random=self.server_random,
                                         server=self.server, tx_sequence=self.tx_sequence)
        if recs is None:
            raise ValueError(f"no record keys for suite {self.cipher_name!r}")
        return recs


def records(data: bytes) -> list[tuple[int, int, int, bytes]]:
    """Split a datagram into (content type, epoch, sequence, whole record); a truncated tail is left out."""
    out = []
    pos, n = 0, len(data)
    while pos + 13 <= n:
        end = pos + 13 + int.from_bytes(data[pos + 11 : pos + 13], "big")
        if end > n:
            break
        out.append((data[pos], int.from_bytes(data[pos + 3 : pos + 5], "big"),
                    int.from_bytes(data[pos + 5 : pos + 11], "big"), data[pos:end]))
        pos = end
    return out

