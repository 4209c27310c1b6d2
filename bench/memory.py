"""Memory per session: where the bytes of one call participant go, and what the whole server holds per session.

    .venv/bin/python -m bench.memory parts [--sessions 300]        # in-process: DTLS, SRTP, per part (~10 s)
    .venv/bin/python -m bench.memory server [--calls 10 --users 8]  # `callsd serve` + `callsd loadtest` (~40 s)

Why two parts: the load tool's RSS per session (`server.rss_bytes_per_session`) says how much a session costs but
not where it goes, and tracemalloc sees only Python objects (~23 KiB of the ~220 KiB, docs/performance.md). The
`parts` mode builds N of one component at a time in this process and reads the C allocator's bytes in use
(glibc ``mallinfo2``: arena + mmapped bytes handed out, independent of fragmentation and of what RSS has not given
back) and RSS, before and after, so each native part gets its own figure:

- ``dtls``: N server-side `DtlsSession` objects after a full handshake with N in-process clients (each client is
  freed right after its handshake, so the malloc figure counts the servers only; RSS may keep some of the clients'
  pages, which is why both are printed).
- ``srtp``: N `SrtpContext` objects (inbound + outbound libsrtp sessions with their scratch buffers);
  ``srtp_native``: the same for the native path's `NativeSrtpContext` (``rtc.fast_path`` native or auto).

The `server` mode starts a fresh `callsd serve` (as `bench.capacity` does), joins ``calls × users`` load-tool users,
holds them, and prints RSS per session, join CPU per user and offer/answer rounds per join from the load tool's
results and the hub's counters: every round has exactly one ``sdp`` message from the client (its offer, or its
answer to a re-offer), so rounds per join = ``callsd_websocket_events_total{direction="in",type="sdp"}`` ÷ joins.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import json
import os
import subprocess
import sys
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["malloc_in_use", "rss_bytes", "main"]


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]


_libc = ctypes.CDLL(None)


def malloc_in_use() -> int:
    """Bytes the C allocator has handed out and not had back (small + mmapped chunks), from glibc's mallinfo2."""
    _libc.mallinfo2.restype = _MallInfo2
    info = _libc.mallinfo2()
    return int(info.uordblks + info.hblkhd)


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _settle() -> None:
    gc.collect()
    _libc.malloc_trim(0)


def _measure(n: int, build: Callable[[int], list[Any]]) -> dict[str, float]:
    """Build ``n`` objects with ``build`` (which may allocate and free scratch), keep them, report bytes per object."""
    build(2)  # warm imports, caches, the allocator's first arenas
    _settle()
    m0, r0 = malloc_in_use(), rss_bytes()
    kept = build(n)
    _settle()
    m1, r1 = malloc_in_use(), rss_bytes()
    per = {"malloc_kib_per_session": round((m1 - m0) / n / 1024, 2), "rss_kib_per_session": round((r1 - r0) / n / 1024, 2)}
    del kept
    _settle()
    import tracemalloc  # a second build, traced: Python objects (pymalloc's arenas are not malloc's)

    tracemalloc.start()
    kept = build(n)
    gc.collect()
    per["python_kib_per_session"] = round(tracemalloc.get_traced_memory()[0] / n / 1024, 2)
    tracemalloc.stop()
    del kept
    return per


def _handshaken_servers(n: int) -> list[Any]:
    from callsd.adapters.media.dtls import Certificate, DtlsSession

    server_cert, client_cert = Certificate.generate(), Certificate.generate()
    sctx, cctx = server_cert.context(), client_cert.context()
    servers = []
    for _ in range(n):
        server = DtlsSession(sctx, server=True, remote_fingerprint=client_cert.fingerprint)
        client = DtlsSession(cctx, server=False, remote_fingerprint=server_cert.fingerprint)
        client.start()
        for _ in range(10):
            for d in client.take_datagrams():
                server.feed(d)
            for d in server.take_datagrams():
                client.feed(d)
            if server.done and client.done:
                break
        assert server.done and client.done, "handshake did not complete"
        servers.append(server)
        del client
    return servers


def _srtp_contexts(n: int) -> list[Any]:
    from callsd.adapters.media.dtls import SrtpKeys
    from callsd.adapters.media.srtp import SrtpContext

    keys = SrtpKeys(profile=b"SRTP_AEAD_AES_128_GCM", local_key=bytes(range(28)), remote_key=bytes(range(1, 29)))
    return [SrtpContext(keys) for _ in range(n)]


def _native_srtp_contexts(n: int) -> list[Any]:
    from callsd.adapters.media.dtls import SrtpKeys
    from callsd.adapters.media.native.path import NativeSrtpContext

    keys = SrtpKeys(profile=b"SRTP_AEAD_AES_128_GCM", local_key=bytes(range(28)), remote_key=bytes(range(1, 29)))
    return [NativeSrtpContext(keys) for _ in range(n)]


def _plane_sessions(n: int, slots: int) -> list[Any]:
    """A media plane (no sockets) holding ``n`` sessions in calls of 8: each joins with the load tool's offer, is
    routed every other's audio, and answers every server offer with the load tool's answer. What one session costs
    the plane: its ``Session``, negotiator, tracks and routes (DTLS and SRTP are the parts above)."""
    from callsd.adapters.media.events import SendSignal
    from callsd.adapters.media.plane import MediaPlane, PlaneConfig
    from callsd.app.loadtest.sdp import LocalTrack, build_answer, build_offer, parse_sdp
    from callsd.core.calls.events import TrackKind
    from callsd.core.calls.outputs import RouteAdded

    offers: dict[str, str] = {}

    def emit(e: object) -> None:
        if isinstance(e, SendSignal) and e.msg.get("type") == "offer":
            offers[e.session_id] = e.msg["sdp"]

    plane = MediaPlane(PlaneConfig(ice_port_udp=40000), emit)
    fp = "sha-256 " + ":".join(["AB"] * 32)
    tracks: dict[str, list[LocalTrack]] = {}
    members: list[str] = []
    for i in range(n):
        sid = f"s{i:05d}"
        if i % 8 == 0:
            members = []
        plane.open_session(sid, f"c{i // 8}")
        tracks[sid] = [LocalTrack(kind="audio", ssrc=1000 + i, stream_id=sid, track_id=f"{sid}-a")]
        offer = build_offer(session_id=i + 1, tracks=tracks[sid], ufrag=f"u{i:06d}", pwd="p" * 22, fingerprint=fp,
                            cname=sid, candidate=("127.0.0.1", 9))
        msg: dict[str, Any] = {"type": "offer", "sdp": offer}
        if slots:
            msg["audio_slots"] = slots
        plane.handle_signal(sid, msg)
        plane.apply([RouteAdded(channel_id="c", track_id=f"{o}_0", kind=TrackKind.AUDIO, publisher_id=o,
                                receiver_id=sid, paused=False) for o in members]
                    + [RouteAdded(channel_id="c", track_id=f"{sid}_0", kind=TrackKind.AUDIO, publisher_id=sid,
                                  receiver_id=o, paused=False) for o in members])
        members.append(sid)
        while offers:
            for who, text in list(offers.items()):
                del offers[who]
                answer = build_answer(parse_sdp(text), session_id=1, version=3, tracks=tracks[who], ufrag="x" * 8,
                                      pwd="p" * 22, fingerprint=fp, cname=who)
                plane.handle_signal(who, {"type": "answer", "sdp": answer})
    return [plane]


PARTS: dict[str, Callable[[int], list[Any]]] = {"dtls": _handshaken_servers, "srtp": _srtp_contexts,
                                                "srtp_native": _native_srtp_contexts,
                                                "plane_sections": lambda n: _plane_sessions(n, 0),
                                                "plane_slots": lambda n: _plane_sessions(n, 8)}


def run_parts(sessions: int) -> dict[str, Any]:
    """Each part measured in its own child process, so one part's allocator state does not colour the next."""
    out: dict[str, Any] = {"sessions": sessions}
    for name in PARTS:
        res = subprocess.run([sys.executable, "-m", "bench.memory", "_part", name, str(sessions)],
                             capture_output=True, text=True, check=True, timeout=600)
        out[name] = json.loads(res.stdout)
    return out


def rss_by_mapping() -> dict[str, int]:
    """RSS split by kind of mapping (from /proc/self/smaps): the brk heap (main malloc arena), anonymous mappings
    (pymalloc arenas, other threads' malloc arenas, large malloc chunks), and files (code, shared libraries)."""
    out = {"heap": 0, "anon": 0, "file": 0}
    kind = "anon"
    with open("/proc/self/smaps") as f:
        for line in f:
            head = line.split()
            if not head:
                continue
            if "-" in head[0] and len(head) >= 5 and not head[0].endswith(":"):
                name = head[5] if len(head) > 5 else ""
                kind = "heap" if name == "[heap]" else "file" if name.startswith("/") else "anon"
            elif head[0] == "Rss:":
                out[kind] += int(head[1]) * 1024
    return out


def _serve_with_probe(probe: str) -> int:
    """`callsd serve` in this process, writing its allocator figures to ``probe`` on SIGUSR1: RSS alone cannot say
    whether the growth per session is live C memory, Python objects, or allocator slack."""
    import signal
    import tracemalloc

    from callsd.app.cli import main as cli_main

    counts: dict[str, int] = {}
    if os.environ.get("BENCH_JOIN_COUNTS"):  # bench.joins --counts: how often each join mechanism ran
        from bench.join_counts import install
        counts = install()

    def dump(*_: object) -> None:
        gc.collect()
        if tracemalloc.is_tracing():  # PROBE.N.snap: load with tracemalloc.Snapshot.load to see where the bytes are
            n = Path(probe).read_text().count("\n") if os.path.exists(probe) else 0
            tracemalloc.take_snapshot().dump(f"{probe}.{n}.snap")
        rss = rss_bytes()
        maps = rss_by_mapping()
        _libc.malloc_trim(0)  # what the allocator could give back: the slack part of ``rss``
        with open(probe, "a") as f:
            f.write(json.dumps({"malloc_in_use": malloc_in_use(), "rss": rss, "rss_trimmed": rss_bytes(),
                                **{f"rss_{k}": v for k, v in maps.items()},
                                "py_blocks": sys.getallocatedblocks(),
                                "py_traced": tracemalloc.get_traced_memory()[0] if tracemalloc.is_tracing() else 0,
                                **{f"count_{k}": v for k, v in counts.items()}})
                    + "\n")
        if os.environ.get("BENCH_MEMORY_TRACEMALLOC") and not tracemalloc.is_tracing():
            # from the first probe on (tracing the start-up too makes it slower than the bench waits for)
            tracemalloc.start(int(os.environ["BENCH_MEMORY_TRACEMALLOC"]))

    signal.signal(signal.SIGUSR1, dump)
    return int(cli_main(["serve"]) or 0)


def _probe(pid: int, probe: Path) -> dict[str, Any]:
    import signal
    import time

    before = probe.read_text().count("\n") if probe.exists() else 0
    os.kill(pid, signal.SIGUSR1)
    for _ in range(200):
        if probe.exists() and probe.read_text().count("\n") > before:
            return dict(json.loads(probe.read_text().splitlines()[-1]))
        time.sleep(0.05)
    raise RuntimeError("the server did not answer the memory probe")


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` (all its threads), from /proc."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_server(calls: int, users: int, unmuted: int, join_duration: float, hold: float,
               loadtest_args: tuple[str, ...] = (), profile: str = "", profile_gil: bool = True,
               profile_native: bool = False, server_tree: str = "", tool_tree: str = "") -> dict[str, Any]:
    """A fresh server, ``calls × users`` load users joined and held; the load tool's figures plus offer rounds.
    ``loadtest_args`` go to `callsd loadtest` as they are (the server is pinned as `bench.capacity` pins it).
    ``profile``: a file for py-spy's raw stacks of the server over the join window; ``profile_gil``: only the thread
    holding the GIL (Python work), else every thread that is not idle (C called without the GIL, e.g. OpenSSL's
    handshake and SQLite in the commit thread, is then charged to the Python frame that called it);
    A ``profile`` file named ``*.perf`` gets ``perf record`` instead of py-spy; ``*.syscalls`` and ``*.kperf`` get
    bench.join_syscalls' counters (``perf stat`` of each system call) or its kernel-time sampler.
    ``profile_native``: py-spy's ``--native`` (C frames too: which OpenSSL, SQLite or libc call the time was in).
    ``server_tree``: a directory put first on the server's PYTHONPATH only (bench.joins' base tree): the load tool
    stays this checkout's, whose C engine matches its Python (a base tree's load tool would load this checkout's
    built extension, which the editable install maps by name, against its own older Python).
    ``tool_tree``: the same for the load tool (bench.joins ``--tool-tree base``); that tree must have its own
    ``peer/_fastpeer*.so`` built in place (a missing one is an error, never this checkout's)."""
    from bench.capacity import Server, _pin
    from bench.scratch import scratch_dir

    root = str(Path(__file__).resolve().parent.parent)  # the server child runs in a temp dir: find bench/ from there
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))
    server_env = {"PYTHONPATH": os.pathsep.join([server_tree, os.environ["PYTHONPATH"]])} if server_tree else None
    tool_env = dict(os.environ, PYTHONPATH=os.pathsep.join([tool_tree, os.environ["PYTHONPATH"]])) if tool_tree else None
    if tool_tree and not any((Path(tool_tree) / "callsd" / "peer").glob("_fastpeer*.so")):
        raise SystemExit(f"{tool_tree}/callsd/peer has no built _fastpeer: build it in that tree "
                         "(python setup.py build_ext --inplace) before running its load tool")
    with scratch_dir("callsd-memory-") as scratch:  # the server's data and log, kept only if the run fails
        work = scratch.path
        out, probe = work / "loadtest.json", work / "probe.jsonl"
        with Server(work, command=["-m", "bench.memory", "_serve", str(probe)], env=server_env) as server:
            assert server.proc is not None
            start = _probe(server.proc.pid, probe)
            cpu0 = _cpu_seconds(server.proc.pid)
            # the tool on the other CPU: a tool sharing the server's CPU would run inside the server's sendto/send (the
            # wake-up preempts the sender), and a wall-clock profiler would charge its time to those syscalls
            cmd = [*_pin(1), sys.executable, "-m", "callsd.app.cli", "loadtest", "--url", server.url, "--calls", str(calls),
                   "--users-per-call", str(users), "--unmuted", str(unmuted), "--join-duration", f"{join_duration}",
                   "--duration", f"{join_duration + hold}", "--server-pid", str(server.proc.pid), "--output", str(out),
                   "--quiet", *loadtest_args]
            spy_cmd = [os.path.join(os.path.dirname(sys.executable), "py-spy"), "record", *(["--gil"] if profile_gil else []),
                       *(["--native"] if profile_native else []),
                       "-r", "400", "--format", "raw", "-o", profile, "-d", str(int(join_duration) + 2), "--pid",
                       str(server.proc.pid)]
            if profile.endswith(".perf"):  # perf instead: CPU time only (py-spy samples wall time), C and kernel symbols
                spy_cmd = ["perf", "record", "-F", "999", "-g", "-o", profile, "-p", str(server.proc.pid), "--", "sleep",
                           str(int(join_duration) + 2)]
            if profile.endswith((".syscalls", ".kperf")):  # bench.join_syscalls: system calls counted, or kernel time
                from bench.join_syscalls import window_command
                spy_cmd = window_command(profile, server.proc.pid, int(join_duration) + 2)
            spy = subprocess.Popen(spy_cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) if profile else None
            tool = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=tool_env)
            with contextlib.suppress(subprocess.TimeoutExpired):
                tool.wait(timeout=join_duration + hold / 2)
            # the CPU clock before the probe: the probe's full collection, malloc_trim and /proc reads (~20-30 ms at
            # 160 sessions, ~0.15 ms per join) are the bench's work, not the server's
            cpu_held = _cpu_seconds(server.proc.pid)
            held = _probe(server.proc.pid, probe)  # every user joined, none left yet
            probe_cpu = _cpu_seconds(server.proc.pid) - cpu_held
            tool.wait(timeout=join_duration + hold + 120)
            if spy is not None:
                spy.wait(timeout=60)
            cpu_end = _cpu_seconds(server.proc.pid) - probe_cpu
            end = _probe(server.proc.pid, probe)  # the users have left: what stays is what a session did not give back
            with urllib.request.urlopen(server.url + "/metrics", timeout=60) as resp:
                metrics = resp.read().decode()
        doc = json.loads(out.read_text())
        if doc["users"].get("failed"):
            scratch.keep(f"{doc['users']['failed']} users failed: the load tool's results and the server's log")
    rounds = sum(float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
                 if line.startswith("callsd_websocket_events_total{") and 'direction="in"' in line
                 and 'type="sdp"' in line)
    s, u = doc["server"], doc["users"]
    joined = u.get("joined") or 0
    frames_out = sum(float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
                     if line.startswith("callsd_websocket_frames_sent_total "))
    events_out = sum(float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
                     if line.startswith("callsd_websocket_events_total{") and 'direction="out"' in line)
    return {
        "calls": calls, "users_per_call": users, "unmuted": unmuted, "joined": joined, "failed": u.get("failed"),
        "rss_kib_per_session": round(s.get("rss_bytes_per_session", 0) / 1024, 1),
        "join_cpu_ms_per_user": s.get("join_cpu_ms_per_user"),
        # the server's whole CPU time from before the first join until all were held (joins, media, timers) ÷ joins
        "cpu_ms_to_held_per_join": round((cpu_held - cpu0) * 1000 / joined, 2) if joined else None,
        # the server's whole CPU time over the run (joins, the hold, leaves) ÷ joins: with nobody talking, what a
        # user's join and leave cost, whatever the host's load does to the timing of the windows above
        "cpu_ms_whole_run_per_join": round((cpu_end - cpu0) * 1000 / joined, 2) if joined else None,
        "sdp_rounds_per_join": round(rounds / joined, 2) if joined else None,
        # server -> client WebSocket events and frames per user, over the whole run (join, hold, leave)
        "events_out_per_join": round(events_out / joined, 2) if joined else None,
        "frames_out_per_join": round(frames_out / joined, 2) if joined else None,
        "held_kib_per_session": {k: round((held[k] - start[k]) / joined / 1024, 1) for k in ("rss", "rss_trimmed", "malloc_in_use",
                                                                                "rss_heap", "rss_anon", "rss_file")}
        if joined else None,
        "py_blocks_per_session": round((held["py_blocks"] - start["py_blocks"]) / joined) if joined else None,
        "py_traced_kib_per_session": round((held["py_traced"] - start["py_traced"]) / joined / 1024, 1)
        if joined and held["py_traced"] else None,
        "after_leave_kib_per_session": {k: round((end[k] - start[k]) / joined / 1024, 1) for k in ("rss", "rss_trimmed", "malloc_in_use")}
        if joined else None,
        # bench.joins --counts: each mechanism's runs from before the first join until all were held, per join
        "counts_to_held_per_join": {k.removeprefix("count_"): round((held[k] - start.get(k, 0)) / joined, 2)
                                    for k in sorted(held) if k.startswith("count_")} if joined else None,
        "counts_whole_run_per_join": {k.removeprefix("count_"): round((end[k] - start.get(k, 0)) / joined, 2)
                                      for k in sorted(end) if k.startswith("count_")} if joined else None,
        "p95_join_to_first_audio_ms": doc.get("join_to_first_audio_ms", {}).get("p95"),
        "loadavg": doc.get("host", {}).get("loadavg_end"), "results": str(out) if scratch.kept else None,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.memory", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="mode", required=True)
    pp = sub.add_parser("parts", help="native parts per session, in-process")
    pp.add_argument("--sessions", type=int, default=300)
    ps = sub.add_parser("server", help="RSS per session of a real server under the load tool")
    ps.add_argument("--calls", type=int, default=10)
    ps.add_argument("--users", type=int, default=8)
    ps.add_argument("--unmuted", type=int, default=2)
    ps.add_argument("--join-duration", type=float, default=5.0)
    ps.add_argument("--hold", type=float, default=10.0)
    ps.add_argument("--audio-slots", type=int, default=8,
                    help="the load users ask for N audio slots (ADR 0020; default: the web client's 8; 0: none)")
    ps.add_argument("--tracemalloc", type=int, default=0, metavar="FRAMES",
                    help="trace Python allocations in the server (slower joins): splits malloc into Python and C")
    serve = sub.add_parser("_serve")
    serve.add_argument("probe")
    child = sub.add_parser("_part")
    child.add_argument("name", choices=sorted(PARTS))
    child.add_argument("n", type=int)
    a = p.parse_args(argv)
    if a.mode == "_serve":
        return _serve_with_probe(a.probe)
    if a.mode == "_part":
        print(json.dumps(_measure(a.n, PARTS[a.name])))
        return 0
    if a.mode == "parts":
        result = run_parts(a.sessions)
    else:
        if a.tracemalloc:
            os.environ["BENCH_MEMORY_TRACEMALLOC"] = str(a.tracemalloc)
        result = run_server(a.calls, a.users, a.unmuted, a.join_duration, a.hold,
                            ("--audio-slots", str(a.audio_slots)))
    result["loadavg_now"] = list(os.getloadavg())
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
