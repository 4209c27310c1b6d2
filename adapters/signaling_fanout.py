"""``DurableFanOut``: the hub's effects, in input order, each run only once the log holds the input it follows.

Theory of operation (docs/adr/0006, "Group commit and durable fan-out")
-----------------------------------------------------------------------
The recorder (adapters/store/recorder.py) advances the machine synchronously and assigns each input its ``seq``, but
with group commit the record reaches the disk later, in a batch. The hub must not let a client or the media plane
observe an output before its record is durable, or a crash could leave clients having seen a state the log cannot
reproduce. So every effect the hub would have performed (queue a WebSocket event, ``plane.apply``, open or close a
media session...) is planned synchronously, right after its input, with every machine query it needs already
answered, and handed to ``do(fn, *args)``, which tags it with the last seq recorded so far:

- if no earlier effect is still waiting and that seq is already durable, it runs at once (always the case with a
  synchronous recorder, so the old path behaves exactly as before);
- otherwise it is appended to a FIFO of ``(seq, effects)`` batches; ``run()``, one task, waits until the head's seq
  is durable, then runs every durable batch in order, without awaiting in between. Idle with a group-commit
  recorder, it waits for the commit of the next record directly (one wake-up per commit, not two).

Since seqs only grow along the FIFO and a single task consumes it, effects happen strictly in seq order, and every
effect tagged ``N`` (including replies that are not outputs, like ``pong``) happens after all effects of inputs
``< N`` and never before ``N`` is durable. The task yields whenever it has run effects for ``SLICE_SECONDS``, even
in the middle of a batch, so that a large commit does not hold the event loop (and the media socket) for tens of ms
(a join wave's commit can carry hundreds of SDP negotiations: 73-313 ms in one step at 150-200 calls, measured by
adapters/loop_holds.py); order is unaffected, since a batch leaves the FIFO only once all its effects have run, and
while batches remain queued every new effect queues behind them. Each recorded input that came from a client remembers its asker; if a
commit fails, ``run()`` drops every pending effect, tells each asker of a lost input ``internal_error`` once, and
calls ``on_failure`` (the hub stops the server, ADR 0006).
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import trio

from .signaling_session import Recorder

__all__ = ["DurableFanOut"]

log = logging.getLogger("callsd.signaling")

SLICE_SECONDS = 0.004  # the longest the fan-out task runs effects before letting the other tasks have a turn


class _Batch:
    __slots__ = ("seq", "effects", "askers", "done")

    def __init__(self, seq: int) -> None:
        self.seq = seq
        self.effects: list[tuple[Callable[..., Any], tuple[Any, ...]]] = []
        self.askers: list[Any] = []
        self.done = 0  # effects run so far (a batch stays at the head of the FIFO until all have run)


class DurableFanOut:
    def __init__(self, recorder: Recorder) -> None:
        """``recorder.seq`` is the last input recorded, ``durable_seq`` the last one on disk (equal for a
        synchronous recorder: everything it returned is durable), ``wait_durable(seq)`` waits for one."""
        self._recorder = recorder
        self._batches: deque[_Batch] = deque()
        self._wake = trio.Event()
        self._idle = trio.Event()
        self.failed: BaseException | None = None

    def recorded(self) -> int:
        return self._recorder.seq

    def durable(self) -> int:
        return self._recorder.durable_seq

    @property
    def pending(self) -> int:
        """Batches of effects waiting for the log."""
        return len(self._batches)

    def _tail(self, seq: int) -> _Batch:
        if not self._batches or self._batches[-1].seq != seq:
            self._batches.append(_Batch(seq))
            self._wake.set()
        return self._batches[-1]

    def recorded_input(self, asker: Any = None) -> None:
        """Call right after the recorder handled an input: its seq gets a batch (if it is not durable yet), and
        ``asker`` (a connection) is told ``internal_error`` should its commit fail."""
        seq = self.recorded()
        if self.failed is None and (self._batches or self.durable() < seq):
            batch = self._tail(seq)
            if asker is not None:
                batch.askers.append(asker)

    def do(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` now if nothing recorded so far is waiting for the log, else after it is durable (in
        order). After a failed commit, effects that would have to wait are dropped."""
        seq = self.recorded()
        if not self._batches and self.durable() >= seq:
            fn(*args)
        elif self.failed is None:
            self._tail(seq).effects.append((fn, args))

    async def flush(self) -> None:
        """Wait until every effect planned so far has run (or a commit failed)."""
        while self._batches and self.failed is None:
            await self._idle.wait()

    async def _next_batch(self) -> None:
        """Wait, idle, for the next batch. With group commit, every input recorded from now on gets a batch (its
        record is not durable yet), so the task waits for the commit that makes the next record durable: the
        batch's arrival and its durability are one wake-up, where waiting for the batch (``_wake``) and then for
        its commit took two task steps per commit. If the log broke, the next batch's ``wait_durable`` reports it,
        as it always did."""
        if self._recorder.group_commit:
            try:
                await self._recorder.wait_durable(self.recorded() + 1)
                self._wake = trio.Event()
                return
            except Exception:  # the log broke: report it with the next batch (``run``), not before
                pass
        await self._wake.wait()
        self._wake = trio.Event()

    async def run(self, on_failure: Callable[[BaseException, list[Any]], None]) -> None:
        """Consume the batches in order until cancelled or a commit fails; then ``on_failure(exc, askers)`` with
        the askers of every input whose record was lost, and return."""
        while True:
            if not self._batches:
                self._idle.set()
                self._idle = trio.Event()
                await self._next_batch()
                continue
            try:
                await self._recorder.wait_durable(self._batches[0].seq)
            except Exception as exc:
                self.failed = exc
                askers = [a for b in self._batches for a in b.askers]
                self._batches.clear()
                self._idle.set()
                on_failure(exc, askers)
                return
            durable = self.durable()
            slice_end = time.perf_counter() + SLICE_SECONDS
            while self._batches and self._batches[0].seq <= durable:
                if time.perf_counter() >= slice_end:  # a big commit must not hold the loop: let it run
                    await trio.sleep(0)
                    slice_end = time.perf_counter() + SLICE_SECONDS
                    continue  # effects planned meanwhile queued behind (the FIFO is not empty): order holds
                batch = self._batches[0]
                effects = batch.effects
                while batch.done < len(effects) and time.perf_counter() < slice_end:
                    fn, args = effects[batch.done]
                    batch.done += 1
                    try:
                        fn(*args)
                    except Exception:  # one effect failing (a plane bug) must not stop the others
                        log.exception("fan-out effect %r failed", fn)
                if batch.done == len(effects):
                    self._batches.popleft()
