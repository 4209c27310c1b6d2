"""The server's rules for the names people type: channel names and display names (docs/protocol.md, "Names").

The server is the authority on both, so that every client (the browser page, a script, a token's holder) sees the
same call names and the same person names, and no client can smuggle in text that renders misleadingly:

- A channel name is 1-64 characters from ``A-Z a-z 0-9 . _ -``. It appears in URLs, logs, metrics labels and the
  page's header, so it stays plain. Anything else is refused with ``invalid_channel``.
- A display name is cleaned, then checked: control characters, bidirectional overrides/isolates/marks and other
  invisible format characters are removed (``"\\u202eevil\\u202c"`` would otherwise render reversed, as "live"), runs of
  whitespace become one space, and the ends are trimmed. What is left must be 1-64 characters, or the join is
  refused with ``invalid_name``. The zero-width joiner and emoji tag characters are kept: emoji sequences need them.

Pure functions; ``SignalingError`` carries the code and a message written for the person who typed the name (the
page shows its own text for the code, other clients can show the message as it is).
"""

from __future__ import annotations

import re
import unicodedata

from .signaling_protocol import SignalingError

__all__ = ["CHANNEL_MAX", "NAME_MAX", "check_channel_id", "clean_display_name"]

CHANNEL_MAX = 64
NAME_MAX = 64
_CHANNEL = re.compile(rf"[A-Za-z0-9._-]{{1,{CHANNEL_MAX}}}")
_KEEP_FORMAT = frozenset({"\u200d"}) | {chr(c) for c in range(0xE0020, 0xE0080)}  # ZWJ, emoji tag characters
_SPACES = re.compile(r"\s+")


def check_channel_id(channel_id: str, action: str) -> str:
    """``channel_id`` itself if it follows the channel-name rule; else ``SignalingError("invalid_channel")``."""
    if _CHANNEL.fullmatch(channel_id) is None:
        raise SignalingError(
            "invalid_channel",
            f"channel names are 1-{CHANNEL_MAX} characters: letters A-Z, digits, dots, dashes and underscores",
            action,
        )
    return channel_id


def _visible(ch: str) -> bool:
    category = unicodedata.category(ch)
    if category == "Cf":
        return ch in _KEEP_FORMAT
    return category not in ("Cc", "Cs", "Co", "Cn")


def clean_display_name(raw: str, action: str) -> str:
    """The display name as the server will show it: invisible and direction-changing characters removed, whitespace
    collapsed and trimmed. Raises ``SignalingError("invalid_name")`` if nothing visible is left or it is too long."""
    if len(raw) > 4 * NAME_MAX:  # no name worth keeping is this long; do not clean megabytes
        raise SignalingError("invalid_name", f"names are at most {NAME_MAX} characters", action)
    text = "".join(ch if _visible(ch) else ("" if not ch.isspace() else " ") for ch in raw)
    text = _SPACES.sub(" ", unicodedata.normalize("NFC", text)).strip()
    if not text:
        raise SignalingError("invalid_name", "a name needs at least one visible character", action)
    if len(text) > NAME_MAX:
        raise SignalingError("invalid_name", f"names are at most {NAME_MAX} characters", action)
    return text
