"""``ReconnectSecrets``: the per-session secret a ``reconnect`` must present (docs/protocol.md, "Reconnecting").

Session ids are public: every participant sees them in the call state and in events, since hosts target sessions by
id. So an id alone cannot be what lets a socket take a session over. Each session also gets a reconnect secret, sent
only to its own client in ``join_ack`` (never broadcast, never logged), and ``reconnect`` must present it, in every
auth mode.

The secret is derived, not stored: ``HMAC-SHA256(server key, session id)``, base64url. Nothing is added to the event
log or to the machine's state (replay is unaffected), a restarted server recognises the secrets of sessions that
dropped before the restart (the server keeps its key in the data directory), and the check is a constant-time
comparison.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

__all__ = ["ReconnectSecrets", "SECRET_MAX"]

SECRET_MAX = 128  # longer presented values are refused without hashing


class ReconnectSecrets:
    """Issue and check reconnect secrets under one server key (at least 16 bytes)."""

    __slots__ = ("_key",)

    def __init__(self, key: bytes) -> None:
        if len(key) < 16:
            raise ValueError("a reconnect key needs at least 16 bytes")
        self._key = key

    def issue(self, session_id: str) -> str:
        """The secret of ``session_id`` (the same on every call)."""
        digest = hmac.new(self._key, b"reconnect\x00" + session_id.encode("utf-8"), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")

    def check(self, session_id: str, presented: object) -> bool:
        """True if ``presented`` is the secret of ``session_id``."""
        if not isinstance(presented, str) or not presented or len(presented) > SECRET_MAX:
            return False
        return hmac.compare_digest(self.issue(session_id).encode("ascii"), presented.encode("utf-8", "replace"))
