"""``CommitThread``: the one worker thread of a recorder's group commits.

Why (docs/performance.md, "Joins at the end of session 7"): each group commit ran in ``trio.to_thread.run_sync``,
which takes a capacity limiter token, picks or starts a cached worker, wraps the call in an outcome and a context
copy, and parks the task with an abort function: ~55 µs of CPU per hand-off on this machine (main thread and worker,
pinned to one CPU), against ~42 µs for a long-lived thread fed by a queue that reports back with
``TrioToken.run_sync_soon``. A join into an 8-user call is ~2 commits when joins do not overlap.

Semantics kept from ``to_thread.run_sync`` without ``abandon_on_cancel``: a commit in progress is never abandoned (the
caller's wait is shielded; a cancellation is seen at its next checkpoint, after the commit), and an exception raised
by the function is raised in the caller. Jobs run one at a time in submission order (the recorder submits one at a
time anyway). The thread is a daemon: a process that exits does not wait for it.
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
from collections.abc import Callable
from typing import Any

import trio

__all__ = ["CommitThread"]


def _not_preempting() -> None:
    """Put the calling thread in Linux's ``SCHED_BATCH`` class: woken (a job queued, its disk write done), it waits
    for the CPU to be free instead of preempting the thread that woke it. Why: the event loop queues a commit and
    goes on holding the GIL; preempting it bought the commit thread nothing but a switch to find the GIL taken and a
    switch back (on a server pinned to one CPU, ~1 wasted pair per commit). It runs when the loop waits for I/O,
    which releases the GIL anyway; with a CPU free it runs at once, as before. Elsewhere (no ``SCHED_BATCH``, or not
    permitted), nothing changes."""
    with contextlib.suppress(AttributeError, OSError):
        os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))


class _Job:
    __slots__ = ("fn", "args", "token", "done", "error")

    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...], token: trio.lowlevel.TrioToken) -> None:
        self.fn = fn
        self.args = args
        self.token = token
        self.done = trio.Event()
        self.error: BaseException | None = None


class CommitThread:
    def __init__(self, name: str = "callsd-commit") -> None:
        self._name = name
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    async def run_sync(self, fn: Callable[..., Any], *args: Any) -> None:
        """``fn(*args)`` in the thread; return when it has returned (raise what it raised)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._serve, name=self._name, daemon=True)
            self._thread.start()
        job = _Job(fn, args, trio.lowlevel.current_trio_token())
        self._jobs.put(job)
        with trio.CancelScope(shield=True):  # the commit is not abandoned: the log's order depends on it
            await job.done.wait()
        if job.error is not None:
            raise job.error

    def stop(self) -> None:
        """Let the thread end once the jobs already submitted are done (it is not waited for)."""
        if self._thread is not None:
            self._jobs.put(None)
            self._thread = None

    def _serve(self) -> None:
        _not_preempting()
        while (job := self._jobs.get()) is not None:
            try:
                job.fn(*job.args)
            except BaseException as exc:  # handed to the caller, which decides (the recorder breaks)
                job.error = exc
            with contextlib.suppress(trio.RunFinishedError):  # the run ended meanwhile: nobody waits any more
                job.token.run_sync_soon(job.done.set)
