"""A PostgreSQL event store (psycopg 3, blocking): the log a cluster of nodes shares (docs/adr/0016).

``PostgresStore("postgresql://user@host:port/db")`` keeps the same entries as the SQLite store, one canonical JSON
line per row (adapters/store/rows.py decodes both), in the schema of pg_schema.py, created or migrated when a
writable store opens. One store reads and writes one *stream* (``?stream=NAME`` in the URL, default ``""``): a
single node's log is one stream; a cluster keeps one per call.

Durability: an ``append`` is one transaction, one statement (``INSERT ... SELECT FROM unnest(...)``, a single
round trip however many records the batch holds); the session forces ``synchronous_commit = on``, so when
``append`` returns the WAL holding the batch is flushed on the server (and on synchronous standbys, if the server
has them). The recorder's group commit (adapters/store/recorder.py) calls ``append`` in a worker thread, as with
SQLite: psycopg releases the GIL while it waits for the server, so the event loop never waits for the database.

Fencing (pg_leases.py): when the store holds a lease (``fence``), every append and checkpoint is conditional, in
the same statement, on that lease still being the stream's, at that epoch, unexpired *by the database's clock*;
otherwise the database inserts nothing and the store raises ``StaleLease``. A stream under a lease refuses
unfenced appends. So a node that lost its lease cannot add a record, whatever its own clock or scheduler did.

Threads: like SqliteStore, not for concurrent use; its caller serialises calls (one commit in flight at a time).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import psycopg
from callsd.core.calls.eventlog import Compaction, EventLogError, LogEntry, Record, encode_record
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from . import pg_leases
from .base import check_contiguous
from .pg_leases import Lease, StaleLease
from .pg_schema import SCHEMA_VERSION, migrate, schema_version
from .pg_timing import StoreTiming
from .rows import decode_checkpoint, decode_rows, encode_checkpoint

__all__ = ["PostgresStore", "split_store_url"]

CONNECT_TIMEOUT_S = 10
# libpq settings a URL does not give: a node cut off from the database must see its commit *fail* in seconds (the
# recorder then breaks and the node stops, ADR 0002), not hang for the kernel's 15-minute TCP retransmission limit.
CONNECTION_DEFAULTS = {
    "connect_timeout": str(CONNECT_TIMEOUT_S),
    "keepalives": "1",
    "keepalives_idle": "5",
    "keepalives_interval": "2",
    "keepalives_count": "3",
    "tcp_user_timeout": "10000",  # ms: unacknowledged data (a commit sent into a partition) fails the connection
    "application_name": "callsd",
}
PAGE_ROWS = 2000  # rows fetched per query when reading: memory stays flat however long the log

_APPEND = """
INSERT INTO events (stream, seq, epoch, record)
SELECT %(stream)s, entry.seq, %(epoch)s, entry.record
FROM unnest(%(seqs)s::bigint[], %(records)s::text[]) AS entry(seq, record)
WHERE {guard}
"""
# An unfenced writer may not append to a stream somebody leases; a fenced one only under its own live lease. The
# fenced append locks the lease row FOR KEY SHARE until it commits: a takeover (it changes ``epoch``, a key column
# since schema 5) waits for it, so every row of an epoch precedes the next epoch's (ADR 0016, claim 2); the owner's
# own renewal (``expires_at`` only) does not, so a slow commit cannot make it miss its local deadline (ADR 0041).
_UNFENCED = "NOT EXISTS (SELECT 1 FROM call_leases WHERE stream = %(stream)s)"
_FENCED = ("EXISTS (SELECT 1 FROM call_leases WHERE stream = %(stream)s AND owner = %(owner)s AND epoch = %(epoch)s "
           "AND expires_at > clock_timestamp() FOR KEY SHARE)")

_SAVE_CHECKPOINT = """
INSERT INTO checkpoints AS saved (stream, seq, body)
SELECT %(stream)s, %(seq)s, %(body)s WHERE {guard}
ON CONFLICT (stream) DO UPDATE SET seq = excluded.seq, body = excluded.body
"""


def split_store_url(url: str) -> tuple[str, str, str]:
    """``(conninfo for libpq, stream, location)`` of a ``postgresql://`` URL: the ``stream`` query parameter is
    callsd's, not libpq's, so it is taken out, and ``CONNECTION_DEFAULTS`` fill in what the URL leaves unset;
    ``location`` is the URL without its password (for messages). ``ValueError`` for a URL libpq cannot parse."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    stream = next((value for key, value in query if key == "stream"), "")
    rest = urlencode([(key, value) for key, value in query if key != "stream"])
    given = urlunsplit(parts._replace(query=rest))
    try:
        settings = conninfo_to_dict(given)
    except psycopg.Error as exc:
        raise ValueError(f"not a PostgreSQL URL libpq accepts: {_one_line(exc)}") from None
    conninfo = make_conninfo(given, **{k: v for k, v in CONNECTION_DEFAULTS.items() if k not in settings})
    netloc = parts.netloc.rpartition("@")
    shown_netloc = (netloc[0].partition(":")[0] + "@" + netloc[2]) if netloc[1] else parts.netloc
    location = urlunsplit(parts._replace(netloc=shown_netloc, query=urlencode([("stream", stream)]) if stream else ""))
    return conninfo, stream, location


class PostgresStore:
    def __init__(self, url: str, *, readonly: bool = False, stream: str | None = None) -> None:
        conninfo, url_stream, self.location = split_store_url(url)
        self.stream = url_stream if stream is None else stream
        self.readonly = readonly
        self.fence: Lease | None = None  # the lease appends are conditional on (set by acquire_lease)
        self.timing: StoreTiming | None = None  # a node's latency histograms (``append``), when it keeps them
        self._conninfo = conninfo
        self._db = self.connect()
        try:
            self._db.execute("SET synchronous_commit = on")
            if readonly:
                self._db.execute("SET default_transaction_read_only = on")
                found = schema_version(self._db)
                if found is None:
                    raise EventLogError("no callsd event log in this database", source=self.location)
                if found > SCHEMA_VERSION:
                    raise EventLogError(f"the database's log schema is version {found}, newer than this callsd "
                                        f"knows ({SCHEMA_VERSION}): upgrade callsd", source=self.location)
            else:
                migrate(self._db, source=self.location)
            row = self._db.execute("SELECT COALESCE(MAX(seq), 0) FROM events WHERE stream = %s",
                                   (self.stream,)).fetchone()
        except psycopg.Error as exc:
            self._db.close()
            raise EventLogError(f"cannot open the PostgreSQL log ({_one_line(exc)})", source=self.location) from None
        except BaseException:
            self._db.close()
            raise
        self._last = int(row[0]) if row else 0

    def connect(self) -> psycopg.Connection[Any]:
        """A new autocommit connection to this store's database (the store's own, or a lease keeper's, which must
        not queue behind a commit in flight); ``EventLogError`` if the server cannot be reached."""
        try:
            return psycopg.connect(self._conninfo, autocommit=True)
        except psycopg.Error as exc:
            raise EventLogError(f"cannot open the PostgreSQL log ({_one_line(exc)})", source=self.location) from None

    def _params(self) -> dict[str, Any]:
        fence = self.fence
        return {"stream": self.stream, "owner": fence.owner if fence else "", "epoch": fence.epoch if fence else 0}

    def _guard(self) -> str:
        return _FENCED if self.fence is not None else _UNFENCED

    def _writable(self) -> None:
        if self.readonly:
            raise ValueError(f"{self.location} is open read-only")

    # ------------------------------------------------------------------ the log

    def prepare_appends(self) -> None:
        """Nothing to prepare: the server lays out its own WAL."""

    def append(self, records: Sequence[Record]) -> None:
        """One transaction; raises ``StaleLease`` (nothing written) when the store's lease is no longer live."""
        self._writable()
        check_contiguous(self._last, records)
        if not records:
            return
        params = {**self._params(), "seqs": [r.seq for r in records], "records": [encode_record(r) for r in records]}
        started = time.perf_counter()
        with self._db.cursor() as cursor:
            cursor.execute(_APPEND.format(guard=self._guard()), params)
            written = cursor.rowcount
        if self.timing is not None:
            self.timing.observe("append", time.perf_counter() - started)
        if written != len(records):
            raise StaleLease(self._refusal("append"))
        self._last = records[-1].seq

    def _refusal(self, what: str) -> str:
        if self.fence is None:
            return f"{self.location}: {what} refused: stream {self.stream!r} is leased; write under its lease"
        return (f"{self.location}: {what} refused: the lease of stream {self.stream!r} at epoch {self.fence.epoch} "
                f"({self.fence.owner}) is no longer live")

    def iter_records(self, from_seq: int = 1) -> Iterator[LogEntry]:
        """Entries from ``from_seq`` in pages of ``PAGE_ROWS`` rows (keyset pagination: no transaction stays open
        between pages, so an abandoned iterator holds nothing). A compaction committed between two pages shows up
        as "a compaction entry after the first row": read again."""
        yield from decode_rows(self._rows(from_seq), source=self.location)

    def _rows(self, from_seq: int) -> Iterator[tuple[int, object]]:
        after = from_seq - 1
        while True:
            try:
                page = self._db.execute(
                    "SELECT seq, record FROM events WHERE stream = %s AND seq > %s ORDER BY seq LIMIT %s",
                    (self.stream, after, PAGE_ROWS)).fetchall()
            except psycopg.Error as exc:
                raise EventLogError(f"unreadable PostgreSQL log ({_one_line(exc)})", source=self.location) from None
            yield from ((int(seq), record) for seq, record in page)
            if len(page) < PAGE_ROWS:
                return
            after = int(page[-1][0])

    def last_seq(self) -> int:
        return self._last

    def compact(self, entry: Compaction) -> None:
        """Replace every row up to ``entry.seq`` by ``entry`` in one transaction (docs/adr/0011, "Compaction");
        safe while a server appends: its rows all come after ``entry.seq``. The same transaction makes the entry's
        checkpoint the stream's if the stored one is older (its records are gone), so a compaction never leaves a
        checkpoint pointing into deleted rows, and needs no lease on a leased stream."""
        self._writable()
        last = int(self._db.execute("SELECT COALESCE(MAX(seq), 0) FROM events WHERE stream = %s",
                                    (self.stream,)).fetchone()[0])  # type: ignore[index]
        if not 1 <= entry.seq <= last:
            raise ValueError(f"cannot compact up to seq {entry.seq}: the log ends at seq {last}")
        with self._db.transaction():
            self._db.execute("DELETE FROM events WHERE stream = %s AND seq <= %s", (self.stream, entry.seq))
            self._db.execute("INSERT INTO events (stream, seq, record) VALUES (%s, %s, %s)",
                             (self.stream, entry.seq, encode_record(entry)))
            seq, body = encode_checkpoint(entry.checkpoint)
            self._db.execute("INSERT INTO checkpoints AS saved (stream, seq, body) VALUES (%s, %s, %s) "
                             "ON CONFLICT (stream) DO UPDATE SET seq = excluded.seq, body = excluded.body "
                             "WHERE saved.seq < excluded.seq", (self.stream, seq, body))

    def save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Keep ``checkpoint`` as the stream's latest (under the lease, like an append)."""
        self._writable()
        seq, body = encode_checkpoint(checkpoint)
        with self._db.cursor() as cursor:
            cursor.execute(_SAVE_CHECKPOINT.format(guard=self._guard()), {**self._params(), "seq": seq, "body": body})
            if cursor.rowcount != 1:
                raise StaleLease(self._refusal("checkpoint"))

    def load_checkpoint(self) -> dict[str, Any] | None:
        try:
            row = self._db.execute("SELECT seq, body FROM checkpoints WHERE stream = %s", (self.stream,)).fetchone()
        except psycopg.Error as exc:
            raise EventLogError(f"unreadable PostgreSQL log ({_one_line(exc)})", source=self.location) from None
        if row is None:
            return None
        return decode_checkpoint(int(row[0]), row[1], source=self.location)

    def bytes_used(self) -> int:
        """The stream's rows and checkpoint as stored (``pg_column_size``: after TOAST compression)."""
        row = self._db.execute(
            "SELECT (SELECT COALESCE(SUM(pg_column_size(record)), 0) FROM events WHERE stream = %(s)s)"
            " + (SELECT COALESCE(SUM(pg_column_size(body)), 0) FROM checkpoints WHERE stream = %(s)s)",
            {"s": self.stream}).fetchone()
        return int(row[0]) if row else 0

    # ------------------------------------------------------------------ leases (pg_leases.py)

    def acquire_lease(self, owner: str, seconds: float, *, margin: float = pg_leases.DEFAULT_MARGIN) -> Lease | None:
        """Take the stream's lease if it is free or expired (a new, higher epoch) and fence this store's writes
        with it; None if another owner holds it. Read the log *after* this returns: every record of the previous
        epoch is in it by then (the database refuses that epoch's later appends)."""
        self._writable()
        lease = pg_leases.acquire(self._db, self.stream, owner, seconds, margin=margin, now=time.monotonic)
        if lease is not None:
            self.fence = lease
            self._last = int(self._db.execute("SELECT COALESCE(MAX(seq), 0) FROM events WHERE stream = %s",
                                              (self.stream,)).fetchone()[0])  # type: ignore[index]
        return lease

    def renew_lease(self) -> Lease | None:
        """Extend this store's lease; None (and the store no longer fenced by it) if it was lost or expired."""
        if self.fence is None:
            raise ValueError("this store holds no lease")
        lease = pg_leases.renew(self._db, self.fence, now=time.monotonic)
        self.fence = lease
        return lease

    def release_lease(self) -> None:
        """Give the lease up now (expire it; the epoch stays, so the next owner's is higher)."""
        if self.fence is not None:
            pg_leases.release(self._db, self.fence)
            self.fence = None

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> PostgresStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())
