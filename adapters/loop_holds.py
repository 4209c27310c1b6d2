"""How long the event loop is held, and by what: the measurement behind issue 13's socket drops.

Why this exists: at 175-200 calls per core the server had CPU to spare and still lost packets at its UDP socket
(docs/performance.md). A datagram waits in the socket's receive buffer from the moment it arrives until the receive
loop's next drain, and that drain can only run when Trio's scheduler gets back to the socket: a buffer of ~5,000
datagrams at ~100k datagrams/s in is a 50 ms hold. CPU figures cannot tell a 50 ms hold from fifty 1 ms ones.

Theory of operation
-------------------
Trio's run loop alternates between one wait for I/O (epoll, which notices the socket is readable) and one *pass*
over the tasks that were runnable when the wait returned. A pass is the hold the socket sees: nothing drains it
until the pass ends and the next I/O wait returns. So this module measures:

* every pass (``after_io_wait`` to the next ``before_io_wait``): its duration is a loop hold; the thread's CPU time
  in it (``time.thread_time``, read once per pass) tells a hold of our own from waiting for a CPU;
* every task step inside a pass (``after_task_step`` only: a step runs from the end of the previous one, or from
  the pass's start, so one hook and one clock read per step are enough), keyed by the task's name (Trio names a
  task after its function's qualified name), minus the time the cyclic collector ran inside that step. The hook
  only notes the step's task and end; the steps are added up by name at the end of a pass that held the loop at
  least ``floor`` (no step of a shorter pass can be that long), so the ~99 % of passes that are short cost two list
  appends per step;
* every collection of the cyclic garbage collector (``gc.callbacks``, ``start``/``stop``), by generation: a
  collection runs inside whatever step allocated the object that crossed a threshold, and is charged to the
  collector, not to that step.

A pass longer than ``floor`` is observed in a histogram under its *cause*: the cause (a few fixed values, ``CAUSES``)
of its largest contributor, a task step or a collection. The longest step of each task and the longest collection of
each generation are kept in ``top`` (a dict of at most a few dozen names: tasks are named by code, never by users),
for ``bench/capacity_paths.py`` and ``top_holders``.

What it costs: one clock read and two list appends per task step, plus Trio's own dispatch of the hook
(figures in docs/performance.md, "Loop holds"); ``[metrics] loop_holds = false`` leaves it out entirely.
Durations are wall-clock (``time.perf_counter``): on a shared machine a preempted step looks long too, which is
also what the socket sees.
"""

from __future__ import annotations

import contextlib
import gc
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import trio
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from .exposition import KeptFamily

# The frame budget (ADR 0048) has its own pass clock (adapters/pass_gate.py); re-exported for its callers.
from .pass_gate import installed_gate, yield_if_pass_over

__all__ = ["CAUSES", "HOLD_BUCKETS", "HoldRecord", "LoopHoldCollector", "LoopHoldMonitor", "cause_of",
           "install_loop_holds", "yield_if_pass_over"]

# (a substring of a task's name, its cause): the first match wins; no match is "other". Names are Trio's defaults
# (module.qualname of the task's function) or the names given at spawn.
CAUSES: tuple[tuple[str, str], ...] = (
    ("_receive_loop", "receive"),
    ("UdpEndpoint.serve", "receive"),  # the receive loop runs in the endpoint's serve task
    ("_report_ticks", "rtcp"),
    ("feedback_loop", "rtcp"),
    ("plane_rtcp", "rtcp"),
    ("_periodic", "media_timers"),
    ("_housekeeping", "media_timers"),
    ("probing", "media_timers"),
    ("ice_watch", "media_timers"),
    ("adapters.media", "media_other"),
    ("signaling", "signaling"),
    ("ws_direct", "signaling"),
    ("adapters.store", "store"),
    ("hypercorn", "http"),
    ("quart", "http"),
    ("http", "http"),
    ("metrics", "http"),
)
GC_NAMES = ("gc gen 0", "gc gen 1", "gc gen 2")  # a collection's name in ``top``: its generation
GC_CAUSES = {"gc gen 0": "gc0", "gc gen 1": "gc1", "gc gen 2": "gc2"}  # ... and its cause
TOP_EXPORTED = 10  # top holders in /metrics: a bounded set of names, all given by code
HOLD_BUCKETS = (0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)  # seconds; +Inf is added


def cause_of(name: str) -> str:
    """The cause of a task named ``name`` (``CAUSES``), or ``"other"``."""
    for part, cause in CAUSES:
        if part in name:
            return cause
    return "other"


@dataclass(slots=True)
class HoldRecord:
    """One name's (a task's, or a GC generation's) part in the loop's holds since start.

    ``steps``/``total``/``longest``: its single steps (or collections) of at least ``floor``; ``pass_longest``: the
    most time it took within one pass that held the loop at least ``floor`` (many short steps add up: 1,600
    connections woken at once hold the loop as long as one long step), and ``pass_steps`` how many steps that was."""

    cause: str
    steps: int = 0
    total: float = 0.0
    longest: float = 0.0
    pass_longest: float = 0.0
    pass_steps: int = 0
    collected: int = 0  # a GC generation's: the objects its longest collection freed (a long one that frees many
    # is deallocating a big structure; one that frees none is walking live objects)

    def note(self, seconds: float) -> None:
        self.steps += 1
        self.total += seconds
        if seconds > self.longest:
            self.longest = seconds


class LoopHoldMonitor(trio.abc.Instrument):
    """Times Trio's passes, task steps and GC collections (module docstring). Install with ``install_loop_holds``.

    ``buckets[cause]`` counts observed passes per ``HOLD_BUCKETS`` slot (the last slot is +Inf), ``sums[cause]`` their
    seconds; a pass's cause is the cause of the name that took the most time in it. ``passes`` counts every pass,
    observed or not, ``steps`` every task step; ``top`` maps a task's name (or ``"gc gen N"``) to its
    ``HoldRecord``. Plain numbers, read at scrape time."""

    def __init__(self, *, floor: float = 0.002, clock: Callable[[], float] = time.perf_counter,
                 cpu_clock: Callable[[], float] = time.thread_time) -> None:
        self.floor = floor
        self.clock = clock
        self.cpu_clock = cpu_clock
        self.passes = 0
        self.steps = 0
        self.buckets: dict[str, list[int]] = {}
        self.sums: dict[str, float] = {}
        self.cpu_sums: dict[str, float] = {}  # this thread's CPU seconds in the observed passes, by cause
        self.top: dict[str, HoldRecord] = {}
        self._causes: dict[str, str] = {}  # task name -> cause, so a name is classified once
        self._pass_start = 0.0
        self._pass_cpu_start = 0.0
        self._in_pass = False
        # The pass in progress, as it ran: each step's task and end, and each collection's (the step it ran in,
        # seconds, generation, objects freed). Read only when the pass turns out long (module docstring).
        self._step_tasks: list[trio.lowlevel.Task] = []
        self._step_ends: list[float] = []
        self._collections: list[tuple[int, float, int, int]] = []
        self._gc_start = 0.0

    # --- Trio's hooks (called by the run loop) ----------------------------------------------------------------------

    def after_io_wait(self, timeout: float) -> None:
        self._pass_cpu_start = self.cpu_clock()
        self._pass_start = self.clock()  # the pass's first step is timed from here
        self._in_pass = True

    def before_io_wait(self, timeout: float) -> None:
        tasks = self._step_tasks
        self.steps += len(tasks)
        if self._in_pass:
            self._in_pass = False
            self.passes += 1
            held = self.clock() - self._pass_start
            if held >= self.floor:
                self._end_long_pass(held, self.cpu_clock() - self._pass_cpu_start)
        tasks.clear()
        self._step_ends.clear()
        self._collections.clear()

    def after_task_step(self, task: trio.lowlevel.Task) -> None:
        # One hook per step, and only two appends in it: a step runs from the end of the one before it in the pass
        # (or the pass's start), so its end is all there is to note; what each step and collection took is worked
        # out at the end of a pass that held the loop ``floor`` or more (a shorter pass has no step that long). The
        # scheduler's own work between steps (a few µs: the run queue, rescheduling, and for the pass's first step
        # the I/O events and expired deadlines) is charged to the step it led to.
        self._step_tasks.append(task)
        self._step_ends.append(self.clock())

    # --- gc.callbacks -----------------------------------------------------------------------------------------------

    def on_gc(self, phase: str, info: dict[str, Any]) -> None:
        """``gc.callbacks`` entry: time each collection and charge it to its generation, not to the step it ran in."""
        if phase == "start":
            self._gc_start = self.clock()
            return
        self._collections.append((len(self._step_tasks), self.clock() - self._gc_start,
                                  min(int(info.get("generation", 2)), 2), int(info.get("collected", 0))))

    # --- bookkeeping ------------------------------------------------------------------------------------------------

    def _end_long_pass(self, held: float, cpu: float) -> None:
        spent: dict[str, float] = {}  # seconds by name in this pass
        stepped: dict[str, int] = {}  # ... and steps by name
        in_step = [0.0] * (len(self._step_tasks) + 1)  # GC seconds inside each step (the last slot: after them)
        for step, seconds, generation, collected in self._collections:
            in_step[step] += seconds
            name = GC_NAMES[generation]
            spent[name] = spent.get(name, 0.0) + seconds
            stepped[name] = stepped.get(name, 0) + 1
            if seconds >= self.floor:
                record = self._record(name)
                if seconds > record.longest:
                    record.collected = collected
                record.note(seconds)
        start = self._pass_start
        for index, (task, end) in enumerate(zip(self._step_tasks, self._step_ends, strict=True)):
            step_held = end - start - in_step[index]
            start = end
            name = task.name
            spent[name] = spent.get(name, 0.0) + step_held
            stepped[name] = stepped.get(name, 0) + 1
            if step_held >= self.floor:
                self._record(name).note(step_held)
        leader = max(spent, key=spent.__getitem__) if spent else "scheduler"
        self._observe(self._cause(leader), held, cpu)
        for name, seconds in spent.items():
            if seconds >= self.floor:
                record = self._record(name)
                if seconds > record.pass_longest:
                    record.pass_longest, record.pass_steps = seconds, stepped.get(name, 0)

    def _cause(self, name: str) -> str:
        cause = self._causes.get(name)
        if cause is None:
            cause = self._causes[name] = GC_CAUSES.get(name) or cause_of(name)
        return cause

    def _record(self, name: str) -> HoldRecord:
        record = self.top.get(name)
        if record is None:
            record = self.top[name] = HoldRecord(cause=self._cause(name))
        return record

    def _observe(self, cause: str, seconds: float, cpu: float = 0.0) -> None:
        counts = self.buckets.get(cause)
        if counts is None:
            counts = self.buckets[cause] = [0] * (len(HOLD_BUCKETS) + 1)
            self.sums[cause] = 0.0
            self.cpu_sums[cause] = 0.0
        self.cpu_sums[cause] += cpu
        slot = 0
        while slot < len(HOLD_BUCKETS) and seconds > HOLD_BUCKETS[slot]:
            slot += 1
        counts[slot] += 1
        self.sums[cause] += seconds

    def top_holders(self, limit: int = 10) -> list[dict[str, Any]]:
        """The names that held the loop longest within one pass, longest first: what a bench prints and records."""
        ranked = sorted(self.top.items(), key=lambda item: max(item[1].pass_longest, item[1].longest),
                        reverse=True)[:limit]
        return [{"name": name, "cause": r.cause, "pass_ms": round(1000 * max(r.pass_longest, r.longest), 2),
                 "pass_steps": r.pass_steps, "longest_step_ms": round(r.longest * 1000, 2), "long_steps": r.steps,
                 "long_steps_ms": round(r.total * 1000, 1)} for name, r in ranked]


def install_loop_holds(floor: float = 0.002) -> tuple[LoopHoldMonitor, Callable[[], None]]:
    """Start measuring the current Trio run and this process's GC; returns the monitor and the function that stops
    the GC half (the instrument ends with its run). Call from inside ``trio.run``."""
    monitor = LoopHoldMonitor(floor=floor)
    trio.lowlevel.add_instrument(monitor)
    gc.callbacks.append(monitor.on_gc)

    def uninstall() -> None:
        if monitor.on_gc in gc.callbacks:
            gc.callbacks.remove(monitor.on_gc)
        with contextlib.suppress(KeyError, RuntimeError):  # already gone, or called outside the run
            trio.lowlevel.remove_instrument(monitor)

    return monitor, uninstall


class LoopHoldCollector(Collector):
    """``callsd_loop_hold_seconds{cause}``: passes of the event loop that held it at least ``floor`` seconds, by
    their largest cause; ``callsd_loop_passes``: every pass; ``callsd_loop_hold_longest_seconds{cause}``: the longest
    single step or collection of each cause since start; ``callsd_loop_hold_top_seconds{name,cause}``: the ten
    names (task functions, ``gc gen N``) with the longest single hold, for a bench or a person looking for the
    culprit (their names come from code, so the set of series stays small); ``callsd_frame_budget_deferred`` and
    ``callsd_frame_budget_waiting``: the frame budget's deferrals (adapters/pass_gate.py), once it has been used."""

    def __init__(self, monitor: LoopHoldMonitor) -> None:
        self.monitor = monitor

    def collect(self) -> Iterator[Metric]:
        m = self.monitor
        yield _PASSES.value(m.passes)
        yield _STEPS.value(m.steps)
        series: list[tuple[tuple[str, ...], list[tuple[str, float]], float]] = []
        for cause in sorted(m.buckets):
            cumulative: list[tuple[str, float]] = []
            running = 0
            for bound, count in zip(_BOUNDS, m.buckets[cause], strict=True):
                running += count
                cumulative.append((bound, running))
            series.append(((cause,), cumulative, m.sums[cause]))
        yield _hold_family(m.floor).histograms(series)
        yield _CPU.series([((cause,), m.cpu_sums[cause]) for cause in sorted(m.cpu_sums)])
        longest: dict[str, float] = {}
        for record in m.top.values():
            longest[record.cause] = max(longest.get(record.cause, 0.0), record.longest, record.pass_longest)
        yield _LONGEST.series([((cause,), seconds) for cause, seconds in sorted(longest.items())])
        holders = m.top_holders(TOP_EXPORTED)
        yield _TOP.series([((h["name"], h["cause"]), h["pass_ms"] / 1000) for h in holders])
        yield _TOP_STEPS.series([((h["name"], h["cause"]), h["pass_steps"]) for h in holders])
        yield _GC_COLLECTED.series([((name,), m.top[name].collected) for name in GC_NAMES if name in m.top])
        gate = installed_gate()
        if gate is not None:  # the frame budget (adapters/pass_gate.py): how often it made frames wait
            yield _DEFERRED.value(gate.deferred)
            yield _WAITING.value(gate.waiting)


# The collector's families, kept between scrapes (exposition.KeptFamily).
_PASSES = KeptFamily("callsd_loop_passes", "Passes of the event loop over its runnable tasks", "counter")
_STEPS = KeptFamily("callsd_loop_steps", "Task steps the event loop ran", "counter")
_HOLDS: dict[float, KeptFamily] = {}  # by the monitor's floor, which its help text names


def _hold_family(floor: float) -> KeptFamily:
    family = _HOLDS.get(floor)
    if family is None:
        family = _HOLDS[floor] = KeptFamily(
            "callsd_loop_hold_seconds",
            f"Event-loop passes that held the loop at least {floor * 1000:g} ms (the UDP socket is not drained "
            "meanwhile), by the cause of their largest step or GC collection", "histogram", ("cause",))
    return family


_CPU = KeptFamily("callsd_loop_hold_cpu_seconds",
                  "CPU time of this process's event-loop thread inside the passes of callsd_loop_hold_seconds: what is "
                  "left of their wall time is time the thread waited for a CPU", "counter", ("cause",))
_LONGEST = KeptFamily("callsd_loop_hold_longest_seconds",
                      "The most time one name (a task, a GC generation) of each cause took in one pass of the loop",
                      "gauge", ("cause",))
_TOP = KeptFamily("callsd_loop_hold_top_seconds",
                  f"The {TOP_EXPORTED} task names (or GC generations) that held the loop longest in one pass since "
                  "start, and how long", "gauge", ("name", "cause"))
_TOP_STEPS = KeptFamily("callsd_loop_hold_top_steps",
                        "The steps (or collections) each name of callsd_loop_hold_top_seconds took in that pass", "gauge",
                        ("name", "cause"))
_GC_COLLECTED = KeptFamily("callsd_loop_hold_gc_collected", "Objects the longest collection of each generation freed",
                           "gauge", ("name",))
_DEFERRED = KeptFamily("callsd_frame_budget_deferred",
                       "Frames (WebSocket messages) that waited for a later pass of the event loop because the current "
                       "one had run its budget of frames", "counter")
_WAITING = KeptFamily("callsd_frame_budget_waiting", "Frames waiting for a pass now", "gauge")


def _bound(bound: float) -> str:
    return "+Inf" if bound == float("inf") else f"{bound:g}"


_BOUNDS = tuple(_bound(b) for b in (*HOLD_BUCKETS, float("inf")))  # the histogram's "le" values
