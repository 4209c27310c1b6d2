"""``callsd log stats|compact``: look at an event log's size and history, and apply retention to it.

``callsd log stats [LOG] [--config FILE] [--json]`` replays the log and prints: where it is and its size on disk,
its entries and seq range, up to which seq it was compacted (and the archive), the oldest and newest input times,
the ongoing calls and the calls that ended in the retained records, the checkpoint's seq, and the chain: its head
(keep it elsewhere to detect a forged log later), how many records are chained or unchained (v1), and any breaks
or output digest mismatches.

``callsd log compact [LOG] [--config FILE] [--days N | --before-seq N] [--archive-dir DIR | --delete]`` compacts
the records older than N days (default: ``store.retention_days``) or up to a seq into one compaction entry,
archiving them (default: ``archive/`` next to the log, or ``store.retention_action``) or deleting them
(adapters/store/compaction.py). SQLite logs can be compacted while the server runs; stop the server before
compacting a JSON Lines log.

LOG defaults to the configured store (``store.url`` or ``<store.data_dir>/events.sqlite``).

Exit codes: 0 done (or nothing to compact); 1 the log fails verification (stats shows why; compact refuses);
2 the log is corrupt or unreadable; 64 usage error.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

from callsd.adapters.store import EventStore, open_store
from callsd.adapters.store.compaction import DAY_MS, archive_dir_of, compact
from callsd.core.calls.eventlog import Compaction, EventLogError, LogEntry, Record
from callsd.core.calls.replay import ReplayResult, replay

from .config import ConfigError, load_config

EXIT_OK, EXIT_UNVERIFIED, EXIT_CORRUPT, EXIT_USAGE = 0, 1, 2, 64


def add_arguments(parser: argparse.ArgumentParser) -> None:
    def usage_error(message: str) -> NoReturn:
        parser.print_usage(sys.stderr)
        print(f"{parser.prog}: error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)

    parser.error = usage_error  # type: ignore[method-assign]  # 2 means corrupt here, as for replay
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    for name, help_text in (("stats", "size, history, calls and chain head of an event log"),
                            ("compact", "compact old records into one entry, archiving or deleting them")):
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.error = usage_error  # type: ignore[method-assign]
        p.add_argument("log", metavar="LOG", nargs="?", help="the log (default: the configured store)")
        p.add_argument("--config", "-c", metavar="FILE", help="TOML configuration file (see docs/config.md)")
        if name == "stats":
            p.add_argument("--json", action="store_true", help="print JSON")
            continue
        when = p.add_mutually_exclusive_group()
        when.add_argument("--days", type=int, metavar="N", help="compact records older than N days "
                                                                "(default: store.retention_days)")
        when.add_argument("--before-seq", type=int, metavar="N", help="compact records up to seq N")
        where = p.add_mutually_exclusive_group()
        where.add_argument("--archive-dir", metavar="DIR", help="archive into DIR (default: archive/ next to the log)")
        where.add_argument("--delete", action="store_true", help="delete the compacted records, no archive")


def _size(location: str) -> int:
    """Bytes on disk: the log and its side files (SQLite WAL, checkpoint)."""
    path = Path(location)
    return sum(p.stat().st_size for p in path.parent.glob(path.name + "*") if p.is_file())


def _iso(ms: int | None) -> str | None:
    if ms is None:
        return None
    return datetime.datetime.fromtimestamp(ms / 1000, datetime.UTC).isoformat(timespec="seconds")


def _stats(store: EventStore) -> tuple[dict[str, Any], ReplayResult]:
    entries = first = 0
    oldest: int | None = None
    newest: int | None = None
    compaction: Compaction | None = None

    def counted() -> Iterator[LogEntry]:
        nonlocal entries, first, oldest, newest, compaction
        for entry in store.iter_records(1):
            entries += 1
            first = first or entry.seq
            if isinstance(entry, Compaction):
                compaction = entry
            elif isinstance(entry, Record):
                at = entry.event.at
                oldest = at if oldest is None else min(oldest, at)
                newest = at if newest is None else max(newest, at)
            yield entry

    result = replay(counted())
    saved = store.load_checkpoint()
    chain = result.chain
    doc = {
        "location": store.location,
        "bytes": _size(store.location),
        "entries": entries,
        "first_seq": first,
        "last_seq": result.last_seq,
        "compacted_to_seq": compaction.seq if compaction is not None else 0,
        "archive": compaction.archive if compaction is not None else None,
        "oldest_at": _iso(oldest),
        "newest_at": _iso(newest),
        "ongoing_calls": len(result.machine.calls()),
        "ended_calls": len(result.ended),
        "checkpoint_seq": int(saved.get("seq", 0)) if saved else None,
        "chain": {"head": chain.head, "chained": chain.chained, "unchained": chain.unchained,
                  "breaks": [str(b) for b in chain.breaks]},
        "mismatches": [m.seq for m in result.mismatches],
    }
    return doc, result


def _print_stats(doc: dict[str, Any]) -> None:
    chain = doc["chain"]
    lines = [
        f"log          {doc['location']} ({doc['bytes']} bytes on disk)",
        f"entries      {doc['entries']} (seq {doc['first_seq']}..{doc['last_seq']})",
        f"compacted    up to seq {doc['compacted_to_seq']}"
        + (f", archive {doc['archive']}" if doc["archive"] else (", deleted" if doc["compacted_to_seq"] else "")),
        f"inputs       {doc['oldest_at']} .. {doc['newest_at']}",
        f"calls        {doc['ongoing_calls']} ongoing, {doc['ended_calls']} ended in the retained records",
        f"checkpoint   seq {doc['checkpoint_seq']}",
        f"chain head   {chain['head']} ({chain['chained']} chained, {chain['unchained']} unchained v1 record(s))",
        f"verify       {len(chain['breaks'])} chain break(s), {len(doc['mismatches'])} output mismatch(es)",
    ]
    print("\n".join(lines))
    for text in chain["breaks"]:
        print(f"  {text}")


def _store_url(args: argparse.Namespace) -> tuple[str, Any]:
    config = load_config(args.config, os.environ)
    return (args.log or config.store.effective_url()), config


def run(args: argparse.Namespace) -> int:
    try:
        url, config = _store_url(args)
    except ConfigError as exc:
        print(f"callsd log: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        store = open_store(url, readonly=args.action == "stats")
    except ValueError as exc:
        print(f"callsd log: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except EventLogError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_CORRUPT
    except OSError as exc:
        print(f"{url}: cannot open: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_CORRUPT
    try:
        if args.action == "stats":
            doc, result = _stats(store)
            if args.json:
                print(json.dumps(doc, indent=2, sort_keys=True))
            else:
                _print_stats(doc)
            return EXIT_OK if result.verified else EXIT_UNVERIFIED
        return _compact(store, args, config)
    except EventLogError as exc:
        located = exc if exc.source else exc.located(source=store.location)
        print(str(located), file=sys.stderr)
        return EXIT_UNVERIFIED if "fails verification" in exc.reason else EXIT_CORRUPT
    except OSError as exc:
        print(f"{store.location}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_CORRUPT
    finally:
        store.close()


def _compact(store: EventStore, args: argparse.Namespace, config: Any) -> int:
    days = args.days if args.days is not None else config.store.retention_days
    if args.before_seq is None and days <= 0:
        print("callsd log compact: say how much to keep: --days N, --before-seq N, or store.retention_days",
              file=sys.stderr)
        return EXIT_USAGE
    delete = args.delete or (args.archive_dir is None and config.store.retention_action == "delete")
    archive_dir = None if delete else Path(args.archive_dir) if args.archive_dir else archive_dir_of(store)
    before_ms = None if args.before_seq is not None else int(time.time() * 1000) - days * DAY_MS
    try:
        done = compact(store, before_ms=before_ms, cut=args.before_seq, archive_dir=archive_dir)
    except ValueError as exc:
        print(f"callsd log compact: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if done is None:
        print("nothing to compact")
        return EXIT_OK
    where = f"archived to {done.archive}" if done.archive is not None else "deleted"
    print(f"compacted up to seq {done.cut}: {done.dropped} entries {where}; {done.ended_calls} ended call(s) "
          f"gone, {done.ongoing_calls} ongoing call(s) kept in the compaction entry")
    return EXIT_OK
