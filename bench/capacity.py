"""Capacity benchmark: what one server core holds, measured with `callsd loadtest` on this machine.

    .venv/bin/python -m bench.capacity                 # the table + the search, about 8-10 minutes
    .venv/bin/python -m bench.capacity --quick         # shorter runs, smaller search (a smoke run, ~3 minutes)

Method (also written up in docs/performance.md):
- Each measurement starts a fresh `callsd serve` (fresh data directory, free ports, logging at warning) pinned to
  CPU 0 with `taskset -c 0`, and the load tool pinned to CPU 1 (`taskset -c 1`) when the machine has two CPUs.
- Users join at 50 per second (the issue's join-latency condition), then the load holds for `--steady` seconds.
- Server CPU is the server process's user+system time from /proc/<pid>/stat over the steady window (after the last
  join + 1 s); egress packets/s is `callsd_rtc_rtp_packets_total{direction="out",type="rtp"}` over the same window;
  µs per egress packet = steady CPU seconds / steady egress packets (all-in: ICE consent, RTCP, DTLS, metrics and
  signaling all count). Loss is RFC 3550 loss over every received stream; p95 join-to-first-audio from the tool.
- The table rows are the published rtcd capacity shapes scaled from 4 or 8 vCPUs to one core (calls ÷ vCPUs).
- The search finds the largest number of "8 users, 2 unmuted, no screen share" calls with < 0.5 % loss and every
  user connected: it grows the call count by x1.3 until a run fails, then bisects, within a time budget.
- A run is flagged `client-bound` when the load tool itself used > 85 % of its core: its figures then say more
  about the tool than the server.
- ``--topology two-hosts`` runs the server and the tool in two network namespaces joined by a veth pair whose ends
  receive as two hosts' network cards would (bench/capacity_topology.py, ADR 0049): on loopback the server's CPU
  also pays the tool's receive path. Each row then also records the server end's receive thread and both
  namespaces' UDP counters (``kernel``).
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
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.capacity_topology import LOOPBACK, TOPOLOGIES, KernelWatch, Topology, make_topology

ROOT = Path(__file__).resolve().parent.parent
JOIN_RATE = 50.0  # users per second
# Seconds a `callsd serve` may take to answer /healthz: on a quiet host ~1 s, but pinned to one CPU at nice 0
# while other engineers' suites run it took over 15 s (the old bound) and the whole sweep died.
READY_TIMEOUT = 120.0
LOG_TAIL = 3000  # characters of the server's log quoted when it fails to start


@dataclass(frozen=True)
class Shape:
    label: str
    calls: int
    users: int
    unmuted: int
    sharing: int


# The published rows (calls, users/call, unmuted/call, screen sharing, vCPUs), scaled to one core.
PUBLISHED = [
    ("100 x 4 x 1, 100 sharing (4 vCPU)", 100, 4, 1, 100, 4),
    ("200 x 8 x 2, 25 sharing (4 vCPU)", 200, 8, 2, 25, 4),
    ("200 x 8 x 2, no sharing (4 vCPU)", 200, 8, 2, 0, 4),
    ("50 x 20 x 2, 50 sharing (8 vCPU)", 50, 20, 2, 50, 8),
    ("100 x 8 x 4, 100 sharing (8 vCPU)", 100, 8, 4, 100, 8),
]


def scaled_shapes(factor: float) -> list[Shape]:
    out = []
    for label, calls, users, unmuted, sharing, vcpus in PUBLISHED:
        c = max(1, round(calls / vcpus * factor))
        s = min(c, round(sharing / vcpus * factor))
        out.append(Shape(label, c, users, unmuted, s))
    return out


def _free_port(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


PIN = True
NICE = 0  # scheduling priority of the server and the tool (negative: ahead of a shared machine's other work)


def set_nice(nice: int) -> None:
    """Run the servers and tools this process starts at ``nice``, and give this process's autogroup that nice too.

    With the scheduler's autogroups (one per session), nice only orders tasks within a session's group; the group's
    own nice is what weighs against the rest of a shared machine. The bench first leaves its caller's session
    (``setsid``): writing ``/proc/self/autogroup`` in place would renice the whole login session that started it."""
    global NICE
    NICE = nice
    if not nice:
        return
    try:
        os.setsid()
        Path("/proc/self/autogroup").write_text(str(nice))
    except OSError as exc:  # EPERM from setsid: started as a process group leader (a shell job); run it as `cmd | cat`
        print(f"autogroup nice not set ({exc}): the runs compete with other sessions as equals", flush=True)


def _pin(cpu: int) -> list[str]:
    nice = ["nice", "-n", str(NICE)] if NICE else []
    if PIN and shutil.which("taskset") and (os.cpu_count() or 1) >= 2:
        return [*nice, "taskset", "-c", str(cpu)]
    return nice


class ServerNotReady(RuntimeError):
    """A bench's `callsd serve` exited or did not answer in time; the message carries its log's tail."""


def _tail(log: Path) -> str:
    try:
        return log.read_text(errors="replace")[-LOG_TAIL:] or "(empty)"
    except OSError as exc:
        return f"(unreadable: {exc})"


class Server:
    """A `callsd serve` subprocess on free ports with its own data directory."""

    def __init__(self, workdir: Path, command: list[str] | None = None, fast_path: str = "",
                 env: dict[str, str] | None = None, ready_timeout: float = READY_TIMEOUT,
                 topology: Topology = LOOPBACK) -> None:
        self.workdir = workdir
        self.topology = topology  # where it runs: its address, namespace and auth
        self.ready_timeout = ready_timeout
        self.command = command or ["-m", "callsd.app.cli", "serve"]  # after the interpreter
        self.fast_path = fast_path  # rtc.fast_path for this server ("": the environment's or the default)
        self.env = env or {}  # more CALLSD_* settings for this server (bench/server_ab.py's variants)
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""

    def __enter__(self) -> Server:
        data = Path(tempfile.mkdtemp(prefix="callsd-bench-", dir=self.workdir))
        http_port = _free_port(socket.SOCK_STREAM)
        env = dict(os.environ, CALLSD_HTTP_PORT=str(http_port), CALLSD_RTC_ICE_PORT_UDP="0",
                   CALLSD_RTC_ICE_PORT_TCP="0", CALLSD_STORE_DATA_DIR=str(data / "data"), CALLSD_LOG_LEVEL="warning",
                   **self.topology.server_env(),
                   # every load user connects from 127.0.0.1 and a loaded server acks joins slowly: lift the caps
                   CALLSD_HTTP_MAX_CONNECTIONS_PER_ADDRESS="0", CALLSD_HTTP_MAX_CONNECTIONS="0",
                   CALLSD_HTTP_JOIN_TIMEOUT="120")
        if self.fast_path:
            env["CALLSD_RTC_FAST_PATH"] = self.fast_path
        env.update(self.env)
        self.log = open(data / "serve.log", "wb")  # noqa: SIM115 - closed in __exit__
        self.proc = subprocess.Popen([*self.topology.server_prefix, *_pin(0), sys.executable, *self.command],
                                     env=env, stdout=self.log, stderr=subprocess.STDOUT, cwd=data)
        self.url = f"http://{self.topology.server_address}:{http_port}"
        try:
            self._wait_ready(data / "serve.log", self.ready_timeout)
        except BaseException:
            self.__exit__()  # not left running (and holding its CPU) after a failed start, nor on Ctrl-C
            raise
        return self

    def _wait_ready(self, log: Path, timeout: float) -> None:
        """Return once /healthz answers; raise ``ServerNotReady`` with the log's tail if the server exits first or
        does not answer within ``timeout`` seconds (polled: the only readiness signal a subprocess gives)."""
        assert self.proc is not None
        started = time.monotonic()
        while True:
            if self.proc.poll() is not None:
                raise ServerNotReady(f"callsd serve exited with {self.proc.returncode} before it was ready; the end "
                                     f"of {log}:\n{_tail(log)}")
            try:
                with self.topology.reach(), urllib.request.urlopen(self.url + "/healthz", timeout=2):
                    return
            except OSError:
                pass
            waited = time.monotonic() - started
            if waited > timeout:
                load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
                raise ServerNotReady(f"callsd serve did not answer {self.url}/healthz in {waited:.0f} s (load "
                                     f"average {load}); the end of {log}:\n{_tail(log)}")
            time.sleep(0.1)

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def run_shape(shape: Shape, *, steady: float, workdir: Path, out: Path, delay_sample: int,
              screen_bitrate: str, fast_path: str = "", media_engine: str = "auto",
              join_timeout: float = 15.0, watch: Any = None, audio_slots: int | None = None,
              topology: Topology = LOOPBACK) -> dict[str, Any]:
    """Start a server, load it with ``shape``, return the loadtest results document (also saved to ``out``).
    ``fast_path``: the server's rtc.fast_path; ``media_engine``: the load tool's (--media-engine); ``audio_slots``:
    the tool's --audio-slots (None: its default, the web client's); ``watch``: a
    context manager factory called with the server's URL and the join duration, entered while the load runs
    (bench/capacity_paths.py reads the server's loop holds through it); ``topology``: where the server and the
    tool run (the document's ``kernel`` holds its `KernelWatch` record)."""
    users = shape.calls * shape.users
    join = max(1.0, users / JOIN_RATE)
    with Server(workdir, fast_path=fast_path, topology=topology) as server:
        assert server.proc is not None
        # (the token secret is random per run and the server is reachable only from the run's own namespaces)
        auth = ("--token-secret", topology.token_secret) if topology.token_secret else ()
        cmd = [*topology.tool_prefix, *_pin(1), sys.executable, "-m", "callsd.app.cli", "loadtest", "--url", server.url,
               "--calls", str(shape.calls), "--users-per-call", str(shape.users), "--unmuted", str(shape.unmuted),
               "--screen-sharing", str(shape.sharing), "--screen-bitrate", screen_bitrate,
               "--join-duration", f"{join:.2f}", "--duration", f"{join + steady:.2f}",
               "--server-pid", str(server.proc.pid), "--delay-sample", str(delay_sample),
               "--media-engine", media_engine, "--join-timeout", f"{join_timeout:g}",
               "--output", str(out), "--quiet",
               *(("--audio-slots", str(audio_slots)) if audio_slots is not None else ()), *auth]
        kernel = KernelWatch(topology, server.proc.pid, steady)
        with kernel(server.url, join), watch(server.url, join) if watch is not None else contextlib.nullcontext():
            subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=join + steady + 120,
                           check=False)
    result: dict[str, Any] = json.loads(out.read_text())
    result["kernel"] = kernel.result
    return result


def tool_received_pps(doc: dict[str, Any]) -> float | None:
    """RTP packets/s the load tool received over the steady window (its timeline, from the last join + 1 s, as
    the server's window): the egress as the receiving side counts it (a GSO batch is its packets)."""
    window = [p["rx_pps"] for p in doc["timeline"] if p["t"] >= doc["config"]["join_duration"] + 1.0]
    return sum(window) / len(window) if window else None


def row(shape: Shape, doc: dict[str, Any]) -> dict[str, Any]:
    s, o, u = doc["server"], doc["overall"], doc["users"]
    client_cpu = [p.get("client_cpu_percent", 0) for p in doc["timeline"] if p["t"] >= doc["config"]["join_duration"]]
    client_peak = max(client_cpu) if client_cpu else 0.0
    received = tool_received_pps(doc)
    cpu = s.get("steady_cpu_percent")
    kernel = doc.get("kernel", {})
    return {
        "topology": kernel.get("topology", "loopback"), "kernel": kernel,
        "tool_rx_pps": round(received) if received else None,
        "us_per_received_packet": round(1e4 * cpu / received, 2) if cpu and received else None,
        "shape": shape.label, "calls": shape.calls, "users_per_call": shape.users, "unmuted_per_call": shape.unmuted,
        "screen_sharing": shape.sharing, "server_cpu_percent": s.get("steady_cpu_percent"),
        "egress_pps": s.get("steady_egress_pps"), "us_per_egress_packet": s.get("us_cpu_per_egress_packet"),
        "loss": max(o["loss"], o.get("e2e_loss", 0.0)), "users_failed": u["failed"], "users_total": u["total"],
        "p95_join_to_first_audio_ms": doc["join_to_first_audio_ms"]["p95"],
        "rss_bytes_per_session": s.get("rss_bytes_per_session"), "client_cpu_peak_percent": round(client_peak, 1),
        "client_cpu_mean_percent": round(sum(client_cpu) / len(client_cpu), 1) if client_cpu else 0.0,
        "client_bound": client_peak > 85.0, "loadavg_end": doc.get("host", {}).get("loadavg_end"),
        "socket_drops": o.get("socket_drops", {}), "join_phases_p95_ms": {
            k: v.get("p95") for k, v in doc.get("join_phases_ms", {}).items()},
        "contended": bool(doc.get("host", {}).get("loadavg_end")
                          and doc["host"]["loadavg_end"][0] > (os.cpu_count() or 1) + 0.5),
    }


def ok(r: dict[str, Any]) -> bool:
    return bool(r["loss"] < 0.005 and r["users_failed"] == 0)


def table_lines(rows: list[dict[str, Any]]) -> list[str]:
    """The rows as a Markdown table (what print_table prints and docs/performance.md embeds)."""
    header = ("calls", "users/call", "unmuted/call", "screen sharing", "server CPU %", "egress pkt/s",
              "µs CPU/egress pkt", "loss %", "drops tool/server", "p95 join→audio ms", "failed", "note")
    lines = [header]
    for r in rows:
        note = " ".join(x for x, on in (("client-bound", r["client_bound"]), ("busy-host", r["contended"])) if on)
        drops = r.get("socket_drops") or {}
        lines.append((
            str(r["calls"]), str(r["users_per_call"]), str(r["unmuted_per_call"]), str(r["screen_sharing"]),
            f"{r['server_cpu_percent']}", f"{r['egress_pps']:.0f}" if r["egress_pps"] else "n/a",
            f"{r['us_per_egress_packet']}", f"{100 * r['loss']:.3f}",
            f"{drops.get('client', '?')}/{drops.get('server', '?')}", f"{r['p95_join_to_first_audio_ms']}",
            f"{r['users_failed']}/{r['users_total']}", note,
        ))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    out = []
    for n, line in enumerate(lines):
        out.append("| " + " | ".join(cell.rjust(w) for cell, w in zip(line, widths, strict=True)) + " |")
        if n == 0:
            out.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return out


def print_table(rows: list[dict[str, Any]], title: str) -> None:
    print(f"\n{title}")
    print("\n".join(table_lines(rows)))
    sys.stdout.flush()


def engine_srtp_session(engine: Any, key: bytes, outbound: bool) -> Any:
    """An AES-GCM SRTP session of the kind ``engine`` runs under a ``key`` the bench shares between its ends: the
    native engines' own session, or pylibsrtp's for the Python engine (its replay window widened to the native
    side's 1024 packets, so both accept the same reordering)."""
    import pylibsrtp

    profile = pylibsrtp.Policy.SRTP_PROFILE_AEAD_AES_128_GCM
    if engine.media != "python":
        from callsd.peer._fastpeer import SrtpSession

        return SrtpSession(int(profile), key, outbound)
    kind = pylibsrtp.Policy.SSRC_ANY_OUTBOUND if outbound else pylibsrtp.Policy.SSRC_ANY_INBOUND
    policy = pylibsrtp.Policy(key=key, ssrc_type=kind, srtp_profile=profile)
    policy.window_size = 1024
    return pylibsrtp.Session(policy)


def loopback_legs(engine: Any, key: bytes, count: int, *, sending: bool) -> tuple[socket.socket, list[Any]]:
    """A loopback socket and ``count`` connected legs of ``engine`` that receive from it (Opus on payload type 111),
    keyed with ``engine_srtp_session`` under ``key``; ``sending``: they have their send session too. The load-tool
    cost benches (``client_cost`` here, ``bench.loadtool_step``) drive these without any server."""
    from callsd.peer import Leg

    src = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    src.bind(("127.0.0.1", 0))
    src.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 16)
    legs = []
    for n in range(count):
        leg = Leg(engine, user_number=n, call_index=0, ufrag="u", pwd="p")
        leg.sock.connect(src.getsockname())
        leg.state = "connected"
        leg.rx = engine_srtp_session(engine, key, False)
        if sending:
            leg.tx = engine_srtp_session(engine, key, True)
        leg.set_payload_types({111: ("audio", 48000)})
        legs.append(leg)
    return src, legs


async def client_cost(legs: int = 200, packets: int = 40_000, delay_sample: int = 4,
                      media: str = "python") -> dict[str, Any]:
    """The load tool's own CPU per packet on one media engine (``media``: "python" or "native"), no server.

    Receive: a plain socket sends pre-encrypted 170-byte packets round-robin, one per leg per round (the worst case:
    one packet per socket per wake-up); the send cost, measured separately, is subtracted. Send: every leg has one
    unmuted audio source and the engine's 20 ms send tick is run back to back (packets to a socket nobody reads).
    """
    import pylibsrtp
    import trio
    from callsd.peer import Identity, MediaEngine, Source
    from callsd.peer.engine import resolve_media

    key = os.urandom(28)
    profile = pylibsrtp.Policy.SRTP_PROFILE_AEAD_AES_128_GCM
    engine = MediaEngine(Identity(), delay_sample=delay_sample, media=media)

    def session(outbound: bool) -> Any:
        return engine_srtp_session(engine, key, outbound)

    tx = pylibsrtp.Session(pylibsrtp.Policy(key=key, ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND,
                                            srtp_profile=profile))
    src, all_legs = loopback_legs(engine, key, legs, sending=False)
    sources = [Source(kind="audio", ssrc=1000 + i, user_number=i) for i in range(2)]
    for source in sources:
        source.configure("0", 111, {})
    wire = [tx.protect(source.packets(time.monotonic_ns())[0]) for _ in range(packets // (2 * legs))
            for source in sources]
    addrs = [leg.local_address for leg in all_legs]
    async with trio.open_nursery() as nursery:
        nursery.start_soon(engine.receive_loop)
        await trio.sleep(0.1)
        c0 = time.process_time()
        for p in wire:
            for a in addrs:
                src.sendto(p, a)
            await trio.sleep(0)
        await trio.sleep(0.3)
        nursery.cancel_scope.cancel()
    total = time.process_time() - c0
    s0 = time.process_time()
    for p in wire:
        for a in addrs:
            src.sendto(p, a)
    send = time.process_time() - s0
    sent = len(wire) * len(addrs)
    # the send side: each leg sends one audio packet per tick to `src` (its kernel buffer overflows: not counted)
    for n, leg in enumerate(all_legs):
        leg.tx = session(True)
        source = Source(kind="audio", ssrc=5000 + n, user_number=n)
        source.configure("0", 111, {})
        source.enabled = True
        leg.add_source(source)
    ticks = max(1, packets // legs)
    tx0, t0 = engine.tx_packets + engine.stats.send_drops, time.process_time()
    for _ in range(ticks):
        engine.send_tick(1, time.monotonic_ns())  # the tick's body, without its 20 ms sleep
    send_cpu = time.process_time() - t0
    sent_by_tool = engine.tx_packets + engine.stats.send_drops - tx0
    for leg in all_legs:
        leg.close()
    return {"media": resolve_media(media), "legs": legs, "packets": sent, "received": engine.rx_packets,
            "delay_sample": delay_sample, "us_per_received_packet": round(1e6 * (total - send) / sent, 2),
            "sent_by_tool": sent_by_tool, "us_per_sent_packet": round(1e6 * send_cpu / max(1, sent_by_tool), 2)}


async def client_costs(rounds: int = 3) -> dict[str, Any]:
    """`client_cost` for both engines, alternated ``rounds`` times in one process (a ratio on a busy machine)."""
    runs: dict[str, list[dict[str, Any]]] = {"python": [], "native": [], "shared": []}
    for _ in range(rounds):
        for media in runs:
            runs[media].append(await client_cost(media=media))
    out: dict[str, Any] = {"loadavg": os.getloadavg(), "runs": runs}
    for media, rows in runs.items():
        rx = sorted(r["us_per_received_packet"] for r in rows)[len(rows) // 2]
        tx = sorted(r["us_per_sent_packet"] for r in rows)[len(rows) // 2]
        # the capacity shape's mix: 7 packets received for each one sent (8-user calls, 2 talkers)
        out[media] = {"us_per_received_packet": rx, "us_per_sent_packet": tx,
                      "packets_per_core_8x2_mix": round(1e6 * 8 / (7 * rx + tx))}
    for media in ("native", "shared"):
        out[f"{media}_vs_python_packets_per_core"] = round(
            out[media]["packets_per_core_8x2_mix"] / out["python"]["packets_per_core_8x2_mix"], 2)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.capacity", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="short runs and a small search (smoke run)")
    parser.add_argument("--steady", type=float, default=15.0, help="seconds of full load after the joins")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply the scaled table's call counts")
    parser.add_argument("--search-start", type=int, default=40, help="first call count of the search")
    parser.add_argument("--budget", type=float, default=600.0, help="overall time budget in seconds")
    parser.add_argument("--delay-sample", type=int, default=4, help="decrypt 1 packet in N for delay")
    parser.add_argument("--screen-bitrate", default="1M", help="screen-share bitrate (default 1M)")
    parser.add_argument("--out-dir", default=str(ROOT / "bench" / "results"), help="results JSON directory")
    parser.add_argument("--no-table", action="store_true", help="only the search")
    parser.add_argument("--no-search", action="store_true", help="only the table")
    parser.add_argument("--no-pin", action="store_true", help="do not pin the server and the tool with taskset")
    parser.add_argument("--topology", choices=TOPOLOGIES, default="loopback",
                        help="where the server and the tool run: one machine's loopback, or two namespaces that "
                             "receive as two hosts (bench/capacity_topology.py)")
    parser.add_argument("--client-cost", action="store_true",
                        help="only measure the load tool's own CPU per received and sent packet, both media "
                             "engines alternated (no server)")
    args = parser.parse_args(argv)
    global PIN
    PIN = not args.no_pin
    if args.client_cost:
        import trio

        print(json.dumps(trio.run(client_costs), indent=1))
        return 0
    steady = 6.0 if args.quick else args.steady
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="callsd-capacity-"))
    started = time.monotonic()
    summary: dict[str, Any] = {"machine": {"cpus": os.cpu_count(), "loadavg_start": os.getloadavg(), "pinned": PIN},
                               "steady_seconds": steady, "join_rate": JOIN_RATE, "topology": args.topology,
                               "rows": [], "search": []}
    stack = contextlib.ExitStack()
    try:
        topology = make_topology(args.topology, stack)
        if not args.no_table:
            shapes = scaled_shapes(args.scale * (0.5 if args.quick else 1.0))
            for i, shape in enumerate(shapes):
                doc = run_shape(shape, steady=steady, workdir=work, out=out_dir / f"capacity-row{i + 1}.json",
                                delay_sample=args.delay_sample, screen_bitrate=args.screen_bitrate, topology=topology)
                summary["rows"].append(row(shape, doc))
                print_table(summary["rows"], "published shapes scaled to one server core")
        if not args.no_search:
            calls = args.search_start // (2 if args.quick else 1)
            best: dict[str, Any] | None = None
            worst_fail: int | None = None
            n = 0
            while time.monotonic() - started < args.budget - (40 + calls * 8 / JOIN_RATE):
                n += 1
                shape = Shape("8 x 2, no sharing (search)", calls, 8, 2, 0)
                doc = run_shape(shape, steady=steady, workdir=work, out=out_dir / f"capacity-search{n}.json",
                                delay_sample=args.delay_sample, screen_bitrate=args.screen_bitrate, topology=topology)
                r = row(shape, doc)
                r["passed"] = ok(r)
                summary["search"].append(r)
                print_table(summary["search"], "search: 8 users/call, 2 unmuted, no screen share (< 0.5 % loss)")
                if r["passed"]:
                    if best is None or calls > best["calls"]:
                        best = r | {"results_file": str(out_dir / f"capacity-search{n}.json")}
                    if r["client_bound"]:
                        break  # the tool, not the server, is the limit from here on
                    nxt = round(calls * 1.3) if worst_fail is None else (calls + worst_fail) // 2
                else:
                    worst_fail = calls if worst_fail is None else min(worst_fail, calls)
                    low = best["calls"] if best else 0
                    nxt = (low + worst_fail) // 2
                if nxt <= (best["calls"] if best else 0) or nxt == calls or (worst_fail and nxt >= worst_fail):
                    break
                calls = max(1, nxt)
            summary["best"] = best
            costs = [r["us_per_egress_packet"] for r in summary["search"] if r.get("us_per_egress_packet")]
            if costs:
                us = sorted(costs)[len(costs) // 2]
                per_call = 2 * 7 * 50  # egress pkt/s of one 8-user, 2-unmuted call: 2 talkers x 7 listeners
                summary["cpu_bound_estimate"] = {"median_us_per_egress_packet": us,
                                                 "egress_pps_per_core": round(1e6 / us),
                                                 "calls_per_core": round(1e6 / us / per_call, 1)}
                print(f"CPU-cost estimate: {us} µs/egress pkt -> {1e6 / us:.0f} egress pkt/s per core"
                      f" -> {1e6 / us / per_call:.0f} calls of 8 users x 2 unmuted per core (if nothing else binds)")
            if best:
                print(f"\nlargest passing: {best['calls']} calls x 8 users x 2 unmuted, loss {100 * best['loss']:.3f} %,"
                      f" server CPU {best['server_cpu_percent']} %, {best['egress_pps']} egress pkt/s,"
                      f" {best['us_per_egress_packet']} µs/pkt")
    finally:
        stack.close()  # the two-hosts namespaces
        summary["elapsed_seconds"] = round(time.monotonic() - started, 1)
        summary["machine"]["loadavg_end"] = os.getloadavg()
        (out_dir / "capacity-summary.json").write_text(json.dumps(summary, indent=1))
        shutil.rmtree(work, ignore_errors=True)
    md = [f"Machine: {summary['machine']['cpus']} CPUs, load average {summary['machine']['loadavg_start'][0]:.1f} at"
          f" start and {summary['machine']['loadavg_end'][0]:.1f} at the end; server pinned: {PIN};"
          f" topology: {args.topology};"
          f" {steady:g} s of steady load after joins at {JOIN_RATE:g} users/s.", ""]
    if summary["rows"]:
        md += ["Published shapes scaled to one server core:", "", *table_lines(summary["rows"]), ""]
    if summary["search"]:
        md += ["Search (8 users/call, 2 unmuted, no screen share; pass = loss < 0.5 % and no failed user):", "",
               *table_lines(summary["search"]), ""]
    if summary.get("cpu_bound_estimate"):
        e = summary["cpu_bound_estimate"]
        md.append(f"CPU-cost estimate: median {e['median_us_per_egress_packet']} µs of server CPU per egress packet"
                  f" -> {e['egress_pps_per_core']} egress pkt/s per core -> {e['calls_per_core']} such calls per core.")
    (out_dir / "capacity.md").write_text("\n".join(md) + "\n")
    print(f"\nsummary: {out_dir / 'capacity-summary.json'}, {out_dir / 'capacity.md'} ({summary['elapsed_seconds']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
