"""The load tool's own CPU per packet, sent + received, on each media engine, in the capacity shape (issue 13).

    .venv/bin/python -m bench.loadtool_cost                       # 50 calls x 8 x 2, 3 rounds, every engine
    .venv/bin/python -m bench.loadtool_cost --calls 100 --seconds 4 --rounds 2 --json out.json
    .venv/bin/python -m bench.loadtool_cost --saturate --engines python,shared   # packets per core: each engine
                                    # at its own saturation, pinned (bench/loadtool_saturate.py says what and how)

Method: one `MediaEngine` per run with ``calls x 8`` legs, as `callsd loadtest` has them once joined (connected,
SRTP sessions keyed from one key, two unmuted users per call with one Opus-sized audio source each, the engine's
real receive loop, 20 ms send tick and maintenance loop). A separate process stands in for the server: it reads
what the legs send, and every 20 ms sends each user the packets of the other talkers of its call (distinct
packets, pre-encrypted, burst per tick as an SFU forwards a tick's packets), so each user receives what it would
in 8-user calls with 2 talkers: 7 packets received for each one sent. The tool's CPU is its process's user + system
time (getrusage) over the steady window, divided by the packets it sent and received in that window; the stand-in
server's CPU is not counted (in a real run the server pays for its own sends). Engines are alternated in one
process, ``--rounds`` times, and the median per engine is reported with the ratio to the Python engine (the
reference, and the session-2 tool), because this shared machine's load moves absolute figures by ±30 %.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import os
import pickle
import resource
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.capacity import engine_srtp_session
from bench.cpu_quota import cpu_quota

ENGINES = ("python", "native", "shared")
SOL_UDP, UDP_SEGMENT = 17, 103
USERS_PER_CALL = 8
TALKERS = 2
TICK = 0.020


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class BurstSender:
    """Every tick's datagrams as one prepared ``sendmmsg`` batch (libc through ctypes).

    Why: at 200 calls the stand-in must send 140,000 datagrams a second, and near the shared engine's saturation
    over 500,000; one Python ``sendto`` each (~5 µs) cannot, and a stand-in that falls behind makes the tool receive
    small batches and look more expensive per packet than it is. The message headers are built once before the
    run (one per talker and listener: a talker's packet goes to each other user of its call), each pointing at its
    talker's slot of one live iovec table; a tick copies its prepared iovec table (pointers into that tick's
    packets) over the live one and sends, one syscall per 1,024 datagrams, as an SFU's batched forwarding does."""

    MMSG = struct.Struct("=QI4xQQQQi4xI4x")  # struct mmsghdr on x86-64: msghdr (56 bytes) + msg_len
    IOVEC = struct.Struct("=QQ")
    SOCKADDR = struct.Struct("=H2s4s8x")  # struct sockaddr_in
    CMSG = struct.Struct("=QiiH6x")  # struct cmsghdr + the UDP_SEGMENT size, CMSG_SPACE(2) bytes
    CHUNK = 1024  # UIO_MAXIOV: messages per sendmmsg call

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.libc = ctypes.CDLL(None, use_errno=True)
        self.failed = 0  # datagrams the kernel refused (a full send buffer: dropped, as a server's would be)
        self.sent = 0

    def prepare(self, fanout: list[list[tuple[str, int]]], ticks: list[bytes], gso: bool = False) -> None:
        """``fanout[t]``: where talker t's packets go; ``ticks[n]``: tick n's packets, talker after talker, each
        talker's packets of one size in every tick (``len(ticks[n]) // len(fanout)`` bytes each). With ``gso``,
        the packets of consecutive talkers for one user (the 2 talkers of its call) leave as one UDP GSO send
        (``UDP_SEGMENT``): the kernel's route and output path once per user and tick instead of once per packet,
        which lets this stand-in feed a native engine near its saturation on this host."""
        talkers = len(fanout)
        size = len(ticks[0]) // max(1, talkers)
        addresses = {a: n for n, a in enumerate(dict.fromkeys(a for row in fanout for a in row))}
        self.sockaddrs = ctypes.create_string_buffer(16 * max(1, len(addresses)))
        for (host, port), at in addresses.items():
            self.SOCKADDR.pack_into(self.sockaddrs, 16 * at, socket.AF_INET, port.to_bytes(2, "big"),
                                    socket.inet_aton(host))
        self.live_iov = ctypes.create_string_buffer(16 * max(1, talkers))
        # (address, first talker, talkers): one message each; a run of consecutive talkers for one address is one
        # message when gso is on
        runs: list[tuple[tuple[str, int], int, int]] = []
        if gso:
            heard: dict[tuple[str, int], list[int]] = {}
            for talker, row in enumerate(fanout):
                for address in row:
                    heard.setdefault(address, []).append(talker)
            for address, from_talkers in heard.items():
                first = from_talkers[0]
                for previous, talker in zip(from_talkers, from_talkers[1:] + [-1], strict=True):
                    if talker != previous + 1:
                        runs.append((address, first, previous - first + 1))
                        first = talker
        else:
            runs = [(address, talker, 1) for talker, row in enumerate(fanout) for address in row]
        self.count = len(runs)
        self.msgs = ctypes.create_string_buffer(64 * max(1, self.count))
        self.control = ctypes.create_string_buffer(self.CMSG.pack(self.CMSG.size - 6, SOL_UDP, UDP_SEGMENT, size))
        names, iov, control = (ctypes.addressof(self.sockaddrs), ctypes.addressof(self.live_iov),
                               ctypes.addressof(self.control))
        self.sent_before = [0]  # datagrams in the messages before message n (a GSO message carries several)
        for n, (address, first, k) in enumerate(runs):
            self.MMSG.pack_into(self.msgs, 64 * n, names + 16 * addresses[address], 16, iov + 16 * first, k,
                                control if k > 1 else 0, self.CMSG.size if k > 1 else 0, 0, 0)
            self.sent_before.append(self.sent_before[-1] + k)
        self.payload = ctypes.create_string_buffer(b"".join(ticks), max(1, sum(map(len, ticks))))
        self.tick_iovs = ctypes.create_string_buffer(16 * max(1, talkers) * len(ticks))
        base = ctypes.addressof(self.payload)
        for tick, blob in enumerate(ticks):
            for talker in range(talkers):
                self.IOVEC.pack_into(self.tick_iovs, 16 * (tick * talkers + talker),
                                     base + tick * len(blob) + talker * size, size)
        self.iov_bytes = 16 * talkers
        self.ticks = len(ticks)

    def send(self, tick: int) -> None:
        ctypes.memmove(self.live_iov, ctypes.addressof(self.tick_iovs) + tick * self.iov_bytes, self.iov_bytes)
        base, done = ctypes.addressof(self.msgs), 0
        while done < self.count:
            n = self.libc.sendmmsg(self.fd, ctypes.c_void_p(base + 64 * done), min(self.CHUNK, self.count - done), 0)
            if n <= 0:  # EAGAIN: the datagrams are dropped, as a server's full socket buffer would
                self.failed += self.sent_before[done + 1] - self.sent_before[done]
                n = 1
            else:
                self.sent += self.sent_before[done + n] - self.sent_before[done]
            done += n


def serve_stand_in(plan_path: str) -> None:
    """The stand-in server (a child process): drain the legs' packets, send each tick's packets to their users.
    It prints what it sent and how late it was: a tick whose send starts more than a tick late means the stand-in,
    not the tool, set the rate (`--saturate` stops climbing there)."""
    with open(plan_path, "rb") as f:
        plan = pickle.load(f)
    if plan.get("cpu") is not None:
        os.sched_setaffinity(0, {plan["cpu"]})
    if plan.get("nice"):
        os.nice(plan["nice"])
    sock = socket.socket(fileno=plan["fd"])  # bound by the parent (no port race with other processes)
    sock.setblocking(False)
    sender = BurstSender(sock.fileno())
    sender.prepare(plan["fanout"], plan["ticks"], gso=plan.get("gso", False))
    del plan
    print("ready", flush=True)
    start = time.monotonic() + 0.2
    cpu0 = _cpu()
    received = behind = 0
    worst = 0.0
    for n in range(sender.ticks):
        while True:  # drain what the legs sent while waiting for this tick
            try:
                sock.recv(2048)
                received += 1
            except BlockingIOError:
                break
        wait = start + n * TICK - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        elif -wait > TICK:
            behind += 1
        worst = max(worst, -wait)
        sender.send(n)
    print(json.dumps({"ticks": sender.ticks, "received": received, "sent": sender.sent,
                      "send_failed": sender.failed, "behind_ticks": behind,
                      "max_lateness_ms": round(1000 * worst, 2),
                      "us_per_datagram": round(1e6 * (_cpu() - cpu0) / max(1, sender.sent + received), 3)}),
          flush=True)


async def measure(spec: str, calls: int, seconds: float, delay_sample: int = 4,
                  pinning: Pinning | None = None) -> dict[str, Any]:
    """One run on one engine: the tool's CPU per packet sent and received over the steady window. `spec` is an
    engine name, with ``:MS`` for the native receive loop waiting MS milliseconds between busy drains instead of
    its NATIVE_BATCH_SLEEP, ``+trio`` for the native loops waiting with Trio sleeps instead of a timerfd
    (peer/waiting.py), ``+maintain-all`` for every connected leg maintained every 50 ms (before 630e1c4) or
    ``+wake-rx`` for the native receive loop reading as datagrams arrive in the steady state too (before
    session 8's `NATIVE_TICK_DRAIN`), ``+round-yield`` for the Python engine's receive loop yielding every 16 epoll rounds (before session 8),
    ``+walk-all`` for the send tick walking every leg, not only those with sources (before this session's
    `MediaEngine.legs_with_sources`), ``+gc-default`` for CPython's default collector settings (not the load process's: the users' objects frozen,
    young collections less often), and/or ``@N`` for decrypting 1 received packet in N instead of ``delay_sample``: A/B variants within one run."""
    from callsd.peer import engine as engine_module

    spec, _, sample = spec.partition("@")
    if sample:
        delay_sample = int(sample)
    name, _, variant = spec.partition("+")
    media, _, batch_ms = name.partition(":")
    defaults = (engine_module.NATIVE_BATCH_SLEEP, engine_module.NATIVE_TIMERFD, engine_module.CONNECTED_MAINTAIN_EVERY,
                engine_module.PYTHON_YIELD_EVERY, engine_module.NATIVE_TICK_DRAIN)
    if batch_ms:
        engine_module.NATIVE_BATCH_SLEEP = float(batch_ms) / 1000
    if variant == "trio":
        engine_module.NATIVE_TIMERFD = False
    elif variant == "maintain-all":
        engine_module.CONNECTED_MAINTAIN_EVERY = 1
    elif variant == "wake-rx":  # the native receive loop reads as datagrams arrive in the steady state too
        engine_module.NATIVE_TICK_DRAIN = False
    elif variant == "round-yield":  # 16 full epoll rounds of 1,023 sockets between yields, as before session 8
        engine_module.PYTHON_YIELD_EVERY = 16 * 1023
    elif variant and variant not in ("gc-default", "walk-all"):
        raise ValueError(f"unknown variant {variant!r} in {spec!r} "
                         "(known: +trio, +maintain-all, +walk-all, +gc-default, +round-yield, +wake-rx)")
    try:
        return await _measure(media, calls, seconds, delay_sample, worker_gc=variant != "gc-default",
                              walk_all=variant == "walk-all", pinning=pinning or Pinning()) | {
            "batch_sleep_ms": 1000 * engine_module.NATIVE_BATCH_SLEEP, "timerfd": engine_module.NATIVE_TIMERFD,
            "connected_maintain_every": engine_module.CONNECTED_MAINTAIN_EVERY, "delay_sample": delay_sample}
    finally:
        (engine_module.NATIVE_BATCH_SLEEP, engine_module.NATIVE_TIMERFD, engine_module.CONNECTED_MAINTAIN_EVERY,
         engine_module.PYTHON_YIELD_EVERY, engine_module.NATIVE_TICK_DRAIN) = defaults


@dataclass(frozen=True, slots=True)
class Pinning:
    """Where a run's two processes run: the tool (this process) on ``tool`` and the stand-in server on
    ``stand_in`` (None: wherever the scheduler puts them), both at ``nice`` (a negative value on a shared host, as
    bench.capacity's ``--nice``). `--saturate` pins, so that "per core" means one core."""

    tool: int | None = None
    stand_in: int | None = None
    nice: int = 0
    tool_quota: float | None = None  # the tool limited to this fraction of its core (bench/cpu_quota.py)
    stand_in_gso: bool = False  # the stand-in sends each user's packets of a tick as one UDP GSO send


@dataclass(frozen=True, slots=True)
class Window:
    """The engine's counters, the process's CPU time and the clock at the steady window's two ends, the tool's
    socket drops over it, and the send tick's schedule when the run ended (ticks due, ticks still owed)."""

    rx0: int
    tx0: int
    cpu0: float
    t0: float
    drops0: int
    rx1: int
    tx1: int
    cpu1: float
    t1: float
    drops1: int
    ticks_due: int
    behind: int


async def _run_engine(engine: Any, stand_in: subprocess.Popen[str], warmup: float, seconds: float,
                      ports: set[int]) -> Window:
    """The engine's loops from the stand-in's first tick until the tool has read all it will (see `_measure`)."""
    import trio
    from callsd.peer import udp_drops

    async with trio.open_nursery() as nursery:
        nursery.start_soon(engine.receive_loop)
        nursery.start_soon(engine.send_loop)
        nursery.start_soon(engine.maintain_loop)
        await trio.sleep(0.2 + warmup)
        drops0 = sum(udp_drops(ports).values())
        rx0, tx0, cpu0, t0 = engine.rx_packets, engine.tx_packets, _cpu(), time.monotonic()
        await trio.sleep(seconds)
        rx1, tx1, cpu1, t1 = engine.rx_packets, engine.tx_packets, _cpu(), time.monotonic()
        drops1 = sum(udp_drops(ports).values())
        # Until the stand-in has sent its last tick and the tool has read all it will (its count still for
        # 0.25 s): what the stand-in sent is what the tool had to receive, so the whole run's loss is counted,
        # not only the window's, and a stand-in that ran late and sent its last ticks at once is not counted
        # as the tool's loss for what was still in the sockets.
        await trio.to_thread.run_sync(stand_in.wait)
        with trio.move_on_after(10):
            counted = -1
            while engine.rx_packets != counted:
                counted = engine.rx_packets
                await trio.sleep(0.25)
        now = time.monotonic()
        ticks_due, behind = int((now - engine.tick_start) / TICK), engine.ticks_behind(now)
        nursery.cancel_scope.cancel()
    return Window(rx0, tx0, cpu0, t0, drops0, rx1, tx1, cpu1, t1, drops1, ticks_due, behind)


async def _measure(media: str, calls: int, seconds: float, delay_sample: int, *,
                   worker_gc: bool = True, walk_all: bool = False, pinning: Pinning = Pinning()) -> dict[str, Any]:
    import pylibsrtp
    from callsd.app.loadtest.worker import GC_THRESHOLDS
    from callsd.peer import Identity, Leg, MediaEngine, Source

    key = os.urandom(28)
    profile = pylibsrtp.Policy.SRTP_PROFILE_AEAD_AES_128_GCM
    engine = MediaEngine(Identity(), delay_sample=delay_sample, media=media)

    def session(outbound: bool) -> Any:
        return engine_srtp_session(engine, key, outbound)

    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # the stand-in server's, handed to its process
    server.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    server.bind(("127.0.0.1", 0))
    port = server.getsockname()[1]
    legs: list[Leg] = []
    for call in range(calls):
        for user in range(USERS_PER_CALL):
            number = call * USERS_PER_CALL + user
            leg = Leg(engine, user_number=number, call_index=call, ufrag="u", pwd="p")
            leg.sock.connect(("127.0.0.1", port))
            leg.state = "connected"
            leg.rx, leg.tx = session(False), session(True)
            leg.consent_interval = None  # no STUN: the stand-in server does not answer
            leg.set_payload_types({111: ("audio", 48000)})
            if user < TALKERS:
                source = Source(kind="audio", ssrc=10_000 + number, user_number=number, seed=number)
                source.configure("0", 111, {})
                source.enabled = True
                engine.add_source(source)
                leg.add_source(source)
            legs.append(leg)
    if walk_all:  # the tick is given every leg, as before `legs_with_sources`
        engine.legs_with_sources = engine.legs
    # What the server forwards: each talker's packets (made by a Source like the tool's) to the call's others.
    warmup = 1.0
    n_ticks = int((0.2 + warmup + seconds + 1.0) / TICK)
    tx = pylibsrtp.Session(pylibsrtp.Policy(key=key, ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND,
                                            srtp_profile=profile))
    talkers = [Source(kind="audio", ssrc=20_000 + i, user_number=i, seed=i) for i in range(calls * TALKERS)]
    for t in talkers:
        t.configure("0", 111, {})
    fanout = [[legs[call * USERS_PER_CALL + user].local_address for user in range(USERS_PER_CALL) if user != talker]
              for call, talker in (divmod(i, TALKERS) for i in range(len(talkers)))]
    ticks = [b"".join(tx.protect(t.packets(time.monotonic_ns())[0]) for t in talkers) for _ in range(n_ticks)]
    with tempfile.NamedTemporaryFile(suffix=".pickle", delete=False) as f:
        pickle.dump({"fd": server.fileno(), "ticks": ticks, "fanout": fanout, "cpu": pinning.stand_in,
                     "nice": pinning.nice, "gso": pinning.stand_in_gso}, f)
        plan_path = f.name
    del ticks  # the stand-in's; kept here they would be scanned by this process's collector all run long
    thresholds = gc.get_threshold()
    affinity, niceness = os.sched_getaffinity(0), os.getpriority(os.PRIO_PROCESS, 0)
    if worker_gc:  # as a load process has it once its users joined (app/loadtest/worker.py)
        gc.collect()
        gc.freeze()
        gc.set_threshold(*GC_THRESHOLDS)
    stand_in = subprocess.Popen([sys.executable, "-m", "bench.loadtool_cost", "--stand-in", plan_path],
                                stdout=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parent.parent,
                                pass_fds=[server.fileno()])
    server.close()
    ports = {leg.local_address[1] for leg in legs}
    try:
        if pinning.tool is not None:
            os.sched_setaffinity(0, {pinning.tool})
        if pinning.nice:
            os.setpriority(os.PRIO_PROCESS, 0, niceness + pinning.nice)
        assert stand_in.stdout is not None and stand_in.stdout.readline().strip() == "ready"
        with cpu_quota(pinning.tool_quota):
            window = await _run_engine(engine, stand_in, warmup, seconds, ports)
        snap = engine.snapshot(legs)
    finally:
        out, _ = stand_in.communicate(timeout=60)
        os.unlink(plan_path)
        os.sched_setaffinity(0, affinity)
        os.setpriority(os.PRIO_PROCESS, 0, niceness)
        for leg in legs:
            leg.close()
        if engine.port is not None:
            engine.port.close()
        gc.unfreeze()
        gc.set_threshold(*thresholds)
    received, sent, cpu = window.rx1 - window.rx0, window.tx1 - window.tx0, window.cpu1 - window.cpu0
    t0, t1, ticks_due, behind = window.t0, window.t1, window.ticks_due, window.behind
    fed = json.loads(out.strip().splitlines()[-1]) if out.strip() else {}
    # Loss: what the stand-in sent and the tool never counted (dropped at its socket, or never read), and what
    # the tool's send tick owed at the end (behind its schedule) or could not send (a full socket buffer).
    rx_loss = 1 - engine.rx_packets / fed["sent"] if fed.get("sent") else 1.0
    tx_loss = behind / max(1, ticks_due) + snap["send_drops"] / max(1, ticks_due * calls * TALKERS)
    return {"media": engine.media, "calls": calls, "legs": len(legs), "seconds": round(t1 - t0, 2),
            "received": received, "sent": sent, "cpu_seconds": round(cpu, 3),
            "us_per_packet": round(1e6 * cpu / max(1, received + sent), 3),
            "packets_per_core": round((received + sent) / max(cpu, 1e-9)),
            "packets_per_second": round((received + sent) / max(t1 - t0, 1e-9)),
            "tool_cpu_percent": round(100 * cpu / max(t1 - t0, 1e-9), 1),
            "srtp_errors": snap["srtp_errors"], "verified": snap["rx_verified"], "lost": snap["lost"],
            "late_ticks": snap["late_ticks"], "stand_in": fed,
            "expected_received": round(calls * TALKERS * (USERS_PER_CALL - 1) * (t1 - t0) / TICK),
            "kept_up": round(received / max(1, calls * TALKERS * (USERS_PER_CALL - 1) * (t1 - t0) / TICK), 4),
            "received_total": engine.rx_packets, "rx_loss": round(max(0.0, rx_loss), 5),
            "tx_loss": round(max(0.0, tx_loss), 5), "loss": round(max(0.0, rx_loss, tx_loss), 5),
            "socket_drops": window.drops1 - window.drops0, "ticks_behind": behind, "pinning": [pinning.tool, pinning.stand_in],
            "tool_quota": pinning.tool_quota}


async def compare(engines: list[str], calls: int, seconds: float, rounds: int, delay_sample: int) -> dict[str, Any]:
    runs: dict[str, list[dict[str, Any]]] = {m: [] for m in engines}
    load = [os.getloadavg()[0]]
    for r in range(rounds):
        for media in engines:
            row = await measure(media, calls, seconds, delay_sample)
            runs[media].append(row)
            print(f"round {r + 1}/{rounds} {media:7s} {row['us_per_packet']:6.2f} us/packet "
                  f"({row['packets_per_core']:,} packets per core; tool at {row['tool_cpu_percent']} % of a core; "
                  f"received {row['received']}, sent {row['sent']})", file=sys.stderr, flush=True)
        load.append(os.getloadavg()[0])
    out: dict[str, Any] = {"utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()), "loadavg": load,
                           "shape": f"{calls} x {USERS_PER_CALL} x {TALKERS}", "delay_sample": delay_sample,
                           "runs": runs, "median": {}}
    for media, rows in runs.items():
        us = sorted(r["us_per_packet"] for r in rows)[len(rows) // 2]
        out["median"][media] = {"us_per_packet": us, "packets_per_core": round(1e6 / us)}
    if "python" in out["median"]:
        base = out["median"]["python"]["us_per_packet"]
        out["vs_python"] = {m: round(base / v["us_per_packet"], 2) for m, v in out["median"].items()}
    return out


def _summary(result: Any) -> Any:
    """The result without its runs (what the terminal shows; the JSON file has everything)."""
    if isinstance(result, dict):
        return {k: _summary(v) for k, v in result.items() if k not in ("runs", "climbs")}
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.loadtool_cost", description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=50, help="8-user calls with 2 talkers (default 50)")
    parser.add_argument("--seconds", type=float, default=3.0, help="steady window per run")
    parser.add_argument("--rounds", type=int, default=3, help="engines alternated this many times")
    parser.add_argument("--engines", default=",".join(ENGINES),
                        help="comma-separated: python,native,shared; a native engine with :MS waits MS ms between "
                             "busy drains, with +trio waits with Trio sleeps, not a timerfd, with +maintain-all maintains "
                             "every connected leg every 50 ms, with +walk-all gives the send tick every leg, not "
                             "only those with sources; python+round-yield yields every 16 epoll rounds (before "
                             "session 8); a native engine with +wake-rx reads as datagrams arrive in the steady "
                             "state too (before session 8); any engine with +gc-default runs with CPython's "
                             "default collector settings; any engine with @N "
                             "decrypts 1 received packet in N (A/B in one run)")
    parser.add_argument("--delay-sample", type=int, default=4,
                        help="decrypt 1 received packet in N for the stamp (capacity benches: 4; callsd loadtest: 1)")
    parser.add_argument("--saturate", action="store_true",
                        help="packets per core: each engine at the fixed --shapes, then climbing to its own "
                             "saturation (< 0.5 %% loss on one pinned core); bench/loadtool_saturate.py")
    parser.add_argument("--shapes", default="25,200", help="--saturate: the fixed shapes (calls) measured too")
    parser.add_argument("--tool-cpu", type=int, default=1, help="--saturate: the CPU the tool is pinned to")
    parser.add_argument("--stand-in-cpu", type=int, default=0,
                        help="--saturate: the stand-in server's CPU (-1: wherever the scheduler puts it)")
    parser.add_argument("--max-calls", type=int, default=4000, help="--saturate: never climb above this shape")
    parser.add_argument("--tool-quota", type=float,
                        help="--saturate: limit the tool to this fraction of its core (cgroup CPU quota; when the "
                             "stand-in cannot feed a full core of the engine)")
    parser.add_argument("--stand-in-gso", action="store_true",
                        help="--saturate: the stand-in sends each user's packets of a tick as one UDP GSO send "
                             "(~20 %% less of its CPU per datagram)")
    parser.add_argument("--nice", type=int, default=0,
                        help="--saturate: run the tool and the stand-in at this niceness (e.g. -10 on a shared host)")
    parser.add_argument("--json", help="write the results here too")
    parser.add_argument("--stand-in", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.stand_in:
        serve_stand_in(args.stand_in)
        return 0
    import trio

    # A bench stopped with SIGTERM unwinds (its stand-in, sockets and CPU quota cgroup are released in finally).
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    if args.saturate:
        from bench.loadtool_saturate import compare_saturation

        pinning = Pinning(args.tool_cpu, args.stand_in_cpu if args.stand_in_cpu >= 0 else None, args.nice,
                          args.tool_quota, args.stand_in_gso)
        result = trio.run(compare_saturation, args.engines.split(","), [int(c) for c in args.shapes.split(",") if c],
                          args.seconds, args.rounds, args.delay_sample, pinning, args.max_calls)
    else:
        result = trio.run(compare, args.engines.split(","), args.calls, args.seconds, args.rounds, args.delay_sample)
    text = json.dumps(result, indent=1)
    if args.json:
        Path(args.json).write_text(text + "\n")
    print(json.dumps(_summary(result), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
