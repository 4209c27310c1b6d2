"""The kernel's share of a join: system calls per join by name, and the server's kernel time by the call that
entered the kernel.

    .venv/bin/python -m bench.join_syscalls --base-tree DIR --rounds 2        # counts, this tree against DIR
    .venv/bin/python -m bench.join_syscalls --kernel-time --rounds 1         # where the system time goes
    .venv/bin/python -m bench.join_syscalls --wal-layout 5                   # commits on a fresh WAL vs laid out

Why (docs/performance.md, "Joins, session 10: the kernel's share"): a join in an 8-user call cost ~6.9 ms of user
and ~1.4 ms of system CPU at this session's start, and nobody had looked at the system part. A count of system calls
does not move with the host's load (a cut that removes a call per message removes it in every run), so the A/B of a
cut here is counted, and the timings come from ``bench.joins --compare tree`` on a quiet host.

Each run is ``bench.memory.run_server`` (a fresh ``callsd serve`` pinned to CPU 0, the load tool joining calls ×
users at calls × users ÷ join-duration joins/s from CPU 1, audio slots and batch frames, the direct signaling socket)
with a tracer attached to the server over the join window (join-duration + 2 s from the tool's start; the last
~2 s are the hold, whose background calls are in the figures, alike in both trees):

- counts (``*.syscalls``): ``perf stat`` of the ``syscalls:sys_enter_*`` tracepoints of ``SYSCALLS`` (those the
  kernel has) and ``raw_syscalls:sys_enter`` for the total (``other``: the rest), with the context switches and
  page faults. Tracepoint counters, no recording: cheap enough not to change what the server does (strace would,
  by stopping it at every call);
- kernel time (``*.kperf``, ``--kernel-time``): ``perf record -e cpu-clock -g`` (this VM has no hardware
  counters), each sample charged to the system call its kernel stack entered through (``__x64_sys_NAME``), to page
  faults, to interrupts, or to user space. On loopback the server's ``send`` also runs the receiver's side of TCP
  and UDP in softirq context, so its send time includes the delivery to the load tool.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["SYSCALLS", "window_command", "read_counts", "kernel_time", "main"]

# The calls a join can make (sockets, the loop, the event log's thread and SQLite, memory, clocks, randomness).
SYSCALLS = (
    "read", "write", "readv", "writev", "pread64", "pwrite64", "recvfrom", "sendto", "recvmsg", "sendmsg",
    "recvmmsg", "sendmmsg", "accept4", "accept", "close", "shutdown", "setsockopt", "getsockopt", "getsockname",
    "getpeername", "epoll_wait", "epoll_pwait", "epoll_ctl", "futex", "fdatasync", "fsync", "fcntl",
    "newfstatat", "lseek", "openat", "getpid", "gettid", "getrandom", "clock_gettime", "clock_nanosleep", "mmap",
    "munmap", "madvise", "brk", "mprotect", "ioctl", "poll", "ppoll", "select", "pselect6", "socket", "bind",
    "connect", "rt_sigaction", "rt_sigprocmask", "sched_yield", "unlink", "unlinkat", "ftruncate", "statx",
)
_TRACEPOINTS = Path("/sys/kernel/tracing/events/syscalls")
# Counted alongside: what the kernel does for the process without a call of its own (each a switch or a fault).
_SOFTWARE = ("context-switches", "page-faults")


def _events() -> str:
    present = [name for name in SYSCALLS if (_TRACEPOINTS / f"sys_enter_{name}").is_dir()]
    if not present:
        raise SystemExit(f"no syscall tracepoints under {_TRACEPOINTS}: run as root with tracefs mounted")
    return ",".join([*(f"syscalls:sys_enter_{name}" for name in present), "raw_syscalls:sys_enter", *_SOFTWARE])


def window_command(profile: str, pid: int, seconds: int) -> list[str]:
    """The tracer ``bench.memory.run_server`` attaches to the server for ``seconds``: ``perf stat`` counting each
    system call (``*.syscalls``), or ``perf record`` of the CPU clock with kernel stacks (``*.kperf``)."""
    if profile.endswith(".syscalls"):  # perf stat ends its count on SIGINT (with ``-- sleep`` it counts nothing here)
        stat = shlex.join(["timeout", "-s", "INT", str(seconds), "perf", "stat", "-x", ",", "-o", profile, "-e",
                           _events(), "-p", str(pid)])
        # each thread's user and system ticks and its context switches, before and after the window
        snap = f"cat /proc/{pid}/task/*/stat > {shlex.quote(profile)}.{{0}}; " \
               f"grep -H ctxt_switches /proc/{pid}/task/*/status > {shlex.quote(profile)}.switches.{{0}}"
        return ["sh", "-c", f"echo {pid} > {shlex.quote(profile)}.pid; {snap.format('before')}; {stat}; "
                            f"{snap.format('after')}"]
    return ["perf", "record", "-q", "-e", "cpu-clock", "-F", "4999", "-g", "-o", profile, "-p", str(pid), "--",
            "sleep", str(seconds)]


def read_counts(path: str) -> dict[str, int]:
    """Each counted call's total over the window (``perf stat -x ,``), plus ``all`` and ``other``."""
    counts: dict[str, int] = {}
    total = 0
    for line in Path(path).read_text().splitlines():
        fields = line.split(",")
        if len(fields) < 3 or not fields[0].isdigit():
            continue
        value, event = int(fields[0]), fields[2]
        if event == "raw_syscalls:sys_enter":
            total = value
        elif event in _SOFTWARE:
            counts[f"({event})"] = value
        elif value:
            counts[event.removeprefix("syscalls:sys_enter_")] = value
    counts["other"] = max(0, total - sum(v for k, v in counts.items() if not k.startswith("(")))
    counts["all"] = total
    return counts


def read_cpu(path: str) -> dict[str, float]:
    """Seconds of user and system CPU over the window (``/proc``'s ticks of each thread, read at its start and end
    next to the ``*.syscalls`` counts), and the context switches (voluntary: the thread waited; involuntary: it was
    preempted): the event loop's thread, and every other thread (the commit thread) together. A thread started inside
    the window counts from zero."""
    ticks = os.sysconf("SC_CLK_TCK")
    pid = int(Path(f"{path}.pid").read_text())

    def threads(which: str) -> dict[int, tuple[int, int]]:
        found: dict[int, tuple[int, int]] = {}
        for line in Path(f"{path}.{which}").read_text().splitlines():
            tid, _, rest = line.partition(" (")
            fields = rest.rpartition(") ")[2].split()
            found[int(tid)] = (int(fields[11]), int(fields[12]))
        return found

    def switches(which: str) -> dict[tuple[int, str], int]:
        found: dict[tuple[int, str], int] = {}
        for line in Path(f"{path}.switches.{which}").read_text().splitlines():  # .../task/TID/status:name:\tN
            where, _, count = line.rpartition(":")
            name = where.rpartition(":")[2]
            found[(int(where.split("/task/")[1].split("/")[0]), name)] = int(count)
        return found

    before, after = threads("before"), threads("after")
    cpu = {"(user s, loop)": 0.0, "(system s, loop)": 0.0, "(user s, threads)": 0.0, "(system s, threads)": 0.0}
    for tid, (utime, stime) in after.items():
        was = before.get(tid, (0, 0))
        where = "loop" if tid == pid else "threads"
        cpu[f"(user s, {where})"] += (utime - was[0]) / ticks
        cpu[f"(system s, {where})"] += (stime - was[1]) / ticks
    switched_before = switches("before")
    for (tid, name), count in switches("after").items():
        kind = "voluntary" if name == "voluntary_ctxt_switches" else "involuntary"
        key = f"(switches, {kind}, {'loop' if tid == pid else 'threads'})"
        cpu[key] = cpu.get(key, 0) + count - switched_before.get((tid, name), 0)
    return cpu


_USER_NAMES = {"send": "sendto", "recv": "recvfrom", "pwrite": "pwrite64", "pread": "pread64", "fcntl64": "fcntl",
               "sem_post": "futex", "lll_lock_wait": "futex", "futex_abstimed_wait_common": "futex",
               "vdso_clock_gettime": "clock_gettime"}
_KERNEL_PREFIXES = ("__x64_sys_", "__do_sys_", "__se_sys_", "ksys_")


def _symbol(frame: str) -> str:
    """The symbol of one ``perf script`` callchain line (``addr symbol+offset (dso)``), without the offset."""
    parts = frame.split()
    return parts[1].split("+")[0] if len(parts) > 1 else ""


def _user_name(symbol: str) -> str:
    """A libc wrapper's symbol as the system call's name (``__GI___libc_write`` -> ``write``)."""
    name = symbol.split("@")[0].removesuffix("_nocancel_adjusted")
    for prefix in ("__GI___libc_", "__libc_", "__GI___", "__GI_", "__"):
        name = name.removeprefix(prefix)
    return _USER_NAMES.get(name, name)


def _kernel_bucket(stack: list[str]) -> str:
    """A kernel sample's bucket (stack leaf first): the system call it entered through (the libc wrapper that made
    it, or the kernel's ``__x64_sys_NAME``/``ksys_NAME`` frame when the wrapper has no symbol), else a page fault, an
    interrupt or softirq, or the rest."""
    symbols = [_symbol(frame) for frame in stack]
    if "entry_SYSCALL_64_after_hwframe" in symbols:
        at = symbols.index("entry_SYSCALL_64_after_hwframe")
        user = symbols[at + 1] if at + 1 < len(symbols) else ""
        if user and user != "[unknown]" and not user.startswith("0x"):
            return _user_name(user)
        for symbol in reversed(symbols[:at]):
            for prefix in _KERNEL_PREFIXES:
                if symbol.startswith(prefix):
                    return symbol.removeprefix(prefix)
        return "(a system call, unnamed)"
    if any("page_fault" in symbol for symbol in symbols):
        return "(page faults)"
    if any(symbol.startswith(("asm_sysvec", "asm_common_interrupt", "handle_softirqs", "irq_exit"))
           for symbol in symbols):
        return "(interrupts, softirq)"
    return "(kernel, other)"


def kernel_time(path: str) -> dict[str, float]:
    """Seconds of CPU per bucket over the recording (``perf script``: each sample weighs its period in ns): user
    space as ``(user)``, kernel samples by ``_kernel_bucket``; a sample of another thread than the event loop's (the
    event log's commit thread) is put under ``thread: `` + its bucket."""
    script = subprocess.run(["perf", "script", "-i", path, "-F", "pid,tid,period,ip,sym,dso"], capture_output=True,
                            text=True, check=True).stdout
    seconds: dict[str, float] = {}
    for sample in script.split("\n\n"):
        lines = [line.strip() for line in sample.strip().splitlines() if line.strip()]
        head = lines[0].split() if lines else []
        if len(head) < 2 or not head[1].isdigit():
            continue
        pid, _, tid = head[0].partition("/")
        period = int(head[1]) / 1e9
        stack = lines[1:] or [" ".join(head[2:])]
        kernel = "kernel.kallsyms" in stack[0]
        bucket = _kernel_bucket(stack) if kernel else "(user)"
        key = bucket if tid == pid else "thread: " + bucket
        seconds[key] = seconds.get(key, 0.0) + period
    return seconds


def _one_run(calls: int, users: int, join_duration: float, hold: float, kind: str, server_tree: str,
             scratch: str) -> dict[str, Any]:
    from bench.memory import run_server

    os.environ["CALLSD_HTTP_SIGNALING_SOCKET"] = "direct"
    profile = os.path.join(scratch, f"window-{len(os.listdir(scratch))}.{kind}")
    result = run_server(calls, users, 0, join_duration, hold, ("--audio-slots", "8", "--batch"), profile=profile,
                        server_tree=server_tree)
    joined = result["joined"] or 1
    run: dict[str, Any] = {"joined": result["joined"], "failed": result["failed"],
                           "cpu_ms_to_held_per_join": result["cpu_ms_to_held_per_join"]}
    if kind == "syscalls":
        run["per_join"] = {name: round(n / joined, 2) for name, n in sorted(read_counts(profile).items(),
                                                                            key=lambda kv: -kv[1])}
        cpu_per_join: dict[str, float] = {}
        for name, value in read_cpu(profile).items():  # seconds as ms; switches stay counts
            unit = 1 if name.startswith("(switches") else 1000
            cpu_per_join[name.replace(" s,", " ms,")] = round(value * unit / joined, 3)
        run["cpu_ms_per_join"] = cpu_per_join
    else:
        run["ms_per_join"] = {name: round(s * 1000 / joined, 3) for name, s in sorted(kernel_time(profile).items(),
                                                                                      key=lambda kv: -kv[1])}
    return run


def wal_layout_ab(rounds: int, commits: int = 320) -> dict[str, dict[str, float]]:
    """In this process, one thread: ``commits`` records appended to a fresh SQLite log, without and with
    ``prepare_appends`` first, alternated ``rounds`` times (in a temp dir next to the benches' servers': the same
    disk). Medians of CPU and wall time per commit, voluntary switches per commit (the waits: the disk's writes),
    and the layout's own time."""
    import resource
    import time

    from callsd.adapters.store import CallRecorder, SqliteStore
    from callsd.core import JoinCall

    def one(prepare: bool) -> dict[str, float]:
        with tempfile.TemporaryDirectory(prefix="callsd-wal-layout-") as scratch:
            store = SqliteStore(Path(scratch) / "log.db")
            start = time.perf_counter()
            if prepare:
                store.prepare_appends()
            laid_out = time.perf_counter() - start
            recorder = CallRecorder(store)
            before, cpu, wall = resource.getrusage(resource.RUSAGE_THREAD), time.thread_time(), time.perf_counter()
            for i in range(commits):
                recorder.handle(JoinCall(at=i, channel_id=f"ch{i % 20}", session_id=f"s{i:06d}", user_id=f"u{i}",
                                         call_id="k"))
            after = resource.getrusage(resource.RUSAGE_THREAD)
            store.close()
            return {"cpu_us_per_commit": (time.thread_time() - cpu) / commits * 1e6,
                    "wall_us_per_commit": (time.perf_counter() - wall) / commits * 1e6,
                    "switches_per_commit": (after.ru_nvcsw - before.ru_nvcsw) / commits, "layout_ms": laid_out * 1e3}

    runs: dict[str, list[dict[str, float]]] = {"fresh WAL": [], "WAL laid out": []}
    for _ in range(rounds):
        runs["fresh WAL"].append(one(False))
        runs["WAL laid out"].append(one(True))
    return {name: {key: round(statistics.median(r[key] for r in rs), 1) for key in rs[0]}
            for name, rs in runs.items()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.join_syscalls", description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=1, help="runs per tree, alternated")
    p.add_argument("--calls", type=int, default=20)
    p.add_argument("--users", type=int, default=8)
    p.add_argument("--join-duration", type=float, default=8.0)
    p.add_argument("--hold", type=float, default=8.0)
    p.add_argument("--base-tree", default="", metavar="DIR", help="also run DIR's server, alternated with this one")
    p.add_argument("--kernel-time", action="store_true", help="sample the server's kernel time instead of counting")
    p.add_argument("--output", default="", help="write every run to this JSON file")
    p.add_argument("--wal-layout", type=int, default=0, metavar="ROUNDS",
                   help="only the in-process A/B of SQLite commits on a fresh WAL and on one laid out first")
    a = p.parse_args(argv)
    if a.wal_layout:
        print(json.dumps(wal_layout_ab(a.wal_layout), indent=1))
        return 0
    from bench.joins import _package_shim

    trees = {"base tree": _package_shim(a.base_tree)} if a.base_tree else {}
    trees["this tree"] = ""
    kind = "kperf" if a.kernel_time else "syscalls"
    keys = ("ms_per_join",) if a.kernel_time else ("cpu_ms_per_join", "per_join")
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="callsd-join-syscalls-") as scratch:
        for n in range(a.rounds):
            for tree, shim in trees.items():
                run = {"tree": tree, "round": n, **_one_run(a.calls, a.users, a.join_duration, a.hold, kind, shim,
                                                            scratch), "loadavg": list(os.getloadavg())}
                runs.append(run)
                print(json.dumps(run), flush=True)
    median: dict[str, dict[str, dict[str, float]]] = {}
    for key in keys:
        names = sorted({name for run in runs for name in run[key]},
                       key=lambda name: -max(run[key].get(name, 0) for run in runs))
        median[key] = {tree: {name: round(statistics.median(run[key].get(name, 0) for run in runs
                                                            if run["tree"] == tree), 3) for name in names}
                       for tree in trees}
        print(f"{key:<28}" + "".join(f"{tree:>12}" for tree in trees))
        for name in names:
            print(f"{name:<28}" + "".join(f"{median[key][tree][name]:>12}" for tree in trees))
    if a.output:
        Path(a.output).write_text(json.dumps({"runs": runs, "median": median}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
