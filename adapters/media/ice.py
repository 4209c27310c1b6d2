"""ICE-lite on the server side (RFC 8445 §2.5, RFC 7675 consent freshness), plus a tiny client side for tests.

Theory of operation
-------------------
The server is an ICE-lite agent: it gathers one host candidate (the RTC port), never sends checks, and answers
the client's binding requests. It is always the *controlled* agent; the client nominates a pair by putting
USE-CANDIDATE in a request. A request is accepted only if

1. it parses as a STUN binding request (aioice.stun does the wire format, no asyncio involved),
2. its USERNAME is ``<server ufrag>:<client ufrag>`` for a known peer,
3. MESSAGE-INTEGRITY verifies with the server's ICE password, and FINGERPRINT is present (and valid: the parser
   rejects a wrong one).

Every accepted request's source address becomes an *authenticated* address of the peer (DTLS and SRTP are taken
from it); with USE-CANDIDATE it becomes the *nominated* address, the one media is sent to. Each accepted request from
the nominated address (or any accepted request before nomination) refreshes consent; `IceLiteState.expired(now)`
says when the client has been silent for longer than the consent timeout (30 s by default), which closes the peer.
The same rule covers a client that never shows up: the timer starts when the peer is added.

`IceLiteState` holds no clock: ``now`` (seconds, any monotonic origin) is passed to each call.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from aioice import stun

__all__ = [
    "BindingRequest",
    "IceLiteState",
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


@dataclass(frozen=True, slots=True, kw_only=True)
class BindingRequest:
    """A parsed, not yet authenticated, binding request."""

    message: stun.Message
    local_ufrag: str  # the server's ufrag (first half of USERNAME)
    remote_ufrag: str  # the client's ufrag (second half)
    use_candidate: bool


def parse_binding_request(data: bytes) -> BindingRequest:
    """Parse a datagram that demuxed as STUN. Raises StunRejected("malformed" | "stun_other" | "stun_integrity")."""
    try:
        message = stun.parse_message(data)
    except Exception as exc:  # the parser raises ValueError, struct.error, UnicodeDecodeError...
        raise StunRejected("malformed", str(exc)) from exc
    if message.message_method != stun.Method.BINDING or message.message_class != stun.Class.REQUEST:
        raise StunRejected("stun_other", f"{message.message_method!r} {message.message_class!r}")
    attrs = message.attributes
    username = attrs.get("USERNAME")
    if not isinstance(username, str) or username.count(":") != 1:
        raise StunRejected("stun_integrity", "missing or malformed USERNAME")
    if "MESSAGE-INTEGRITY" not in attrs or "FINGERPRINT" not in attrs:
        raise StunRejected("stun_integrity", "MESSAGE-INTEGRITY or FINGERPRINT missing")
    local, remote = username.split(":")
    return BindingRequest(message=message, local_ufrag=local, remote_ufrag=remote,
                          use_candidate="USE-CANDIDATE" in attrs)


def binding_success(request: stun.Message, addr: Address, local_pwd: str) -> bytes:
    """The success response to an authenticated request: XOR-MAPPED-ADDRESS, MESSAGE-INTEGRITY, FINGERPRINT."""
    response = stun.Message(message_method=stun.Method.BINDING, message_class=stun.Class.RESPONSE,
                            transaction_id=request.transaction_id)
    response.attributes["XOR-MAPPED-ADDRESS"] = addr
    response.add_message_integrity(local_pwd.encode())
    return bytes(response)


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

    def accept(self, request: BindingRequest, addr: tuple[Any, ...], now: float) -> tuple[bytes, bool]:
        """Authenticate `request` from `addr`. Returns (response datagram, True if `addr` is newly nominated).

        Raises StunRejected("stun_unknown_user" | "stun_integrity")."""
        if request.local_ufrag != self.local_ufrag or request.remote_ufrag != self.remote_ufrag:
            raise StunRejected("stun_unknown_user", "ufrag mismatch")
        if not request.message.check_message_integrity(self.local_pwd.encode()):
            raise StunRejected("stun_integrity", "MESSAGE-INTEGRITY does not verify")
        self.addresses.add(addr)
        newly = False
        if request.use_candidate and addr != self.nominated:
            self.nominated = addr
            newly = True
        if self.nominated is None or addr == self.nominated:
            self.last_consent = now
        return binding_success(request.message, (addr[0], addr[1]), self.local_pwd), newly

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
