"""Which sessions send their RTCP reports on which tick of the reporting interval (issue 13, docs/adr/0042).

The round used to be one burst a second: every session's SRs and RR built and sent back to back, tens of ms at
800 sessions during which the event loop reads nothing from the media socket (the moment it is most likely to drop
at saturation). Instead the interval is cut into ``slots`` ticks and each session owns one slot for its lifetime, so
each tick serves ~1/slots of the sessions and each session still reports exactly once per interval, at its own phase
(RFC 3550 6.2 asks for spread reports too: synchronised senders are what its randomisation avoids).

A new session takes the slot with the fewest sessions (the earliest such slot after the cursor on a tie, so a burst
of joins fills the next ticks first): slots stay balanced within one session as long as sessions only come, and a
leaving session frees its place for the next. Pure bookkeeping, no clock: the plane's report loop calls ``due()``
once per tick.
"""

from __future__ import annotations

from typing import Generic, TypeVar

__all__ = ["ReportSchedule", "REPORT_SLOTS"]

REPORT_SLOTS = 10  # ticks per reporting interval: 100 ms apart for the 1 s interval

Member = TypeVar("Member")


class ReportSchedule(Generic[Member]):
    """Members (sessions, by id) spread over ``slots`` ticks; ``due()`` returns the next tick's members."""

    __slots__ = ("_slots", "_slot_of", "_cursor")

    def __init__(self, slots: int = REPORT_SLOTS) -> None:
        if slots < 1:
            raise ValueError(f"a report schedule needs at least one slot, not {slots}")
        self._slots: list[dict[str, Member]] = [{} for _ in range(slots)]
        self._slot_of: dict[str, int] = {}
        self._cursor = 0  # the slot the next due() serves

    def __len__(self) -> int:
        return len(self._slot_of)

    @property
    def slots(self) -> int:
        return len(self._slots)

    def add(self, key: str, member: Member) -> int:
        """Place ``member`` (replacing one under the same key, in its slot); returns its slot."""
        slot = self._slot_of.get(key)
        if slot is None:
            count = len(self._slots)
            slot = min(((self._cursor + i) % count for i in range(count)), key=lambda s: len(self._slots[s]))
            self._slot_of[key] = slot
        self._slots[slot][key] = member
        return slot

    def remove(self, key: str) -> None:
        slot = self._slot_of.pop(key, None)
        if slot is not None:
            del self._slots[slot][key]

    def slot_of(self, key: str) -> int | None:
        return self._slot_of.get(key)

    def due(self) -> list[Member]:
        """The members whose tick this is; the next call serves the next slot."""
        members = list(self._slots[self._cursor].values())
        self._cursor = (self._cursor + 1) % len(self._slots)
        return members
