"""``open_store``: pick an event store implementation from a URL-ish string (docs/adr/0002)."""

from __future__ import annotations

from pathlib import Path

from .base import EventStore
from .jsonl import JsonlStore
from .sqlite import SqliteStore

__all__ = ["open_store"]

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
        return JsonlStore(path, readonly=readonly, fsync=fsync)
    return SqliteStore(path, readonly=readonly)
