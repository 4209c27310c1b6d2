"""Who may drive an rtcd host (docs/rtcd.md, "Security model").

- ``ClientStore``: registered clients (``client_id`` → Argon2id hash of its ``auth_key``) in SQLite under the data
  directory (``rtcd-clients.sqlite``, mode 0600). The key itself is never stored, never logged; checking a key of an
  unknown client still runs one hash (against a fixed dummy), so timing does not tell which part was wrong.
- ``BearerTokens``: what ``POST /login`` hands out: ``v1.<client_id b64>.<expiry>.<HMAC-SHA256>`` signed with a key
  kept in the data directory (``rtcd-token.key``, 0600). Stateless (no table that grows with logins), survives a
  restart, and dies with its client (a token of an unregistered client is refused). Compared in constant time.
- ``FailureLimiter``: failed authentications per client address in a sliding window; over ``max_failures`` the
  address gets 429 until the window passes. Memory is bounded: at most ``max_addresses`` addresses are tracked, the
  least recently failing one is forgotten first.

Argon2 hashing takes tens of milliseconds and ~64 MiB: callers run ``verify``/``register`` in a thread
(``trio.to_thread``), so the media plane sharing the event loop never waits for a password hash. A thread cannot be
cancelled: a login its client gave up on still finishes its hash. So ``verify`` remembers, per client, the last key
it verified (an HMAC of it under a key that lives only in this process, with the stored hash it matched), and runs one
hash per client at a time: a login retried after a timeout waits for the abandoned one's hash and then costs an HMAC,
not a second Argon2id. Only a verified key is remembered, a changed registration forgets it, and an unknown client
or a wrong key still pays the full hash.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import sqlite3
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from .secret_files import read_or_create_secret

__all__ = ["ClientStore", "BearerTokens", "FailureLimiter", "Bearer", "MIN_KEY_LENGTH", "valid_client_id"]

MIN_KEY_LENGTH = 32
MAX_KEY_LENGTH = 1024
_CLIENT_ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")


def valid_client_id(client_id: object) -> bool:
    return isinstance(client_id, str) and 1 <= len(client_id) <= 64 and set(client_id) <= _CLIENT_ID_CHARS


def _private_file(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
    os.close(fd)
    os.chmod(path, 0o600)


class ClientStore:
    """Registered clients and their Argon2id key hashes (thread-safe: one connection under a lock)."""

    FILENAME = "rtcd-clients.sqlite"

    def __init__(self, data_dir: str | Path) -> None:
        self.path = Path(data_dir) / self.FILENAME
        _private_file(self.path)
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("CREATE TABLE IF NOT EXISTS clients (client_id TEXT PRIMARY KEY, key_hash TEXT NOT NULL,"
                         " created_at INTEGER NOT NULL)")
        self._lock = threading.Lock()
        self._hasher = PasswordHasher()  # Argon2id, RFC 9106's second recommended parameter set
        self._dummy = self._hasher.hash(secrets.token_urlsafe(32))
        self._memo_key = secrets.token_bytes(32)  # never leaves this process: what the remembered HMACs are keyed by
        self._verified: dict[str, tuple[str, bytes]] = {}  # client id → (stored hash, HMAC of the key it verified)
        self._hashing: dict[str, threading.Lock] = {}  # client id → held while a hash for it runs (one at a time)

    def _key_mac(self, auth_key: str) -> bytes:
        return hmac.new(self._memo_key, auth_key.encode(), hashlib.sha256).digest()

    def close(self) -> None:
        self._db.close()

    def register(self, client_id: str, auth_key: str) -> bool:
        """Store the client's key hash; False when the client id is taken (a key is not replaced silently)."""
        key_hash = self._hasher.hash(auth_key)
        with self._lock:
            try:
                self._db.execute("INSERT INTO clients VALUES (?, ?, ?)", (client_id, key_hash, int(time.time())))
            except sqlite3.IntegrityError:
                return False
        return True

    def unregister(self, client_id: str) -> bool:
        with self._lock:
            self._verified.pop(client_id, None)
            self._hashing.pop(client_id, None)
            return self._db.execute("DELETE FROM clients WHERE client_id = ?", (client_id,)).rowcount > 0

    def exists(self, client_id: str) -> bool:
        with self._lock:
            return self._db.execute("SELECT 1 FROM clients WHERE client_id = ?", (client_id,)).fetchone() is not None

    def verify(self, client_id: str, auth_key: str) -> bool:
        """True when ``auth_key`` is the client's key. An unknown client costs one hash too (no timing hint); a key
        this process verified for the client's current registration costs an HMAC (the module docstring)."""
        if not self.exists(client_id):
            self._check(self._dummy, auth_key)
            return False
        with self._lock:  # one lock per registered client: bounded by the table, not by what callers send
            hashing = self._hashing.setdefault(client_id, threading.Lock())
        with hashing:
            with self._lock:
                row = self._db.execute("SELECT key_hash FROM clients WHERE client_id = ?", (client_id,)).fetchone()
                known = self._verified.get(client_id)
            if row is None:
                return False
            mac = self._key_mac(auth_key)
            if known is not None and known[0] == row[0] and hmac.compare_digest(known[1], mac):
                return True
            if not self._check(row[0], auth_key):
                return False
            with self._lock:
                self._verified[client_id] = (row[0], mac)
            return True

    def _check(self, key_hash: str, auth_key: str) -> bool:
        try:
            return bool(self._hasher.verify(key_hash, auth_key))
        except (VerificationError, InvalidHashError):
            return False


@dataclass(frozen=True, slots=True)
class Bearer:
    client_id: str
    expires_at: int


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class BearerTokens:
    """Signed, expiring bearer tokens (see the module docstring)."""

    FILENAME = "rtcd-token.key"

    def __init__(self, data_dir: str | Path, ttl_seconds: int) -> None:
        self._key = read_or_create_secret(Path(data_dir) / self.FILENAME)
        self.ttl = ttl_seconds

    def _mac(self, body: str) -> str:
        return _b64(hmac.new(self._key, body.encode(), hashlib.sha256).digest())

    def issue(self, client_id: str, now: float) -> tuple[str, Bearer]:
        expires = int(now) + self.ttl
        body = f"v1.{_b64(client_id.encode())}.{expires}"
        return f"{body}.{self._mac(body)}", Bearer(client_id, expires)

    def check(self, token: str, now: float) -> Bearer | None:
        """The token's client and expiry when the signature is right and it has not expired, else None."""
        parts = token.split(".")
        if len(parts) != 4 or parts[0] != "v1" or len(token) > 512 or not token.isascii():
            return None  # (compare_digest refuses non-ASCII str: a header byte over 0x7f would be a 500)
        body = ".".join(parts[:3])
        if not hmac.compare_digest(self._mac(body), parts[3]):
            return None
        try:
            client_id, expires = _unb64(parts[1]).decode(), int(parts[2])
        except ValueError:
            return None
        if expires <= now:
            return None
        return Bearer(client_id, expires)


class FailureLimiter:
    """Failed authentications per address in a sliding window, bounded in memory (see the module docstring)."""

    def __init__(self, max_failures: int, window_seconds: float, max_addresses: int = 4096) -> None:
        self.max_failures = max_failures
        self.window = window_seconds
        self.max_addresses = max_addresses
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def _recent(self, address: str, now: float) -> deque[float] | None:
        times = self._failures.get(address)
        if times is None:
            return None
        while times and times[0] <= now - self.window:
            times.popleft()
        if not times:
            del self._failures[address]
            return None
        return times

    def blocked(self, address: str, now: float) -> bool:
        times = self._recent(address, now)
        return times is not None and len(times) >= self.max_failures

    def failed(self, address: str, now: float) -> None:
        times = self._recent(address, now)
        if times is None:
            times = self._failures[address] = deque(maxlen=self.max_failures)
        times.append(now)
        self._failures.move_to_end(address)
        while len(self._failures) > self.max_addresses:
            self._failures.popitem(last=False)

    def __len__(self) -> int:
        return len(self._failures)
