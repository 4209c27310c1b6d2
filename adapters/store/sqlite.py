"""An SQLite event store (stdlib ``sqlite3``): the embedded default.

Schema: ``events(seq INTEGER PRIMARY KEY, record TEXT NOT NULL)`` holds each record as the same canonical JSON
line the JSON Lines store writes (one codec, one set of checks); ``checkpoints(seq INTEGER PRIMARY KEY, body TEXT)``
keeps the latest checkpoint.

Durability (docs/adr/0002): ``journal_mode=WAL`` with ``synchronous=FULL``. In WAL mode, FULL syncs the WAL on every
commit, so a record is on disk when ``append`` returns and survives a power cut; NORMAL would only survive a
process crash (the last commits can roll back after an OS crash). Appends are one transaction (one fsync) each
however many records they carry; the server's recorder groups every record queued while the previous commit ran
into the next append (group commit), so the fsync cost is paid per batch, not per input.

The WAL's blocks (``prepare_appends``): a fresh WAL grows by a frame or two per commit until the first checkpoint
(``wal_autocheckpoint``, 1,000 pages), and on ext4 an ``fdatasync`` of a file that grew also writes its inode and
allocates blocks: one more write to wait for, per commit. After the first checkpoint SQLite restarts the WAL from
its start and overwrites blocks that exist, so a long-running server pays this only for its first ~800 commits
after each start (a clean close deletes the WAL): exactly when every client reconnects at once, and the whole of a
benchmark's join wave (``bench.join_syscalls --wal-layout 5``, quiet host: 142 -> 108 µs of CPU, 286 -> 209 µs of
wall time and 3.2 -> 2.1 waits per commit; docs/performance.md, "Joins, session 10: the kernel's share"). So the
server's recorder, before its first batch, has the WAL laid out once: a scratch table gets a zero blob of the
checkpoint's size (written into the WAL and synced as any commit), is dropped, and a checkpoint copies the WAL back,
so that the next commit starts the WAL over (``PASSIVE``: with a reader of another process in the WAL it ends early
and the WAL grows as before, rather than wait for the reader). It costs ~40-90 ms of the commit thread at start and
leaves ~4 MB of free pages in the database file, which later records fill. Records and durability are untouched:
only the ``events`` table holds the log, and every commit still syncs.

Threads: the connection is opened with ``check_same_thread=False`` because the recorder's commit loop calls
``append`` from a Trio worker thread (which thread may change between batches). The store is not safe for
concurrent use: its caller serialises every call, as ``CallRecorder`` does (one commit in flight at a time, and the
Trio thread never touches the store while it runs).
"""

from __future__ import annotations

import logging
import os
import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from callsd.core.calls.eventlog import Compaction, EventLogError, LogEntry, Record, encode_record

from .base import check_contiguous
from .rows import decode_checkpoint, decode_rows, encode_checkpoint

__all__ = ["SqliteStore"]

log = logging.getLogger("callsd.store")

_FRAME_HEADER = 24  # bytes before each page in the WAL
_SPARE_PAGES = 32  # a last commit's frames past the checkpoint's threshold

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

    def prepare_appends(self) -> None:
        """Lay the WAL's blocks out before the first commit (module docstring, "The WAL's blocks"), unless the WAL is
        already that long (a restart after a crash keeps it). Best effort: a failure (a full disk, another process
        holding the log) is logged and the appends grow the WAL as before."""
        if self.readonly:
            return
        try:
            pages = int(self._db.execute("PRAGMA wal_autocheckpoint").fetchone()[0])
            page_size = int(self._db.execute("PRAGMA page_size").fetchone()[0])
            wal = Path(f"{self.path}-wal")
            if pages <= 0 or (wal.exists() and wal.stat().st_size >= pages * (page_size + _FRAME_HEADER)):
                return
            self._db.execute("CREATE TABLE IF NOT EXISTS wal_reserve (b BLOB)")
            self._db.execute("INSERT INTO wal_reserve VALUES (zeroblob(?))", ((pages + _SPARE_PAGES) * page_size,))
            self._db.execute("DROP TABLE wal_reserve")
            self._db.execute("PRAGMA wal_checkpoint(PASSIVE)")  # RESTART would wait up to 5 s for a reader
        except sqlite3.Error as exc:
            log.warning("could not lay out the SQLite log's WAL ahead (%s); its first commits will grow it", exc)

    def iter_records(self, from_seq: int = 1) -> Iterator[LogEntry]:
        try:
            cursor = self._db.execute("SELECT seq, record FROM events WHERE seq >= ? ORDER BY seq", (from_seq,))
            yield from decode_rows(cursor, source=self.location)
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
        seq, body = encode_checkpoint(checkpoint)
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
        return decode_checkpoint(row[0], row[1], source=self.location)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> SqliteStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
