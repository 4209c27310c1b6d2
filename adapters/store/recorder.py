"""``CallRecorder``: the machine plus its log. Every accepted input is appended to the store before its outputs
are returned, so whatever the server acted on can be replayed.

Recovery: ``CallRecorder.open(store)`` restores the latest checkpoint (if the store has one) and replays the records
after it, so a restarted server has the same calls, and the adapter re-arms ``recorder.machine.timers()``.
If the store fails while appending, the machine has already moved on without a record; the recorder then refuses
every further input (``RecorderBroken``) so the process restarts and recovers from the log, rather than serve state
the log cannot reproduce.
"""

from __future__ import annotations

from typing import Any

from callsd.core import CallsMachine, InputEvent, OutputEvent
from callsd.core.eventlog import make_record
from callsd.core.replay import ReplayResult, replay
from callsd.core.snapshot import checkpoint

from .base import EventStore

__all__ = ["CallRecorder", "RecorderBroken"]


class RecorderBroken(RuntimeError):
    """An earlier append failed; this recorder's machine is ahead of its log."""


class CallRecorder:
    def __init__(
        self, store: EventStore, machine: CallsMachine | None = None, *, seq: int | None = None,
        checkpoint_every: int = 0,
    ) -> None:
        """Record into ``store``. ``machine`` and ``seq`` are where the log stands (default: an empty log).
        ``checkpoint_every`` > 0 saves a checkpoint every that many records."""
        self.store = store
        self.machine = machine if machine is not None else CallsMachine()
        self.seq = store.last_seq() if seq is None else seq
        self.checkpoint_every = checkpoint_every
        self.recovered: ReplayResult | None = None
        self._broken: BaseException | None = None

    @classmethod
    def open(cls, store: EventStore, *, checkpoint_every: int = 0) -> CallRecorder:
        """Rebuild the machine from ``store`` (checkpoint + tail). ``recorder.recovered`` holds the replay result,
        whose ``mismatches`` a server may log; raises ``EventLogError`` for a corrupt log."""
        start: dict[str, Any] | None = store.load_checkpoint()
        from_seq = 1 if start is None else int(start.get("seq", 0)) + 1
        result = replay(store.iter_records(from_seq), start=start)
        rec = cls(store, result.machine, seq=result.last_seq, checkpoint_every=checkpoint_every)
        rec.recovered = result
        return rec

    def handle(self, event: InputEvent) -> list[OutputEvent]:
        """Feed ``event`` to the machine, append its record durably, return the outputs.

        ``LocalProtocolError`` from the machine propagates and nothing is logged."""
        if self._broken is not None:
            raise RecorderBroken("an earlier append failed; restart to recover from the log") from self._broken
        outputs = self.machine.handle(event)
        record = make_record(self.seq + 1, event, outputs)
        try:
            self.store.append([record])
        except BaseException as exc:
            self._broken = exc
            raise
        self.seq = record.seq
        if self.checkpoint_every and self.seq % self.checkpoint_every == 0:
            self.store.save_checkpoint(checkpoint(self.machine, self.seq))
        return outputs

    def save_checkpoint(self) -> None:
        self.store.save_checkpoint(checkpoint(self.machine, self.seq))
