"""Replay (pure): rebuild a ``CallsMachine`` from log records and check every record's output digest.

``replay(records)`` feeds each record's input to a fresh machine (or to one restored from a checkpoint, see
core/calls/checkpoint.py) and compares the digest of what it produced with the digest the record stored. A difference is a
``Mismatch``: the code that wrote the log and the code replaying it disagree, which is exactly what
``callsd replay --verify`` exists to catch after an upgrade. Replaying stops after ``until`` (a seq) if given.

Records must be contiguous (each seq one more than the last); a gap or an input the machine refuses as misuse means
the log is damaged and raises ``EventLogError``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ..errors import LocalProtocolError
from .checkpoint import from_checkpoint
from .eventlog import EventLogError, Record, outputs_digest
from .machine import CallsMachine
from .outputs import CallEnded, CallStarted, OutputEvent

__all__ = ["Mismatch", "ReplayResult", "replay"]


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


def replay(
    records: Iterable[Record],
    until: int | None = None,
    call: str | None = None,
    start: dict[str, Any] | None = None,
) -> ReplayResult:
    """Apply ``records`` in order; see the module docstring.

    ``call`` keeps only the outputs of that call id (from its ``CallStarted`` to its ``CallEnded``) in the result;
    the machine still applies every record, since calls share sessions. ``start`` is a ``checkpoint()`` dict:
    records up to its seq are skipped.
    """
    if start is not None:
        machine, last = from_checkpoint(start)
    else:
        machine, last = CallsMachine(), 0
    result = ReplayResult(machine=machine, last_seq=last)
    # Channel of the chosen call while it is live; None before it starts and after it ends.
    live_channel: str | None = None
    if call is not None:
        for view in machine.calls():
            if view.call_id == call:
                live_channel = view.channel_id
    for record in records:
        if until is not None and record.seq > until:
            break
        if record.seq <= last:
            continue  # already covered by the checkpoint
        if record.seq != result.last_seq + 1:
            raise EventLogError(f"seq {record.seq} follows seq {result.last_seq}: the log has a gap")
        try:
            produced = machine.handle(record.event)
        except LocalProtocolError as exc:
            raise EventLogError(f"seq {record.seq}: the machine refuses this input: {exc}") from None
        result.last_seq = record.seq
        digest = outputs_digest(produced)
        if digest != record.out:
            result.mismatches.append(
                Mismatch(seq=record.seq, expected=record.out, actual=digest, outputs=tuple(produced))
            )
        for o in produced:
            if call is not None:
                if isinstance(o, CallStarted) and o.call_id == call:
                    live_channel = o.channel_id
                if live_channel is None or getattr(o, "channel_id", None) != live_channel:
                    continue
                if isinstance(o, CallEnded):
                    live_channel = None
            result.outputs.append((record.seq, o))
            if isinstance(o, CallEnded):
                result.ended.append((record.seq, o))
    return result
