"""Why the HTTP guard cut a connection (shared by app/http_requests.py and app/http_inbound.py, both pure)."""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = ["Refusal", "RefusalReason"]


class RefusalReason(enum.Enum):
    """Why a connection was cut; the value is the label of ``callsd_http_refused_total``."""

    MESSAGE_TOO_BIG = "message_too_big"
    BAD_FRAME = "bad_frame"
    HEAD_TOO_BIG = "head_too_big"
    HTTP2 = "http2_refused"
    EARLY_FRAMES = "early_frames_too_big"
    UNEXPECTED_UPGRADE = "unexpected_upgrade"
    REQUEST_FRAMING = "request_framing"  # a request whose end cannot be told for sure (smuggling shapes)


@dataclass(frozen=True, slots=True, kw_only=True)
class Refusal:
    reason: RefusalReason
    detail: str
    close_code: int | None = None  # the WebSocket close code to send when the upgrade was answered
    http_status: int | None = None  # the status to answer when no response has started
