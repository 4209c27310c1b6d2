"""Simulcast in SDP (RFC 8853 ``a=simulcast``, RFC 8851 ``a=rid``), pure: what a publisher offers to send, and
the lines the server answers with to receive it.

A browser that publishes simulcast writes, in its video section, one ``a=rid:<id> send`` line per encoding and
``a=simulcast:send <id>;<id>;<id>`` (``;`` separates streams, ``,`` alternatives, ``~`` a stream it starts
paused). The packets then carry the RID header extension (``rtp-stream-id``; ``repaired-rtp-stream-id`` on RTX),
and usually no ``a=ssrc`` lines: the SFU learns each layer's SSRC from the RID. The server accepts the streams it
can use by answering ``a=rid:<id> recv`` and ``a=simulcast:recv <ids>`` in the same order.
"""

from __future__ import annotations

from .sdp import MediaSection

__all__ = ["RID_URI", "REPAIRED_RID_URI", "SIMULCAST_EXTENSIONS", "MAX_LAYERS", "send_rids", "receive_attributes"]

RID_URI = "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id"
REPAIRED_RID_URI = "urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id"
SIMULCAST_EXTENSIONS = (RID_URI, REPAIRED_RID_URI)
MAX_LAYERS = 3


def send_rids(m: MediaSection) -> tuple[str, ...]:
    """The RIDs ``m`` offers to send as simulcast, in ``a=simulcast`` order (first alternative of each stream,
    paused ones included); empty when the section is not a simulcast send (or names more than 3 streams)."""
    value = m.attribute("simulcast")
    if not value:
        return ()
    direction, _, streams = value.strip().partition(" ")
    if direction != "send" or not streams:
        return ()
    declared = set()
    for name, v in m.other:
        if name == "rid" and v:
            parts = v.split()
            if len(parts) >= 2 and parts[1] == "send":
                declared.add(parts[0])
    rids: list[str] = []
    for stream in streams.strip().split(";"):
        first = stream.split(",")[0].strip().lstrip("~")
        if not first or first not in declared or first in rids:
            return ()
        rids.append(first)
    return tuple(rids) if 2 <= len(rids) <= MAX_LAYERS else ()


def receive_attributes(rids: tuple[str, ...]) -> tuple[tuple[str, str | None], ...]:
    """The ``a=rid:<id> recv`` lines and the ``a=simulcast:recv`` line accepting ``rids`` (as ``other`` entries)."""
    if not rids:
        return ()
    return (*((("rid", f"{rid} recv")) for rid in rids), ("simulcast", "recv " + ";".join(rids)))
