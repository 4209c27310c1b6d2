"""Batch frames' linger on one clock for every socket: ``LingerClock`` and the batching it serves (``take_batch``).

Why (docs/performance.md, "Joins at the end of session 7"): a batch of only lazy events (``LAZY_EVENTS``: presence)
waits up to ``BATCH_LINGER`` for company before it is sent (ADR 0027). Each writer used to wait with its own
``trio.move_on_at``: a cancel scope per event taken, and at the end of almost every linger a ``Cancelled`` raised
through the writer and caught, which is Trio's costliest path. One join makes every member of its call linger (its
``user_joined``), so a join into an 8-user call paid seven timeouts; the profile charged ~5 % of a join's CPU to
``_next_before``, ``CancelScope._cancel`` and ``Deadlines.expire``.

Theory of operation
-------------------
A writer whose batch is all lazy registers a ``Linger`` (its outbox's send side and a deadline) with the hub's one
``LingerClock`` and then simply waits on its outbox. The clock's task sleeps until the oldest deadline and puts
``FLUSH`` on the outbox of every linger that is due and still waiting: the writer takes it like any event and sends
its batch. Every deadline is now + ``BATCH_LINGER``, rounded up to the clock's ``GRAIN``, so deadlines arrive in
order (a FIFO, no heap) and the lingers of one input (a join tells every member) share one wake-up: one timeout per
input instead of one per receiver. A batch that ends before its deadline (a non-lazy event took it) marks its linger
``done``; the clock skips it, so a ``FLUSH`` never ends a later batch early. ``FLUSH`` is not an event: the writer
does not send it or count it in the socket's backlog. When the outbox is full the writer is not lingering (a batch
stops at ``BATCH_MAX_EVENTS``), so a ``FLUSH`` that does not fit is dropped.

Deferred: a lazy event for a writer that is idle (blocked on an empty outbox) does not wake it at all. The outbox
keeps it in the connection's ``Deferred`` and starts the linger itself; the writer wakes once, at the ``FLUSH`` or
at the first event put on its outbox after it, and sends the deferred events first, in one batch with what follows.
One join makes each of the call's members linger: this is one wake-up of each member's writer instead of two (the
event, then the ``FLUSH``). Order holds because an event is deferred only while nothing else waits for the writer
(the outbox clears ``writer_idle`` whenever it puts an event on the channel), so every deferred event precedes
every queued one, and the writer takes the deferred ones first whenever it wakes.
"""

from __future__ import annotations

import contextlib
import math
from collections import deque

import trio

from .signaling_protocol import BATCH_LINGER, BATCH_MAX_CHARS, BATCH_MAX_EVENTS
from .signaling_session import OutboxItem

__all__ = ["FLUSH", "GRAIN", "Deferred", "Linger", "LingerClock", "take_batch"]

FLUSH: OutboxItem = ("", True)  # the clock's "your linger is over" (compared by identity; never sent)
GRAIN = 0.01  # s: deadlines are rounded up to this, so lingers that start close together end on one wake-up


class Linger:
    """One batch waiting for company: where to put ``FLUSH`` and when."""

    __slots__ = ("outbox", "deadline", "done")

    def __init__(self, outbox: trio.MemorySendChannel[OutboxItem], deadline: float) -> None:
        self.outbox = outbox
        self.deadline = deadline
        self.done = False


class Deferred:
    """Lazy events held back from an idle writer, in order, and the linger that will wake it (module docstring).
    Bounded so that the deferred events and one more stay within one batch frame."""

    __slots__ = ("texts", "chars", "linger")

    def __init__(self) -> None:
        self.texts: list[str] = []
        self.chars = 0
        self.linger: Linger | None = None

    def fits(self, text: str) -> bool:
        return len(self.texts) + 2 <= BATCH_MAX_EVENTS and self.chars + len(text) < BATCH_MAX_CHARS

    def add(self, text: str, clock: LingerClock, outbox: trio.MemorySendChannel[OutboxItem]) -> None:
        if not self.texts:
            self.linger = clock.start(outbox)
        self.texts.append(text)
        self.chars += len(text)

    def take(self) -> list[str]:
        """The deferred events (the writer sends them now); their linger is over."""
        texts = self.texts
        if texts:
            self.texts, self.chars = [], 0
            if self.linger is not None:
                self.linger.done = True
                self.linger = None
        return texts


class LingerClock:
    """The one timer of every socket's linger (module docstring). ``run`` must be running (the hub's ``run``)."""

    def __init__(self, linger: float = BATCH_LINGER) -> None:
        self.linger = linger
        self._waiting: deque[Linger] = deque()
        self._wake = trio.Event()
        self.wakeups = 0  # times the clock woke to flush (a test and the bench read it)

    def start(self, outbox: trio.MemorySendChannel[OutboxItem]) -> Linger:
        """A linger for the batch of the writer of ``outbox``, from now; FIFO order holds since every deadline is
        now + the same linger, rounded up to ``GRAIN``."""
        deadline = math.ceil((trio.current_time() + self.linger) / GRAIN) * GRAIN
        linger = Linger(outbox, deadline)
        if not self._waiting:
            self._wake.set()
        self._waiting.append(linger)
        return linger

    async def run(self) -> None:
        """Until cancelled: at each due deadline, ``FLUSH`` to every linger due and not done."""
        while True:
            if not self._waiting:
                await self._wake.wait()
                self._wake = trio.Event()
                continue
            await trio.sleep_until(self._waiting[0].deadline)
            self.wakeups += 1
            now = trio.current_time()
            while self._waiting and self._waiting[0].deadline <= now:
                linger = self._waiting.popleft()
                if not linger.done:
                    linger.done = True
                    # full: the writer is busy sending, not lingering; closed: the writer is ending
                    with contextlib.suppress(trio.WouldBlock, trio.BrokenResourceError, trio.ClosedResourceError):
                        linger.outbox.send_nowait(FLUSH)


async def take_batch(first: OutboxItem, recv: trio.MemoryReceiveChannel[OutboxItem], clock: LingerClock,
                     outbox: trio.MemorySendChannel[OutboxItem], before: list[str] | None = None) -> list[str]:
    """``first`` and the events queued behind it, up to one batch's bounds (``before``: deferred events that go
    first). While every event taken is lazy, wait for more until the clock's ``FLUSH`` (at most ``BATCH_LINGER``);
    one that is not lazy ends the batch (it goes in it). ``FLUSH`` items left from an earlier batch are skipped."""
    text, all_lazy = first
    texts = [*before, text] if before else [text]
    size = sum(map(len, texts)) if before else len(text)
    linger: Linger | None = None
    try:
        while len(texts) < BATCH_MAX_EVENTS and size < BATCH_MAX_CHARS:
            try:
                item = recv.receive_nowait()
            except trio.WouldBlock:
                if not all_lazy:
                    break
                if linger is None:
                    linger = clock.start(outbox)
                try:
                    item = await recv.receive()
                except trio.EndOfChannel:
                    break
            except trio.EndOfChannel:
                break
            if item is FLUSH:
                if linger is not None and linger.done:
                    break  # this batch's linger is over
                continue  # an earlier batch's, which ended before its deadline
            text, lazy = item
            texts.append(text)
            size += len(text)
            all_lazy = all_lazy and lazy
    finally:
        if linger is not None:
            linger.done = True
    return texts
