"""Random identifiers for the media plane (SSRCs, RTP numbering offsets, ICE credentials) and the signaling hub's
session and call ids, read from the OS in blocks.

Why: a join draws about forty of them (a session's ICE ufrag and password, its RTCP SSRC, eight slot SSRCs, each
route's SSRC, timestamp and sequence offsets), and ``secrets`` makes one ``getrandom`` system call per draw (~0.6
µs each here, ~25 µs per join; issue 13 part 2, docs/performance.md "Joins, session 9"). The pool reads 4 KiB at
once from the same source (``os.urandom``) and hands out its bytes in order, each byte once, so every draw is as
unpredictable as the ``secrets`` call it replaces. A forked child starts with an empty pool, never with its
parent's unread bytes. The pool is not locked: the plane and the hub draw from the event loop's thread only. The
hub's ids (``adapters/signaling.py`` ``_new_id``) made the last two ``getrandom`` calls of a join (docs/performance.md,
"Joins, session 10: the kernel's share").
"""

from __future__ import annotations

import base64
import os

__all__ = ["RandomPool", "POOL"]

_BLOCK = 4096


class RandomPool:
    """Bytes from ``os.urandom``, read a block at a time, each handed out once."""

    __slots__ = ("_block", "_at")

    def __init__(self) -> None:
        self._block = b""
        self._at = 0

    def reset(self) -> None:
        """Forget the unread bytes (a forked child: they are its parent's too)."""
        self._block, self._at = b"", 0

    def take(self, n: int) -> bytes:
        at = self._at
        if at + n > len(self._block):
            self._block, at = os.urandom(max(_BLOCK, n)), 0
        self._at = at + n
        return self._block[at : at + n]

    def randbits(self, k: int) -> int:
        """A uniform integer of ``k`` bits, as ``secrets.randbits(k)``."""
        n = (k + 7) // 8
        return int.from_bytes(self.take(n), "big") >> (8 * n - k)

    def token_hex(self, n: int) -> str:
        """``n`` random bytes as ``2n`` hex digits, as ``secrets.token_hex(n)``."""
        return self.take(n).hex()

    def token_urlsafe(self, n: int) -> str:
        """``n`` random bytes in unpadded base64url, as ``secrets.token_urlsafe(n)``."""
        return base64.urlsafe_b64encode(self.take(n)).rstrip(b"=").decode("ascii")


POOL = RandomPool()
os.register_at_fork(after_in_child=POOL.reset)
