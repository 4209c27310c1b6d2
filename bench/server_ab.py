"""A/B of server runtime settings under the capacity shape: the variants alternate in one run, so they share the host.

    .venv/bin/python -m bench.server_ab --calls 50 --rounds 3 \\
        --variant base: --variant gc:gc_freeze=1,gc_gen0_threshold=20000 --out bench/results/server-ab.json

Each variant is ``name:key=value,...`` where a key is an ``[rtc]`` setting (``coalesce_ms``, ``gc_freeze``,
``gc_gen0_threshold``, ``fast_path``...), passed as ``CALLSD_RTC_<KEY>``, or a whole environment variable written
in capitals (e.g. ``CALLSD_NATIVE_GSO=0``, or ``PYTHONPATH=DIR`` where DIR/callsd is another checkout: main's code
against a branch's, bench/egress_where.py). A round runs every variant once, in order,
each on a fresh ``callsd serve`` pinned to CPU 0 with the load tool on CPU 1 (bench/capacity.py's method: joins at
50 users/s, then ``--steady`` seconds of load). The server runs under bench/serve_probe.py, which times the cyclic GC
per wall-clock second: each row has the GC's share of the server's CPU over the steady window. ``--profile`` also
runs cProfile over the steady window of each run (``<out>-<variant>-<round>.prof`` and a top-30 text beside it).

What to read: the ratio of µs of server CPU per egress packet between variants within a round (the host's other work
moves absolute figures by ±30 % on a shared machine), and the machine's load average recorded per row.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import pstats
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bench.capacity as capacity
from bench.capacity import JOIN_RATE, Server, Shape, row

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True, slots=True)
class Variant:
    """One server configuration of the A/B: its name and its ``CALLSD_RTC_*`` settings."""

    name: str
    env: dict[str, str]

    @classmethod
    def parse(cls, text: str) -> Variant:
        name, _, settings = text.partition(":")
        env = {}
        for item in filter(None, settings.split(",")):
            key, sep, value = item.partition("=")
            if not sep:
                raise ValueError(f"variant {name!r}: {item!r} is not key=value")
            key = key.strip()
            env[key if key.isupper() else f"CALLSD_RTC_{key.upper()}"] = value.strip()
        return cls(name or "base", env)


def _steady_gc(probe: dict[str, Any], start: float, end: float) -> dict[str, Any]:
    """GC seconds and collections per generation in the whole wall-clock seconds of [start, end)."""
    total = [0.0] * 6
    seconds = 0
    for key, bucket in probe.get("gc_buckets", {}).items():
        if start <= int(key) < end:
            total = [a + b for a, b in zip(total, bucket, strict=True)]
    seconds = max(1, int(end) - int(start))
    return {"gc_seconds": round(sum(total[:3]), 4), "gc_seconds_by_generation": [round(x, 4) for x in total[:3]],
            "gc_collections_per_second": [round(x / seconds, 1) for x in total[3:]], "window_seconds": seconds}


def _top(prof: Path, lines: int = 30) -> str:
    out = io.StringIO()
    stats = pstats.Stats(str(prof), stream=out)
    stats.sort_stats("tottime").print_stats(lines)
    return out.getvalue()


def _perf_report(data: Path, text: Path) -> str:
    """Where the server's steady-window samples fell: by shared object, then the top symbols (``perf report``)."""
    parts = []
    for sort in ("dso", "dso,sym"):
        out = subprocess.run(["perf", "report", "-i", str(data), "--no-children", "--sort", sort, "--stdio",
                              "--percent-limit", "0.7", "-g", "none"], capture_output=True, text=True, check=False)
        parts.append("\n".join(line for line in out.stdout.splitlines() if line and not line.startswith("#")))
    text.write_text("\n\n".join(parts) + "\n")
    return str(text)


def run_variant(shape: Shape, variant: Variant, *, steady: float, workdir: Path, stem: Path, media_engine: str,
                join_timeout: float, profile: bool, perf: bool = False) -> dict[str, Any]:
    """One capacity run of ``shape`` on a server with ``variant``'s settings; the row plus the GC's steady share."""
    users = shape.calls * shape.users
    join = max(1.0, users / JOIN_RATE)
    probe_file = stem.with_suffix(".probe.json")
    env = dict(variant.env, PYTHONPATH=str(ROOT), CALLSD_SHUTDOWN_DRAIN_TIMEOUT="1")
    command = ["-m", "bench.serve_probe", "--out", str(probe_file), "--", "serve"]
    tool_out = stem.with_suffix(".loadtest.json")
    load_before = os.getloadavg()
    with Server(workdir, command=command, env=env) as server:
        assert server.proc is not None
        cmd = [*capacity._pin(1), sys.executable, "-m", "callsd.app.cli", "loadtest", "--url", server.url,  # noqa: SLF001
               "--calls", str(shape.calls), "--users-per-call", str(shape.users), "--unmuted", str(shape.unmuted),
               "--screen-sharing", str(shape.sharing), "--screen-bitrate", "1M",
               "--join-duration", f"{join:.2f}", "--duration", f"{join + steady:.2f}",
               "--server-pid", str(server.proc.pid), "--delay-sample", "4",
               "--media-engine", media_engine, "--join-timeout", f"{join_timeout:g}",
               "--output", str(tool_out), "--quiet"]
        started = time.time()
        tool = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        steady_from, steady_to = started + join + 1.5, started + join + steady
        if profile:
            for at, signum in ((steady_from, signal.SIGUSR1), (steady_to - 0.5, signal.SIGUSR2)):
                time.sleep(max(0.0, at - time.time()))
                server.proc.send_signal(signum)
        if perf:
            time.sleep(max(0.0, steady_from - time.time()))
            perf_data = stem.with_suffix(".perf.data")
            subprocess.run(["perf", "record", "-q", "-F", "999", "-g", "-p", str(server.proc.pid), "-o",
                            str(perf_data), "--", "sleep", f"{max(1.0, steady_to - 0.5 - time.time()):.1f}"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        tool.communicate(timeout=join + steady + 120)
    doc = json.loads(tool_out.read_text())
    probe = json.loads(probe_file.read_text()) if probe_file.exists() else {}
    line = row(shape, doc) | {"variant": variant.name, "settings": variant.env, "loadavg_before": load_before,
                              "started_utc": time.strftime("%H:%M:%S", time.gmtime(started)),
                              "gc_threshold": probe.get("gc_threshold"), "gc_frozen": probe.get("gc_frozen")}
    gc_steady = _steady_gc(probe, steady_from, steady_to)
    line |= gc_steady
    line["join_cpu_ms_per_user"] = doc["server"].get("join_cpu_ms_per_user")
    line["gc_seconds_while_joining"] = _steady_gc(probe, started, steady_from)["gc_seconds"]
    cpu_percent = line.get("server_cpu_percent") or 0.0
    if cpu_percent:
        line["gc_share_of_server_cpu"] = round(gc_steady["gc_seconds"] / (gc_steady["window_seconds"]
                                                                          * cpu_percent / 100), 3)
    if perf:
        line["perf"] = _perf_report(stem.with_suffix(".perf.data"), stem.with_suffix(".perf.txt"))
    prof = probe_file.with_suffix(".prof")  # serve_probe writes <out>.prof beside its JSON
    if profile and prof.exists():
        stem.with_suffix(".top.txt").write_text(_top(prof))
        line["profile"] = str(prof)
    line["passed"] = capacity.ok(line)
    return line


def summary(rows: list[dict[str, Any]], variants: list[Variant]) -> list[str]:
    """One line per variant: median µs/egress packet, its ratio to the first variant, GC share, loss."""
    base: float | None = None
    lines = []
    for v in variants:
        mine = [r for r in rows if r["variant"] == v.name and r.get("us_per_egress_packet")]
        if not mine:
            continue
        us = statistics.median(r["us_per_egress_packet"] for r in mine)
        base = base or us
        gc_share = statistics.median(r.get("gc_share_of_server_cpu", 0.0) for r in mine)
        lines.append(f"{v.name:>12}: {us:6.2f} µs/egress pkt (x{us / base:.2f}), runs "
                     f"{[r['us_per_egress_packet'] for r in mine]}, GC {100 * gc_share:.1f} % of server CPU, "
                     f"loss {[round(100 * r['loss'], 3) for r in mine]} %, server CPU "
                     f"{[r['server_cpu_percent'] for r in mine]} %, join CPU ms/user "
                     f"{[r.get('join_cpu_ms_per_user') for r in mine]}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.server_ab", description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=50)
    parser.add_argument("--shape", default="8,2,0", help="users per call, unmuted per call, sharing calls")
    parser.add_argument("--variant", action="append", default=[], help="name:key=value,... (an [rtc] setting)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steady", type=float, default=10.0)
    parser.add_argument("--media-engine", default="shared", help="the load tool's media engine")
    parser.add_argument("--join-timeout", type=float, default=30.0)
    parser.add_argument("--nice", type=int, default=0, help="as bench.capacity_paths --nice")
    parser.add_argument("--profile", action="store_true", help="cProfile the steady window of every run")
    parser.add_argument("--perf", action="store_true", help="perf record the steady window of every run")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "server-ab.json"))
    args = parser.parse_args(argv)
    variants = [Variant.parse(v) for v in args.variant] or [Variant("base", {})]
    capacity.set_nice(args.nice)
    users, unmuted, sharing = (int(x) for x in args.shape.split(","))
    shape = Shape(f"{args.calls} x {users} x {unmuted}, {sharing} sharing", args.calls, users, unmuted, sharing)
    out = Path(args.out)
    work = Path(tempfile.mkdtemp(prefix="callsd-ab-"))
    doc: dict[str, Any] = {"machine": {"cpus": os.cpu_count(), "loadavg_start": os.getloadavg()},
                           "shape": shape.label, "steady_seconds": args.steady, "media_engine": args.media_engine,
                           "variants": {v.name: v.env for v in variants}, "rows": []}
    for r in range(args.rounds):
        for v in variants:
            stem = out.with_name(f"{out.stem}-{v.name}-{r}")
            line = run_variant(shape, v, steady=args.steady, workdir=work, stem=work / stem.name,
                               media_engine=args.media_engine, join_timeout=args.join_timeout, profile=args.profile,
                               perf=args.perf)
            if args.perf and "perf" in line:
                stem.with_suffix(".perf.txt").write_text(Path(line["perf"]).read_text())
                line["perf"] = str(stem.with_suffix(".perf.txt"))
            if args.profile and "profile" in line:
                top = (work / stem.name).with_suffix(".top.txt")
                stem.with_suffix(".top.txt").write_text(top.read_text())
                line["profile"] = str(stem.with_suffix(".top.txt"))
            line["round"] = r
            doc["rows"].append(line)
            print(f"{line['started_utc']} {v.name:>12} round {r}: {line['us_per_egress_packet']} µs/egress pkt, "
                  f"GC {100 * line.get('gc_share_of_server_cpu', 0):.1f} % ({line['gc_collections_per_second']}"
                  f" collections/s by generation), server CPU {line['server_cpu_percent']} %, loss "
                  f"{100 * line['loss']:.3f} %, failed {line['users_failed']}/{line['users_total']}, join CPU "
                  f"{line['join_cpu_ms_per_user']} ms/user (GC {line['gc_seconds_while_joining']} s), "
                  f"load {line['loadavg_before'][0]:.1f}", flush=True)
            doc["machine"]["loadavg_end"] = os.getloadavg()
            out.write_text(json.dumps(doc, indent=1))
    doc["summary"] = summary(doc["rows"], variants)
    out.write_text(json.dumps(doc, indent=1))
    print("\n".join(doc["summary"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
