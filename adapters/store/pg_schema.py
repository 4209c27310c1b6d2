"""The PostgreSQL event log's schema and its migrations (docs/adr/0016-postgresql-event-log.md).

The schema is versioned: ``schema_version`` holds one row per migration applied. ``migrate`` runs at every writable
open, in one transaction under a transaction-scoped advisory lock, so several nodes starting together on an empty
database apply each migration exactly once, and a node that starts on a database a newer callsd has migrated
refuses to write to it rather than guess. Migrations are append-only: a released entry of ``MIGRATIONS`` never
changes; a new schema is a new entry.

Tables:

- ``events(stream, seq, epoch, record)``: one row per log entry, ``record`` the canonical JSON line the other
  stores keep (one codec, one set of checks). ``stream`` names a log: ``""`` is a single node's log (what
  ``callsd serve`` writes); a cluster keeps one stream per call so each call's owner appends its own chain.
  ``epoch`` is the lease epoch the writer held (0 when unfenced): which owner wrote each row stays visible.
- ``checkpoints(stream, seq, body)``: the latest checkpoint of each stream.
- ``call_leases(stream, owner, epoch, expires_at)``: who may append to a stream, until when (adapters/store/
  pg_leases.py); ``expires_at`` is in the database's clock, the one clock every node agrees on. ``(stream, epoch)``
  is unique, which makes ``epoch`` a key column for row locks (docs/adr/0041).
- ``cluster_nodes(node_id, advertise, is_handler, seen_at)``: the cluster's nodes, where the others reach them, and
  when each last said it was alive (adapters/cluster/directory.py): a lease names its owner by node id, this table
  says where that owner listens.
"""

from __future__ import annotations

from typing import Any

from callsd.core.calls.eventlog import EventLogError

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "migrate", "schema_version"]

MIGRATIONS: tuple[tuple[int, tuple[str, ...]], ...] = (
    (1, (
        "CREATE TABLE events (stream text NOT NULL, seq bigint NOT NULL, epoch bigint NOT NULL DEFAULT 0, "
        "record text NOT NULL, PRIMARY KEY (stream, seq))",
        "CREATE TABLE checkpoints (stream text PRIMARY KEY, seq bigint NOT NULL, body text NOT NULL)",
    )),
    (2, (
        "CREATE TABLE call_leases (stream text PRIMARY KEY, owner text NOT NULL, epoch bigint NOT NULL, "
        "expires_at timestamptz NOT NULL)",
    )),
    (3, (
        "CREATE TABLE cluster_nodes (node_id text PRIMARY KEY, advertise text NOT NULL, is_handler boolean NOT NULL, "
        "seen_at timestamptz NOT NULL)",
    )),
    (4, (  # the lobby's list across a cluster: each owner publishes its channel's ongoing calls at its lease's epoch
        "CREATE TABLE cluster_calls (stream text PRIMARY KEY, epoch bigint NOT NULL, calls text NOT NULL)",
    )),
    (5, (  # a lease's epoch is a key column: a takeover (epoch + 1) then locks the row FOR UPDATE and waits for the
           # appends in flight, which lock it FOR KEY SHARE, while a renewal (expires_at only) no longer does (ADR 0041)
        "CREATE UNIQUE INDEX call_leases_stream_epoch ON call_leases (stream, epoch)",
    )),
)
SCHEMA_VERSION = MIGRATIONS[-1][0]

# pg_advisory_xact_lock key: "callsd" in ASCII; only callsd's migrations take it.
_MIGRATION_LOCK = 0x63616C6C7364

_VERSION_TABLE = ("CREATE TABLE IF NOT EXISTS schema_version (version integer PRIMARY KEY, "
                  "applied_at timestamptz NOT NULL DEFAULT now())")


def schema_version(conn: Any) -> int | None:
    """The schema version of the database ``conn`` is connected to; None if it holds no callsd log."""
    row = conn.execute("SELECT to_regclass('schema_version') IS NOT NULL").fetchone()
    if not row[0]:
        return None
    return int(conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version").fetchone()[0])


def migrate(conn: Any, *, source: str) -> int:
    """Bring the database up to ``SCHEMA_VERSION`` in one transaction; returns the version found before. Raises
    ``EventLogError`` for a database migrated by a newer callsd."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
        conn.execute(_VERSION_TABLE)
        found = int(conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version").fetchone()[0])
        if found > SCHEMA_VERSION:
            raise EventLogError(f"the database's log schema is version {found}, newer than this callsd knows "
                                f"({SCHEMA_VERSION}): upgrade callsd", source=source)
        for version, statements in MIGRATIONS:
            if version <= found:
                continue
            for statement in statements:
                conn.execute(statement)
            conn.execute("INSERT INTO schema_version (version) VALUES (%s)", (version,))
    return found
