"""What the database-backed stores (SQLite, PostgreSQL) share: decoding rows and checkpoints, with the same checks.

Both keep each entry as the canonical JSON line of the JSON Lines store, keyed by its seq, and the latest checkpoint
as canonical JSON. Reading back, the same things can go wrong whichever database holds the rows (a row's record
names another seq, a gap, a compaction entry that is not the first row, a checkpoint that is not a JSON object), so
one function checks them and names the row, and the stores differ only in how they fetch.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any

from callsd.core.calls.eventlog import Compaction, EventLogError, LogEntry, decode_entry

__all__ = ["decode_rows", "encode_checkpoint", "decode_checkpoint"]


def decode_rows(rows: Iterable[tuple[int, object]], *, source: str) -> Iterator[LogEntry]:
    """Decode ``(seq, record text)`` rows in seq order; raise ``EventLogError`` (line = the row's seq) for a
    record that does not decode, names another seq, leaves a gap, or is a compaction entry after the first row."""
    expected: int | None = None
    for seq, text in rows:
        if not isinstance(text, str | bytes):
            raise EventLogError(f"record is {type(text).__name__}, not text", line=seq, source=source)
        record = decode_entry(text, line=seq, source=source)
        if isinstance(record, Compaction) and expected is not None:
            raise EventLogError("a compaction entry after the first row", line=seq, source=source)
        if record.seq != seq:
            raise EventLogError(f"row {seq} holds a record with seq {record.seq}", line=seq, source=source)
        if expected is not None and seq != expected:
            raise EventLogError(f"seq {seq} follows seq {expected - 1}: the log has a gap", line=seq, source=source)
        expected = seq + 1
        yield record


def encode_checkpoint(checkpoint: dict[str, Any]) -> tuple[int, str]:
    """``(seq, canonical JSON body)`` of a checkpoint; ``ValueError`` if it has no integer ``seq``."""
    seq = checkpoint.get("seq")
    if not isinstance(seq, int):
        raise ValueError("a checkpoint needs an integer 'seq'")
    return seq, json.dumps(checkpoint, sort_keys=True, separators=(",", ":"))


def decode_checkpoint(seq: int, body: object, *, source: str) -> dict[str, Any]:
    """The checkpoint stored as ``body`` in the row of ``seq``; ``EventLogError`` if it is not a JSON object."""
    try:
        data = json.loads(body) if isinstance(body, str | bytes) else None
    except (ValueError, RecursionError) as exc:
        raise EventLogError(f"corrupt checkpoint ({exc})", line=seq, source=source) from None
    if not isinstance(data, dict):
        raise EventLogError("corrupt checkpoint (not an object)", line=seq, source=source)
    return data
