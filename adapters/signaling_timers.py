"""``TimerService``: the core's timers on a clock, answered with ``TimerFired``.

The machine asks for timers with outputs (``StartTimer(key, deadline)``, ``CancelTimer(key)``; one pending timer
per key) and is woken by the input ``TimerFired(key, at)``. This service keeps that table and one task that sleeps
until the earliest deadline, then hands every due key to ``fire(key, at)`` in deadline order, with
``at = max(now, deadline)`` so a fire is never earlier than its deadline (the core's timer contract).

The clock is injected (``clock_ms``, milliseconds) and the task sleeps with Trio, so a test drives it with
``trio.testing.MockClock`` and ``clock_ms = lambda: int(trio.current_time() * 1000)``: virtual time, no sleeps.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

import trio
from callsd.core.calls import outputs as out

__all__ = ["TimerService"]

log = logging.getLogger("callsd.signaling")

IDLE_WAKE_S = 60.0  # with no timer armed, the task still wakes now and then (cheap; bounds any clock surprise)


class TimerService:
    """The hub's timer table; ``run()`` fires due timers through ``fire(key, at)``."""

    def __init__(self, clock_ms: Callable[[], int], fire: Callable[[str, int], object]) -> None:
        self._clock_ms = clock_ms
        self._fire = fire
        self._deadlines: dict[str, int] = {}  # key -> deadline (clock ms)
        self._changed = trio.Event()

    @property
    def pending(self) -> Mapping[str, int]:
        """The armed timers, key -> deadline."""
        return self._deadlines

    def follow(self, request: out.TimerRequest) -> None:
        """Apply one of the machine's timer outputs."""
        match request:
            case out.StartTimer(key=key, deadline=deadline):
                self._deadlines[key] = deadline
            case out.CancelTimer(key=key):
                self._deadlines.pop(key, None)
        self._changed.set()

    def load(self, deadlines: Mapping[str, int]) -> None:
        """Arm every timer of a machine restored from the log (``machine.timers()``)."""
        self._deadlines.update(deadlines)
        self._changed.set()

    def fire_due(self) -> int:
        """Fire every timer whose deadline has passed, earliest first; returns how many fired."""
        now = self._clock_ms()
        due = sorted((deadline, key) for key, deadline in self._deadlines.items() if deadline <= now)
        for deadline, key in due:
            if self._deadlines.get(key) == deadline:  # an earlier fire in this round may have cancelled or re-armed it
                del self._deadlines[key]
                try:
                    self._fire(key, max(now, deadline))
                except Exception:
                    log.exception("timer %s failed", key)
        return len(due)

    async def run(self) -> None:
        """Fire timers as they fall due, until cancelled."""
        while True:
            self._changed = trio.Event()
            if self.fire_due():
                continue
            now = self._clock_ms()
            earliest = min(self._deadlines.values(), default=None)
            wait = IDLE_WAKE_S if earliest is None else max(0.0, (earliest - now) / 1000) + 0.001
            with trio.move_on_after(wait):
                await self._changed.wait()
