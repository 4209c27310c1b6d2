"""Pre-negotiated receive slots: server-sent audio sections offered ahead, so joins cost others no renegotiation.

Theory of operation
-------------------
Without slots the server offers one new ``sendonly`` section per routed track (docs/adr/0004): every join costs
every participant already in the call one offer/answer round. A client that asks for slots (``audio_slots`` in its
first ``sdp`` offer, docs/protocol.md, docs/adr/0020-receive-slots.md) gets its audio on a fixed set of sections
instead (offered by the server, or, protocol 1.4, ``recvonly`` sections of the client's first offer), each with its own SSRC chosen when the slot is created. Routing an audio track to the client
puts it on a free slot (the adapter then tells the client whose audio a slot now carries, by mid); removing the
route frees the slot. The negotiator sees a slot as an ``OutgoingTrack`` whose track id is the slot id, so the
outgoing set does not change when tracks come and go, and no offer is made.

A slot's SSRC is used for one track only: a receiver's jitter buffer would see a foreign sequence and timestamp
base on a reused SSRC. A freed slot is therefore *spent* until the next offer, which gives it a fresh SSRC
(``refresh``). A track that finds no fresh slot is the one case that needs an offer: the adapter calls
``refresh`` with new SSRCs (every spent slot comes back fresh, and the table grows by ``batch`` slots if none was
spent), places the track, and offers.

States of a slot: ``fresh`` (never carried a track under its SSRC) → ``busy`` (carries ``track_id``) → ``spent``
(the track left) → ``fresh`` again on ``refresh``; ``retired`` for good when the client rejected its section (it is
never offered or used again, so a client that refuses cannot make the server loop). Pure: the SSRCs are drawn by
the adapter and passed in.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from ..errors import LocalProtocolError

__all__ = ["SlotState", "ReceiveSlot", "ReceiveSlots", "MAX_AUDIO_SLOTS", "SLOT_PREFIX"]

MAX_AUDIO_SLOTS = 32  # what a client may ask for; the table grows past it only as routes need
SLOT_PREFIX = "callsd-slot-"


class SlotState(enum.StrEnum):
    FRESH = "fresh"
    BUSY = "busy"
    SPENT = "spent"
    RETIRED = "retired"


@dataclass(frozen=True, slots=True, kw_only=True)
class ReceiveSlot:
    """One server section the client receives on: ``slot_id`` is its track id in SDP (``a=msid``)."""

    slot_id: str
    ssrc: int
    state: SlotState = SlotState.FRESH
    track_id: str | None = None


class ReceiveSlots:
    """The receive slots of one session (one media kind). ``place``/``release``/``refresh`` change it."""

    __slots__ = ("kind", "batch", "_slots", "_by_track", "_offered_version")

    def __init__(self, *, kind: str, batch: int) -> None:
        if batch < 1:
            raise LocalProtocolError(f"a slot table needs a batch of at least 1, got {batch}")
        self.kind = kind
        self.batch = batch
        self._slots: list[ReceiveSlot] = []
        self._by_track: dict[str, int] = {}  # track id -> index in _slots
        self._offered_version = 0

    def __iter__(self) -> Iterator[ReceiveSlot]:
        return iter(self._slots)

    def __len__(self) -> int:
        return len(self._slots)

    @property
    def offered_version(self) -> int:
        """Changes exactly when the slots to offer change: their ids and SSRCs, retired ones left out (``refresh``,
        ``retire``). ``place`` and ``release`` leave it: a track coming or going changes no offer, so an adapter
        may keep what it derived from the offered slots while this stays the same."""
        return self._offered_version

    def slot_of(self, track_id: str) -> ReceiveSlot | None:
        i = self._by_track.get(track_id)
        return self._slots[i] if i is not None else None

    def needed(self) -> int:
        """How many SSRCs ``refresh`` takes now: one per spent slot, or ``batch`` if none is spent."""
        spent = sum(1 for s in self._slots if s.state is SlotState.SPENT)
        return spent or self.batch

    def place(self, track_id: str) -> ReceiveSlot | None:
        """Put ``track_id`` on the first fresh slot and return it (the same slot if it is already placed); None
        when no slot is fresh (then ``refresh`` and offer)."""
        i = self._by_track.get(track_id)
        if i is not None:
            return self._slots[i]
        for i, s in enumerate(self._slots):
            if s.state is SlotState.FRESH:
                slot = ReceiveSlot(slot_id=s.slot_id, ssrc=s.ssrc, state=SlotState.BUSY, track_id=track_id)
                self._slots[i] = slot
                self._by_track[track_id] = i
                return slot
        return None

    def release(self, track_id: str) -> ReceiveSlot | None:
        """Take ``track_id`` off its slot, which is spent until the next ``refresh``; the freed slot, or None."""
        i = self._by_track.pop(track_id, None)
        if i is None:
            return None
        s = self._slots[i]
        self._slots[i] = ReceiveSlot(slot_id=s.slot_id, ssrc=s.ssrc, state=SlotState.SPENT)
        return s

    def retire(self, slot_id: str) -> str | None:
        """The client rejected this slot's section: never use it again. Returns the track it carried, if any (that
        track is off slots from now on)."""
        for i, s in enumerate(self._slots):
            if s.slot_id == slot_id and s.state is not SlotState.RETIRED:
                if s.track_id is not None:
                    del self._by_track[s.track_id]
                self._slots[i] = ReceiveSlot(slot_id=s.slot_id, ssrc=s.ssrc, state=SlotState.RETIRED)
                self._offered_version += 1
                return s.track_id
        return None

    def refresh(self, ssrcs: Sequence[int]) -> None:
        """Give every spent slot a fresh SSRC, or, if none is spent, add ``batch`` fresh slots. ``ssrcs`` must hold
        ``needed()`` distinct values not used by the session (the adapter draws them)."""
        if len(ssrcs) != self.needed() or len(set(ssrcs)) != len(ssrcs):
            raise LocalProtocolError(f"refresh needs {self.needed()} distinct SSRCs, got {list(ssrcs)}")
        self._offered_version += 1
        fresh = iter(ssrcs)
        spent = [i for i, s in enumerate(self._slots) if s.state is SlotState.SPENT]
        for i in spent:
            self._slots[i] = ReceiveSlot(slot_id=self._slots[i].slot_id, ssrc=next(fresh))
        if not spent:
            start = len(self._slots)
            self._slots += [ReceiveSlot(slot_id=f"{SLOT_PREFIX}{self.kind[0]}{start + n + 1}", ssrc=next(fresh))
                            for n in range(self.batch)]
