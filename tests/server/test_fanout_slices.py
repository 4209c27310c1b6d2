"""The durable fan-out (adapters/signaling_fanout.py) runs a big commit's effects in slices of ``SLICE_SECONDS``,
yielding to the other tasks (the media socket's) even in the middle of a batch, and still in input order.

No timed assertions: each effect blocks for longer than a slice, so the task must yield after each one."""

from __future__ import annotations

import time

import trio
import trio.testing
from callsd.adapters.signaling_fanout import SLICE_SECONDS, DurableFanOut


class _LateRecorder:
    """Records at once; inputs become durable when the test says so."""

    group_commit = True

    def __init__(self) -> None:
        self.seq = 0
        self.durable_seq = 0
        self._durable = trio.Event()

    def record(self) -> None:
        self.seq += 1

    def make_durable(self) -> None:
        self.durable_seq = self.seq
        self._durable.set()

    async def wait_durable(self, seq: int) -> None:
        while self.durable_seq < seq:
            await self._durable.wait()
            self._durable = trio.Event()


async def test_a_big_batch_is_run_in_slices_in_order_with_the_loop_running_between() -> None:
    recorder = _LateRecorder()
    fanout = DurableFanOut(recorder)  # type: ignore[arg-type]  # the part of Recorder the fan-out reads
    seen: list[str] = []

    def effect(label: str) -> None:
        time.sleep(SLICE_SECONDS * 1.5)  # longer than a slice: the task must yield after it
        seen.append(label)

    async def ticker() -> None:
        while True:
            seen.append("tick")
            await trio.lowlevel.checkpoint()

    recorder.record()
    fanout.recorded_input()
    for index in range(6):
        fanout.do(effect, f"a{index}")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(fanout.run, lambda exc, askers: None)
        await trio.testing.wait_all_tasks_blocked()
        recorder.make_durable()
        nursery.start_soon(ticker)
        while len([s for s in seen if s != "tick"]) < 3:  # mid-batch: a later effect must queue behind it
            await trio.lowlevel.checkpoint()
        fanout.do(effect, "later")
        await fanout.flush()
        nursery.cancel_scope.cancel()
    effects = [s for s in seen if s != "tick"]
    assert effects == ["a0", "a1", "a2", "a3", "a4", "a5", "later"]
    between = seen[seen.index("a0"):seen.index("a5")]
    assert between.count("tick") >= 4  # the loop ran other tasks between the effects of one batch


class _FanOutSteps(trio.abc.Instrument):
    def __init__(self) -> None:
        self.steps = 0

    def after_task_step(self, task: trio.lowlevel.Task) -> None:
        if task.name.endswith("DurableFanOut.run"):
            self.steps += 1


async def test_an_idle_fan_out_wakes_once_per_commit_not_for_the_batch_and_again_for_its_commit() -> None:
    """With group commit, the idle fan-out waits for the next record's commit: the batch's effects run in the one
    step that commit wakes (it took two: the batch's arrival, then its durability), in order, never before it."""
    recorder = _LateRecorder()
    fanout = DurableFanOut(recorder)  # type: ignore[arg-type]  # the part of Recorder the fan-out reads
    seen: list[str] = []
    steps = _FanOutSteps()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(fanout.run, lambda exc, askers: None)
        await trio.testing.wait_all_tasks_blocked()
        trio.lowlevel.add_instrument(steps)
        for commit in range(3):
            recorder.record()
            fanout.recorded_input()
            fanout.do(seen.append, f"effect {commit}")
            await trio.testing.wait_all_tasks_blocked()
            assert seen == [f"effect {n}" for n in range(commit)]  # not before its record is durable
            recorder.make_durable()
            await trio.testing.wait_all_tasks_blocked()
            assert seen == [f"effect {n}" for n in range(commit + 1)]
        trio.lowlevel.remove_instrument(steps)
        assert steps.steps == 3
        await fanout.flush()
        nursery.cancel_scope.cancel()
