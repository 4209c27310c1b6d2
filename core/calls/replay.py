"""Replay (pure): rebuild a ``CallsMachine`` from log records and check every record's output digest.

``replay(records)`` feeds each record's input to a fresh machine (or to one restored from a checkpoint, see
core/calls/checkpoint.py) and compares the digest of what it produced with the digest the record stored. A difference is a
``Mismatch``: the code that wrote the log and the code replaying it disagree, which is exactly what
``callsd replay --verify`` exists to catch after an upgrade. Replaying stops after ``until`` (a seq) if given.

A compacted log starts with a ``Compaction`` entry standing for the records it replaced: replay restores the
machine from the checkpoint it carries and continues the chain from its ``head`` (docs/adr/0011, "Compaction").

Records must be contiguous (each seq one more than the last); a gap or an input the machine refuses as misuse means
the log is damaged and raises ``EventLogError``.

Replay also checks the hash chain (core/calls/eventlog.py, ``ChainCheck``): a record whose hash does not match its
content, or whose ``prev`` is not the hash of the record before, is a ``ChainBreak`` in ``result.chain.breaks``
(not an exception: the caller decides, ``callsd replay --verify`` reports it, ``serve`` refuses to start on it).
Starting from a checkpoint, the chain continues from the ``head`` the checkpoint stores (the hash of its last
record), so a restart verifies the tail without reading the records before it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ..errors import LocalProtocolError
from .checkpoint import from_checkpoint
from .eventlog import GENESIS, ChainCheck, Compaction, EventLogError, LogEntry, outputs_digest
from .machine import CallsMachine
from .outputs import CallEnded, CallStarted, ChannelOutput, OutputEvent
from .snapshot import SnapshotError

__all__ = ["Mismatch", "ReplayResult", "replay", "checkpoint_head"]


def checkpoint_head(start: dict[str, Any]) -> str | None:
    """The chain hash a checkpoint's last record had (its ``head``), or None if it predates the chain."""
    head = start.get("head")
    return head if isinstance(head, str) and len(head) == 64 else None


@dataclass(frozen=True, slots=True, kw_only=True)
class Mismatch:
    """Record ``seq`` stored digest ``expected`` but the replayed outputs hash to ``actual``."""

    seq: int
    expected: str
    actual: str
    outputs: tuple[OutputEvent, ...]


@dataclass(slots=True, kw_only=True)
class ReplayResult:
    machine: CallsMachine
    # (seq, output) for every output produced, or only the chosen call's when ``call`` was given.
    outputs: list[tuple[int, OutputEvent]] = field(default_factory=list)
    mismatches: list[Mismatch] = field(default_factory=list)
    last_seq: int = 0
    # Calls that ended during the replay (the chosen one only, when ``call`` was given), with the seq that ended it.
    ended: list[tuple[int, CallEnded]] = field(default_factory=list)
    # The hash chain as checked: breaks, counts of chained and unchained records, and the head (last hash).
    chain: ChainCheck = field(default_factory=ChainCheck)

    @property
    def verified(self) -> bool:
        """Every digest matched and the chain is whole."""
        return not self.mismatches and not self.chain.breaks


def replay(
    records: Iterable[LogEntry],
    until: int | None = None,
    call: str | None = None,
    start: dict[str, Any] | None = None,
) -> ReplayResult:
    """Apply ``records`` in order; see the module docstring.

    ``call`` keeps only the outputs of that call id (from its ``CallStarted`` to its ``CallEnded``) in the result;
    the machine still applies every record, since calls share sessions. ``start`` is a ``checkpoint()`` dict:
    records up to its seq are skipped, and the chain continues from its ``head`` (unknown for a checkpoint written
    before the chain: the first record's ``prev`` is then taken on trust).
    """
    if start is not None:
        machine, last = from_checkpoint(start)
        head = checkpoint_head(start) if last else GENESIS
    else:
        machine, last, head = CallsMachine(), 0, GENESIS
    result = ReplayResult(machine=machine, last_seq=last, chain=ChainCheck(head))
    # Channel of the chosen call while it is live; None before it starts and after it ends.
    live_channel: str | None = None
    if call is not None:
        for view in machine.calls():
            if view.call_id == call:
                live_channel = view.channel_id
    applied = 0  # entries applied after the start
    for record in records:
        if until is not None and record.seq > until:
            if isinstance(record, Compaction) and not applied:
                where = f"; replay the archive {record.archive}" if record.archive else " and deleted"
                raise EventLogError(f"records up to seq {record.seq} were compacted{where}")
            break
        if record.seq <= last:
            if record.seq == last and start is not None:
                result.chain.anchor(record)  # the checkpoint's own record: does it carry the head it stored?
            continue  # already covered by the checkpoint
        if isinstance(record, Compaction):
            if applied:
                raise EventLogError(f"seq {record.seq}: a compaction entry after records")
            # The log starts here: the records before were archived or deleted; their state is in the entry.
            try:
                machine, _ = from_checkpoint(record.checkpoint)
            except SnapshotError as exc:
                raise EventLogError(f"seq {record.seq}: the compaction entry's checkpoint: {exc}") from None
            result.machine, result.last_seq = machine, record.seq
            result.chain.feed(record)
            for view in machine.calls():
                if view.call_id == call:
                    live_channel = view.channel_id
            applied += 1
            continue
        if record.seq != result.last_seq + 1:
            raise EventLogError(f"seq {record.seq} follows seq {result.last_seq}: the log has a gap")
        applied += 1
        try:
            produced = machine.handle(record.event)
        except LocalProtocolError as refused:  # its own name: compiled (ADR 0053), one name holds one type
            raise EventLogError(f"seq {record.seq}: the machine refuses this input: {refused}") from None
        result.last_seq = record.seq
        result.chain.feed(record)
        digest = outputs_digest(produced)
        if digest != record.out:
            result.mismatches.append(
                Mismatch(seq=record.seq, expected=record.out, actual=digest, outputs=tuple(produced))
            )
        for o in produced:
            if call is not None:
                if isinstance(o, CallStarted) and o.call_id == call:
                    live_channel = o.channel_id
                if live_channel is None or not (isinstance(o, ChannelOutput) and o.channel_id == live_channel):
                    continue
                if isinstance(o, CallEnded):
                    live_channel = None
            result.outputs.append((record.seq, o))
            if isinstance(o, CallEnded):
                result.ended.append((record.seq, o))
    return result
