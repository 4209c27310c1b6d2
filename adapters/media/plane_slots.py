"""The media plane's side of pre-negotiated audio receive slots (core/wire/receive_slots.py, ADR 0020).

A session whose client asked for ``audio_slots`` receives every routed audio track on one of its slots: the route
takes the slot's SSRC, and the client learns whose audio a slot carries from a ``slots`` signal (by mid) instead
of from a new offer. Only a route that finds no fresh slot makes the plane offer (with fresh SSRCs on the spent
slots, or a new batch). The slots' sections are the server's (offered after the client's first offer) or, when the
client names them in ``slot_mids`` (protocol 1.4), ``recvonly`` sections of that first offer, which the answer
sends on: then a join costs one offer/answer round, the client's own (``receive_on``, ADR 0020's addendum). A
route added before the client asked for slots (a reconnecting session's restored routes) keeps its own section, as
without slots: a route is on a slot exactly when the table has it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from callsd.core.wire.negotiation import NegotiationState, Negotiator, OutgoingTrack, SendingTrack
from callsd.core.wire.receive_slots import MAX_AUDIO_SLOTS, ReceiveSlots, SlotState
from callsd.core.wire.sdp import Codec

from .forwarder import OutRoute
from .random_pool import POOL

__all__ = ["SlotSession", "requested_slots", "slot_mids", "receive_on", "busy_slots", "enable", "draw_ssrc",
           "slot_tracks", "place", "slot_key", "refuse", "sending", "SLOT_CODEC", "SLOT_CNAME"]

# What a slot section offers: Opus as the server accepts it from publishers (codec_policy.py); the route maps the
# publisher's payload type onto the receiver's as for any route.
SLOT_CODEC = Codec(payload_type=111, name="opus", clock_rate=48000, channels=2, fmtp="minptime=10;useinbandfec=1")
SLOT_CNAME = "callsd-slots"


class SlotSession(Protocol):
    """What these functions read of a plane ``Session``."""

    audio_slots: ReceiveSlots | None
    slot_offer: tuple[ReceiveSlots | None, int, tuple[OutgoingTrack, ...]]  # slot_tracks' memo: table, version
    neg: Negotiator
    refused: set[str]

    @property
    def out_by_ssrc(self) -> dict[int, OutRoute]: ...

    @property
    def routes_in(self) -> Mapping[str, OutRoute]: ...


def requested_slots(value: object) -> int:
    """The number of audio slots a client's ``sdp`` offer asks for (``audio_slots``): 0 unless an int in range."""
    if isinstance(value, bool) or not isinstance(value, int):
        return 0
    return max(0, min(value, MAX_AUDIO_SLOTS))


def slot_mids(value: object) -> tuple[str, ...]:
    """The mids of the sections a client's offer adds to receive its slots on (``slot_mids``, protocol 1.4): none
    when absent. Raises ``ValueError`` (the offer is refused, ``bad_receive_slots``) unless a list of at most
    ``MAX_AUDIO_SLOTS`` distinct non-empty strings."""
    if value is None:
        return ()
    if (not isinstance(value, list) or len(value) > MAX_AUDIO_SLOTS
            or not all(isinstance(mid, str) and 0 < len(mid) <= 32 for mid in value) or len(set(value)) != len(value)):
        raise ValueError(f"slot_mids must list at most {MAX_AUDIO_SLOTS} distinct mids (strings of 1 to 32 "
                         f"characters)")
    return tuple(value)


def receive_on(s: SlotSession, mids: tuple[str, ...]) -> dict[str, OutgoingTrack]:
    """The slots to answer on the client's own sections ``mids`` (mid -> slot track), in table order: only in the
    session's first answered offer (later offers repeat sections already bound). The slots left over, if the table
    has more, are offered by the server as before."""
    if not mids or s.audio_slots is None or s.neg.state is not NegotiationState.NEW:
        return {}
    return dict(zip(mids, slot_tracks(s), strict=False))


def busy_slots(s: SlotSession) -> list[tuple[str, str]]:
    """``(mid, track id)`` of every slot that carries a track and has a section: what an answer that put slots on
    the client's own sections tells the client (the ``tracks`` of ``signal {type: "answer"}``)."""
    out = []
    for slot in s.audio_slots or ():
        mid = s.neg.mid_of(slot.slot_id) if slot.track_id is not None else None
        if mid is not None and slot.track_id is not None:
            out.append((mid, slot.track_id))
    return out


def draw_ssrc(s: SlotSession, taken: set[int] | None = None) -> int:
    """A random SSRC the session uses nowhere: not on a route, not on a slot, not in ``taken``."""
    while True:
        ssrc = POOL.randbits(32)
        if (ssrc and ssrc not in s.out_by_ssrc and (taken is None or ssrc not in taken)
                and (s.audio_slots is None or all(slot.ssrc != ssrc for slot in s.audio_slots))):
            return ssrc


def _refresh(s: SlotSession, table: ReceiveSlots) -> None:
    drawn: set[int] = set()
    for _ in range(table.needed()):
        drawn.add(draw_ssrc(s, drawn))
    table.refresh(sorted(drawn))


def enable(s: SlotSession, count: int) -> None:
    """Give the session ``count`` audio slots (once: a later request changes nothing). Audio routes that exist
    already (a joiner's routes from those in the call come before its first offer) move onto slots while nothing
    has been offered to the client yet; after that they keep their own sections."""
    if count <= 0 or s.audio_slots is not None:
        return
    table = ReceiveSlots(kind="audio", batch=count)
    s.audio_slots = table
    _refresh(s, table)
    if s.neg.state is not NegotiationState.NEW:
        return
    for r in s.routes_in.values():
        if r.track.media == "audio" and not r.negotiated:
            slot = table.place(r.track.track_id)
            if slot is None:
                _refresh(s, table)
                slot = table.place(r.track.track_id)
                assert slot is not None
            del s.out_by_ssrc[r.ssrc]
            r.ssrc = slot.ssrc
            s.out_by_ssrc[r.ssrc] = r


def slot_tracks(s: SlotSession) -> list[OutgoingTrack]:
    """Every slot as an outgoing track of the negotiator (free ones too: they are what a join lands on).

    Made again only when the table's offered slots changed (``offered_version``): every route added to a session
    asks for its outgoing set, and a join routes a track to each of the others, whose slots stay the same."""
    table = s.audio_slots
    if table is None:
        return []
    made_for, version, tracks = s.slot_offer
    if made_for is not table or version != table.offered_version:
        tracks = tuple(OutgoingTrack(track_id=slot.slot_id, stream_id=slot.slot_id, kind="audio", ssrc=slot.ssrc,
                                     codec=SLOT_CODEC, cname=SLOT_CNAME) for slot in table
                       if slot.state is not SlotState.RETIRED)
        s.slot_offer = (table, table.offered_version, tracks)
    return list(tracks)


def refuse(s: SlotSession, refused: tuple[str, ...]) -> None:
    """Note the outgoing sections the client rejected (track or slot ids): not offered again. A rejected slot is
    retired; the track it carried, if any, is then offered on a section of its own, as without slots."""
    s.refused.update(refused)
    if s.audio_slots is not None:
        for slot_id in refused:
            s.audio_slots.retire(slot_id)


def place(s: SlotSession, track_id: str) -> tuple[int, str] | None:
    """Put an audio track on a slot: ``(ssrc, slot id)``; refreshes the table (which makes the next offer) when no
    slot is fresh. None when the session has no slots, or its client rejected one (it gets sections per track)."""
    table = s.audio_slots
    if table is None or any(slot.state is SlotState.RETIRED for slot in table):
        return None
    slot = table.place(track_id)
    if slot is None:
        _refresh(s, table)
        slot = table.place(track_id)
        assert slot is not None  # a refresh always leaves a fresh slot
    return slot.ssrc, slot.slot_id


def sending(s: SlotSession, only: OutRoute | None) -> dict[str, SendingTrack]:
    """What the client's answer agreed to receive, by negotiator track id: all of it, or only ``only``'s entry
    (a route just put on a slot: looking up one section instead of describing them all)."""
    if only is None:
        return {st.track_id: st for st in s.neg.sending}
    key = slot_key(s, only.track.track_id)
    st = s.neg.sending_track(key)
    return {key: st} if st is not None else {}


def slot_key(s: SlotSession, track_id: str) -> str:
    """The negotiator's track id for routing ``track_id`` to ``s``: its slot's id, or its own id off slots."""
    slot = s.audio_slots.slot_of(track_id) if s.audio_slots is not None else None
    return slot.slot_id if slot is not None else track_id
