"""Retention: compact the log's old records into one entry, archiving or deleting them (docs/adr/0011).

A log grows with every input. ``compact(store, before_ms=...)`` cuts it at the last record of the longest prefix
whose inputs are all older than ``before_ms`` (the retention horizon) and replaces that prefix by one
``Compaction`` entry (core/calls/eventlog.py) carrying:

- the checkpoint after the cut (the state of the calls still going on then; calls that ended before the cut are
  gone with their records: that is what retention removes), so the log alone still rebuilds every call;
- the chain hash of the cut record (``head``), which the next record's ``prev`` links to, so the retained records
  still verify (``callsd replay --verify``) and a restart still checks its tail;
- the archive's file name, when the prefix was archived rather than deleted.

The archive (``<archive_dir>/<log name>.<first seq>-<cut>.jsonl``) holds the prefix's lines as they were (the
previous compaction entry first, if any), so each archive is itself a log that ``callsd replay --verify`` checks,
and its last record's hash is the ``head`` of the entry that replaced it: the chain runs from archive to archive to
the live log.

Compaction refuses a prefix that does not verify (chain breaks, output digest mismatches): it would bury the
evidence. SQLite logs may be compacted while a server appends (one transaction, rows after the cut untouched);
a JSON Lines log is rewritten, so only the process that writes it may compact it (``callsd serve`` does at start
with ``store.retention_days``; stop the server before ``callsd log compact`` on a JSON Lines log).
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

from callsd.core.calls.checkpoint import checkpoint
from callsd.core.calls.eventlog import Compaction, EventLogError, Record, encode_record, make_compaction
from callsd.core.calls.replay import replay

from .base import EventStore

__all__ = ["CompactionResult", "Retention", "compact", "apply_retention", "find_cut", "archive_dir_of", "DAY_MS"]

log = logging.getLogger("callsd.store")

DAY_MS = 86_400_000


@dataclass(frozen=True, slots=True, kw_only=True)
class Retention:
    """``store.retention_days`` and ``store.retention_action``: keep ``days`` of records; archive the older ones
    into ``archive_dir``, or delete them when it is None. A running recorder checks at most every
    ``check_every_ms`` of event time (adapters/store/recorder.py)."""

    days: int
    archive_dir: Path | None
    check_every_ms: int = 3_600_000

    def horizon(self, now_ms: int) -> int:
        return now_ms - self.days * DAY_MS


@dataclass(frozen=True, slots=True, kw_only=True)
class CompactionResult:
    cut: int  # the last seq the compaction entry stands for
    dropped: int  # entries removed from the live log (records, and a previous compaction entry)
    ended_calls: int  # calls that ended before the cut (gone from the live log)
    ongoing_calls: int  # calls live at the cut (kept in the entry's checkpoint)
    archive: Path | None


def archive_dir_of(store: EventStore, data_dir: Path | None = None) -> Path:
    """Where archives of ``store`` go by default: ``archive/`` next to the log file; a database server's log
    (PostgreSQL) has no file to sit next to: ``<data_dir>/archive`` (default: the working directory's)."""
    if store.location.startswith(("postgresql://", "postgres://")):
        return (data_dir if data_dir is not None else Path(".")) / "archive"
    return Path(store.location).parent / "archive"


def find_cut(store: EventStore, before_ms: int) -> int:
    """The last seq of the longest prefix whose records all have ``at < before_ms`` (0 if none); a compaction
    entry already there counts as old."""
    cut = 0
    for entry in store.iter_records(1):
        if isinstance(entry, Record) and entry.event.at >= before_ms:
            break
        cut = entry.seq
    return cut


def compact(store: EventStore, *, before_ms: int | None = None, cut: int | None = None,
            archive_dir: Path | None = None) -> CompactionResult | None:
    """Compact ``store`` up to ``cut`` (or the cut ``find_cut(before_ms)`` gives); archive the prefix into
    ``archive_dir`` or, when it is None, delete it. Returns None when there is nothing new to compact. Raises
    ``EventLogError`` when the prefix does not verify, ``ValueError`` for a cut beyond the log."""
    if cut is None:
        if before_ms is None:
            raise ValueError("compact needs before_ms or cut")
        cut = find_cut(store, before_ms)
    prefix: list[Record | Compaction] = []
    for entry in store.iter_records(1):
        if entry.seq > cut:
            break
        prefix.append(entry)
    if not prefix or isinstance(prefix[-1], Compaction):
        return None  # empty, or already compacted up to there
    result = replay(prefix)
    problems = [str(b) for b in result.chain.breaks] + [f"seq {m.seq}: output digest differs"
                                                         for m in result.mismatches]
    if problems:
        raise EventLogError(f"will not compact a log that fails verification ({'; '.join(problems[:5])}); "
                            "see `callsd replay --verify`", source=store.location)
    head = result.chain.head
    assert head is not None  # replay from the first entry always knows it
    archive: Path | None = None
    if archive_dir is not None:
        archive = archive_dir / f"{_archive_stem(store.location)}.{prefix[0].seq}-{cut}.jsonl"
        _write_archive(archive, prefix)
    state = {**checkpoint(result.machine, cut), "head": head}
    entry = make_compaction(cut, head, state, archive.name if archive is not None else "")
    store.compact(entry)
    saved = store.load_checkpoint()
    if saved is None or int(saved.get("seq", 0)) < cut:
        store.save_checkpoint(state)  # an older checkpoint's records are gone: restart from the entry's
    return CompactionResult(cut=cut, dropped=len(prefix), ended_calls=len(result.ended),
                            ongoing_calls=len(result.machine.calls()), archive=archive)


def _archive_stem(location: str) -> str:
    """The log's file name, or for a database URL its database (and stream) in file-name-safe characters."""
    if "://" not in location or location.startswith(("sqlite:", "jsonl:")):
        return Path(location).name
    return re.sub(r"[^A-Za-z0-9._-]+", "-", location.partition("://")[2].rpartition("/")[2]).strip("-") or "log"


def _write_archive(path: Path, entries: list[Record | Compaction]) -> None:
    """Write the archive next to its final name, fsync it, then rename it: never a half archive."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as f:
        f.write(b"".join(encode_record(e).encode("utf-8") + b"\n" for e in entries))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def apply_retention(store: EventStore, retention: Retention, now_ms: int) -> CompactionResult | None:
    """Compact what ``retention`` allows at ``now_ms`` and log it. A log that fails verification is left as it is
    (a warning; the start-up check or ``callsd replay --verify`` reports it), and so is one that cannot be read;
    retention never raises, so it cannot break the recorder that runs it."""
    try:
        done = compact(store, before_ms=retention.horizon(now_ms), archive_dir=retention.archive_dir)
    except (EventLogError, OSError) as exc:
        log.warning("retention: not compacting %s: %s", store.location, exc)
        return None
    except Exception:  # a bug here must not stop the recorder: the log is whole either way (one transaction/rename)
        log.exception("retention: compacting %s failed", store.location)
        return None
    if done is not None:
        where = f"archived to {done.archive}" if done.archive is not None else "deleted"
        log.info("retention: compacted %s up to seq %d (%d entries %s; %d ended call(s) gone, %d ongoing kept)",
                 store.location, done.cut, done.dropped, where, done.ended_calls, done.ongoing_calls)
    return done
