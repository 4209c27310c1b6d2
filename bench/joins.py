"""Join cost A/B: offer/answer rounds, frames and server CPU per join: audio slots, batch frames, signaling socket.

    .venv/bin/python -m bench.joins [--rounds 2 --calls 10 --users 8 --unmuted 2 --slots 8]   (~1 min per run)
    .venv/bin/python -m bench.joins --compare batch      # audio slots, one frame per event vs batch frames
    .venv/bin/python -m bench.joins --compare socket     # the signaling socket through hypercorn+Quart vs direct
    .venv/bin/python -m bench.joins --plane --rounds 3      # the media plane alone, in-process (~20 s)
    .venv/bin/python -m bench.joins --compare tree --base-tree DIR   # another checkout's server vs this one's
    .venv/bin/python -m bench.joins --compare tree --base-tree DIR --tool-tree base   # its load tool too
    .venv/bin/python -m bench.joins --unmuted 0 --profile DIR --profile-native   # where a join's CPU goes, C too
    .venv/bin/python -m bench.joins --shares DIR/*.txt      # median shares of stored profiles
    .venv/bin/python -m bench.joins --unmuted 0 --counts    # how often each join mechanism runs, per join

Each run is `bench.memory server` (a fresh `callsd serve` pinned to CPU 0, `callsd loadtest` joining calls × users
at calls × users ÷ join-duration joins/s, held, then left); the modes alternate run by run in one session so that
the shared machine's load hits both alike (docs/performance.md: prefer ratios within one run, and CPU time to wall
time). Figures per run: ``sdp_rounds_per_join`` (client ``sdp`` messages ÷ joins: every round has exactly one),
``join_cpu_ms_per_user`` (the load tool's: server CPU between 1 s samples during the join window ÷ joins),
``cpu_ms_to_held_per_join`` (the server's whole CPU time from before the first join until every user is held ÷
joins: joins, the media of the talkers, timers), RSS per session and p95 join → first audio.

``--compare tree`` runs the base tree's server against this checkout's; ``--tool-tree`` says whose load tool
joins both: ``this`` (the default) loads both servers with this checkout's tool, so an A/B between two servers
sees the same joins; ``base`` gives the base tree's runs the base tree's own tool (what its figures were when it was
main: since session 10 the tool's first offer carries the camera's inactive video section, as a browser's does,
and a base before that joined more cheaply than a browser). The base tree needs its own C extensions built in place.

``--profile DIR`` also samples the server with py-spy (``--gil``, 400 Hz: the thread holding the GIL, i.e. Python
work) over each join window and prints where the samples fall (``profile_shares``: the first bucket of
``_BUCKETS`` that the frame nearest the sample's leaf matches: the component whose code was running). The raw stacks stay in DIR for a flame graph.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from collections.abc import Iterator
from typing import Any

from bench.memory import run_server

__all__ = ["main"]

_FIGURES = ("sdp_rounds_per_join", "events_out_per_join", "frames_out_per_join", "join_cpu_ms_per_user",
            "cpu_ms_to_held_per_join", "cpu_ms_whole_run_per_join", "rss_kib_per_session",
            "p95_join_to_first_audio_ms")


# (bucket, substrings of a py-spy frame "function (path:line)"); a sample goes to the bucket of the frame nearest
# its leaf that matches any bucket: the component whose own code (or whose library or Trio call) was running.
_BUCKETS = (
    ("sdp parse", ("sdp_parse.py",)),
    ("negotiation, sdp build", ("negotiation.py", "wire/sdp.py", "sdp_model.py", "codec_policy.py",
                                "extension_ids.py", "receive_slots.py")),
    ("forwarding (rtp, srtp, rtcp)", ("forwarder.py", "media/native/", "srtp.py", "paths.py", "plane_rtcp.py",
                                      "rtcp_term.py", "retransmit.py", "simulcast_fwd.py", "_receive_loop")),
    ("dtls", ("dtls",)),
    ("ice, stun", ("ice.py", "ice_tcp.py", "stun", "ice_outcome.py")),
    ("media plane (routes, slots)", ("media/plane.py", "plane_slots.py", "media/router.py")),
    ("event log", ("adapters/store", "eventlog", "recorder")),
    ("core machine", ("core/calls",)),
    ("json", ("json/",)),
    ("websocket frames (wsproto, ws_stream)", ("wsproto", "ws_stream", "trio_websocket", "ws_direct.py",
                                              "signaling_socket.py")),
    ("http server (hypercorn, h11)", ("hypercorn", "/h11/")),
    ("asgi app (quart, the guard)", ("quart", "http_guard.py", "http_inbound.py", "http_requests.py", "app/server.py")),
    ("hub: broadcasts, outbox, writer", ("signaling_outbox.py", "signaling_fanout.py", "_writer (adapters/signaling",
                                         "_batch (adapters/signaling", "_next_before (adapters/signaling")),
    ("hub: handlers", ("adapters/signaling",)),
    ("metrics", ("prometheus", "metrics.py")),
)
# With py-spy --native every thread is sampled, waiting or not: these leaves are a thread waiting (the event loop in
# epoll, a worker thread parked on its lock), not work. A native frame of the cyclic collector charges the sample
# to the GC whatever Python code allocated.
_IDLE_LEAVES = ("epoll_wait", "pthread_cond_wait", "futex", "sem_wait", "sem_clockwait", "sem_timedwait")
_GC_FRAMES = ("gc_collect",)


def _bucket_of(frames: list[str]) -> str:
    """The bucket of one sample's stack (leaf first)."""
    if any(g in f for f in frames for g in _GC_FRAMES):
        return "gc (cyclic collector)"
    bucket = next((name for frame in frames for name, pats in _BUCKETS if any(p in frame for p in pats)), "")
    if not bucket:  # Trio's own work is charged to the component that asked for it, if any did
        bucket = "trio scheduling" if any("trio" in f for f in frames) else "other"
    return bucket


def profile_shares(path: str) -> dict[str, float]:
    """Share of py-spy samples per bucket (``_BUCKETS``; "other": the interpreter start, threads, the rest); samples
    of a waiting thread (``_IDLE_LEAVES``, or a worker thread outside SQLite with an unnamed libc leaf: its lock)
    are left out."""
    import gzip

    counts: dict[str, int] = {}
    with gzip.open(path, "rt") if path.endswith(".gz") else open(path) as f:
        for line in f:
            stack, _, n = line.rstrip("\n").rpartition(" ")
            if not n.isdigit():
                continue
            frames = stack.split(";")[::-1]
            leaf = frames[0]
            if any(w in leaf for w in _IDLE_LEAVES) or (
                    "Thread._bootstrap" in stack and leaf.startswith("0x") and "sqlite" not in stack.lower()):
                continue
            bucket = _bucket_of(frames)
            counts[bucket] = counts.get(bucket, 0) + int(n)
    total = sum(counts.values()) or 1
    return {k: round(v / total, 3) for k, v in sorted(counts.items(), key=lambda kv: -kv[1])}


def plane_cpu_per_join(sessions: int, slots: int) -> float:
    """CPU µs per join of the media plane alone (negotiation, SDP, routes, slots; no sockets, no hub), in this
    process: ``sessions`` load-tool clients join calls of 8 and answer every offer (bench.memory's plane part)."""
    import time

    from callsd.adapters.media.plane import MediaPlane

    from bench.memory import _plane_sessions

    spent = [0.0]  # only the plane's own calls count, not the fake clients' SDP work
    real = {name: getattr(MediaPlane, name) for name in ("handle_signal", "apply", "open_session")}

    def timed(fn: Any) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            t0 = time.process_time()
            try:
                return fn(*args, **kwargs)
            finally:
                spent[0] += time.process_time() - t0
        return call

    _plane_sessions(16, slots)  # warm up imports and caches
    try:
        for name, fn in real.items():
            setattr(MediaPlane, name, timed(fn))
        _plane_sessions(sessions, slots)
    finally:
        for name, fn in real.items():
            setattr(MediaPlane, name, fn)
    return round(spent[0] * 1e6 / sessions, 1)


def _package_shim(tree: str) -> str:
    """A directory whose ``callsd`` is ``tree``: first on PYTHONPATH, it wins over this checkout's editable install
    (the editable finder comes after the path finder). The native extension is built in place and not in git, so a
    fresh worktree gets this checkout's build when it has none (same C sources unless the A/B is about them). The
    directory is removed when this process exits (``atexit``: a normal end, an error or Ctrl-C), so benches no
    longer leave ``/tmp/callsd-base-tree-*`` behind."""
    import atexit
    import shutil
    import tempfile
    from pathlib import Path

    base = Path(tree).resolve()
    if not (base / "core" / "__init__.py").exists():
        raise SystemExit(f"--base-tree {tree}: not a callsd checkout")
    native = Path(__file__).resolve().parent.parent / "adapters" / "media" / "native"
    for built in native.glob("_engine*.so"):
        if not (base / "adapters" / "media" / "native" / built.name).exists():
            shutil.copy2(built, base / "adapters" / "media" / "native" / built.name)
    shim = Path(tempfile.mkdtemp(prefix="callsd-base-tree-"))
    atexit.register(shutil.rmtree, shim, ignore_errors=True)  # the link only: rmtree never follows it into ``tree``
    (shim / "callsd").symlink_to(base)
    return str(shim)


def alternate_trees(base_tree: str, rounds: int, child: list[str]) -> Iterator[dict[str, Any]]:
    """An in-process A/B's runs: ``child`` (a ``-m bench...`` command line printing its figures as its last JSON
    line) run ``rounds`` times per tree, "base tree" (when one is given) first, then "this tree", alternated; each
    run's figures with its tree, round and the load average after it. Both trees find this checkout's ``bench``
    package; the base tree's ``callsd`` comes first in its own."""
    import subprocess

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    paths = {"base tree": _package_shim(base_tree)} if base_tree else {}
    paths["this tree"] = ""
    for n in range(rounds):
        for name, path in paths.items():
            env = dict(os.environ, PYTHONPATH=os.pathsep.join(
                filter(None, [path, root, os.environ.get("PYTHONPATH", "")])))
            out = subprocess.run([sys.executable, *child], env=env, capture_output=True, text=True, check=True)
            yield {"tree": name, "round": n, **json.loads(out.stdout.strip().splitlines()[-1]),
                   "loadavg": [round(x, 2) for x in os.getloadavg()]}


def _median(values: list[Any]) -> float | None:
    numbers = [v for v in values if isinstance(v, int | float)]
    return statistics.median(numbers) if numbers else None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.joins", description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=2, help="runs per mode, alternated")
    p.add_argument("--calls", type=int, default=10)
    p.add_argument("--users", type=int, default=8)
    p.add_argument("--unmuted", type=int, default=2)
    p.add_argument("--join-duration", type=float, default=5.0)
    p.add_argument("--hold", type=float, default=12.0)
    p.add_argument("--slots", type=int, default=8, help="audio slots the B runs ask for")
    p.add_argument("--compare", choices=("slots", "batch", "socket", "tree"), default="slots",
                   help="slots: per-track sections vs audio slots; batch: slots with one frame per event vs slots "
                        "with batch frames (protocol 1.3, ADR 0027); socket: slots and batch frames, the signaling "
                        "socket through hypercorn/Quart (http.signaling_socket = asgi) vs served directly (direct); "
                        "tree: the code in --base-tree vs this checkout, both with slots and batch frames")
    p.add_argument("--output", default="", help="write every run's figures to this JSON file")
    p.add_argument("--profile", default="", metavar="DIR", help="py-spy the server's join windows into DIR")
    p.add_argument("--plane", action="store_true",
                   help="only the media plane's CPU per join, in this process (a quiet-machine-free A/B)")
    p.add_argument("--profile-all-threads", action="store_true",
                   help="sample every busy thread, not only the GIL holder (C work without the GIL shows too)")
    p.add_argument("--profile-native", action="store_true",
                   help="with --profile: every thread with its C frames (py-spy --native; waits left out, the GC "
                        "charged to itself)")
    p.add_argument("--base-tree", default="", metavar="DIR",
                   help="--compare tree: a checkout of the code to compare against (e.g. `git worktree add DIR "
                        "main`); its server and load tool run from DIR, the other mode's from this checkout")
    p.add_argument("--tool-tree", choices=("this", "base"), default="this",
                   help="--compare tree: whose load tool joins the base tree's server: this checkout's (default: "
                        "both servers get the same joins) or the base tree's own")
    p.add_argument("--counts", action="store_true",
                   help="count per join how often each mechanism ran in the server (bench/join_counts.py: messages, "
                        "log commits, thread hand-offs, Trio tasks and cancel scopes, JSON, DTLS flights, offers); "
                        "the wrappers cost CPU, so compare counted runs only with counted runs")
    p.add_argument("--shares", nargs="+", default=[], metavar="PROFILE",
                   help="only print the median share per bucket over these stored py-spy profiles (.txt or .txt.gz)")
    a = p.parse_args(argv)
    if a.shares:
        per_file = [profile_shares(path) for path in a.shares]
        buckets = {k for shares in per_file for k in shares}
        table = {k: {"median": _median([s.get(k, 0.0) for s in per_file]),
                     "min": min(s.get(k, 0.0) for s in per_file), "max": max(s.get(k, 0.0) for s in per_file)}
                 for k in buckets}
        print(json.dumps(dict(sorted(table.items(), key=lambda kv: -(kv[1]["median"] or 0))), indent=1))
        return 0
    if a.plane:
        plane_runs = [{"round": n, "sections_us": plane_cpu_per_join(a.calls * a.users * 8, 0),
                       "slots_us": plane_cpu_per_join(a.calls * a.users * 8, a.slots)} for n in range(a.rounds)]
        for plane_run in plane_runs:
            plane_run["ratio"] = round(plane_run["slots_us"] / plane_run["sections_us"], 3)
            print(json.dumps(plane_run), flush=True)
        return 0
    if a.counts:
        os.environ["BENCH_JOIN_COUNTS"] = "1"  # the server child installs bench.join_counts
    spy = os.path.join(os.path.dirname(sys.executable), "py-spy")
    if a.profile and not os.path.exists(spy):
        p.error(f"--profile needs py-spy next to this interpreter ({spy}): pip install py-spy")
    slots = ("--audio-slots", str(a.slots))
    # mode -> (the load tool's extra arguments, http.signaling_socket of the server)
    Modes = dict[str, tuple[tuple[str, ...], str]]
    comparisons: dict[str, Modes] = {
        "slots": {"per-track sections": (("--audio-slots", "0"), "direct"), f"{a.slots} audio slots": (slots, "direct")},
        "batch": {f"{a.slots} audio slots": (slots, "direct"),
                  f"{a.slots} audio slots, batch frames": ((*slots, "--batch"), "direct")},
        "socket": {"socket through hypercorn+Quart": ((*slots, "--batch"), "asgi"),
                   "socket served directly": ((*slots, "--batch"), "direct")},
        "tree": {"base tree": ((*slots, "--batch"), os.environ.get("CALLSD_HTTP_SIGNALING_SOCKET", "direct")),
                 "this tree": ((*slots, "--batch"), os.environ.get("CALLSD_HTTP_SIGNALING_SOCKET", "direct"))},
    }
    if a.compare == "tree" and not a.base_tree:
        p.error("--compare tree needs --base-tree DIR")
    if a.tool_tree == "base" and a.compare != "tree":
        p.error("--tool-tree base needs --compare tree")
    shim = _package_shim(a.base_tree) if a.base_tree else ""
    modes = comparisons[a.compare]
    runs: list[dict[str, Any]] = []
    for n in range(a.rounds):
        for mode, (extra, signaling_socket) in modes.items():
            os.environ["CALLSD_HTTP_SIGNALING_SOCKET"] = signaling_socket  # the server child reads it
            prof = ""
            if a.profile:
                os.makedirs(a.profile, exist_ok=True)
                tag = "-".join(x.strip("-") for x in extra) or "sections"
                tree = "-base-tree" if mode == "base tree" else ""
                prof = os.path.join(a.profile, f"join-{n}-{tag}-{signaling_socket}{tree}.txt")
            r = run_server(a.calls, a.users, a.unmuted, a.join_duration, a.hold, extra, profile=prof,
                           profile_gil=not (a.profile_all_threads or a.profile_native),
                           profile_native=a.profile_native, server_tree=shim if mode == "base tree" else "",
                           tool_tree=shim if mode == "base tree" and a.tool_tree == "base" else "")
            if prof and os.path.exists(prof):
                r["profile_shares"] = profile_shares(prof)
            r.update(mode=mode, round=n, loadavg_after=list(os.getloadavg()), signaling_socket=signaling_socket,
                     tool_tree="base" if mode == "base tree" and a.tool_tree == "base" else "this")
            runs.append(r)
            print(json.dumps({k: r.get(k) for k in ("mode", "round", "joined", "failed", *_FIGURES,
                                                    "loadavg_after", "profile_shares", "counts_to_held_per_join",
                                                    "counts_whole_run_per_join")}), flush=True)
    summary = {mode: {f: _median([r.get(f) for r in runs if r["mode"] == mode]) for f in _FIGURES}
               for mode in modes}
    print(json.dumps({"median": summary}, indent=1))
    if a.output:
        with open(a.output, "w") as f:
            json.dump({"runs": runs, "median": summary}, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
