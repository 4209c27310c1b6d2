"""The node-to-node relay link: a WebSocket from a client's front node to its call's owner (docs/adr/0017).

The front opens ``ws://<owner advertise>/internal/v1/relay?channel=C&session=S&epoch=E`` with the header
``X-Callsd-Link: <link key>``; the link key is derived from ``cluster.secret`` (never the secret itself), compared in
constant time. ``epoch`` is the lease epoch the front read from the database (0: "host it if nobody does", what a
non-handler asks a handler). The owner refuses a link whose epoch is not its live lease's, and then every frame
either way is ``"<epoch>\\n<client frame>"``: the owner drops the link on a frame of another epoch, and the front
drops the link when the owner's epoch changes under it. The owner's first frame is ``"<epoch>\\n"`` (accepted).

Close codes from the owner that end the *client's* socket too are passed on (``CLIENT_CODES``: the hub closed it on
purpose); any other end of the link (the owner died, lost its lease, stopped) makes the front find the call's new
owner and resume the session there, the client's socket untouched.
"""

from __future__ import annotations

import hashlib
import hmac

__all__ = ["LINK_PATH", "LINK_HEADER", "MOVED", "CLIENT_CODES", "link_key", "wrap", "unwrap", "authentic",
           "reconnect_key"]

LINK_PATH = "/internal/v1/relay"
LINK_HEADER = "X-Callsd-Link"
MOVED = 4012  # the owner stopped acting for the call (lease lost, draining): find the new owner
CLIENT_CODES = frozenset({1008, 4001})  # the hub closed the client on purpose (too slow, replaced)


def link_key(secret: str) -> str:
    return hmac.new(secret.encode(), b"callsd relay link v1", hashlib.sha256).hexdigest()


def reconnect_key(secret: str) -> bytes:
    """The reconnect-secret key of every node (adapters/signaling_reconnect.py): derived from ``cluster.secret``, so
    a session's ``reconnect_secret`` is valid on whichever node takes its call over, with nothing stored."""
    return hmac.new(secret.encode(), b"callsd reconnect key v1", hashlib.sha256).digest()


def authentic(presented: str | None, secret: str) -> bool:
    return presented is not None and hmac.compare_digest(presented.encode(), link_key(secret).encode())


def wrap(epoch: int, frame: str) -> str:
    return f"{epoch}\n{frame}"


def unwrap(message: str | bytes) -> tuple[int, str]:
    """``(epoch, frame)``; ``(-1, "")`` for a message that is not a link frame."""
    text = message.decode("utf-8", "replace") if isinstance(message, bytes) else message
    head, sep, frame = text.partition("\n")
    if not sep or not head.isdigit():
        return -1, ""
    return int(head), frame
