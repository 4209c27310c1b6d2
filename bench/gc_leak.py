"""What freezing the calls' objects after a join wave would leak: the cyclic garbage a session leaves behind.

    .venv/bin/python -m bench.gc_leak --calls 20 --rounds 2 --out bench/results/gc-leak.json

Why: a generation-1 collection in a join wave holds the event loop 160-196 ms at 175-200 calls, and a full one walks
every call's objects (a quarter-second and more; docs/performance.md, "Loop holds"). ``gc.freeze()`` after a join
wave would take the calls' objects out of the collector's walks, but an object frozen is never collected by the
cyclic collector again: whatever of it ends as garbage *in a cycle* (reference counting alone cannot free it) when
its session leaves stays for the life of the process. This bench counts that, per session, before anyone builds on
it (ADR 0043, "Considered"; ADR 0048).

Method: one `callsd serve` under bench/serve_probe.py (pinned as bench/capacity.py pins it), with a short reconnect
window so that a session that left is gone within seconds. Each round: a full collection (SIGHUP to the probe: it
records what it freed and how many objects the collector tracks), ``callsd loadtest`` joining ``calls`` x 8 users at
50/s (2 talking per call), a full collection once the joins are over, one more at the end of the steady window, and
one after every user has left and the reconnect window has passed. Per session: the objects the collector tracks
(what every full collection walks), and the objects freed by the collection after the leaves, which is what a
freeze taken after the join wave would have leaked (an upper bound: it also holds whatever else became cyclic
garbage meanwhile).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import bench.capacity as capacity
from bench.capacity import JOIN_RATE, Server

ROOT = Path(__file__).resolve().parent.parent
USERS = 8
RECONNECT_WINDOW = 2  # seconds a session that left is kept (calls.reconnect_window_seconds)


def _collect(server: Server) -> None:
    """Ask the probe for a full collection and wait (bounded) until the server answers again: Python runs the
    handler in the main thread, between two bytecodes of the event loop, so /healthz answers only after it."""
    assert server.proc is not None
    server.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # the handler runs between bytecodes of the loop: /healthz answers after it
        try:
            with urllib.request.urlopen(server.url + "/healthz", timeout=5):
                return
        except OSError:
            time.sleep(0.2)


def run(calls: int, rounds: int, steady: float, out: Path) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="callsd-gcleak-"))
    probe_file = work / "probe.json"
    env = {"PYTHONPATH": str(ROOT), "CALLSD_CALLS_RECONNECT_WINDOW_SECONDS": str(RECONNECT_WINDOW),
           "CALLSD_SHUTDOWN_DRAIN_TIMEOUT": "1"}
    users = calls * USERS
    join = max(1.0, users / JOIN_RATE)
    marks: list[str] = []
    with Server(work, command=["-m", "bench.serve_probe", "--out", str(probe_file), "--", "serve"], env=env) as server:
        for r in range(rounds):
            _collect(server)
            marks.append(f"round {r}: before joins")
            tool = subprocess.Popen(
                [*capacity._pin(1), sys.executable, "-m", "callsd.app.cli", "loadtest", "--url", server.url,  # noqa: SLF001
                 "--calls", str(calls), "--users-per-call", str(USERS), "--unmuted", "2",
                 "--join-duration", f"{join:.2f}", "--duration", f"{join + steady:.2f}", "--join-timeout", "45",
                 "--media-engine", "shared", "--output", str(work / f"tool-{r}.json"), "--quiet"],
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            try:
                time.sleep(join + 2.0)
                _collect(server)
                marks.append(f"round {r}: joined")
                time.sleep(max(0.0, steady - 3.0))
                _collect(server)
                marks.append(f"round {r}: end of steady window")
                tool.communicate(timeout=join + steady + 120)
            finally:
                if tool.poll() is None:
                    tool.kill()
                    tool.wait()
            time.sleep(RECONNECT_WINDOW + 3.0)  # every session has left and its reconnect window has passed
            _collect(server)
            marks.append(f"round {r}: left")
    probe = json.loads(probe_file.read_text())
    rows = [{"mark": mark, "freed": freed, "tracked": tracked, "freed_types": types}
            for mark, (freed, tracked), types in zip(marks, probe["gc_on_demand"], probe["gc_garbage_types"],
                                                     strict=False)]
    per_round: list[dict[str, Any]] = []
    doc = {"calls": calls, "users_per_call": USERS, "sessions_per_round": users, "rounds": rounds,
           "loadavg": os.getloadavg(), "marks": rows, "per_round": per_round}
    for r in range(rounds):
        by = {row["mark"].split(": ", 1)[1]: row for row in rows if row["mark"].startswith(f"round {r}:")}
        if len(by) < 4:
            continue
        per_round.append({
            "round": r,
            "tracked_per_session": round((by["joined"]["tracked"] - by["before joins"]["tracked"]) / users, 1),
            "freed_in_joins_per_session": round(by["joined"]["freed"] / users, 2),
            "freed_in_steady_per_session": round(by["end of steady window"]["freed"] / users, 2),
            "leak_bound_per_session": round(by["left"]["freed"] / users, 2),
            "tracked_left_behind": by["left"]["tracked"] - by["before joins"]["tracked"]})
    out.write_text(json.dumps(doc, indent=1))
    return doc


def per_round_of(doc: dict[str, Any]) -> list[dict[str, Any]]:
    rounds: list[dict[str, Any]] = doc["per_round"]
    return rounds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.gc_leak", description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--steady", type=float, default=6.0)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "gc-leak.json"))
    args = parser.parse_args(argv)
    doc = run(args.calls, args.rounds, args.steady, Path(args.out))
    for line in per_round_of(doc):
        print(json.dumps(line))
    for row in doc["marks"]:
        if row["mark"].endswith(": left"):  # what the sessions that left kept in cycles, by type (the commonest)
            print(row["mark"], json.dumps(dict(list(row["freed_types"].items())[:12])))
    print(f"results: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
