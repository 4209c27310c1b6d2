"""Batch frames' linger on the hub's one clock (adapters/signaling_linger.py): the lingers of one input end on one
wake-up, a batch still waits ``BATCH_LINGER`` for company and no longer, a non-lazy event still takes the batch at
once, and the end of a linger never cuts a later batch short. Virtual time (``MockClock``, autojump)."""

from __future__ import annotations

import trio
import trio.testing
from callsd.adapters.signaling_linger import FLUSH, GRAIN, LingerClock, take_batch
from callsd.adapters.signaling_protocol import BATCH_LINGER
from callsd.adapters.signaling_session import OutboxItem


def _run(test: object) -> None:
    trio.run(test, clock=trio.testing.MockClock(autojump_threshold=0))  # type: ignore[arg-type]


def test_the_lingers_of_one_input_end_together_on_one_wakeup() -> None:
    async def main() -> None:
        clock = LingerClock()
        sent: list[tuple[int, list[str], float]] = []
        outboxes = [trio.open_memory_channel[OutboxItem](16) for _ in range(7)]

        async def writer(n: int) -> None:
            send, recv = outboxes[n]
            first = await recv.receive()
            sent.append((n, await take_batch(first, recv, clock, send), trio.current_time()))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(clock.run)
            for n in range(7):
                nursery.start_soon(writer, n)
            await trio.testing.wait_all_tasks_blocked()
            started = trio.current_time()
            for send, _ in outboxes:  # one join: every member is told, at once
                send.send_nowait(('{"type":"user_joined"}', True))
            await trio.sleep(BATCH_LINGER / 2)
            for send, _ in outboxes[:3]:  # company for three of them, within the linger
                send.send_nowait(('{"type":"user_media_state"}', True))
            while len(sent) < 7:
                await trio.testing.wait_all_tasks_blocked()
                await trio.sleep(GRAIN)
            nursery.cancel_scope.cancel()
        assert clock.wakeups == 1
        assert sorted(len(texts) for _, texts, _ in sent) == [1, 1, 1, 1, 2, 2, 2]
        assert {round(at - started, 3) for _, _, at in sent} == {BATCH_LINGER}

    _run(main)


def test_a_non_lazy_event_sends_the_batch_at_once_and_its_linger_is_dropped() -> None:
    async def main() -> None:
        clock = LingerClock()
        send, recv = trio.open_memory_channel[OutboxItem](16)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(clock.run)
            send.send_nowait(("joined", True))
            first = await recv.receive()
            nursery.start_soon(lambda: send.send(("pong", False)))
            started = trio.current_time()
            assert await take_batch(first, recv, clock, send) == ["joined", "pong"]
            assert trio.current_time() == started
            await trio.sleep(2 * BATCH_LINGER)  # the clock wakes at the linger's deadline, which is done: no FLUSH
            assert clock.wakeups == 1
            assert recv.statistics().current_buffer_used == 0
            nursery.cancel_scope.cancel()

    _run(main)


def test_a_flush_left_over_from_a_full_batch_does_not_cut_the_next_one_short() -> None:
    async def main() -> None:
        clock = LingerClock()
        send, recv = trio.open_memory_channel[OutboxItem](16)
        send.send_nowait(FLUSH)  # an earlier batch's, left behind when that batch filled up
        send.send_nowait(("user_joined", True))
        async with trio.open_nursery() as nursery:
            nursery.start_soon(clock.run)
            first = await recv.receive()
            assert first is FLUSH  # the writer skips it; the batch starts at the next event
            first = await recv.receive()
            started = trio.current_time()
            send.send_nowait(FLUSH)  # another stale one, behind the batch's first event
            assert await take_batch(first, recv, clock, send) == ["user_joined"]
            assert round(trio.current_time() - started, 3) >= BATCH_LINGER
            nursery.cancel_scope.cancel()

    _run(main)
