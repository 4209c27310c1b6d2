"""The event-store interface (``open_store`` in opening.py picks an implementation from a URL-ish string).

The stores import this module, and opening.py imports the stores: nothing here imports a store, so there is no
import cycle.

A store keeps the log's records in order and, optionally, the latest checkpoint (a snapshot tagged with the seq it
reflects, see core/calls/snapshot.py), so a server can restart from the checkpoint plus the records after it. Stores
validate what they read with the core's record codec and raise ``EventLogError`` naming the file and line (or row)
and the reason; they never hand back a record they could not decode.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, Protocol, runtime_checkable

from callsd.core.calls.eventlog import Compaction, LogEntry, Record

__all__ = ["EventStore", "check_contiguous"]


@runtime_checkable
class EventStore(Protocol):
    """What the recorder and the replay tool need from a log (SQLite, JSON Lines, PostgreSQL)."""

    location: str

    def append(self, records: Sequence[Record]) -> None:
        """Durably add ``records`` (seqs continuing the log by one). When this returns the records survive a crash
        of the process, and of the machine for stores whose durability says so (see ADR 0002)."""

    def prepare_appends(self) -> None:
        """Get ready for a stream of appends: called once by the recorder's commit loop, in its commit thread,
        before the first batch. Best effort (nothing is recorded): SQLite lays out its WAL's blocks so that the
        commits before its first checkpoint overwrite them instead of growing the file (adapters/store/sqlite.py);
        the other stores have nothing to prepare."""

    def iter_records(self, from_seq: int = 1) -> Iterator[LogEntry]:
        """Entries with ``seq >= from_seq`` in order (a compacted log starts with its ``Compaction`` entry); raises
        ``EventLogError`` at the first corrupt one."""

    def last_seq(self) -> int:
        """Seq of the last record, 0 for an empty log."""

    def save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Keep ``checkpoint`` (see core/snapshot.checkpoint) as the latest; replaces any older one."""

    def load_checkpoint(self) -> dict[str, Any] | None:
        """The latest checkpoint, or None."""

    def compact(self, entry: Compaction) -> None:
        """Atomically replace every entry up to ``entry.seq`` by ``entry`` (adapters/store/compaction.py)."""

    def close(self) -> None: ...


def check_contiguous(last: int, records: Sequence[Record]) -> None:
    """Raise ``ValueError`` unless ``records`` continue a log whose last seq is ``last``, one by one."""
    for i, r in enumerate(records, start=1):
        if r.seq != last + i:
            raise ValueError(f"record seq {r.seq} does not continue the log at seq {last + i - 1}")
