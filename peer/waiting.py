"""How the media engine's loops wait for a moment: a Trio sleep, or a timerfd on the native engines.

Why two: a Trio sleep is a cancel scope whose deadline expires by raising and catching ``Cancelled`` inside the
run loop. The engine waits like that 50 times a second for its send tick and up to a few times per tick between
busy drains; with no packets at all that was ~200 µs of CPU per 20 ms tick (py-spy, 17:20 UTC), the largest fixed
cost of the tool's process. The native engines instead arm a timerfd (``_fastpeer.timer_set``, an absolute
``CLOCK_MONOTONIC`` deadline: ``time.monotonic()``'s clock) and await it with ``trio.lowlevel.wait_readable``: no
scope, no exception, two ``epoll_ctl`` calls. The Python engine keeps Trio's sleep: it is the reference, and the
session-2 tool the native engines are compared with.
"""

from __future__ import annotations

import os
import time
from typing import Protocol

import trio

try:
    from . import _fastpeer
except ImportError:  # not built: the Python engine only
    _fastpeer = None  # type: ignore[assignment]

__all__ = ["Waiter", "TrioWaiter", "TimerfdWaiter"]


class Waiter(Protocol):
    """One task's way to sleep until a ``time.monotonic()`` deadline; closed when the task ends."""

    async def sleep_until(self, deadline: float) -> None: ...

    def close(self) -> None: ...


class TrioWaiter:
    """``trio.sleep`` (the Python engine's waits, as the session-2 tool had them)."""

    async def sleep_until(self, deadline: float) -> None:
        await trio.sleep(max(0.0, deadline - time.monotonic()))

    def close(self) -> None:
        pass


class TimerfdWaiter:
    """A timerfd of this task's own (one task per fd: Trio refuses two waiters on one fd)."""

    def __init__(self) -> None:
        self._fd = _fastpeer.timer_open()

    async def sleep_until(self, deadline: float) -> None:
        _fastpeer.timer_set(self._fd, int(deadline * 1e9))
        await trio.lowlevel.wait_readable(self._fd)
        _fastpeer.timer_clear(self._fd)

    def close(self) -> None:
        if self._fd >= 0:
            trio.lowlevel.notify_closing(self._fd)
            os.close(self._fd)
            self._fd = -1
