"""Janus and callsd side by side on one core: the same load tool, the same shapes, runs alternated.

    .venv/bin/python -m bench.peers --calls 20,40,60,78 --json         # ~10 minutes; writes the JSON and the plot
    .venv/bin/python -m bench.peers --plot bench/results/peers-<a>.json,peers-<b>.json --png docs/peers-janus.png

Method (docs/performance.md, "Janus side by side"):
- One pair of network namespaces for the whole run (netns.py): each server, fresh per measurement, runs in the
  server namespace on the veth address, pinned to CPU 0 (``taskset``; Janus with ``event_loops = 1``, callsd with
  its defaults); the load process runs in the tool namespace pinned to CPU 1 on ``callsd.peer``'s media engine
  (drive.py: Janus's VideoRoom API, or callsd's protocol through the load tool's worker).
- Shape: N calls (VideoRoom rooms) x 8 users x 2 talking (Opus-sized, 50 packets/s), everyone hearing the others:
  2 x 7 x 50 = 700 egress packets/s per call. Users join at 50 per second.
- Steady window: starts 1 s after every leg is connected (or after ``--settle`` seconds past the joins), lasts
  ``--steady`` seconds. Server CPU = the server process's user + system time (all threads, /proc/<pid>/stat) over
  the window; egress packets = the RTP packets the load tool received over the window (counted by the same
  receive code for both servers); µs per egress packet = CPU ÷ packets. (The veth interface's own count is kept
  as ``veth_tx_pps`` but not used: callsd's native path sends UDP GSO batches, which cross the veth as one packet.)
- Loss: the load tool's sender-side delivery count over the whole run (every packet a talker sent that a listener
  did not get, including streams that never started because a leg failed), and over the steady window alone
  (``loss_window``, RFC 3550: gaps in the received sequence numbers, which, unlike the sender-side count read at
  an instant, does not count packets still in flight; the joins are where callsd is known to stall, issue 13
  part 2). Drops: the kernel's UDP
  receive-buffer errors in each namespace (``/proc/<pid>/net/snmp``), which tell a slow server from a slow tool.
- Servers alternate within each call count (the order flips every round), so a ratio is measured under the same
  background load; the host's load average is recorded per run: the machine is shared.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from bench.scratch import scratch_dir

from .callsd_server import TOKEN_ENV, CallsdProcess
from .janus import JanusProcess
from .netns import Pair, interface_counters, softnet_drops, udp_counters

ROOT = Path(__file__).resolve().parent.parent.parent
JOIN_RATE = 50.0
USERS, TALKERS = 8, 2
CLOCK_TICK = os.sysconf("SC_CLK_TCK")
SERVERS = ("janus", "callsd")


class ServerUnderTest(Protocol):
    url: str

    @property
    def pid(self) -> int: ...

    def log_tail(self, chars: int = 3000) -> str: ...


@dataclass(frozen=True, slots=True)
class Sample:
    """Counters read at one instant of a run."""

    at: float
    server_cpu: float  # seconds, all threads
    tool_cpu: float
    egress: int  # packets the server's veth interface sent (a GSO batch counts once)
    ingress: int
    server_rcvbuf_errors: int
    tool_rcvbuf_errors: int
    server_udp: dict[str, int]  # the server namespace's UDP counters (/proc/net/snmp)
    tool_udp: dict[str, int]
    veth: dict[str, int]
    softnet_drops: int  # machine-wide input-backlog drops (netns.softnet_drops)
    tool_rx_packets: int  # RTP packets the load tool received: the egress figure of the results
    rfc3550_expected: int  # the tool's RFC 3550 count so far (progress line): gaps between received sequence
    rfc3550_lost: int  # numbers, blind to packets still in flight (the sender-side count is not, at an instant)


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICK  # utime, stime


def _sample(pair: Pair, server_pid: int, tool_pid: int, progress: dict[str, Any]) -> Sample:
    veth = interface_counters(server_pid, pair.server_interface)
    try:
        tool_cpu = _cpu_seconds(tool_pid)
    except (OSError, IndexError):  # the load process has just exited (the end-of-run sample)
        tool_cpu = 0.0
    server_udp, tool_udp = udp_counters(server_pid), udp_counters(pair.tool_ns)
    return Sample(at=time.monotonic(), server_cpu=_cpu_seconds(server_pid), tool_cpu=tool_cpu,
                  egress=veth["tx_packets"], ingress=veth["rx_packets"],
                  server_rcvbuf_errors=server_udp["RcvbufErrors"], tool_rcvbuf_errors=tool_udp["RcvbufErrors"],
                  server_udp=server_udp, tool_udp=tool_udp, veth=veth, softnet_drops=softnet_drops(),
                  tool_rx_packets=int(progress.get("rx_packets", 0)),
                  rfc3550_expected=int(progress.get("expected", 0)),
                  rfc3550_lost=int(progress.get("lost", 0)))


NICE = 0  # the autogroup nice of the server's and the load process's sessions (--nice)


def _set_nice(pid: int) -> None:
    """Give ``pid``'s session (its scheduler autogroup: the servers and the tool run in sessions of their own) the
    nice level NICE: with autogroups, only a group's nice weighs against the other sessions of a shared machine."""
    if NICE:
        try:
            Path(f"/proc/{pid}/autogroup").write_text(str(NICE))
        except OSError as exc:
            _log(f"autogroup nice not set for {pid} ({exc}): the runs compete with other sessions as equals")


def _log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _server(kind: str, pair: Pair, work: Path, fast_path: str, pin: bool) -> AbstractContextManager[Any]:
    cpu = 0 if pin else None
    if kind == "janus":
        folder = Path(tempfile.mkdtemp(prefix="janus-", dir=work))
        return JanusProcess(pair, folder, cpu=cpu)
    return CallsdProcess(pair, work, cpu=cpu, fast_path=fast_path)


def measure(pair: Pair, kind: str, calls: int, *, steady: float, settle: float, work: Path, media_engine: str,
            fast_path: str = "", pin: bool = True) -> dict[str, Any]:
    """One run: a fresh ``kind`` server, ``calls`` x 8 x 2 from the load process; the row of the results."""
    join = calls * USERS / JOIN_RATE
    duration = join + settle + steady + 3
    row: dict[str, Any] = {"server": kind, "calls": calls, "users_per_call": USERS, "talkers_per_call": TALKERS,
                           "started_utc": time.strftime("%H:%M:%S", time.gmtime()),
                           "loadavg_before": os.getloadavg()}
    with _server(kind, pair, work, fast_path, pin) as server:
        pin_tool = ["taskset", "-c", "1"] if pin else []
        cmd = pair.tool_args(*pin_tool, sys.executable, "-m", "bench.peers.drive", kind, "--url", server.url,
                             "--rooms", str(calls), "--users", str(USERS), "--publishers", str(TALKERS),
                             "--duration", f"{duration:.1f}", "--join-rate", f"{JOIN_RATE:g}",
                             "--media-engine", media_engine)
        env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        if isinstance(server, CallsdProcess):
            env[TOKEN_ENV] = server.token_secret
        stderr = open(work / f"drive-{kind}-{calls}.log", "w")  # noqa: SIM115 - closed below
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=stderr, text=True, cwd=ROOT, env=env,
                                start_new_session=True)
        _set_nice(server.pid)
        _set_nice(proc.pid)
        started = time.monotonic()
        ready_at: float | None = None
        first = last = end_sample = None
        shown = 0  # progress lines printed while waiting for the window (one per 5 s)
        progress: dict[str, Any] = {}
        result: dict[str, Any] = {}
        start_sample = _sample(pair, server.pid, proc.pid, progress)
        assert proc.stdout is not None
        for line in proc.stdout:
            try:
                msg = json.loads(line)
            except ValueError:
                continue
            if msg.get("kind") == "result":
                result = msg
                end_sample = _sample(pair, server.pid, proc.pid, progress)
                continue
            progress = msg
            now = time.monotonic()
            if ready_at is None and (msg["connected"] >= msg["expected_legs"] or now - started > join + settle):
                ready_at = now
            if first is None and ready_at is not None and now - ready_at >= 1.0:
                first = _sample(pair, server.pid, proc.pid, msg)
            elif first is not None and last is None and now - first.at >= steady:
                last = _sample(pair, server.pid, proc.pid, msg)
                _log(f"  {kind} {calls}: window {last.at - first.at:.1f} s, connected {msg['connected']}/"
                     f"{msg['expected_legs']}, failed {msg['failed']}")
            elif first is None and (now - started) // 5 > shown:
                shown = int(now - started) // 5
                _log(f"  {kind} {calls}: {now - started:.0f} s, connected {msg['connected']}/"
                     f"{msg['expected_legs']}, failed {msg['failed']}")
        proc.wait(timeout=60)
        stderr.close()
        if not result:
            raise RuntimeError(f"the {kind} driver gave no result ({proc.returncode}): "
                               f"{(work / f'drive-{kind}-{calls}.log').read_text()[-2000:]}")
        row["server_log_tail"] = server.log_tail(600)
    row["loadavg_after"] = os.getloadavg()
    row.update(_figures(first, last, start_sample, end_sample, result))
    return row


def _figures(first: Sample | None, last: Sample | None, start: Sample, end: Sample | None,
             result: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "loss": result["loss"], "rfc3550_loss": result["rfc3550_loss"], "users": result["users"],
        "users_failed": result["failed"], "legs_expected": result["legs_expected"],
        "legs_connected": result["legs_connected"], "errors": result["errors"],
        "srtp_profiles": result.get("srtp_profiles"), "tool_cpu_seconds_total": result["cpu_seconds"],
        "valid": first is not None and last is not None,
    }
    out["driver"] = {k: v for k, v in result.items() if k not in ("heard", "kind")}
    if end is not None:
        out["server_rcvbuf_errors_run"] = end.server_rcvbuf_errors - start.server_rcvbuf_errors
        out["tool_rcvbuf_errors_run"] = end.tool_rcvbuf_errors - start.tool_rcvbuf_errors
        # every UDP counter of both namespaces and the veth's, over the whole run: where packets went missing
        out["server_udp_run"] = {k: v - start.server_udp[k] for k, v in end.server_udp.items()}
        out["tool_udp_run"] = {k: v - start.tool_udp[k] for k, v in end.tool_udp.items()}
        out["veth_run"] = {k: v - start.veth[k] for k, v in end.veth.items()}
        out["softnet_drops_run"] = end.softnet_drops - start.softnet_drops
    if first is None or last is None:
        return out
    seconds = last.at - first.at
    received = last.tool_rx_packets - first.tool_rx_packets
    cpu = last.server_cpu - first.server_cpu
    out.update({
        "window_seconds": round(seconds, 2),
        "server_cpu_percent": round(100 * cpu / seconds, 1),
        "tool_cpu_percent": round(100 * (last.tool_cpu - first.tool_cpu) / seconds, 1),
        "egress_pps": round(received / seconds),
        "veth_tx_pps": round((last.egress - first.egress) / seconds),
        "veth_rx_pps": round((last.ingress - first.ingress) / seconds),
        "us_per_egress_packet": round(1e6 * cpu / received, 2) if received else None,
        "loss_window": round((last.rfc3550_lost - first.rfc3550_lost)
                             / max(1, last.rfc3550_expected - first.rfc3550_expected), 5),
        "server_rcvbuf_errors_window": last.server_rcvbuf_errors - first.server_rcvbuf_errors,
        "softnet_drops_window": last.softnet_drops - first.softnet_drops,
        "tool_rcvbuf_errors_window": last.tool_rcvbuf_errors - first.tool_rcvbuf_errors,
    })
    return out


def run(calls: list[int], *, rounds: int, steady: float, settle: float, servers: tuple[str, ...],
        media_engine: str, fast_path: str, pin: bool, out: Path) -> dict[str, Any]:
    """Every (round, calls, server) run, servers alternated (order flipped each round); saved after each run."""
    doc: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "loadavg_start": os.getloadavg()}, "date_utc": time.strftime(
            "%Y-%m-%d %H:%M", time.gmtime()), "method": __doc__, "steady_seconds": steady, "settle_seconds": settle,
        "media_engine": media_engine, "callsd_fast_path": fast_path or "default", "pinned": pin, "nice": NICE,
        "janus_version": _janus_version(), "rows": []}
    work = Path(tempfile.mkdtemp(prefix="callsd-peers-"))
    pair = Pair.create()
    try:
        for r in range(rounds):
            for n in calls:
                order = servers if r % 2 == 0 else tuple(reversed(servers))
                for kind in order:
                    _log(f"{time.strftime('%H:%M:%S', time.gmtime())} round {r + 1}/{rounds}: {kind}, {n} calls "
                         f"x {USERS} x {TALKERS} (load average {os.getloadavg()[0]:.1f})")
                    row = measure(pair, kind, n, steady=steady, settle=settle, work=work, media_engine=media_engine,
                                  fast_path=fast_path, pin=pin) | {"round": r}
                    doc["rows"].append(row)
                    _log(f"  -> {row.get('us_per_egress_packet')} µs/egress pkt, {row.get('egress_pps')} egress "
                         f"pkt/s, server CPU {row.get('server_cpu_percent')} %, loss {100 * row['loss']:.3f} % "
                         f"(steady window {100 * row.get('loss_window', 0):.3f} %), "
                         f"legs {row['legs_connected']}/{row['legs_expected']}, drops server/tool "
                         f"{row.get('server_rcvbuf_errors_run')}/{row.get('tool_rcvbuf_errors_run')}, "
                         f"backlog drops {row.get('softnet_drops_run')}, "
                         f"tool CPU {row.get('tool_cpu_percent')} %")
                    out.write_text(json.dumps(doc, indent=1))
    finally:
        pair.close()
        doc["machine"]["loadavg_end"] = os.getloadavg()
        out.write_text(json.dumps(doc, indent=1))
    return doc


def smoke(seconds: float) -> dict[str, Any]:
    """Janus alone, unpinned: 1 room x 3 users, 2 publishing, every packet decrypted; the driver's result (the
    check tests/loadtest/test_peers_janus.py runs, and a quick "does Janus work on this machine")."""
    pair = Pair.create()
    try:
        with scratch_dir("callsd-peers-smoke-") as work, JanusProcess(pair, work.path, cpu=None) as janus:
            env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
            proc = subprocess.run(
                pair.tool_args(sys.executable, "-m", "bench.peers.drive", "janus", "--url", janus.url, "--rooms", "1",
                               "--users", "3", "--publishers", "2", "--duration", f"{seconds:g}", "--delay-sample",
                               "1", "--join-timeout", "20"),
                capture_output=True, text=True, timeout=seconds + 120, cwd=ROOT, env=env, check=False)
            results = [json.loads(ln) for ln in proc.stdout.splitlines() if ln.startswith('{"kind": "result"')]
            if proc.returncode != 0 or not results:
                raise RuntimeError(f"the driver exited {proc.returncode}: {proc.stderr[-2000:]}\n"
                                   f"janus log: {janus.log_tail()}")
            return dict(results[-1])
    finally:
        pair.close()


def _janus_version() -> str:
    try:
        text = subprocess.run(["janus", "--version"], capture_output=True, text=True, timeout=10).stdout
    except OSError:
        return "not installed"
    return text.splitlines()[0].replace("Janus version: ", "") if text else "unknown"


def table(doc: dict[str, Any]) -> list[str]:
    """Markdown: one line per call count, each server's runs as 'µs/pkt (loss % over the run / in the steady
    window)', in run order."""
    lines = ["| calls × 8 × 2 | callsd µs/egress pkt (loss % run / window) | Janus µs/egress pkt (loss % run / window)"
             " | callsd ÷ Janus (medians) |", "|---|---|---|---|"]
    for n in sorted({r["calls"] for r in doc["rows"]}):
        cells, medians = [], []
        for kind in ("callsd", "janus"):
            rows = [r for r in doc["rows"] if r["calls"] == n and r["server"] == kind]
            cells.append(", ".join(f"{r.get('us_per_egress_packet')} ({100 * r['loss']:.2f} / "
                                   + (f"{100 * r['loss_window']:.2f})" if "loss_window" in r else "n/a)")
                                   for r in rows) or "–")
            costs = [r["us_per_egress_packet"] for r in rows if r.get("us_per_egress_packet")]
            medians.append(statistics.median(costs) if costs else None)
        ratio = f"{medians[0] / medians[1]:.2f}" if medians[0] and medians[1] else "–"
        lines.append(f"| {n} | {cells[0]} | {cells[1]} | {ratio} |")
    return lines


def plot(doc: dict[str, Any], png: Path) -> None:
    """µs of server CPU per egress packet (top) and loss (bottom) against calls, one colour per server."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 7), sharex=True, gridspec_kw={"height_ratios": [3, 2]})
    for kind, colour in (("callsd", "tab:orange"), ("janus", "tab:green")):
        rows = [r for r in doc["rows"] if r["server"] == kind and r.get("us_per_egress_packet")]
        if not rows:
            continue
        top.scatter([r["calls"] for r in rows], [r["us_per_egress_packet"] for r in rows], color=colour, alpha=0.6)
        bottom.scatter([r["calls"] for r in rows], [100 * r["loss"] for r in rows], color=colour, alpha=0.6)
        xs = sorted({r["calls"] for r in rows})
        med = [statistics.median(r["us_per_egress_packet"] for r in rows if r["calls"] == x) for x in xs]
        top.plot(xs, med, "-", color=colour, label=f"{kind} (median of runs)")
        bottom.plot(xs, [max(100 * r["loss"] for r in rows if r["calls"] == x) for x in xs], "-", color=colour,
                    label=f"{kind}, whole run (worst run)")
        bottom.plot(xs, [max(100 * r.get("loss_window", r["loss"]) for r in rows if r["calls"] == x) for x in xs],
                    "--", color=colour, label=f"{kind}, steady window (worst run)")
    top.set_ylabel("server CPU µs per egress packet")
    top.set_ylim(bottom=0)
    top.legend()
    top.set_title(f"callsd vs Janus {doc.get('janus_version', '')}, one pinned core, calls x 8 users x 2 talking\n"
                  f"{doc.get('date_utc', '')} UTC, load average {doc['machine']['loadavg_start'][0]:.1f} at start")
    bottom.set_ylabel("loss %")
    bottom.set_xlabel("calls (700 egress packets/s each)")
    bottom.set_ylim(bottom=0)
    bottom.legend()
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=110)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.peers", description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", default="20,40,60,78", help="comma-separated call counts")
    parser.add_argument("--rounds", type=int, default=1, help="repeat every (calls, server) pair, order flipped")
    parser.add_argument("--steady", type=float, default=15.0, help="seconds of the measured window")
    parser.add_argument("--settle", type=float, default=25.0, help="max seconds after the joins to wait for legs")
    parser.add_argument("--servers", default="janus,callsd", help="which servers, in the first round's order")
    parser.add_argument("--media-engine", default="native", help="the load tool's media engine")
    parser.add_argument("--fast-path", default="", help="callsd's rtc.fast_path (default: the server's default)")
    parser.add_argument("--no-pin", action="store_true", help="do not pin the server and the tool with taskset")
    parser.add_argument("--nice", type=int, default=0,
                        help="autogroup nice of the server's and the tool's sessions (e.g. -10 on a busy machine)")
    parser.add_argument("--out", default="", help="results JSON (default bench/results/peers-<date>.json)")
    parser.add_argument("--png", default=str(ROOT / "docs" / "peers-janus.png"), help="the plot")
    parser.add_argument("--plot", default="", help="only re-plot these results JSON files (comma-separated)")
    parser.add_argument("--json", action="store_true", help="print the results document on stdout at the end")
    parser.add_argument("--smoke", type=float, default=0.0, metavar="SECONDS",
                        help="only check Janus: 1 room x 3 users for SECONDS, print the driver's result as JSON")
    args = parser.parse_args(argv)
    global NICE
    NICE = args.nice
    if args.smoke:
        print(json.dumps(smoke(args.smoke), indent=1))
        return 0
    if args.plot:  # several files: their rows in one plot and table (the first file's header)
        docs = [json.loads(Path(name).read_text()) for name in args.plot.split(",")]
        doc = docs[0] | {"rows": [row for one in docs for row in one["rows"]]}
    else:
        servers = tuple(s for s in args.servers.split(",") if s)
        if not servers or any(s not in SERVERS for s in servers):
            parser.error(f"--servers: a comma-separated subset of {', '.join(SERVERS)}")
        out = Path(args.out or ROOT / "bench" / "results" / f"peers-{time.strftime('%Y-%m-%d-%H%M', time.gmtime())}.json")
        out.parent.mkdir(parents=True, exist_ok=True)
        doc = run([int(c) for c in args.calls.split(",") if c], rounds=args.rounds, steady=args.steady,
                  settle=args.settle, servers=servers, media_engine=args.media_engine, fast_path=args.fast_path,
                  pin=not args.no_pin, out=out)
        _log(f"results: {out}")
    plot(doc, Path(args.png))
    _log(f"plot: {args.png}")
    _log("\n".join(table(doc)))
    if args.json:
        print(json.dumps(doc, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
