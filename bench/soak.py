"""Soak: a `callsd serve` under continuous call churn and bad traffic, watched for growth.

    python -m bench.soak --minutes 30 [--output bench/results/soak] [--calls 3 --users-per-call 4 --round 30]
    python -m bench.soak --hours 2
    python -m bench.soak --seconds 20 --round 8           # the smoke run in `make test`

What runs (all on loopback, everything bounded):

- a fresh `callsd serve` (free HTTP port, fixed free RTC port, own data directory, logging at warning);
- two load lanes, each running `callsd loadtest` rounds back to back (calls join over the first quarter of a round,
  talk, and leave at its end; every round uses new channels), the second lane half a round behind the first, so
  calls are always joining and leaving;
- bad traffic (bench/hostile.py): malformed UDP and bad STUN at the RTC port (`--udp-rate`, 200/s by default) and
  one abusive WebSocket client per second (oversized frame announced, garbage frames, garbage HTTP);
- a sampler every `--sample` seconds: the server's RSS, threads and open fds (/proc), Trio tasks, open WebSockets,
  calls and participants (/metrics, `callsd_trio_tasks`), the event log's size (data directory) and the server's
  text log size.

Before the load starts and after it stops (an idle settle of `--settle` seconds, 20 by default: closing sockets and session timers take a few seconds to drain), the server is sampled idle. The
verdict states each bound and whether it held: RSS after warm-up (the first 20 % of the loaded time) may grow by at
most max(10 %, 8 MiB) to the end of the run; open fds and Trio tasks, idle after vs idle before, by at most 4; the
event log may grow only in proportion to the calls made (bytes per joined user, second half vs first half, within
1.5x); the server process must be the same one at the end, alive. Results: ``soak.json`` (samples, rounds, verdict)
and ``soak.png`` in ``--output``. Exit code 0 when every bound held, 1 otherwise.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

from callsd.app.loadtest import parse_metrics

from bench.hostile import WS_KINDS, HostileTraffic

MiB = 1 << 20


def _free_port(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _udp_ports(pid: int) -> list[int]:
    """Local ports of the IPv4 UDP sockets process `pid` holds (its fds' socket inodes, matched in /proc/net/udp)."""
    inodes = set()
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
                if link.startswith("socket:["):
                    inodes.add(link[8:-1])
        with open("/proc/net/udp") as f:
            rows = [line.split() for line in f.readlines()[1:]]
    except OSError:
        return []
    return sorted(int(row[1].rsplit(":", 1)[1], 16) for row in rows if len(row) > 9 and row[9] in inodes)


class Server:
    """The soaked `callsd serve`: its own data directory, its text log in ``serve.log``."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.data = workdir / "data"
        self.log_path = workdir / "serve.log"
        self.http_port = _free_port(socket.SOCK_STREAM)
        self.rtc_port = 0  # ephemeral; read from /proc once the server runs (the config refuses ports > 49151)
        self.url = f"http://127.0.0.1:{self.http_port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = dict(os.environ, CALLSD_HTTP_LISTEN="127.0.0.1", CALLSD_HTTP_PORT=str(self.http_port),
                   CALLSD_RTC_ICE_ADDRESS_UDP="127.0.0.1", CALLSD_RTC_ICE_PORT_UDP="0", CALLSD_RTC_ICE_PORT_TCP="0",
                   CALLSD_STORE_DATA_DIR=str(self.data), CALLSD_AUTH_MODE="open", CALLSD_LOG_LEVEL="warning")
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "callsd.app.cli", "serve"], env=env, stdout=log,
                                         stderr=subprocess.STDOUT, cwd=self.workdir)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and self.proc.poll() is None:
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=1):
                    pass
            except OSError:
                time.sleep(0.2)
                continue
            ports = _udp_ports(self.proc.pid)
            if ports:
                self.rtc_port = ports[0]
                return
            time.sleep(0.2)
        raise RuntimeError("callsd serve did not become healthy:\n" + self.log_path.read_text()[-2000:])

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def _dir_bytes(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.stat(os.path.join(root, name)).st_size
    return total


def sample(server: Server, t: float, phase: str) -> dict[str, Any]:
    """One sample of the server: /proc figures, /metrics gauges, log sizes."""
    point: dict[str, Any] = {"t": round(t, 1), "phase": phase}
    try:
        with open(f"/proc/{server.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    point["rss_bytes"] = int(line.split()[1]) * 1024
                elif line.startswith("Threads:"):
                    point["threads"] = int(line.split()[1])
        point["fds"] = len(os.listdir(f"/proc/{server.pid}/fd"))
    except OSError:
        point["gone"] = True
    try:
        with urllib.request.urlopen(server.url + "/metrics", timeout=3) as resp:
            text = resp.read().decode("utf-8", "replace")
        figures = parse_metrics(text)
        point["start_time"] = figures.get("start_time")
        for line in text.splitlines():
            name, _, value = line.partition(" ")
            key = {"callsd_trio_tasks": "trio_tasks", "callsd_websocket_connections_open": "websockets",
                   "callsd_calls": "calls", "callsd_participants": "participants"}.get(name)
            if key:
                point[key] = int(float(value))
    except OSError:
        point["metrics_missed"] = True
    point["event_log_bytes"] = _dir_bytes(server.data)
    point["server_log_bytes"] = server.log_path.stat().st_size if server.log_path.exists() else 0
    return point


class Lane:
    """Back-to-back `callsd loadtest` rounds until `deadline`; each round's summary goes to `rounds`."""

    def __init__(self, name: str, server: Server, args: argparse.Namespace, workdir: Path, t0: float,
                 rounds: list[dict[str, Any]], lock: threading.Lock) -> None:
        self.name = name
        self.server = server
        self.args = args
        self.workdir = workdir
        self.t0 = t0
        self.rounds = rounds
        self.lock = lock

    def run(self, start_at: float, deadline: float) -> None:
        time.sleep(max(0.0, start_at - time.monotonic()))
        n = 0
        while time.monotonic() + self.args.round <= deadline + 1 and self.server.alive():
            n += 1
            out = self.workdir / f"round-{self.name}-{n}.json"
            begin = time.monotonic()
            cmd = [sys.executable, "-m", "callsd.app.cli", "loadtest", "--url", self.server.url, "--calls",
                   str(self.args.calls), "--users-per-call", str(self.args.users_per_call), "--unmuted",
                   str(min(2, self.args.users_per_call)), "--duration", f"{self.args.round}",
                   "--join-duration", f"{self.args.round / 4:.1f}", "--join-timeout", "10",
                   "--server-pid", str(self.server.pid), "--output", str(out), "--quiet"]
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=self.args.round + 120)
            summary: dict[str, Any] = {"lane": self.name, "round": n, "start": round(begin - self.t0, 1),
                                       "end": round(time.monotonic() - self.t0, 1), "exit": proc.returncode}
            try:
                doc = json.loads(out.read_text())
                out.unlink()
                overall = doc["overall"]
                summary.update(joined=doc["users"]["joined"], failed=doc["users"]["failed"],
                               loss=round(overall["loss"], 5), rfc3550_loss=round(overall["rfc3550_loss"], 5),
                               socket_drops=overall["socket_drops"], late_ticks=doc["client"]["late_ticks"],
                               valid=doc["valid"], errors=doc["users"]["errors"])
            except (OSError, ValueError, KeyError):
                summary["error"] = (proc.stderr or proc.stdout)[-500:]
            with self.lock:
                self.rounds.append(summary)


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[len(ordered) // 2] if ordered else 0.0


def _slope_per_hour(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of value over time (seconds), per hour."""
    if len(points) < 3:
        return 0.0
    n = len(points)
    mt = sum(t for t, _ in points) / n
    mv = sum(v for _, v in points) / n
    var = sum((t - mt) ** 2 for t, _ in points)
    return 0.0 if var == 0 else 3600 * sum((t - mt) * (v - mv) for t, v in points) / var


def verdict(samples: list[dict[str, Any]], rounds: list[dict[str, Any]], exit_code: int | None,
            same_process: bool) -> dict[str, Any]:
    """Each bound, the figures it was judged on, and whether it held."""
    idle_before = [s for s in samples if s["phase"] == "idle-before" and "rss_bytes" in s]
    idle_after = [s for s in samples if s["phase"] == "idle-after" and "rss_bytes" in s]
    loaded = [s for s in samples if s["phase"] == "load" and "rss_bytes" in s]
    checks: dict[str, Any] = {}
    if loaded:
        t_first, t_last = loaded[0]["t"], loaded[-1]["t"]
        warm = t_first + 0.2 * (t_last - t_first)
        early = [s["rss_bytes"] for s in loaded if warm <= s["t"] <= warm + 0.2 * (t_last - t_first)]
        late = [s["rss_bytes"] for s in loaded if s["t"] >= t_last - 0.2 * (t_last - t_first)]
        base, end = _median(early), _median(late)
        bound = max(0.10 * base, 8 * MiB)
        checks["rss"] = {"bound": "RSS at the end of the load within max(10 %, 8 MiB) of RSS after warm-up",
                         "after_warmup_mib": round(base / MiB, 1), "end_mib": round(end / MiB, 1),
                         "max_mib": round(max(s["rss_bytes"] for s in loaded) / MiB, 1),
                         "slope_mib_per_hour": round(_slope_per_hour(
                             [(s["t"], s["rss_bytes"] / MiB) for s in loaded if s["t"] >= warm]), 2),
                         "ok": end - base <= bound}
    for key, label in (("fds", "open fds"), ("trio_tasks", "Trio tasks"), ("threads", "threads")):
        before = [s[key] for s in idle_before if key in s]
        after = [s[key] for s in idle_after if key in s]
        during = [s[key] for s in loaded if key in s]
        if before and after:
            checks[key] = {"bound": f"{label} idle after the soak at most 4 more than idle before",
                           "idle_before": min(before), "idle_after": min(after),
                           "max_under_load": max(during) if during else None, "ok": min(after) - min(before) <= 4}
    log = [(s["t"], s["event_log_bytes"]) for s in loaded]
    done = sorted((r for r in rounds if "joined" in r), key=lambda r: r["end"])
    if log and len(done) >= 4:
        half = done[len(done) // 2 - 1]["end"]
        first = [r for r in done if r["end"] <= half]
        second = [r for r in done if r["end"] > half]
        at_half = min(log, key=lambda p: abs(p[0] - half))[1]
        per_user_1 = at_half / max(1, sum(r["joined"] for r in first))
        per_user_2 = (log[-1][1] - at_half) / max(1, sum(r["joined"] for r in second))
        checks["event_log"] = {"bound": "event-log bytes per joined user, second half within 1.5x of the first",
                               "bytes_per_user_first_half": round(per_user_1), "bytes_per_user_second_half":
                               round(per_user_2), "total_mib": round(log[-1][1] / MiB, 2),
                               "ok": per_user_2 <= 1.5 * per_user_1}
    server_log = [s["server_log_bytes"] for s in samples]
    checks["server_log"] = {"bound": "informational: the server's text log at warning level",
                            "end_bytes": server_log[-1] if server_log else 0, "ok": True}
    checks["process"] = {"bound": "the same server process from start to end, alive, exiting 0 on SIGTERM",
                         "same_process": same_process, "exit_code": exit_code,
                         "ok": same_process and exit_code == 0}
    lost = [r["loss"] for r in done]
    checks["rounds"] = {"bound": "informational: load rounds", "count": len(rounds), "with_results": len(done),
                        "users_joined": sum(r["joined"] for r in done), "users_failed": sum(r["failed"] for r in done),
                        "invalid": sum(1 for r in done if not r["valid"]),
                        "loss_max": max(lost) if lost else None, "loss_mean": round(sum(lost) / len(lost), 5)
                        if lost else None, "ok": True}
    return {"ok": all(c["ok"] for c in checks.values()), "checks": checks}


def plot(doc: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    samples = doc["samples"]
    minutes = [s["t"] / 60 for s in samples]

    def series(key: str, scale: float = 1.0) -> tuple[list[float], list[float]]:
        pts = [(m, s[key] / scale) for m, s in zip(minutes, samples, strict=True) if s.get(key) is not None]
        return [p[0] for p in pts], [p[1] for p in pts]

    fig, axes = plt.subplots(2, 2, figsize=(12, 7), sharex=True)
    panels = [(axes[0][0], "rss_bytes", MiB, "server RSS (MiB)"), (axes[0][1], "fds", 1, "open fds"),
              (axes[1][0], "trio_tasks", 1, "Trio tasks"), (axes[1][1], "event_log_bytes", MiB, "event log (MiB)")]
    for ax, key, scale, title in panels:
        xs, ys = series(key, scale)
        ax.plot(xs, ys, color="tab:blue")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        if key in ("fds", "trio_tasks"):
            px, py = series("participants")
            twin = ax.twinx()
            twin.plot(px, py, color="tab:gray", alpha=0.4, linewidth=0.8)
            twin.set_ylabel("participants", color="tab:gray")
    for ax in axes[1]:
        ax.set_xlabel("minutes")
    v = doc["verdict"]
    fig.suptitle(f"callsd soak: {doc['config']['seconds'] / 60:.0f} min, "
                 f"{v['checks']['rounds']['users_joined']} joins, bad traffic "
                 f"{sum(doc['bad_traffic'].values())} sent; bounds {'held' if v['ok'] else 'BROKEN'}")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def run(args: argparse.Namespace) -> dict[str, Any]:
    seconds = args.seconds or 60 * args.minutes or 3600 * args.hours
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="callsd-soak-"))
    server = Server(workdir)
    server.start()
    t0 = time.monotonic()
    samples: list[dict[str, Any]] = []
    rounds: list[dict[str, Any]] = []
    lock = threading.Lock()
    doc: dict[str, Any] = {"tool": "bench.soak", "config": {**vars(args), "seconds": seconds},
                           "host": {"cpus": os.cpu_count(), "loadavg_start": os.getloadavg()}}

    def take(phase: str) -> None:
        point = sample(server, time.monotonic() - t0, phase)
        samples.append(point)
        if not args.quiet:
            print(f"[{point['t']:7.0f} s] {phase:<11} RSS {point.get('rss_bytes', 0) / MiB:6.1f} MiB  fds "
                  f"{point.get('fds')}  tasks {point.get('trio_tasks')}  participants {point.get('participants')}"
                  f"  event log {point['event_log_bytes'] / MiB:.2f} MiB  rounds {len(rounds)}", flush=True)

    for _ in range(3):
        take("idle-before")
        time.sleep(1.0)
    traffic = HostileTraffic(rtc=("127.0.0.1", server.rtc_port), http=("127.0.0.1", server.http_port),
                             udp_rate=args.udp_rate, ws_rate=args.ws_rate,
                             ws_kinds=tuple(k for k in args.ws_kinds.split(",") if k))
    hostile = traffic.start()
    deadline = time.monotonic() + seconds
    lanes = [threading.Thread(target=Lane(name, server, args, workdir, t0, rounds, lock).run,
                              args=(time.monotonic() + delay, deadline), daemon=True)
             for name, delay in (("a", 0.0), ("b", args.round / 2))]
    for lane in lanes:
        lane.start()
    try:
        while time.monotonic() < deadline and server.alive():
            take("load")
            time.sleep(max(0.0, min(args.sample, deadline - time.monotonic())))
        traffic.stop()
        for lane in lanes:
            while lane.is_alive() and server.alive():
                take("load")
                lane.join(timeout=args.sample)
        hostile.join(timeout=10)
        settle_end = time.monotonic() + args.settle
        while time.monotonic() < settle_end and server.alive():
            time.sleep(min(args.sample, max(0.0, settle_end - time.monotonic())))
            take("idle-after")
    finally:
        traffic.stop()
        starts = {round(s["start_time"]) for s in samples if s.get("start_time")}
        alive = server.alive()
        exit_code = server.stop()
    doc.update(samples=samples, rounds=sorted(rounds, key=lambda r: r["start"]), bad_traffic=dict(traffic.sent),
               server={"alive_at_end": alive, "exit_code": exit_code, "log_tail": server.log_path.read_text()[-2000:]})
    doc["host"]["loadavg_end"] = os.getloadavg()
    doc["verdict"] = verdict(samples, rounds, exit_code, same_process=alive and len(starts) == 1)
    # the server's data, log and round files: kept only when the verdict fails, for whoever reads why
    doc["kept_workdir"] = None if doc["verdict"]["ok"] else str(workdir)
    if doc["verdict"]["ok"]:
        shutil.rmtree(workdir, ignore_errors=True)
    (out / "soak.json").write_text(json.dumps(doc, indent=1))
    plot(doc, out / "soak.png")
    return doc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.split("\n\n")[0])
    length = parser.add_mutually_exclusive_group(required=True)
    length.add_argument("--hours", type=float, default=0.0)
    length.add_argument("--minutes", type=float, default=0.0)
    length.add_argument("--seconds", type=float, default=0.0, help="for smoke runs")
    parser.add_argument("--output", default="bench/results/soak", help="directory for soak.json and soak.png")
    parser.add_argument("--calls", type=int, default=3, help="calls per load round (per lane)")
    parser.add_argument("--users-per-call", type=int, default=4)
    parser.add_argument("--round", type=float, default=30.0, help="seconds per load round (join, talk, leave)")
    parser.add_argument("--udp-rate", type=float, default=200.0, help="bad UDP datagrams per second")
    parser.add_argument("--ws-rate", type=float, default=1.0, help="abusive WebSocket connections per second")
    parser.add_argument("--ws-kinds", default=",".join(WS_KINDS),
                        help=f"abusive WebSocket clients to run, some of {','.join(WS_KINDS)} (default: all)")
    parser.add_argument("--sample", type=float, default=5.0, help="seconds between samples")
    parser.add_argument("--settle", type=float, default=20.0, help="idle seconds sampled after the load")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    if args.round < 6:
        parser.error("--round must be at least 6 s")
    doc = run(args)
    for name, check in doc["verdict"]["checks"].items():
        figures = {k: v for k, v in check.items() if k not in ("bound", "ok")}
        print(f"{'ok ' if check['ok'] else 'BAD'} {name}: {check['bound']}: {figures}")
    print(f"wrote {Path(args.output) / 'soak.json'} and soak.png")
    return 0 if doc["verdict"]["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
