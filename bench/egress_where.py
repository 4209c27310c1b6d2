"""Where a server's CPU per egress packet goes at saturation: user vs system time, syscalls and their batch sizes,
and the perf profile split by what runs (the native step, the interpreter around it, libcrypto, the kernel's send
path and, on loopback, the kernel's *receive* path of the load tool's sockets, which runs in the sender's context).

    .venv/bin/python -m bench.egress_where --calls 100 --steady 10 --out bench/results/egress-where-100.json

One capacity run (bench/capacity.py's method and shape: N calls x 8 users x 2 unmuted, joins at 50 users/s, server
pinned to CPU 0, load tool to CPU 1 on the shared-socket engine). Over the steady window only, it reads:

* ``/proc/<server>/stat`` and every thread's ``/proc/<server>/task/*/stat``: user and system CPU;
* the server's ``/metrics`` at both ends: datagrams and RTP packets in and out in the window (the denominators);
* ``perf stat`` on the syscall tracepoints (recvmmsg, sendmmsg, sendto, epoll_wait...): calls per egress packet;
* ``perf record`` of the exits of recvmmsg and sendmmsg: the distribution of their batch sizes;
* ``perf record -g`` (``--call-graph dwarf``, so the C extension's frames unwind): the share of samples by shared
  object, the inclusive share of the named stages (``STAGES``), and every sample outside the native step by what
  it was doing (``OUTSIDE``: the GC, DTLS handshakes, the RTCP rounds, Python's own syscalls, else the shared object
  it ran in, the interpreter's being the Python around the step).

``--variant NAME:KEY=VALUE,...`` sets server environment (as bench/server_ab.py), so one script attributes any
variant; ``PYTHONPATH=DIR`` (DIR/callsd another checkout, its extension built in place) runs that code's server.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import bench.capacity as capacity
from bench.capacity import JOIN_RATE, Server, Shape, row
from bench.server_ab import Variant

ROOT = Path(__file__).resolve().parent.parent
CLK_TCK = os.sysconf("SC_CLK_TCK")
SYSCALLS = ("recvmmsg", "sendmmsg", "sendto", "sendmsg", "recvfrom", "recvmsg", "epoll_wait", "epoll_pwait", "poll",
            "read", "write", "futex", "clock_gettime")
# Named stages: a symbol whose inclusive share (samples with it anywhere on the stack) says what a stage costs.
STAGES = {
    "Engine_step (the whole native step, its syscalls included)": "Engine_step",
    "  recvmmsg (kernel)": "__x64_sys_recvmmsg",
    "  SRTP unprotect": "session_unprotect",
    "  forward (Forwarder.on_rtp in C)": "forward",
    "    send_to_peer (stamp, protect, queue)": "send_to_peer",
    "      transport-wide stamp (twcc_step.h)": "sequencer_stamp",
    "      SRTP protect (libcrypto)": "session_protect",
    "  sendmmsg (kernel)": "__x64_sys_sendmmsg",
    "    UDP/IP output (udp_send_skb)": "udp_send_skb",
    "    loopback delivery to the tool's sockets (softirq in the sender)": "net_rx_action",
    "      of it: IP local delivery, UDP receive, enqueue, wake the reader": "ip_local_deliver_finish",
    "epoll_wait (kernel)": "__x64_sys_epoll_wait",
    "sendto (kernel: Python's sends, RTCP and STUN)": "__x64_sys_sendto",
    "cyclic GC": "gc_collect_main",
}


def _proc_times(pid: int) -> dict[str, Any]:
    """utime/stime in seconds of the process and of each thread (by thread name)."""
    def read(path: Path) -> tuple[str, float, float]:
        text = path.read_text()
        name = text[text.index("(") + 1:text.rindex(")")]
        fields = text[text.rindex(")") + 2:].split()
        return name, int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK

    _, user, system = read(Path(f"/proc/{pid}/stat"))
    threads: dict[str, list[float]] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            name, u, s = read(task / "stat")
        except OSError:
            continue
        t = threads.setdefault(f"{name}", [0.0, 0.0])
        t[0] += u
        t[1] += s
    return {"user": user, "system": system, "threads": threads, "at": time.monotonic()}


_METRIC = re.compile(r'^callsd_rtc_rtp_packets_total\{direction="(in|out)",type="(\w+)"\} ([0-9.e+]+)$')


def _packets(url: str) -> dict[str, float]:
    with urllib.request.urlopen(url + "/metrics", timeout=5) as response:
        text = response.read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        m = _METRIC.match(line)
        if m:
            out[f"{m.group(2)}_{m.group(1)}"] = float(m.group(3))
    return out


def _perf_stat(pid: int, seconds: float, out: Path) -> subprocess.Popen[bytes]:
    events = ",".join(f"syscalls:sys_enter_{name}" for name in SYSCALLS)
    return subprocess.Popen(["perf", "stat", "-x", ",", "-o", str(out), "-e", events, "-p", str(pid), "--",
                             "sleep", f"{seconds:.1f}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _perf_batches(pid: int, seconds: float, out: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(["perf", "record", "-q", "-o", str(out), "-e", "syscalls:sys_exit_recvmmsg",
                             "-e", "syscalls:sys_exit_sendmmsg", "-p", str(pid), "--", "sleep", f"{seconds:.1f}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _perf_profile(pid: int, seconds: float, out: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(["perf", "record", "-q", "-F", "499", "--call-graph", "dwarf,16384", "-o", str(out),
                             "-p", str(pid), "--", "sleep", f"{seconds:.1f}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def syscall_counts(path: Path) -> dict[str, int]:
    counts = {}
    for line in path.read_text().splitlines():
        parts = line.split(",")
        if len(parts) > 2 and parts[2].startswith("syscalls:sys_enter_"):
            counts[parts[2].removeprefix("syscalls:sys_enter_")] = int(parts[0]) if parts[0].isdigit() else 0
    return counts


def batch_sizes(data: Path) -> dict[str, dict[str, Any]]:
    """Per syscall: how many calls returned 0 or an error, and the distribution of positive returns."""
    text = subprocess.run(["perf", "script", "-i", str(data), "-F", "event,trace"], capture_output=True,
                          text=True, check=False).stdout
    sizes: dict[str, Counter[int]] = {"recvmmsg": Counter(), "sendmmsg": Counter()}
    for line in text.splitlines():
        m = re.search(r"sys_exit_(recvmmsg|sendmmsg).*?0x([0-9a-f]+)", line)
        if m:
            value = int(m.group(2), 16)
            sizes[m.group(1)][value if value < 1 << 63 else -1] += 1
    out = {}
    for name, hist in sizes.items():
        calls = sum(hist.values())
        positive = {k: v for k, v in hist.items() if k > 0}
        datagrams = sum(k * v for k, v in positive.items())
        out[name] = {"calls": calls, "empty_or_error": calls - sum(positive.values()), "datagrams": datagrams,
                     "mean_positive": round(datagrams / max(1, sum(positive.values())), 2),
                     "histogram": {str(k): hist[k] for k in sorted(hist)}}
    return out


# What a sample outside the native step was doing: the first of these found anywhere on its stack (so a syscall made
# from Python counts as that syscall, not as the interpreter), else the shared object it was in.
OUTSIDE = (
    ("cyclic GC", ("gc_collect_main",)),
    ("DTLS handshakes (OpenSSL through cryptography)", ("SSL_do_handshake", "SSL_read", "SSL_write")),
    ("RTCP and feedback rounds, SRTCP in C (rtcp_batch.h)", ("send_rtcp_batch",)),
    ("epoll_wait", ("__x64_sys_epoll_wait",)),
    ("Python's sends (STUN, signaling, slow-path RTP/RTCP)", ("__x64_sys_sendto", "__x64_sys_sendmsg",
                                                               "__x64_sys_write", "__x64_sys_writev")),
    ("Python's receives (signaling sockets, accept)", ("__x64_sys_recvfrom", "__x64_sys_recvmsg", "__x64_sys_read",
                                                       "__x64_sys_accept4")),
    ("the event log (SQLite, its writes and fsync)", ("sqlite3", "__x64_sys_pwrite64", "__x64_sys_fsync",
                                                      "__x64_sys_fdatasync")),
)


def outside_step(data: Path) -> dict[str, float]:
    """Share of all samples (percent): inside ``Engine_step``, and outside it by what ran (``OUTSIDE``, else the
    shared object of the sample: the interpreter running Python is ``libpython``)."""
    text = subprocess.run(["perf", "script", "-i", str(data), "-F", "ip,sym,dso"], capture_output=True, text=True,
                          check=False).stdout
    counts: Counter[str] = Counter()
    for block in text.split("\n\n"):
        frames = [line.strip() for line in block.strip().splitlines()]
        if not frames:
            continue
        if any(" Engine_step " in f for f in frames):
            counts["inside the native step (Engine_step)"] += 1
            continue
        label = next((name for name, marks in OUTSIDE if any(m in f for f in frames for m in marks)), None)
        if label is None:  # the innermost frame's object (an inlined frame names none: the next one's)
            dsos = (m.group(1) for f in frames if (m := re.search(r"\(([^)]*)\)\s*$", f)) and m.group(1) != "inlined")
            label = "outside: " + os.path.basename(next(dsos, "?"))
        counts[label] += 1
    total = sum(counts.values()) or 1
    return {k: round(100 * v / total, 2) for k, v in counts.most_common()}


def profile_shares(data: Path) -> dict[str, Any]:
    """Self samples by shared object, and inclusive samples of each of STAGES."""
    def report(*args: str) -> str:
        return subprocess.run(["perf", "report", "-i", str(data), "--stdio", "--percent-limit", "0.3", "-g", "none",
                               *args], capture_output=True, text=True, check=False).stdout

    dso = {}
    for line in report("--no-children", "--sort", "dso").splitlines():
        m = re.match(r"\s*([0-9.]+)%\s+(\S+)", line)
        if m:
            dso[m.group(2)] = float(m.group(1))
    inclusive: dict[str, float] = {}
    text = report("--children", "--sort", "sym")
    for label, symbol in STAGES.items():
        m = re.search(r"^\s*([0-9.]+)%\s+[0-9.]+%\s+\[[.k]\]\s+" + re.escape(symbol) + r"( \(inlined\))?\s*$", text, re.M)
        inclusive[label] = float(m.group(1)) if m else 0.0
    return {"self_by_dso": dso, "inclusive_by_stage": inclusive, "by_activity": outside_step(data)}


def run(shape: Shape, variant: Variant, *, steady: float, work: Path, media_engine: str,
        join_timeout: float) -> dict[str, Any]:
    users = shape.calls * shape.users
    join = max(1.0, users / JOIN_RATE)
    tool_out = work / "loadtest.json"
    env = dict(variant.env, CALLSD_SHUTDOWN_DRAIN_TIMEOUT="1")
    load_before = os.getloadavg()
    with Server(work, env=env) as server:
        assert server.proc is not None
        pid = server.proc.pid
        cmd = [*capacity._pin(1), sys.executable, "-m", "callsd.app.cli", "loadtest", "--url", server.url,  # noqa: SLF001
               "--calls", str(shape.calls), "--users-per-call", str(shape.users), "--unmuted", str(shape.unmuted),
               "--screen-sharing", str(shape.sharing), "--screen-bitrate", "1M",
               "--join-duration", f"{join:.2f}", "--duration", f"{join + steady:.2f}",
               "--server-pid", str(pid), "--delay-sample", "4", "--media-engine", media_engine,
               "--join-timeout", f"{join_timeout:g}", "--output", str(tool_out), "--quiet"]
        started = time.time()
        tool = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(max(0.0, started + join + 1.5 - time.time()))
        window = max(2.0, steady - 2.5)
        before_times, before_packets = _proc_times(pid), _packets(server.url)
        perfs = [_perf_stat(pid, window, work / "stat.csv"), _perf_batches(pid, window, work / "batches.data"),
                 _perf_profile(pid, window, work / "profile.data")]
        for p in perfs:
            p.wait()
        after_times, after_packets = _proc_times(pid), _packets(server.url)
        engine_so = sorted({line.split()[-1] for line in Path(f"/proc/{pid}/maps").read_text().splitlines()
                            if "_engine" in line})  # which build served (a PYTHONPATH variant runs another checkout)
        tool.communicate(timeout=join + steady + 120)
    doc = json.loads(tool_out.read_text())
    seconds = after_times["at"] - before_times["at"]
    delta = {k: after_packets.get(k, 0) - before_packets.get(k, 0) for k in after_packets}
    egress = delta.get("rtp_out", 0) or 1
    user, system = after_times["user"] - before_times["user"], after_times["system"] - before_times["system"]
    threads = {name: [round((t[0] - before_times["threads"].get(name, [0, 0])[0]) / egress * 1e6, 3),
                      round((t[1] - before_times["threads"].get(name, [0, 0])[1]) / egress * 1e6, 3)]
               for name, t in after_times["threads"].items()}
    calls = syscall_counts(work / "stat.csv")
    out = row(shape, doc) | {
        "variant": variant.name, "settings": variant.env, "loadavg_before": load_before, "engine_so": engine_so,
        "started_utc": time.strftime("%H:%M:%S", time.gmtime(started)),
        "window_seconds": round(seconds, 2), "window_packets": delta, "window_egress_pps": round(egress / seconds),
        "window_server_cpu_percent": round(100 * (user + system) / seconds, 1),
        "us_per_egress_packet_window": {"user": round(user / egress * 1e6, 3), "system": round(system / egress * 1e6, 3),
                                        "total": round((user + system) / egress * 1e6, 3)},
        "us_per_egress_packet_by_thread_user_system": threads,
        "syscalls": calls, "syscalls_per_egress_packet": {k: round(v / egress, 4) for k, v in calls.items() if v},
        "batches": batch_sizes(work / "batches.data"), "profile": profile_shares(work / "profile.data"),
    }
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.egress_where", description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=100)
    parser.add_argument("--shape", default="8,2,0", help="users per call, unmuted per call, sharing calls")
    parser.add_argument("--steady", type=float, default=10.0)
    parser.add_argument("--variant", action="append", default=[], help="name:KEY=VALUE,... (as bench.server_ab)")
    parser.add_argument("--media-engine", default="shared")
    parser.add_argument("--join-timeout", type=float, default=45.0)
    parser.add_argument("--nice", type=int, default=0, help="as bench.capacity_paths --nice (autogroup nice)")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "egress-where.json"))
    args = parser.parse_args(argv)
    capacity.set_nice(args.nice)
    users, unmuted, sharing = (int(x) for x in args.shape.split(","))
    shape = Shape(f"{args.calls} x {users} x {unmuted}, {sharing} sharing", args.calls, users, unmuted, sharing)
    variants = [Variant.parse(v) for v in args.variant] or [Variant("base", {})]
    rows = []
    for v in variants:
        line = run(shape, v, steady=args.steady, work=Path(tempfile.mkdtemp(prefix="callsd-where-")),
                   media_engine=args.media_engine, join_timeout=args.join_timeout)
        rows.append(line)
        print(json.dumps({k: line[k] for k in ("variant", "us_per_egress_packet", "loss", "users_failed",
                                               "window_egress_pps", "window_server_cpu_percent",
                                               "us_per_egress_packet_window", "syscalls_per_egress_packet")}),
              flush=True)
        Path(args.out).write_text(json.dumps({"shape": shape.label, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
