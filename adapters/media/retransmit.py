"""Retransmission on the publisher side: RTX packets in, NACKs out (RFC 4585, RFC 4588; docs/adr/0019).

Why here and not in the forwarder's per-packet rule: an RTX packet arrives on an SSRC the publisher signalled in
``a=ssrc-group:FID``, which is not in the session's ``inbound`` table but in ``inbound_rtx``; the Python path hands
it to ``MediaPlane.on_rtp`` as an unknown SSRC, and ``unwrap_publisher_rtx`` restores the original packet and feeds
it to ``Forwarder.on_rtp`` like any other: it fills the track's cache hole and reaches the receivers that still miss
it. The native step does the same in C from the same ``inbound_rtx`` table (native/simulcast_step.h, ADR 0024).

The server also asks publishers for what it lost on the way in, instead of waiting for every receiver to NACK the
same hole: ``nack_round`` (the plane's periodic task, every 250 ms) runs ``holes_to_nack``, which scans the last ``WINDOW`` sequence numbers
of a video track's packet cache and NACKs the missing ones, each at most ``MAX_NACKS`` times. Only tracks whose
publisher negotiated RTX are scanned: such a sender puts its padding probes on the RTX stream, so a hole in the
media stream is a real loss (a padding-only packet on the media SSRC is not cached and would look like one).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from callsd.core.wire.rtx import unwrap_rtx

from .forwarder import CACHE_SIZE, Forwarder, InTrack

__all__ = ["WINDOW", "REORDER", "MAX_NACKS", "holes_to_nack", "nack_round", "unwrap_publisher_rtx", "register_rtx"]

WINDOW = 256  # sequence numbers scanned behind the newest (half the cache)
REORDER = 3  # the newest few are not holes yet: they may be reordered on the way
MAX_NACKS = 3  # NACKs per hole before giving up (a key frame request repairs what RTX could not)
_MASK = CACHE_SIZE - 1


def holes_to_nack(track: InTrack) -> list[int]:
    """Publisher sequence numbers missing from ``track``'s cache to NACK now; remembers how often each was asked."""
    cache = track.cache
    if cache is None or track.rtx_ssrc is None or not track.started or track.ended:
        return []
    newest = track.cycles + track.max_seq  # extended sequence numbers (track.base_seq is in the first cycle)
    first = max(track.base_seq, newest - WINDOW)
    asked = track.nacked
    kept: dict[int, int] = {}
    lost: list[int] = []
    for ext in range(first, newest - REORDER + 1):
        seq = ext & 0xFFFF
        pkt = cache[seq & _MASK]
        if pkt is not None and (pkt[2] << 8 | pkt[3]) == seq:
            continue
        count = asked.get(seq, 0)
        if count < MAX_NACKS:
            lost.append(seq)
            count += 1
        kept[seq] = count
    track.nacked = kept
    return lost


def register_rtx(inbound_rtx: dict[int, InTrack], track: InTrack, rtx_ssrc: int | None, rtx_pt: int | None) -> None:
    """Bind (or re-bind, after a re-keyed section) the publisher's RTX SSRC of ``track`` in the session's table."""
    if track.rtx_ssrc is not None and inbound_rtx.get(track.rtx_ssrc) is track:
        del inbound_rtx[track.rtx_ssrc]
    track.rtx_ssrc, track.rtx_pt = (rtx_ssrc, rtx_pt) if rtx_ssrc is not None and rtx_pt is not None else (None, None)
    if track.rtx_ssrc is not None:
        inbound_rtx[track.rtx_ssrc] = track


def unwrap_publisher_rtx(forwarder: Forwarder, inbound: dict[int, InTrack], inbound_rtx: dict[int, InTrack],
                         plain: bytes) -> bool:
    """If ``plain`` is on a publisher's RTX SSRC: restore the original and forward it. True when it was RTX.

    ``Forwarder.on_rtp`` counted the packet as an unknown SSRC; that count is taken back. An RTX packet without an
    original sequence number (a padding probe) is counted in ``drop_padding``."""
    track = inbound_rtx.get(int.from_bytes(plain[8:12], "big"))
    if track is None or track.ssrc is None or track.rtx_pt != plain[1] & 0x7F:
        return False
    c = forwarder.counters
    c.drop_unknown_ssrc -= 1
    c.rtx_in += 1
    primary_pt = next(iter(track.codecs))
    original = unwrap_rtx(plain, ssrc=track.ssrc, payload_type=primary_pt)
    if original is None:
        c.drop_padding += 1
        return True
    forwarder.on_rtp(inbound, original)
    return True


def nack_round(forwarder: Forwarder, tracks: Iterable[InTrack], send_nack: Callable[[InTrack, list[int]], bool]) -> None:
    """NACK every video track's holes to its publisher (``send_nack`` returns False when it could not send)."""
    for track in tracks:
        lost = holes_to_nack(track)
        if lost and send_nack(track, lost):
            forwarder.counters.nack_out += 1
