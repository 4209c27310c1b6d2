"""Authentication: HMAC-signed call tokens, the open-mode loopback rule, TURN REST credentials.

Token format (docs/protocol.md): ``v1.<b64url(payload JSON)>.<b64url(HMAC-SHA256(secret, "v1." + payload part))>``
with payload ``{"u": user_id, "c": [channel ids or "*"], "exp": unix seconds}``. ``verify_token`` raises
``TokenError`` whose ``code`` is the protocol error code (``unauthorized``, ``token_expired``,
``channel_forbidden``) and whose message says what was wrong, without revealing the expected signature.

Time always comes in as an argument (``now`` in unix seconds) so that expiry is testable without patching clocks.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress
import json
from dataclasses import dataclass

__all__ = [
    "TokenError",
    "TokenClaims",
    "create_token",
    "verify_token",
    "check_open_mode_allowed",
    "turn_credentials",
    "parse_ttl",
]

_PREFIX = "v1"


class TokenError(Exception):
    """A token was refused; ``code`` is the machine-readable reason sent to the client."""

    def __init__(self, code: str, message: str) -> None:
        self.code = code
        self.message = message
        super().__init__(f"{code}: {message}")


@dataclass(frozen=True, slots=True, kw_only=True)
class TokenClaims:
    user_id: str
    channels: tuple[str, ...]
    expires_at: int

    def allows(self, channel_id: str) -> bool:
        return "*" in self.channels or channel_id in self.channels


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _sign(secret: str, signed_part: str) -> bytes:
    return hmac.new(secret.encode("utf-8"), signed_part.encode("ascii"), hashlib.sha256).digest()


def create_token(*, secret: str, user_id: str, channels: list[str] | tuple[str, ...], expires_at: int) -> str:
    """Mint a token for ``user_id`` valid in ``channels`` (``"*"`` = any) until ``expires_at`` (unix seconds)."""
    if not secret:
        raise ValueError("a token secret is required")
    if not user_id or len(user_id) > 128:
        raise ValueError("user id must be 1-128 characters")
    if not channels or any(not c or len(c) > 128 for c in channels):
        raise ValueError("at least one channel of 1-128 characters is required")
    payload = json.dumps({"u": user_id, "c": list(channels), "exp": int(expires_at)}, separators=(",", ":"))
    signed_part = f"{_PREFIX}.{_b64(payload.encode('utf-8'))}"
    return f"{signed_part}.{_b64(_sign(secret, signed_part))}"


def verify_token(token: object, *, secret: str, now: float, channel_id: str | None = None) -> TokenClaims:
    """Check a token's shape, signature, expiry and (if given) that it allows ``channel_id``; return its claims.

    The signature is checked before anything in the payload is trusted; comparisons are constant-time.
    """
    if not isinstance(token, str) or not token:
        raise TokenError("unauthorized", "a token is required (token mode)")
    parts = token.split(".")
    if len(parts) != 3 or parts[0] != _PREFIX or not token.isascii():  # non-ASCII: found by fuzz/targets.py token
        raise TokenError("unauthorized", "malformed token (expected v1.PAYLOAD.SIGNATURE)")
    signed_part = f"{parts[0]}.{parts[1]}"
    try:
        signature = _unb64(parts[2])
    except (binascii.Error, ValueError):
        raise TokenError("unauthorized", "malformed token signature") from None
    if not hmac.compare_digest(signature, _sign(secret, signed_part)):
        raise TokenError("unauthorized", "bad token signature (tampered, or signed with another secret)")
    try:
        payload = json.loads(_unb64(parts[1]))
        user_id = payload["u"]
        channels = payload["c"]
        expires_at = payload["exp"]
    except (binascii.Error, ValueError, KeyError, TypeError):
        raise TokenError("unauthorized", "malformed token payload") from None
    if (
        not isinstance(user_id, str)
        or not user_id
        or not isinstance(channels, list)
        or not all(isinstance(c, str) for c in channels)
        or not isinstance(expires_at, int)
    ):
        raise TokenError("unauthorized", "malformed token payload")
    if now >= expires_at:
        raise TokenError("token_expired", f"the token expired {int(now - expires_at)} s ago; ask for a new one")
    claims = TokenClaims(user_id=user_id, channels=tuple(channels), expires_at=expires_at)
    if channel_id is not None and not claims.allows(channel_id):
        raise TokenError("channel_forbidden", f"the token does not allow channel {channel_id!r}")
    return claims


def check_open_mode_allowed(listen: str) -> str | None:
    """Return None if open mode may run with the HTTP listener on ``listen``, else the reason it may not.

    Open mode lets anyone who reaches the page join any call under any name, so it is only safe when nobody else
    can reach the page: the listener must be a loopback address. This only inspects the address; it binds nothing.
    """
    try:
        address = ipaddress.ip_address(listen)
    except ValueError:
        return f"http.listen {listen!r} is not an IP address"
    if address.is_loopback:
        return None
    return (
        f"auth.mode = \"open\" lets anyone who can reach the server join any call, so it is only allowed when "
        f"http.listen is a loopback address (127.0.0.1 or ::1), but it is {listen}. Either set http.listen = "
        f"\"127.0.0.1\" (and put a reverse proxy in front), or use auth.mode = \"token\" with an auth.secret."
    )


def turn_credentials(*, secret: str, session_id: str, now: float, ttl_seconds: int) -> tuple[str, str]:
    """TURN REST API credentials (draft-uberti-behave-turn-rest, coturn's use-auth-secret).

    username = ``<expiry unix seconds>:<session id>``, password = base64(HMAC-SHA1(secret, username)).
    """
    username = f"{int(now) + int(ttl_seconds)}:{session_id}"
    digest = hmac.new(secret.encode("utf-8"), username.encode("utf-8"), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode("ascii")


_TTL_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_ttl(text: str) -> int:
    """``"90"``, ``"90s"``, ``"15m"``, ``"1h"``, ``"7d"`` → seconds; raises ValueError with a clear message."""
    value = text.strip().lower()
    unit = 1
    if value and value[-1] in _TTL_UNITS:
        unit = _TTL_UNITS[value[-1]]
        value = value[:-1]
    try:
        seconds = int(value) * unit
    except ValueError:
        raise ValueError(f"bad TTL {text!r}: expected a number with an optional unit s, m, h or d (e.g. 1h)") from None
    if seconds <= 0:
        raise ValueError(f"bad TTL {text!r}: must be positive")
    return seconds
