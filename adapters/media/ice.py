"""ICE-lite on the server side (RFC 8445 §2.5, RFC 7675 consent freshness), plus a tiny client side for tests.

Theory of operation
-------------------
The server is an ICE-lite agent: it gathers one host candidate (the RTC port), never sends checks, and answers
the client's binding requests. It is always the *controlled* agent; the client nominates a pair by putting
USE-CANDIDATE in a request. A request is accepted only if

1. it parses as a STUN binding request (``callsd.core.wire.stun``, a pure codec of binding requests and their
   success responses; aioice.stun only builds the client side below, for tests and benches),
2. its USERNAME is ``<server ufrag>:<client ufrag>`` for a known peer,
3. MESSAGE-INTEGRITY verifies with the server's ICE password, and FINGERPRINT is present (and valid: the parser
   rejects a wrong one).

Every accepted request's source address becomes an *authenticated* address of the peer (DTLS and SRTP are taken
from it); with USE-CANDIDATE it becomes the *nominated* address, the one media is sent to. Each accepted request from
the nominated address (or any accepted request before nomination) refreshes consent; `IceLiteState.expired(now)`
says when the client has been silent for longer than the consent timeout (30 s by default), which closes the peer.
The same rule covers a client that never shows up: the timer starts when the peer is added.

`IceLiteState` holds no clock: ``now`` (seconds, any monotonic origin) is passed to each call.

Cheap refusals (what an attacker on the RTC port can make the server do)
----------------------------------------------------------------------
A full parse plus HMAC-SHA1 cost ~30 µs with aioice's generic messages (~10 µs with the core codec), so the transport never pays it for a request it can refuse
by looking: `peek_username` reads the 20-byte header and walks the attribute TLVs to USERNAME with a few slices
(~1 µs), and an unknown server ufrag is dropped there. Failures (unknown user, bad integrity, address cap) are
charged to the source IP in a `FailureLimiter`, a fixed table of token buckets indexed by a keyed hash of the IP:
its memory never grows with the number of attacking addresses (colliding sources share a bucket). A source whose
bucket is empty gets no HMAC check until it refills; so does every new address of a session whose own budget of
integrity failures is spent (an attacker who knows a ufrag and sprays source addresses). An address the peer has already authenticated skips the
limiter, so a live client's consent refreshes keep working while strangers flood. Finally a peer accepts at most
`max_addresses` distinct source addresses (candidates) per ICE session; beyond that, a request from a new address is
dropped before its integrity is checked, so a holder of valid credentials cannot make the server answer (and
remember) an unbounded number of addresses. A new ICE session (new ufrag) starts with an empty set.
"""

from __future__ import annotations

import os
import secrets
import socket
from dataclasses import dataclass, field
from typing import Any

from aioice import stun
from callsd.core.wire import stun as stun_codec
from callsd.core.wire.stun import StunBindingRequest as BindingRequest

__all__ = [
    "BindingRequest",
    "FailureLimiter",
    "IceLiteState",
    "peek_username",
    "packed_ip",
    "parse_binding_request",
    "binding_success",
    "client_binding_request",
    "check_binding_response",
    "StunRejected",
]

Address = tuple[str, int]


class StunRejected(Exception):
    """A STUN message we drop; ``reason`` is a counters drop reason (malformed, stun_integrity, stun_other...)."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


_MAGIC_COOKIE = b"\x21\x12\xa4\x42"
_ATTR_USERNAME = 0x0006


def peek_username(data: bytes) -> str:
    """The USERNAME of a binding request, read without parsing the rest (a few µs, no HMAC).

    Checks what is needed to find it: binding-request type, a length that matches the datagram, the magic cookie,
    attribute lengths inside the datagram. Raises StunRejected("malformed" | "stun_other" | "stun_integrity") like
    `parse_binding_request`, which still runs (and verifies everything) for a username that names a peer."""
    n = len(data)
    if n < 20 or (data[2] << 8 | data[3]) + 20 != n or data[4:8] != _MAGIC_COOKIE:
        raise StunRejected("malformed", "bad STUN header")
    if data[0] != 0 or data[1] != 1:
        raise StunRejected("stun_other", "not a binding request")
    pos = 20
    while pos + 4 <= n:
        kind = data[pos] << 8 | data[pos + 1]
        length = data[pos + 2] << 8 | data[pos + 3]
        end = pos + 4 + length
        if end > n:
            raise StunRejected("malformed", "attribute overruns the message")
        if kind == _ATTR_USERNAME:
            try:
                return data[pos + 4:end].decode()
            except UnicodeDecodeError:
                raise StunRejected("malformed", "USERNAME is not UTF-8") from None
        pos = end + (-length & 3)
    raise StunRejected("stun_integrity", "missing USERNAME")


class FailureLimiter:
    """Token buckets of STUN failures per source IP, in a fixed table: bounded memory whatever the attacker does.

    Each failure takes one token from the bucket of ``hash(key, ip) % slots``; buckets refill at `rate` per second
    up to `burst`. `limited(ip, now)` is True while the bucket holds less than one token. Sources that collide share
    a bucket: with the default 4,096 slots and a per-process random key, a given client collides with a given
    attacker IP with probability 1/4,096, and the key keeps an attacker from choosing addresses that collide."""

    __slots__ = ("rate", "burst", "_mask", "_key", "_level", "_stamp")

    def __init__(self, *, slots: int = 4096, rate: float = 5.0, burst: float = 20.0) -> None:
        if slots <= 0 or slots & (slots - 1):
            raise ValueError(f"slots must be a power of two, not {slots}")
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be positive and burst at least 1")
        self.rate = rate
        self.burst = burst
        self._mask = slots - 1
        self._key = secrets.token_hex(8)
        self._level = [burst] * slots
        self._stamp = [0.0] * slots

    def _slot(self, ip: str) -> int:
        return hash((self._key, ip)) & self._mask

    def _refilled(self, slot: int, now: float) -> float:
        elapsed = now - self._stamp[slot]
        level = self._level[slot]
        if elapsed > 0:
            level = min(self.burst, level + elapsed * self.rate)
            self._level[slot] = level
            self._stamp[slot] = now
        return level

    def limited(self, ip: str, now: float) -> bool:
        """True when `ip` has spent its failures: drop its request without checking it."""
        return self._refilled(self._slot(ip), now) < 1.0

    def failed(self, ip: str, now: float) -> None:
        """Charge one failure to `ip`."""
        slot = self._slot(ip)
        self._level[slot] = max(0.0, self._refilled(slot, now) - 1.0)

    @property
    def slots(self) -> int:
        return self._mask + 1


def parse_binding_request(data: bytes) -> BindingRequest:
    """Parse a datagram that demuxed as STUN. Raises StunRejected("malformed" | "stun_other" | "stun_integrity")."""
    try:
        return stun_codec.parse_binding_request(data)
    except stun_codec.StunError as exc:
        raise StunRejected(exc.reason.value, str(exc)) from None


def packed_ip(host: str) -> bytes:
    """The 4 or 16 bytes of an address as a socket reports it (an IPv6 one may carry a ``%scope``)."""
    try:
        return socket.inet_pton(socket.AF_INET, host)
    except OSError:
        return socket.inet_pton(socket.AF_INET6, host.partition("%")[0])


def binding_success(request: BindingRequest, addr: Address, local_pwd: str) -> bytes:
    """The success response to an authenticated request: XOR-MAPPED-ADDRESS, MESSAGE-INTEGRITY, FINGERPRINT."""
    return stun_codec.binding_success(request.transaction_id, packed_ip(addr[0]), addr[1], local_pwd.encode())


@dataclass(slots=True)
class IceLiteState:
    """Per-peer ICE-lite state: credentials, authenticated and nominated addresses, consent clock."""

    local_ufrag: str
    local_pwd: str
    remote_ufrag: str
    remote_pwd: str
    consent_timeout: float
    last_consent: float  # when consent was last refreshed (or the peer was added)
    nominated: tuple[Any, ...] | None = None
    addresses: set[tuple[Any, ...]] = field(default_factory=set)
    max_addresses: int = 16  # distinct source addresses (candidates) this ICE session may authenticate
    failure_rate: float = 5.0  # integrity failures per second this session refills (from any source)
    failure_burst: float = 20.0
    _failure_level: float = 20.0
    _failure_stamp: float = 0.0

    def limited(self, now: float) -> bool:
        """True while this session has spent its integrity failures: requests from addresses it has not
        authenticated are dropped unchecked (an attacker who knows the ufrag, spraying source addresses)."""
        self._refill(now)
        return self._failure_level < 1.0

    def failed(self, now: float) -> None:
        """Charge one integrity failure to this session."""
        self._refill(now)
        self._failure_level = max(0.0, self._failure_level - 1.0)

    def _refill(self, now: float) -> None:
        elapsed = now - self._failure_stamp
        if elapsed > 0:
            self._failure_level = min(self.failure_burst, self._failure_level + elapsed * self.failure_rate)
            self._failure_stamp = now

    def full(self, addr: tuple[Any, ...]) -> bool:
        """True when `addr` is new and the session already has `max_addresses`: drop the request unchecked."""
        return len(self.addresses) >= self.max_addresses and addr not in self.addresses

    def accept(self, request: BindingRequest, addr: tuple[Any, ...], now: float) -> tuple[bytes, bool]:
        """Authenticate `request` from `addr`. Returns (response datagram, True if `addr` is newly nominated).

        Raises StunRejected("stun_unknown_user" | "stun_integrity" | "stun_address_cap")."""
        if self.full(addr):
            raise StunRejected("stun_address_cap", f"{self.max_addresses} addresses already")
        if request.local_ufrag != self.local_ufrag or request.remote_ufrag != self.remote_ufrag:
            raise StunRejected("stun_unknown_user", "ufrag mismatch")
        if not request.verify(self.local_pwd.encode()):
            raise StunRejected("stun_integrity", "MESSAGE-INTEGRITY does not verify")
        self.addresses.add(addr)
        newly = False
        if request.use_candidate and addr != self.nominated:
            self.nominated = addr
            newly = True
        if self.nominated is None or addr == self.nominated:
            self.last_consent = now
        return binding_success(request, (addr[0], addr[1]), self.local_pwd), newly

    def expired(self, now: float) -> bool:
        """True when no accepted binding request refreshed consent for `consent_timeout` seconds."""
        return now - self.last_consent >= self.consent_timeout

    def deadline(self) -> float:
        return self.last_consent + self.consent_timeout


# --- client side, for tests, benches and the load tool -------------------------------------------------------------

def client_binding_request(*, server_ufrag: str, client_ufrag: str, server_pwd: str, use_candidate: bool = True,
                           tie_breaker: int | None = None) -> tuple[bytes, bytes]:
    """A controlling agent's binding request. Returns (datagram, transaction id)."""
    message = stun.Message(message_method=stun.Method.BINDING, message_class=stun.Class.REQUEST)
    message.attributes["USERNAME"] = f"{server_ufrag}:{client_ufrag}"
    message.attributes["PRIORITY"] = 0x6E0001FF
    message.attributes["ICE-CONTROLLING"] = tie_breaker if tie_breaker is not None else int.from_bytes(
        os.urandom(8), "big")
    if use_candidate:
        message.attributes["USE-CANDIDATE"] = None
    message.add_message_integrity(server_pwd.encode())
    return bytes(message), message.transaction_id


def check_binding_response(data: bytes, transaction_id: bytes, server_pwd: str) -> Address:
    """Verify a binding success response; returns its XOR-MAPPED-ADDRESS. Raises StunRejected."""
    try:
        message = stun.parse_message(data)
    except Exception as exc:
        raise StunRejected("malformed", str(exc)) from exc
    if message.message_class != stun.Class.RESPONSE or message.transaction_id != transaction_id:
        raise StunRejected("stun_other", "not our response")
    if not message.check_message_integrity(server_pwd.encode()):
        raise StunRejected("stun_integrity")
    mapped = message.attributes["XOR-MAPPED-ADDRESS"]
    return (str(mapped[0]), int(mapped[1]))
