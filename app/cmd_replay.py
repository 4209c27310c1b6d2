"""``callsd replay LOG [--until N] [--call ID] [--verify] [--json]``: rebuild call state from an event log.

LOG is a JSON Lines log (``.jsonl``), an SQLite log (``.db``/``.sqlite``/``.sqlite3``), or a store URL
(``jsonl:///path``, ``sqlite:///path``, ``postgresql://user@host:port/db[?stream=NAME]``; a cluster's database without ``?stream=`` replays each of its streams
in turn, one per channel). The command replays every record through the call core (up to seq N with
``--until``) and prints each ongoing call as a table: channel, call id, host, and per participant whether it is
muted, has its hand raised, shares its screen, has its camera on, and is connected. ``--call ID`` narrows the
report to one call (ongoing or ended). ``--json`` prints the same as one JSON document (a cluster's database: one
document whose ``streams`` maps each stream to its report; with ``--verify`` each report says ``verified``; the
problems found are printed to stderr as without ``--json``). ``--verify`` also checks that
every record's stored output digest matches what this version of the core produces, and that the hash chain is whole
(every record's hash matches its content and links to the record before; docs/adr/0011-log-chain.md). A log written
before the chain (version 1 records) is reported as "unchained (v1)": its digests are still checked.

Exit codes:
    0   the log replayed (and, with --verify, every digest matched and the chain is whole)
    1   --verify found mismatches: each is printed as ``seq N: expected <digest>, actual <digest>`` with the outputs
        this version produced; or chain breaks, each printed as ``seq N: chain break: <how>``
    2   the log is corrupt or unreadable: printed as ``FILE:LINE: reason`` (for SQLite, LINE is the row's seq)
    64  usage error (bad arguments, a LOG whose type cannot be told)
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, NoReturn

from callsd.adapters.store import open_store
from callsd.core import CallView, EventLogError, encode_output
from callsd.core.calls.replay import ReplayResult, replay

EXIT_OK, EXIT_MISMATCH, EXIT_CORRUPT, EXIT_USAGE = 0, 1, 2, 64


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    def usage_error(message: str) -> NoReturn:
        parser.print_usage(sys.stderr)
        print(f"{parser.prog}: error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)

    parser.error = usage_error  # type: ignore[method-assign]  # argparse exits 2 by default; 2 means corrupt here
    parser.add_argument("log", metavar="LOG", help="a .jsonl or SQLite event log, or jsonl:///path, sqlite:///path, "
                                                   "postgresql://user@host:port/db")
    parser.add_argument("--until", type=_positive, metavar="N", help="stop after the record with seq N")
    parser.add_argument("--call", metavar="ID", help="report only the call with this call id")
    parser.add_argument("--verify", action="store_true", help="fail (exit 1) if any output digest differs")
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")


def _call_json(c: CallView) -> dict[str, Any]:
    return {
        "channel_id": c.channel_id,
        "call_id": c.call_id,
        "started_at": c.started_at,
        "host_id": c.host_id,
        "screen_sharer": c.screen_sharer,
        "participants": [
            {
                "session_id": p.session_id,
                "user_id": p.user_id,
                "joined_at": p.joined_at,
                "host": p.host,
                "muted": p.muted,
                "hand_raised_at": p.hand_raised_at,
                "screen": p.screen,
                "video": p.video,
                "connected": p.connected,
                "tracks": [[t, k.value] for t, k in p.tracks],
            }
            for p in c.participants
        ],
    }


def _table(rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return lines


def _call_text(c: CallView) -> list[str]:
    lines = [f"channel {c.channel_id}  call {c.call_id}  host {c.host_id}  started_at {c.started_at}"]
    rows = [["session", "user", "host", "muted", "hand", "screen", "video", "connected"]]
    yes = {True: "yes", False: "-"}
    for p in c.participants:
        hand = "-" if p.hand_raised_at is None else f"raised@{p.hand_raised_at}"
        rows.append(
            [p.session_id, p.user_id, yes[p.host], yes[p.muted], hand, yes[p.screen], yes[p.video], yes[p.connected]]
        )
    return lines + ["  " + line for line in _table(rows)]


def _report(result: ReplayResult, args: argparse.Namespace) -> dict[str, Any] | None:
    """Print the text report, or return the JSON document (printed by ``run``, whole, once)."""
    calls = [c for c in result.machine.calls() if args.call is None or c.call_id == args.call]
    ended = [(seq, e) for seq, e in result.ended if args.call is None or e.call_id == args.call]
    if args.json:
        doc = {
            "last_seq": result.last_seq,
            "calls": [_call_json(c) for c in calls],
            "ended": [{"seq": seq, **encode_output(e)} for seq, e in ended],
            "mismatches": [
                {"seq": m.seq, "expected": m.expected, "actual": m.actual,
                 "outputs": [encode_output(o) for o in m.outputs]}
                for m in result.mismatches
            ],
            "chain": {
                "head": result.chain.head, "chained": result.chain.chained, "unchained": result.chain.unchained,
                "breaks": [{"seq": b.seq, "reason": b.reason} for b in result.chain.breaks],
            },
        }
        if args.verify:
            doc["verified"] = result.verified
        return doc
    compacted = result.chain.compacted
    done = result.last_seq - compacted
    print(f"replayed {done} record(s)" + (f" after the compaction entry at seq {compacted}" if compacted else "")
          + f"; {len(calls)} ongoing call(s)")
    for c in calls:
        print()
        print("\n".join(_call_text(c)))
    if ended:
        print()
        for seq, e in ended:
            print(f"call {e.call_id} in channel {e.channel_id} ended at seq {seq} after {e.duration_ms} ms; "
                  f"participants: {', '.join(e.participants)}")
    if args.call is not None and not calls and not ended:
        print(f"no call with id {args.call!r} in the replayed records")
    return None


def _streams_of(url: str) -> list[str]:
    """The log streams of a PostgreSQL database given without ``?stream=``, when it holds more than the single-node
    stream ``""`` (a cluster keeps one per channel, docs/cluster.md); [] otherwise (one log: replay it alone)."""
    if not url.startswith(("postgresql://", "postgres://")):
        return []
    from callsd.adapters.store.postgres import PostgresStore, split_store_url

    try:
        if split_store_url(url)[1]:
            return []
    except ValueError:
        return []  # a URL libpq refuses: reported by the replay itself
    try:
        with PostgresStore(url, readonly=True) as store, store.connect() as conn:
            rows = conn.execute("SELECT DISTINCT stream FROM events ORDER BY stream").fetchall()
    except EventLogError:
        return []  # reported by the replay itself
    streams = [str(row[0]) for row in rows]
    return streams if streams and streams != [""] else []


def _with_stream(url: str, stream: str) -> str:
    from urllib.parse import quote

    return url + ("&" if "?" in url else "?") + "stream=" + quote(stream, safe="")


def run(args: argparse.Namespace) -> int:
    streams = _streams_of(args.log)
    if not streams:
        code, doc = _run_one(args, args.log)
        if doc is not None:
            print(json.dumps(doc, indent=2, sort_keys=True))
        return code
    # A cluster's database: every stream is a log of its own; replay (and verify) each; the worst exit code wins.
    worst, docs = EXIT_OK, {}
    for stream in streams:
        if not args.json:
            print(f"== stream {stream!r}")
        code, doc = _run_one(args, _with_stream(args.log, stream))
        docs[stream] = doc if doc is not None else {"exit_code": code}
        worst = max(worst, code)
    if args.json:
        print(json.dumps({"streams": docs}, indent=2, sort_keys=True))
    return worst


def _run_one(args: argparse.Namespace, log: str) -> tuple[int, dict[str, Any] | None]:
    """Replay one log: its exit code, and its JSON report with ``--json`` (None without, or when it could not be
    read: the reason is on stderr)."""
    try:
        store = open_store(log, readonly=True)
    except ValueError as exc:
        print(f"callsd replay: {exc}", file=sys.stderr)
        return EXIT_USAGE, None
    except EventLogError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_CORRUPT, None
    except OSError as exc:
        print(f"{log}: cannot read: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_CORRUPT, None
    try:
        result = replay(store.iter_records(), until=args.until, call=args.call)
    except EventLogError as exc:
        located = exc if exc.source else exc.located(source=store.location)
        print(str(located), file=sys.stderr)
        return EXIT_CORRUPT, None
    except OSError as exc:
        print(f"{store.location}: cannot read: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_CORRUPT, None
    finally:
        store.close()
    doc = _report(result, args)
    if not args.verify:
        return EXIT_OK, doc
    for m in result.mismatches:
        print(f"seq {m.seq}: expected {m.expected}, actual {m.actual}", file=sys.stderr)
        for o in m.outputs:
            print(f"    {json.dumps(encode_output(o), sort_keys=True)}", file=sys.stderr)
    for b in result.chain.breaks:
        print(f"seq {b.seq}: chain break: {b.reason}", file=sys.stderr)
    if not result.verified:
        print(f"verify: {len(result.mismatches)} mismatch(es), {len(result.chain.breaks)} chain break(s)",
              file=sys.stderr)
        return EXIT_MISMATCH, doc
    checked = result.last_seq - result.chain.compacted
    summary = f"verify: all {checked} record digests match; chain: {chain_summary(result)}"
    print(summary, file=sys.stderr if doc is not None else sys.stdout)  # stdout holds only the document
    return EXIT_OK, doc


def chain_summary(result: ReplayResult) -> str:
    """One phrase on the chain: whole (with its head), or how much of the log predates it."""
    chain = result.chain
    if chain.compacted:
        return f"compacted up to seq {chain.compacted}, then " + _chain_phrase(result)
    return _chain_phrase(result)


def _chain_phrase(result: ReplayResult) -> str:
    chain = result.chain
    if chain.chained == 0:
        return f"unchained (v1): {chain.unchained} record(s) written before the chain, digests checked only"
    text = f"{chain.chained} chained record(s) whole, head {chain.head}"
    if chain.unchained:
        text += f"; {chain.unchained} earlier unchained (v1) record(s) covered by the first chained one"
    return text
