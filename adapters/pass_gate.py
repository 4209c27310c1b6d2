"""The frame budget: work woken together shares the event loop's passes, in order, whatever the metrics say.

Why this exists: hundreds of connections woken at once (the SDP answers of a join wave's tail: 330-620 in one pass,
~0.5 ms each, docs/performance.md "Loop holds") all run in one pass of Trio's run loop, and the media socket is not
drained until that pass ends: a 130-670 ms hold, and the kernel drops what arrives meanwhile. The hub calls
``yield_if_pass_over()`` before each frame it handles; once the current pass has run ``budget`` seconds of such
frames, the caller waits for a later pass. ADR 0043 first built this on the loop-hold instrument
(adapters/loop_holds.py), so the budget worked only while ``[metrics] loop_holds`` was on, and a deferred frame slept
on a timer (0.5 ms per frame ahead of it, at most 50 ms) and retried. ADR 0048 replaced both.

Theory of operation
-------------------
Trio runs its loop as passes: one I/O wait (epoll), then every task that was runnable when it returned, once; a task
made runnable during a pass runs in the next one, after the next I/O wait (so the receive loop gets its turn first).

* ``PassGate`` is a Trio instrument with one per-pass hook (``after_io_wait``) and none of the per-step ones,
  so it costs a call per pass, not per task step. It is installed in the current run by the first
  ``yield_if_pass_over`` (a ``RunVar``): scheduling never depends on a setting.
* The budget counts the *gated* work of a pass: from the first frame the gate let through in it to now. Work that
  ran before it in the pass (the receive loop's catching up, timers) is not counted, so the frames always get a
  share of each pass; what runs after it among the frames is (an over-estimate that defers a little more).
* A caller goes straight through (no checkpoint, nothing allocated) when nobody waits and the pass is under budget:
  an idle server pays one clock read per frame. Otherwise it joins a FIFO and parks (``wait_task_rescheduled``):
  one step per deferred frame, no timer, no retry.
* At the start of each pass (``after_io_wait``, before Trio takes the pass's batch of runnable tasks) the gate
  admits the first ``budget / frame_cost`` waiters (at least one, at most ``MAX_ADMITTED``): they run in this pass,
  in arrival order. ``frame_cost`` is a moving average of the time between two gated frames in one pass, bounded
  by the budget, so a burst of cheap frames goes through many per pass and a burst of SDP answers a few.
* Order: a waiter is never overtaken by a later caller (callers that find anyone waiting queue behind them), and
  every pass admits at least one, so no frame waits for ever however full the passes are.
* The loop must not sleep while frames wait: Trio's I/O wait blocks until the next deadline when nothing is runnable,
  and only a pass admits. So while the FIFO is not empty a system task, the ticker, stays runnable (one checkpoint
  per pass: the I/O wait then polls); when it empties, the ticker parks until the next caller has to wait.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import trio

__all__ = ["FIRST_FRAME_COST", "MAX_ADMITTED", "PASS_BUDGET", "PassGate", "current_gate", "installed_gate", "yield_if_pass_over"]

PASS_BUDGET = 0.004  # seconds of gated frames per pass, after which a caller waits for a later pass
FIRST_FRAME_COST = 0.0005  # seconds: the estimate before any is measured (an SDP answer, docs/performance.md)
MAX_ADMITTED = 64  # waiters admitted into one pass at most (cheap frames: one pass still bounded by count)
COST_WEIGHT = 0.125  # weight of each new sample in the moving average of a frame's cost


class PassGate(trio.abc.Instrument):
    """The FIFO of frames waiting for a pass with budget left, and the clock of the current pass's gated work.

    Counters for a bench or a person: ``deferred`` frames that waited, ``admitted`` waiters let into a pass,
    ``passes`` passes seen; ``frame_cost`` the current estimate of one frame's seconds."""

    def __init__(self, budget: float = PASS_BUDGET, clock: Callable[[], float] = time.perf_counter) -> None:
        self.budget = budget
        self.clock = clock
        self.frame_cost = FIRST_FRAME_COST
        self.passes = 0
        self.deferred = 0
        self.admitted = 0
        self._waiting: dict[trio.lowlevel.Task, None] = {}  # insertion-ordered: the FIFO, O(1) removal on cancel
        self._work_pass = -1  # the pass whose gated work began at _work_start (-1: none yet)
        self._work_start = 0.0
        self._last_frame = 0.0  # when the latest gated frame of that pass began
        self._ticker: trio.lowlevel.Task | None = None  # the ticker while it is parked (None: runnable, or none yet)

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    # --- Trio's hook: one call per pass -----------------------------------------------------------------------------

    def after_io_wait(self, timeout: float) -> None:
        self.passes += 1
        waiting = self._waiting
        if not waiting:
            return
        count = min(len(waiting), MAX_ADMITTED, max(1, int(self.budget / self.frame_cost)))
        self.admitted += count
        for _ in range(count):
            task = next(iter(waiting))
            del waiting[task]
            trio.lowlevel.reschedule(task)  # runnable before Trio takes this pass's batch: it runs in this pass

    # --- the callers' side ------------------------------------------------------------------------------------------

    def may_pass(self, now: float) -> bool:
        """True when a caller arriving at ``now`` may run its frame in the current pass: nobody waits and the
        pass's gated work so far is within the budget (the first frame of a pass always is)."""
        return not self._waiting and (self._work_pass != self.passes or now - self._work_start <= self.budget)

    def frame_started(self, now: float) -> None:
        """A frame goes through at ``now``: it counts towards this pass's gated work, and the time since the previous
        frame of the pass is a sample of one frame's cost."""
        if self._work_pass != self.passes:
            self._work_pass, self._work_start = self.passes, now
        else:
            sample = min(now - self._last_frame, self.budget)
            self.frame_cost = max(1e-6, self.frame_cost + COST_WEIGHT * (sample - self.frame_cost))
        self._last_frame = now

    async def wait(self) -> None:
        """Park the calling task at the end of the FIFO until a pass admits it (cancellable: it then leaves the
        FIFO)."""
        task = trio.lowlevel.current_task()
        self._waiting[task] = None
        self.deferred += 1
        if self._ticker is not None:  # the loop must pass (and admit) even if nothing else is runnable
            ticker, self._ticker = self._ticker, None
            trio.lowlevel.reschedule(ticker)

        def abort(_: trio.lowlevel.RaiseCancelT) -> trio.lowlevel.Abort:
            self._waiting.pop(task, None)
            return trio.lowlevel.Abort.SUCCEEDED

        await trio.lowlevel.wait_task_rescheduled(abort)
        self.frame_started(self.clock())

    async def tick(self) -> None:
        """The ticker (a system task): runnable once per pass while anyone waits, parked otherwise."""
        while True:
            if self._waiting:
                await trio.lowlevel.checkpoint()  # runnable again at once: the next I/O wait polls
                continue
            self._ticker = trio.lowlevel.current_task()

            def abort(_: trio.lowlevel.RaiseCancelT) -> trio.lowlevel.Abort:
                self._ticker = None
                return trio.lowlevel.Abort.SUCCEEDED

            await trio.lowlevel.wait_task_rescheduled(abort)  # cancelled when the run ends


_GATE: trio.lowlevel.RunVar[PassGate] = trio.lowlevel.RunVar("callsd_pass_gate")


def current_gate() -> PassGate:
    """This run's gate, installed (as an instrument) on first use."""
    try:
        return _GATE.get()
    except LookupError:
        gate = PassGate()
        trio.lowlevel.add_instrument(gate)
        trio.lowlevel.spawn_system_task(gate.tick, name="callsd.adapters.pass_gate.ticker")
        _GATE.set(gate)
        return gate


def installed_gate() -> PassGate | None:
    """This run's gate if a frame has used it, else None (also outside a Trio run): for an exporter, which must not
    install one."""
    try:
        return _GATE.get()
    except (LookupError, RuntimeError):
        return None


async def yield_if_pass_over(budget: float = PASS_BUDGET) -> None:
    """Return at once if the current pass has run less than ``budget`` seconds of gated frames and nobody waits;
    otherwise wait, in order, for a pass that admits the caller (module docstring). Call it before a unit of work
    that other connections may be doing in the same pass (the hub: before each WebSocket frame)."""
    gate = current_gate()
    gate.budget = budget
    now = gate.clock()
    if gate.may_pass(now):
        gate.frame_started(now)
        return
    await gate.wait()
