"""Capacity of one server core on both forwarding paths, across loads: the issue-13 sweep and its plot.

    .venv/bin/python -m bench.capacity_paths --calls 50,100,150,200,250 --out bench/results/capacity-paths.json
    .venv/bin/python -m bench.capacity_paths --plot bench/results/capacity-paths.json --png docs/capacity-paths.png

Each load (N calls x 8 users x 2 unmuted, no sharing, unless --shape says otherwise) is run once per server path
(``rtc.fast_path`` python, then native; ``--rounds`` repeats the pair), each on a fresh `callsd serve` pinned to
CPU 0 and the load tool pinned to CPU 1 on its native media engine (bench/capacity.py's method). The paths of one
load run back to back, so their ratio is measured under the same background load; the machine's load average is
recorded per row, because on a shared machine absolute figures move with what else runs. The load tool asks for the
web client's audio slots unless ``--audio-slots`` lists values to alternate within each load (``0,8``: per-track
sections against slots, ADR 0020); each row records its value and the p95 of each join phase.

``--topology loopback,two-hosts`` alternates where the server and the tool run within each load (after the paths
and audio slots): the machine's loopback, or two network namespaces that receive as two hosts would
(bench/capacity_topology.py, ADR 0049). A two-hosts row also holds the server end's receive thread per egress
packet, the tool's received packets and both namespaces' UDP counters (``kernel``); the plot draws one line per
path and topology.

Each row also records the server's event-loop holds (adapters/loop_holds.py, ADR 0043) for the join wave and the
steady window apart: passes over 10/20/50 ms by cause, their CPU share, the names that held the loop longest in one
pass (with their step counts), the socket's own drops and the WebSocket messages clients sent in each window; a
line per run prints the steady window's.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import shutil
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import bench.capacity as capacity
from bench.capacity import Shape, ok, row, run_shape
from bench.capacity_topology import LOOPBACK, TOPOLOGIES, Topology, make_topology

ROOT = Path(__file__).resolve().parent.parent


def scrape_holds(url: str) -> dict[str, Any]:
    """The server's loop-hold metrics (adapters/loop_holds.py) and its socket drops, from one /metrics scrape."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(url + "/metrics", timeout=10) as answer:
        text = answer.read().decode()
    snap: dict[str, Any] = {"at": time.monotonic(), "buckets": {}, "sums": {}, "cpu": {}, "top": {}, "top_steps": {},
                            "socket_full": 0, "passes": 0, "steps": 0}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = sample.labels
            if sample.name == "callsd_loop_hold_seconds_bucket":
                snap["buckets"].setdefault(labels["cause"], {})[labels["le"]] = sample.value
            elif sample.name == "callsd_loop_hold_seconds_sum":
                snap["sums"][labels["cause"]] = sample.value
            elif sample.name == "callsd_loop_hold_cpu_seconds_total":
                snap["cpu"][labels["cause"]] = sample.value
            elif sample.name == "callsd_loop_hold_top_seconds":
                snap["top"][labels["name"]] = (labels["cause"], sample.value)
            elif sample.name == "callsd_loop_hold_top_steps":
                snap["top_steps"][labels["name"]] = sample.value
            elif sample.name == "callsd_loop_hold_gc_collected":
                snap.setdefault("gc_collected", {})[labels["name"]] = sample.value
            elif sample.name == "callsd_rtc_errors_total" and labels.get("type") == "socket_full":
                snap["socket_full"] = sample.value
            elif sample.name == "callsd_websocket_events_total" and labels.get("direction") == "in":
                snap.setdefault("ws_in", {})[labels["type"]] = sample.value
            elif sample.name == "callsd_loop_passes_total":
                snap["passes"] = sample.value
            elif sample.name == "callsd_loop_steps_total":
                snap["steps"] = sample.value
            elif sample.name == "callsd_frame_budget_deferred_total":
                snap["frames_deferred"] = sample.value
    return snap


def _over(buckets: dict[str, float], bound: str) -> float:
    """Passes longer than ``bound`` seconds (a bucket edge) out of one cause's cumulative buckets."""
    return buckets.get("+Inf", 0.0) - buckets.get(bound, 0.0)


def hold_summary(first: dict[str, Any] | None, last: dict[str, Any]) -> dict[str, Any]:
    """What held the loop between two scrapes (``first`` None: since start): passes over 10/20/50 ms by cause, the
    holders whose longest hold grew in the window (so it happened then), the socket's drops and the steps/s."""
    base = first or {"at": last["at"], "buckets": {}, "sums": {}, "cpu": {}, "top": {}, "top_steps": {},
                     "socket_full": 0, "passes": 0, "steps": 0}
    causes: dict[str, Any] = {}
    for cause, buckets in last["buckets"].items():
        before = base["buckets"].get(cause, {})
        over = {f"over_{edge}ms": int(_over(buckets, str(edge / 1000)) - _over(before, str(edge / 1000)))
                for edge in (10, 20, 50)}
        seconds = last["sums"].get(cause, 0.0) - base["sums"].get(cause, 0.0)
        cpu = last["cpu"].get(cause, 0.0) - base["cpu"].get(cause, 0.0)
        if any(over.values()) or seconds:
            causes[cause] = over | {"seconds": round(seconds, 3), "cpu_seconds": round(cpu, 3)}
    grown = sorted(((name, cause, value) for name, (cause, value) in last["top"].items()
                    if value > base["top"].get(name, (cause, 0.0))[1]), key=lambda item: -item[2])
    span = max(last["at"] - base["at"], 1e-9)
    ws_in = {kind: int(value - base.get("ws_in", {}).get(kind, 0)) for kind, value in last.get("ws_in", {}).items()}
    return {"causes": causes, "gc_collected": last.get("gc_collected", {}),
            "ws_in": {kind: count for kind, count in ws_in.items() if count},
            "top": [{"name": name, "cause": cause, "pass_ms": round(1000 * value, 1),
                     "pass_steps": int(last["top_steps"].get(name, 0))} for name, cause, value in grown],
            "socket_full": int(last["socket_full"] - base["socket_full"]),
            "frames_deferred": int(last.get("frames_deferred", 0) - base.get("frames_deferred", 0)),
            "steps_per_s": round((last["steps"] - base["steps"]) / span) if first else None,
            "passes_per_s": round((last["passes"] - base["passes"]) / span) if first else None}


class HoldWatch:
    """``run_shape``'s ``watch``: scrapes the server's loop holds once the joins are over (plus ``settle`` seconds),
    once more a second before the load tool stops (its users leaving is not steady load), and after the run, so a
    row tells the join wave's holds from the steady load's."""

    def __init__(self, steady: float, settle: float = 3.0, topology: Topology = LOOPBACK) -> None:
        self.steady = steady
        self.settle = settle
        self.topology = topology  # its `reach` takes the scrapes into the server's network
        self.result: dict[str, Any] = {}

    @contextlib.contextmanager
    def __call__(self, url: str, join: float) -> Iterator[None]:
        snaps: list[dict[str, Any]] = []
        stop = threading.Event()
        started = time.monotonic()

        def scrape_at_steady_start_and_end() -> None:
            for at in (join + self.settle, join + self.steady - 1.0):
                if stop.wait(max(0.0, started + at - time.monotonic())):
                    return
                with contextlib.suppress(OSError), self.topology.reach():
                    snaps.append(scrape_holds(url))

        thread = threading.Thread(target=scrape_at_steady_start_and_end, daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()
            self.result = {}
            with contextlib.suppress(OSError), self.topology.reach():
                last = scrape_holds(url)
                self.result = {"whole_run": hold_summary(None, last),
                               "steady": hold_summary(snaps[0], snaps[1]) if len(snaps) == 2 else None}


def _hold_line(holds: dict[str, Any]) -> str:
    """One printed line: the steady window's longest holders and its passes over 20 ms by cause."""
    steady = holds.get("steady") or {}
    if not steady:
        return "holds: not measured"
    top = ", ".join(f"{h['name'].rsplit('.', 1)[-1]} {h['pass_ms']} ms in {h['pass_steps']} steps"
                    for h in steady["top"][:4]) or "none"
    over = ", ".join(f"{cause} {c['over_20ms']} (CPU {100 * c['cpu_seconds'] / max(c['seconds'], 1e-9):.0f} %)"
                     for cause, c in sorted(steady["causes"].items()) if c["over_20ms"])
    return (f"steady holds: longest {top}; passes > 20 ms: {over or 'none'}; socket drops {steady['socket_full']} "
            f"(joins {holds['whole_run']['socket_full'] - steady['socket_full']}); {steady['steps_per_s']} steps/s")


def sweep(calls: list[int], paths: list[str], *, users: int, unmuted: int, sharing: int, steady: float,
          rounds: int, out: Path, media_engine: str, join_timeout: float = 15.0,
          audio_slots: list[int | None] | None = None, topologies: tuple[str, ...] = ("loopback",)) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="callsd-paths-"))
    doc: dict[str, Any] = {"machine": {"cpus": os.cpu_count(), "loadavg_start": os.getloadavg()},
                           "steady_seconds": steady, "media_engine": media_engine, "join_timeout": join_timeout,
                           "nice": capacity.NICE, "topologies": list(topologies),
                           "rows": []}
    stack = contextlib.ExitStack()  # the two-hosts namespaces: one pair for the whole sweep, removed at its end
    try:
        places = [make_topology(name, stack) for name in topologies]
        for r in range(rounds):
            for n in calls:
                order = places if r % 2 == 0 else places[::-1]  # topologies alternated, the order flipped per round
                for path, slots, topology in itertools.product(paths, audio_slots or [None], order):
                    shape = Shape(f"{n} x {users} x {unmuted}, {sharing} sharing", n, users, unmuted, sharing)
                    load_before = os.getloadavg()
                    started = time.strftime("%H:%M:%S", time.gmtime())
                    watch = HoldWatch(steady, topology=topology)
                    res = run_shape(shape, steady=steady, workdir=work,
                                    out=work / f"{path}-{n}-{r}-{slots}-{topology.name}.json", delay_sample=4,
                                    screen_bitrate="1M", fast_path=path, media_engine=media_engine,
                                    join_timeout=join_timeout, watch=watch, audio_slots=slots, topology=topology)
                    line = row(shape, res) | {"path": path, "round": r, "started_utc": started,
                                              "audio_slots": res["config"].get("audio_slots"),
                                              "loadavg_before": load_before, "loop_holds": watch.result,
                                              "user_errors": res["users"].get("errors"),
                                              "failure_samples": res["users"].get("failure_samples"),
                                              "worker_crashes": res["users"].get("worker_crashes")}
                    line["passed"] = ok(line)
                    doc["rows"].append(line)
                    kernel = line["kernel"]
                    receive = (f" (+ its receive thread {kernel.get('server_receive_us_per_egress')}, tool's "
                               f"{kernel.get('tool_receive_us_per_egress')}; drops server/tool "
                               f"{kernel['server_udp_run'].get('RcvbufErrors')}/"
                               f"{kernel['tool_udp_run'].get('RcvbufErrors')}, backlog "
                               f"{kernel['softnet_drops_run']})" if topology.server_namespace and kernel else "")
                    print(f"{started} {path:6} {topology.name:9} {n:4} calls, {line['audio_slots']} slots: "
                          f"{line['us_per_egress_packet']} µs/egress pkt{receive}, "
                          f"{line['us_per_received_packet']} µs/received pkt, "
                          f"loss {100 * line['loss']:.3f} %, server CPU {line['server_cpu_percent']} %, "
                          f"tool peak {line['client_cpu_peak_percent']} %, drops {line['socket_drops']}, "
                          f"failed {line['users_failed']}/{line['users_total']}, load {load_before[0]:.1f}, "
                          f"p95 join→audio {line['p95_join_to_first_audio_ms']} ms "
                          f"(phases p95 {line['join_phases_p95_ms']})", flush=True)
                    print(f"    {_hold_line(watch.result)}", flush=True)
                    out.write_text(json.dumps(doc, indent=1))
    finally:
        stack.close()
        doc["machine"]["loadavg_end"] = os.getloadavg()
        out.write_text(json.dumps(doc, indent=1))
        shutil.rmtree(work, ignore_errors=True)
    return doc


def _mostly_failed(r: dict[str, Any]) -> bool:
    """Most users never connected: its loss (over the streams that exist) and µs describe another load; not plotted."""
    return bool(r.get("users_total")) and r.get("users_failed", 0) > r["users_total"] / 2


def plot(doc: dict[str, Any], png: Path) -> None:
    """µs of server CPU per egress packet and loss against the offered load (calls), one line per path; the label
    of each point is the egress packets/s measured in the steady window (thousands)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 7), sharex=True, gridspec_kw={"height_ratios": [3, 2]})
    colours = {"python": "tab:blue", "native": "tab:orange"}
    lines = {"loopback": ("o-", ""), "two-hosts": ("s--", ", two hosts")}  # marker and label per topology
    for (path, colour), (topology, (style, where)) in itertools.product(colours.items(), lines.items()):
        rows = sorted((r for r in doc["rows"] if r["path"] == path and r.get("topology", "loopback") == topology
                       and r.get("us_per_egress_packet") and not _mostly_failed(r)), key=lambda r: r["calls"])
        if not rows:
            continue
        x = [r["calls"] for r in rows]
        top.plot(x, [r["us_per_egress_packet"] for r in rows], style, color=colour,
                 label=f"rtc.fast_path={path}{where}")
        receive = [(xi, r["us_per_egress_packet"] + r["kernel"]["server_receive_us_per_egress"])
                   for xi, r in zip(x, rows, strict=True) if r.get("kernel", {}).get("server_receive_us_per_egress")]
        if receive:  # two hosts: the server end's receive thread (its ingress's receive path) added
            top.plot([xi for xi, _ in receive], [us for _, us in receive], ":", color=colour, linewidth=1,
                     label=f"{path}{where}, + its receive thread")
        for r, xi in zip(rows, x, strict=True):
            top.annotate(f"{r['egress_pps'] / 1000:.0f}k", (xi, r["us_per_egress_packet"]), textcoords="offset points",
                         xytext=(0, 6), ha="center", fontsize=7, color=colour)
        bottom.plot(x, [100 * r["loss"] for r in rows], style, color=colour, label=f"{path}{where}")
    top.axhline(4.0, color="grey", linestyle="--", linewidth=1)
    top.text(0.01, 4.0, " target ≤ 4 µs", transform=top.get_yaxis_transform(), va="bottom", fontsize=8)
    top.set_ylabel("server CPU µs per egress packet")
    top.set_ylim(bottom=0)
    top.legend()
    top.set_title("callsd, one server core (taskset), load tool on the other: calls × 8 users × 2 unmuted\n"
                  f"(labels: measured egress packets/s; load average {doc['machine']['loadavg_start'][0]:.1f} at start, "
                  f"{doc['machine'].get('loadavg_end', [0])[0]:.1f} at end: a shared machine;\n"
                  "runs where most users failed to join are left out)", fontsize=9)
    bottom.axhline(0.5, color="grey", linestyle="--", linewidth=1)
    bottom.set_ylabel("loss %")
    bottom.set_xlabel("calls of 8 users, 2 unmuted (offered: 700 egress packets/s per call)")
    bottom.set_ylim(bottom=0)
    fig.tight_layout()
    fig.savefig(png, dpi=110)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.capacity_paths", description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", default="50,100,150,200,250", help="comma-separated call counts")
    parser.add_argument("--paths", default="python,native", help="server rtc.fast_path values, in run order")
    parser.add_argument("--shape", default="8,2,0", help="users per call, unmuted per call, sharing calls")
    parser.add_argument("--steady", type=float, default=12.0, help="seconds of full load after the joins")
    parser.add_argument("--rounds", type=int, default=1, help="repeat the whole sweep")
    parser.add_argument("--media-engine", default="native", help="the load tool's media engine")
    parser.add_argument("--nice", type=int, default=0,
                        help="run the server and the tool at this nice level (e.g. -10 on a saturated shared machine)")
    parser.add_argument("--join-timeout", type=float, default=15.0,
                        help="seconds a user may take to connect (raise it on a busy machine)")
    parser.add_argument("--audio-slots", default="",
                        help="comma-separated --audio-slots values for the load tool, alternated within each load "
                             "(e.g. 0,8); default: the tool's own (the web client's 8)")
    parser.add_argument("--topology", default="loopback",
                        help=f"comma-separated, alternated within each load: {', '.join(TOPOLOGIES)} (where the server "
                             "and the tool run: one machine's loopback, or two namespaces that receive as two hosts)")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "capacity-paths.json"))
    parser.add_argument("--plot", default="", help="only plot this result file")
    parser.add_argument("--png", default=str(ROOT / "docs" / "capacity-paths.png"))
    args = parser.parse_args(argv)
    if args.plot:
        plot(json.loads(Path(args.plot).read_text()), Path(args.png))
        print(f"wrote {args.png}")
        return 0
    topologies = tuple(t for t in args.topology.split(",") if t)
    if not topologies or set(topologies) - set(TOPOLOGIES):
        parser.error(f"--topology: a comma-separated list of {', '.join(TOPOLOGIES)}")
    if "two-hosts" in topologies and args.media_engine == "shared":
        parser.error("--topology two-hosts: the shared engine's users are loopback addresses, which do not cross a "
                     "veth; use --media-engine native (and the same for the loopback rows, to compare like with like)")
    capacity.set_nice(args.nice)
    users, unmuted, sharing = (int(x) for x in args.shape.split(","))
    doc = sweep([int(x) for x in args.calls.split(",")], args.paths.split(","), users=users, unmuted=unmuted,
                sharing=sharing, steady=args.steady, rounds=args.rounds, out=Path(args.out),
                media_engine=args.media_engine, join_timeout=args.join_timeout,
                audio_slots=[int(x) for x in args.audio_slots.split(",")] if args.audio_slots else None,
                topologies=topologies)
    plot(doc, Path(args.png))
    print(f"results: {args.out}; plot: {args.png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
