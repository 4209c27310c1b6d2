"""The recorder's one commit thread (adapters/store/commit_thread.py): jobs run in order in one thread that is not
Trio's, what a job raises is raised in the caller, and a caller cancelled while its commit runs still sees the commit
finish before the cancellation lands (a commit is never abandoned half-way)."""

from __future__ import annotations

import threading

import pytest
import trio
from callsd.adapters.store.commit_thread import CommitThread


async def test_jobs_run_in_order_in_one_other_thread() -> None:
    committer = CommitThread()
    ran: list[tuple[int, int]] = []
    for n in range(20):
        await committer.run_sync(lambda n=n: ran.append((n, threading.get_ident())))
    committer.stop()
    assert [n for n, _ in ran] == list(range(20))
    assert len({ident for _, ident in ran}) == 1
    assert ran[0][1] != threading.get_ident()


async def test_what_a_job_raises_is_raised_in_the_caller_and_the_thread_goes_on() -> None:
    committer = CommitThread()

    def failing() -> None:
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        await committer.run_sync(failing)
    done: list[bool] = []
    await committer.run_sync(lambda: done.append(True))
    committer.stop()
    assert done == [True]


async def test_a_cancelled_caller_waits_for_its_commit_to_finish() -> None:
    committer = CommitThread()
    started, release, finished = threading.Event(), threading.Event(), threading.Event()

    def slow_commit() -> None:
        started.set()
        release.wait(10)
        finished.set()

    with trio.CancelScope() as scope:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(committer.run_sync, slow_commit)
            await trio.to_thread.run_sync(started.wait, 10)
            threading.Timer(0.1, release.set).start()
            scope.cancel()  # while the commit runs
    assert finished.is_set()  # the nursery (and the cancel) ended only after the commit did
    committer.stop()


async def test_the_thread_does_not_preempt_the_loop_that_wakes_it() -> None:
    """Linux's ``SCHED_BATCH`` for the commit thread (``_not_preempting``): a queued commit waits for the loop to
    release the CPU instead of preempting it only to find the GIL taken (``bench.join_syscalls``, quiet host, the
    same tree with and without it: the loop's involuntary switches per join 1.10 -> 0.76). The loop's own thread
    keeps its class."""
    import os

    loops_class = os.sched_getscheduler(0)
    committer = CommitThread()
    seen: list[int] = []
    await committer.run_sync(lambda: seen.append(os.sched_getscheduler(0)))
    committer.stop()
    assert seen == [os.SCHED_BATCH]
    assert os.sched_getscheduler(0) == loops_class
