"""The event-store interface, and ``open_store`` which picks an implementation from a URL-ish string.

A store keeps the log's records in order and, optionally, the latest checkpoint (a snapshot tagged with the seq it
reflects, see core/calls/snapshot.py), so a server can restart from the checkpoint plus the records after it. Stores
validate what they read with the core's record codec and raise ``EventLogError`` naming the file and line (or row)
and the reason; they never hand back a record they could not decode.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from callsd.core.calls.eventlog import Record

__all__ = ["EventStore", "open_store", "check_contiguous"]


@runtime_checkable
class EventStore(Protocol):
    """What the recorder and the replay tool need from a log. PostgreSQL can implement it later."""

    location: str

    def append(self, records: Sequence[Record]) -> None:
        """Durably add ``records`` (seqs continuing the log by one). When this returns the records survive a crash
        of the process, and of the machine for stores whose durability says so (see ADR 0002)."""

    def iter_records(self, from_seq: int = 1) -> Iterator[Record]:
        """Records with ``seq >= from_seq`` in order; raises ``EventLogError`` at the first corrupt one."""

    def last_seq(self) -> int:
        """Seq of the last record, 0 for an empty log."""

    def save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Keep ``checkpoint`` (see core/snapshot.checkpoint) as the latest; replaces any older one."""

    def load_checkpoint(self) -> dict[str, Any] | None:
        """The latest checkpoint, or None."""

    def close(self) -> None: ...


def check_contiguous(last: int, records: Sequence[Record]) -> None:
    """Raise ``ValueError`` unless ``records`` continue a log whose last seq is ``last``, one by one."""
    for i, r in enumerate(records, start=1):
        if r.seq != last + i:
            raise ValueError(f"record seq {r.seq} does not continue the log at seq {last + i - 1}")


_JSONL_SUFFIXES = {".jsonl", ".ndjson", ".log"}
_SQLITE_SUFFIXES = {".db", ".sqlite", ".sqlite3"}


def _path_of(rest: str) -> str:
    # "sqlite:///abs/path" -> "/abs/path"; "sqlite://rel/path" and "sqlite:rel/path" -> "rel/path".
    return rest[2:] if rest.startswith("//") else rest


def open_store(url: str, *, readonly: bool = False, fsync: str = "always") -> EventStore:
    """Open ``sqlite:///path/db``, ``jsonl:///path/file.jsonl``, or a plain path chosen by its extension
    (.jsonl/.ndjson/.log, .db/.sqlite/.sqlite3). ``readonly`` opens an existing log for reading (the replay tool);
    ``fsync`` is the JSON Lines policy ("always" or "never", see JsonlStore). Raises ``ValueError`` for a URL it
    cannot place."""
    scheme, sep, rest = url.partition(":")
    if sep and scheme in ("sqlite", "jsonl"):
        kind, path = scheme, _path_of(rest)
    elif sep and scheme in ("postgres", "postgresql"):
        raise ValueError("PostgreSQL stores are not implemented yet; use sqlite:///path or jsonl:///path")
    else:
        suffix = Path(url).suffix.lower()
        if suffix in _JSONL_SUFFIXES:
            kind, path = "jsonl", url
        elif suffix in _SQLITE_SUFFIXES:
            kind, path = "sqlite", url
        else:
            raise ValueError(f"cannot tell the store type of {url!r}: use sqlite:///path, jsonl:///path, or a "
                             f"path ending in one of {sorted(_JSONL_SUFFIXES | _SQLITE_SUFFIXES)}")
    if not path:
        raise ValueError(f"no path in store URL {url!r}")
    if kind == "jsonl":
        from .jsonl import JsonlStore

        return JsonlStore(path, readonly=readonly, fsync=fsync)
    from .sqlite import SqliteStore

    return SqliteStore(path, readonly=readonly)
