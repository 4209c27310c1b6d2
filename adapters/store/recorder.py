"""``CallRecorder``: the machine plus its log.

Two ways to record (docs/adr/0002, "Recorder"):

- **synchronous** (``group_commit=False``, the default for tools and tests): ``handle`` feeds the machine, appends
  the record in its own transaction and only then returns the outputs.
- **group commit** (``group_commit=True``, what the server uses): ``handle`` feeds the machine, queues the record and
  returns the outputs at once; ``commit_loop`` (a Trio task) writes every queued record in ONE store ``append`` (one
  transaction, one fsync) per batch, in its worker thread (``CommitThread``; sqlite3 and file I/O release the GIL),
  so the event loop never waits for the disk. ``durable_seq`` says how far the log is on disk and
  ``await wait_durable(seq)`` waits for it: the caller must not act on the outputs of input ``seq`` before that
  returns (the signaling hub fans them out in seq order after it).

Either way the machine advances one input at a time in the caller's thread, so ``seq`` order is input order.

Retention: with ``retention`` (``store.retention_days``), the recorder compacts records older than the retention
(adapters/store/compaction.py) on its first input and then at most once per ``check_every_ms`` of event time, after
the append, in the same thread as appends (the commit thread under group commit), so compaction never races a
write. A compaction that fails only logs a warning: the log is still whole.

Recovery: ``CallRecorder.open(store)`` restores the latest checkpoint (if the store has one) and replays the records
after it, so a restarted server has the same calls, and the adapter re-arms ``recorder.machine.timers()``.
If the store fails while appending, the machine has already moved on without a record; the recorder then refuses
every further input (``RecorderBroken``) and ``wait_durable`` raises it, so the process restarts and recovers from
the log rather than serve state the log cannot reproduce.
"""

from __future__ import annotations

from typing import Any

import trio
from callsd.core import CallsMachine, InputEvent, OutputEvent
from callsd.core.calls.checkpoint import checkpoint
from callsd.core.calls.eventlog import GENESIS, ChainCheck, Compaction, Record, make_record
from callsd.core.calls.replay import ReplayResult, replay

from .base import EventStore
from .commit_thread import CommitThread
from .compaction import Retention, apply_retention

__all__ = ["CallRecorder", "RecorderBroken"]


def _head_of(store: EventStore, seq: int) -> str:
    """The chain hash of record ``seq`` in ``store``: its stored hash, or for a version 1 log the virtual hash,
    which needs the whole chain."""
    if seq == 0:
        return GENESIS
    for entry in store.iter_records(seq):
        if isinstance(entry, Compaction):
            return entry.head
        if entry.chained:
            return entry.hash
        break
    check = ChainCheck()
    for record in store.iter_records(1):
        check.feed(record)
    return check.head or GENESIS


class RecorderBroken(RuntimeError):
    """An earlier append failed; this recorder's machine is ahead of its log."""


class CallRecorder:
    def __init__(
        self, store: EventStore, machine: CallsMachine | None = None, *, seq: int | None = None,
        checkpoint_every: int = 0, group_commit: bool = False, head: str | None = None,
        retention: Retention | None = None,
    ) -> None:
        """Record into ``store``. ``machine``, ``seq`` and ``head`` (the chain hash of record ``seq``) are where the
        log stands (default: the store's end, read from it).
        ``checkpoint_every`` > 0 saves a checkpoint every that many records. ``group_commit`` queues records for
        ``commit_loop`` instead of appending them inside ``handle`` (module docstring). ``retention`` compacts
        old records as the log grows (module docstring, "Retention")."""
        self.store = store
        self.machine = machine if machine is not None else CallsMachine()
        self.seq = store.last_seq() if seq is None else seq
        self.durable_seq = self.seq
        # The chain hash of record ``seq``: the next record's ``prev``.
        self.head = head if head is not None else _head_of(store, self.seq)
        self.checkpoint_every = checkpoint_every
        self.group_commit = group_commit
        self.recovered: ReplayResult | None = None
        self.commits = 0  # store appends (transactions) so far
        self._broken: BaseException | None = None
        self._queue: list[Record] = []
        self._queued_checkpoint: dict[str, Any] | None = None
        self.retention = retention
        self._next_retention: int | None = None  # event time of the next retention check (None: the first input)
        self._queued_retention: int | None = None  # event time of a check for the worker thread
        self._wake: trio.Event | None = None
        self._progress: trio.Event | None = None

    @classmethod
    def open(cls, store: EventStore, *, checkpoint_every: int = 0, group_commit: bool = False,
             retention: Retention | None = None) -> CallRecorder:
        """Rebuild the machine from ``store`` (checkpoint + tail). ``recorder.recovered`` holds the replay result,
        whose ``mismatches`` a server may log; raises ``EventLogError`` for a corrupt log."""
        start: dict[str, Any] | None = store.load_checkpoint()
        # From the checkpoint's own record: replay checks it still carries the chain head the checkpoint stored.
        from_seq = 1 if start is None else max(1, int(start.get("seq", 0)))
        result = replay(store.iter_records(from_seq), start=start)
        rec = cls(store, result.machine, seq=result.last_seq, checkpoint_every=checkpoint_every,
                  group_commit=group_commit, head=result.chain.head, retention=retention)
        rec.recovered = result
        return rec

    def _checkpoint(self) -> dict[str, Any]:
        """A checkpoint at ``seq`` that also stores the chain head there, so a restart checks the tail against it."""
        return {**checkpoint(self.machine, self.seq), "head": self.head}

    @property
    def broken(self) -> BaseException | None:
        """The store failure that broke this recorder, or None."""
        return self._broken

    def handle(self, event: InputEvent) -> list[OutputEvent]:
        """Feed ``event`` to the machine and record it; return the outputs. Synchronous mode: the record is durable
        when this returns. Group commit: it is queued; act on the outputs only after ``wait_durable(self.seq)``.

        ``LocalProtocolError`` from the machine propagates and nothing is logged."""
        if self._broken is not None:
            raise RecorderBroken("an earlier append failed; restart to recover from the log") from self._broken
        outputs = self.machine.handle(event)
        record = make_record(self.seq + 1, event, outputs, prev=self.head)
        self.head = record.hash
        due = self.checkpoint_every and record.seq % self.checkpoint_every == 0
        retain = self._retention_due(event.at)
        if self.group_commit:
            self.seq = record.seq
            self._queue.append(record)
            if due:  # the snapshot is taken now, at this seq; it is written after the batch that holds the record
                self._queued_checkpoint = self._checkpoint()
            if retain:
                self._queued_retention = event.at
            if self._wake is not None:
                self._wake.set()
            return outputs
        try:
            self.store.append([record])
        except BaseException as exc:
            self._broken = exc
            raise
        self.commits += 1
        self.seq = self.durable_seq = record.seq
        if due:
            self.store.save_checkpoint(self._checkpoint())
        if retain and self.retention is not None:
            apply_retention(self.store, self.retention, event.at)
        return outputs

    def _retention_due(self, at: int) -> bool:
        """Check retention on the first input and then every ``check_every_ms`` of event time: inputs carry the
        server's clock, so a running server compacts as time passes without a timer of its own."""
        if self.retention is None or (self._next_retention is not None and at < self._next_retention):
            return False
        self._next_retention = at + self.retention.check_every_ms
        return True

    def save_checkpoint(self) -> None:
        """Save a checkpoint of the machine now (synchronous mode), or queue it for the next commit."""
        if self.group_commit:
            self._queued_checkpoint = self._checkpoint()
            if self._wake is not None:
                self._wake.set()
        else:
            self.store.save_checkpoint(self._checkpoint())

    # ------------------------------------------------------------------ group commit

    @property
    def pending(self) -> int:
        """Records handled but not yet durable."""
        return self.seq - self.durable_seq

    async def commit_loop(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Write queued records until cancelled: everything queued at the start of a round goes to the store in one
        ``append`` (one transaction, one fsync) run in the loop's own worker thread (``CommitThread``: cheaper than
        ``trio.to_thread`` per commit), after the store's ``prepare_appends`` ran there. A failing append breaks the
        recorder
        (``wait_durable`` raises ``RecorderBroken``) and ends the loop; it does not raise here. Cancelling waits
        for a commit in progress to finish (the thread cannot be abandoned while it writes)."""
        self._wake = trio.Event()
        committer = CommitThread()
        task_status.started()
        try:
            await committer.run_sync(self.store.prepare_appends)  # records queued meanwhile go in the first batch
            while self._broken is None:
                if not self._queue and self._queued_checkpoint is None and self._queued_retention is None:
                    await self._wake.wait()
                    self._wake = trio.Event()
                    continue
                batch, self._queue = self._queue, []
                snapshot, self._queued_checkpoint = self._queued_checkpoint, None
                retain_at, self._queued_retention = self._queued_retention, None
                try:
                    await committer.run_sync(self._write, batch, snapshot, retain_at)
                except Exception as exc:
                    self._broken = exc
                else:
                    if batch:
                        self.durable_seq = batch[-1].seq
                self._notify()
        finally:
            committer.stop()

    def _write(self, batch: list[Record], snapshot: dict[str, Any] | None, retain_at: int | None = None) -> None:
        """Runs in the worker thread; the Trio thread never touches the store while it does. Retention runs here
        too, after the batch, so it never races an append."""
        if batch:
            self.store.append(batch)
            self.commits += 1
        if snapshot is not None:
            self.store.save_checkpoint(snapshot)
        if retain_at is not None and self.retention is not None:
            apply_retention(self.store, self.retention, retain_at)

    def _notify(self) -> None:
        if self._progress is not None:
            self._progress.set()
            self._progress = None

    async def wait_durable(self, seq: int) -> None:
        """Return once the record ``seq`` (and all before it) is durable; raise ``RecorderBroken`` if the store
        failed first."""
        while self.durable_seq < seq:
            if self._broken is not None:
                raise RecorderBroken("appending to the event log failed; restart to recover from the log") \
                    from self._broken
            if self._progress is None:
                self._progress = trio.Event()
            await self._progress.wait()

    async def flush(self) -> None:
        """Wait until everything handled so far is durable (raises ``RecorderBroken`` like ``wait_durable``)."""
        await self.wait_durable(self.seq)
