"""An SQLite event store (stdlib ``sqlite3``): the embedded default.

Schema: ``events(seq INTEGER PRIMARY KEY, record TEXT NOT NULL)`` holds each record as the same canonical JSON
line the JSON Lines store writes (one codec, one set of checks); ``checkpoints(seq INTEGER PRIMARY KEY, body TEXT)``
keeps the latest checkpoint.

Durability (docs/adr/0002): ``journal_mode=WAL`` with ``synchronous=FULL``. In WAL mode, FULL syncs the WAL on every
commit, so a record is on disk when ``append`` returns and survives a power cut; NORMAL would only survive a
process crash (the last commits can roll back after an OS crash). Appends are one transaction (one fsync) each
however many records they carry; the server's recorder groups every record queued while the previous commit ran
into the next append (group commit), so the fsync cost is paid per batch, not per input.

Threads: the connection is opened with ``check_same_thread=False`` because the recorder's commit loop calls
``append`` from a Trio worker thread (which thread may change between batches). The store is not safe for
concurrent use: its caller serialises every call, as ``CallRecorder`` does (one commit in flight at a time, and the
Trio thread never touches the store while it runs).
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from callsd.core.calls.eventlog import (
    Compaction,
    EventLogError,
    LogEntry,
    Record,
    decode_entry,
    encode_record,
)

from .base import check_contiguous

__all__ = ["SqliteStore"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (seq INTEGER PRIMARY KEY, record TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS checkpoints (seq INTEGER PRIMARY KEY, body TEXT NOT NULL);
"""


class SqliteStore:
    def __init__(self, path: str | os.PathLike[str], *, readonly: bool = False) -> None:
        self.path = Path(path)
        self.location = str(self.path)
        self.readonly = readonly
        try:
            if readonly:
                if not self.path.exists():
                    raise FileNotFoundError(f"no such file: {self.location}")
                self._db = sqlite3.connect(f"file:{self.path.resolve()}?mode=ro", uri=True, isolation_level=None,
                                           check_same_thread=False)
            else:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=FULL")
                self._db.executescript(_SCHEMA)
            row = self._db.execute("SELECT COALESCE(MAX(seq), 0) FROM events").fetchone()
        except sqlite3.OperationalError as exc:  # I/O: a full disk, a read-only directory, a lock
            raise EventLogError(f"cannot open the SQLite log ({exc})", source=self.location) from None
        except sqlite3.DatabaseError as exc:
            raise EventLogError(f"not a readable callsd SQLite log ({exc})", source=self.location) from None
        self._last = int(row[0])

    def append(self, records: Sequence[Record]) -> None:
        if self.readonly:
            raise ValueError(f"{self.location} is open read-only")
        check_contiguous(self._last, records)
        if not records:
            return
        rows = [(r.seq, encode_record(r)) for r in records]
        self._db.execute("BEGIN IMMEDIATE")
        try:
            self._db.executemany("INSERT INTO events (seq, record) VALUES (?, ?)", rows)
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")
        self._last = records[-1].seq

    def iter_records(self, from_seq: int = 1) -> Iterator[LogEntry]:
        try:
            cursor = self._db.execute("SELECT seq, record FROM events WHERE seq >= ? ORDER BY seq", (from_seq,))
            expected: int | None = None
            for seq, text in cursor:
                where = f"row {seq}"
                if not isinstance(text, str | bytes):
                    raise EventLogError(f"record is {type(text).__name__}, not text", line=seq, source=self.location)
                record = decode_entry(text, line=seq, source=self.location)
                if isinstance(record, Compaction) and expected is not None:
                    raise EventLogError("a compaction entry after the first row", line=seq, source=self.location)
                if record.seq != seq:
                    raise EventLogError(f"{where} holds a record with seq {record.seq}", line=seq,
                                        source=self.location)
                if expected is not None and seq != expected:
                    raise EventLogError(f"seq {seq} follows seq {expected - 1}: the log has a gap", line=seq,
                                        source=self.location)
                expected = seq + 1
                yield record
        except sqlite3.DatabaseError as exc:
            raise EventLogError(f"unreadable SQLite log ({exc})", source=self.location) from None

    def last_seq(self) -> int:
        return self._last

    def compact(self, entry: Compaction) -> None:
        """Replace every row up to ``entry.seq`` by ``entry``, in one transaction (docs/adr/0011, "Compaction").
        Safe while a server appends to the same file: its rows all come after ``entry.seq``."""
        if self.readonly:
            raise ValueError(f"{self.location} is open read-only")
        if not 1 <= entry.seq <= self._last:
            raise ValueError(f"cannot compact up to seq {entry.seq}: the log ends at seq {self._last}")
        self._db.execute("BEGIN IMMEDIATE")
        try:
            self._db.execute("DELETE FROM events WHERE seq <= ?", (entry.seq,))
            self._db.execute("INSERT INTO events (seq, record) VALUES (?, ?)", (entry.seq, encode_record(entry)))
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        seq = checkpoint.get("seq")
        if not isinstance(seq, int):
            raise ValueError("a checkpoint needs an integer 'seq'")
        body = json.dumps(checkpoint, sort_keys=True, separators=(",", ":"))
        self._db.execute("BEGIN IMMEDIATE")
        try:
            self._db.execute("DELETE FROM checkpoints")
            self._db.execute("INSERT INTO checkpoints (seq, body) VALUES (?, ?)", (seq, body))
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def load_checkpoint(self) -> dict[str, Any] | None:
        try:
            row = self._db.execute("SELECT seq, body FROM checkpoints ORDER BY seq DESC LIMIT 1").fetchone()
        except sqlite3.DatabaseError as exc:
            raise EventLogError(f"unreadable SQLite log ({exc})", source=self.location) from None
        if row is None:
            return None
        try:
            data = json.loads(row[1])
        except (ValueError, RecursionError) as exc:
            raise EventLogError(f"corrupt checkpoint ({exc})", line=row[0], source=self.location) from None
        if not isinstance(data, dict):
            raise EventLogError("corrupt checkpoint (not an object)", line=row[0], source=self.location)
        return data

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> SqliteStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
