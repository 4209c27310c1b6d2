"""The native engines' timerfd waits (peer/waiting.py) keep Trio's sleep contract: they return at or after the
deadline (never before), at once for a deadline already past, can be cancelled, and several tasks may each wait
on a waiter of their own at the same time."""

from __future__ import annotations

import time

import trio
from callsd.peer.waiting import TimerfdWaiter


async def _wait(deadline: float, woke: list[tuple[float, float]]) -> None:
    waiter = TimerfdWaiter()
    try:
        await waiter.sleep_until(deadline)
        woke.append((deadline, time.monotonic()))
    finally:
        waiter.close()


def test_timerfd_waits_until_the_deadline_and_never_before() -> None:
    async def main() -> None:
        woke: list[tuple[float, float]] = []
        start = time.monotonic()
        deadlines = [start + 0.05, start + 0.02, start - 1.0]  # the last is already past
        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                for deadline in deadlines:
                    nursery.start_soon(_wait, deadline, woke)
        assert len(woke) == 3
        assert all(at >= deadline for deadline, at in woke), woke

    trio.run(main)


def test_timerfd_wait_can_be_cancelled_and_closes_its_fd() -> None:
    async def main() -> None:
        waiter = TimerfdWaiter()
        with trio.move_on_after(0.05) as scope:
            await waiter.sleep_until(time.monotonic() + 3600)
        assert scope.cancelled_caught
        waiter.close()
        waiter.close()  # idempotent

    trio.run(main)
