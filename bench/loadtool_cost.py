"""The load tool's own CPU per packet, sent + received, on each media engine, in the capacity shape (issue 13).

    .venv/bin/python -m bench.loadtool_cost                       # 50 calls x 8 x 2, 3 rounds, every engine
    .venv/bin/python -m bench.loadtool_cost --calls 100 --seconds 4 --rounds 2 --json out.json

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
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.capacity import engine_srtp_session

ENGINES = ("python", "native", "shared")
USERS_PER_CALL = 8
TALKERS = 2
TICK = 0.020


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class BurstSender:
    """A tick's datagrams as one prepared ``sendmmsg`` batch (libc through ctypes).

    Why: at 200 calls the stand-in must send 140,000 datagrams a second; one Python ``sendto`` each (~5 µs) cannot,
    and a stand-in that falls behind makes the tool receive small batches and look more expensive per packet than
    it is. The message headers are built before the run (``prepare``), so the timed part is one syscall per 1,024
    datagrams, as an SFU's batched forwarding is."""

    MMSG = struct.Struct("=QI4xQQQQi4xI4x")  # struct mmsghdr on x86-64: msghdr (56 bytes) + msg_len
    IOVEC = struct.Struct("=QQ")
    SOCKADDR = struct.Struct("=H2s4s8x")  # struct sockaddr_in
    CHUNK = 1024  # UIO_MAXIOV: messages per sendmmsg call

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.libc = ctypes.CDLL(None, use_errno=True)
        self.addresses: dict[tuple[str, int], int] = {}
        self.keep: list[Any] = []  # the buffers the prepared headers point into
        self.sockaddrs = ctypes.create_string_buffer(0)
        self.failed = 0

    def _sockaddr_table(self, bursts: list[list[tuple[bytes, tuple[str, int]]]]) -> int:
        for burst in bursts:
            for _, address in burst:
                self.addresses.setdefault(address, len(self.addresses))
        table = ctypes.create_string_buffer(16 * max(1, len(self.addresses)))
        for (host, port), at in self.addresses.items():
            self.SOCKADDR.pack_into(table, 16 * at, socket.AF_INET, port.to_bytes(2, "big"), socket.inet_aton(host))
        self.sockaddrs = table
        return ctypes.addressof(table)

    def prepare(self, bursts: list[list[tuple[bytes, tuple[str, int]]]]) -> list[tuple[Any, int]]:
        """One (mmsghdr array, count) per tick."""
        names = self._sockaddr_table(bursts)
        out = []
        for burst in bursts:
            wires: dict[int, int] = {}  # id(bytes) -> its iovec's index (one copy of a packet sent to many)
            blobs: list[bytes] = []
            for data, _ in burst:
                if id(data) not in wires:
                    wires[id(data)] = len(blobs)
                    blobs.append(data)
            payload = ctypes.create_string_buffer(b"".join(blobs), sum(map(len, blobs)) or 1)
            iov = ctypes.create_string_buffer(16 * max(1, len(blobs)))
            base, offset = ctypes.addressof(payload), 0
            for n, blob in enumerate(blobs):
                self.IOVEC.pack_into(iov, 16 * n, base + offset, len(blob))
                offset += len(blob)
            msgs = ctypes.create_string_buffer(64 * max(1, len(burst)))
            iov_base = ctypes.addressof(iov)
            for n, (data, address) in enumerate(burst):
                self.MMSG.pack_into(msgs, 64 * n, names + 16 * self.addresses[address], 16,
                                    iov_base + 16 * wires[id(data)], 1, 0, 0, 0, 0)
            self.keep += [payload, iov]
            out.append((msgs, len(burst)))
        return out

    def send(self, msgs: Any, count: int) -> None:
        base, sent = ctypes.addressof(msgs), 0
        while sent < count:
            n = self.libc.sendmmsg(self.fd, ctypes.c_void_p(base + 64 * sent), min(self.CHUNK, count - sent), 0)
            if n <= 0:  # EAGAIN: the datagram is dropped, as a server's full socket buffer would
                self.failed += 1
                n = 1
            sent += n


def serve_stand_in(plan_path: str) -> None:
    """The stand-in server (a child process): drain the legs' packets, send each tick's packets to their users."""
    with open(plan_path, "rb") as f:
        plan = pickle.load(f)
    sock = socket.socket(fileno=plan["fd"])  # bound by the parent (no port race with other processes)
    sock.setblocking(False)
    sender = BurstSender(sock.fileno())
    ticks = sender.prepare(plan["ticks"])
    print("ready", flush=True)
    start = time.monotonic() + plan["delay"]
    received = 0
    for n, (msgs, count) in enumerate(ticks):
        while True:  # drain what the legs sent while waiting for this tick
            try:
                sock.recv(2048)
                received += 1
            except BlockingIOError:
                break
        wait = start + n * TICK - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        sender.send(msgs, count)
    print(json.dumps({"ticks": len(ticks), "received": received, "send_failed": sender.failed}), flush=True)


async def measure(spec: str, calls: int, seconds: float, delay_sample: int = 4) -> dict[str, Any]:
    """One run on one engine: the tool's CPU per packet sent and received over the steady window. `spec` is an
    engine name, with ``:MS`` for the native receive loop waiting MS milliseconds between busy drains instead of
    its NATIVE_BATCH_SLEEP, ``+trio`` for the native loops waiting with Trio sleeps instead of a timerfd
    (peer/waiting.py), ``+maintain-all`` for every connected leg maintained every 50 ms (before 630e1c4) or
    ``+walk-all`` for the send tick walking every leg, not only those with sources (before this session's
    `MediaEngine.legs_with_sources`), ``+gc-default`` for CPython's default collector settings (not the load process's: the users' objects frozen,
    young collections less often), and/or ``@N`` for decrypting 1 received packet in N instead of ``delay_sample``: A/B variants within one run."""
    from callsd.peer import engine as engine_module

    spec, _, sample = spec.partition("@")
    if sample:
        delay_sample = int(sample)
    name, _, variant = spec.partition("+")
    media, _, batch_ms = name.partition(":")
    defaults = engine_module.NATIVE_BATCH_SLEEP, engine_module.NATIVE_TIMERFD, engine_module.CONNECTED_MAINTAIN_EVERY
    if batch_ms:
        engine_module.NATIVE_BATCH_SLEEP = float(batch_ms) / 1000
    if variant == "trio":
        engine_module.NATIVE_TIMERFD = False
    elif variant == "maintain-all":
        engine_module.CONNECTED_MAINTAIN_EVERY = 1
    elif variant and variant not in ("gc-default", "walk-all"):
        raise ValueError(f"unknown variant {variant!r} in {spec!r} "
                         "(known: +trio, +maintain-all, +walk-all, +gc-default)")
    try:
        return await _measure(media, calls, seconds, delay_sample, worker_gc=variant != "gc-default",
                              walk_all=variant == "walk-all") | {
            "batch_sleep_ms": 1000 * engine_module.NATIVE_BATCH_SLEEP, "timerfd": engine_module.NATIVE_TIMERFD,
            "connected_maintain_every": engine_module.CONNECTED_MAINTAIN_EVERY, "delay_sample": delay_sample}
    finally:
        (engine_module.NATIVE_BATCH_SLEEP, engine_module.NATIVE_TIMERFD,
         engine_module.CONNECTED_MAINTAIN_EVERY) = defaults


async def _measure(media: str, calls: int, seconds: float, delay_sample: int, *,
                   worker_gc: bool = True, walk_all: bool = False) -> dict[str, Any]:
    import pylibsrtp
    import trio
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
    ticks = []
    for _ in range(n_ticks):
        burst = []
        for i, t in enumerate(talkers):
            wire = tx.protect(t.packets(time.monotonic_ns())[0])
            call, talker = divmod(i, TALKERS)
            for user in range(USERS_PER_CALL):
                if user != talker:
                    burst.append((wire, legs[call * USERS_PER_CALL + user].local_address))
        ticks.append(burst)
    with tempfile.NamedTemporaryFile(suffix=".pickle", delete=False) as f:
        pickle.dump({"fd": server.fileno(), "ticks": ticks, "delay": 0.2}, f)
        plan_path = f.name
    del ticks, burst  # the stand-in's; kept here they would be scanned by this process's collector all run long
    thresholds = gc.get_threshold()
    if worker_gc:  # as a load process has it once its users joined (app/loadtest/worker.py)
        gc.collect()
        gc.freeze()
        gc.set_threshold(*GC_THRESHOLDS)
    stand_in = subprocess.Popen([sys.executable, "-m", "bench.loadtool_cost", "--stand-in", plan_path],
                                stdout=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parent.parent,
                                pass_fds=[server.fileno()])
    server.close()
    try:
        assert stand_in.stdout is not None and stand_in.stdout.readline().strip() == "ready"
        async with trio.open_nursery() as nursery:
            nursery.start_soon(engine.receive_loop)
            nursery.start_soon(engine.send_loop)
            nursery.start_soon(engine.maintain_loop)
            await trio.sleep(0.2 + warmup)
            rx0, tx0, cpu0, t0 = engine.rx_packets, engine.tx_packets, _cpu(), time.monotonic()
            await trio.sleep(seconds)
            rx1, tx1, cpu1, t1 = engine.rx_packets, engine.tx_packets, _cpu(), time.monotonic()
            nursery.cancel_scope.cancel()
        snap = engine.snapshot(legs)
    finally:
        out, _ = stand_in.communicate(timeout=60)
        os.unlink(plan_path)
        for leg in legs:
            leg.close()
        if engine.port is not None:
            engine.port.close()
        gc.unfreeze()
        gc.set_threshold(*thresholds)
    received, sent, cpu = rx1 - rx0, tx1 - tx0, cpu1 - cpu0
    return {"media": engine.media, "calls": calls, "legs": len(legs), "seconds": round(t1 - t0, 2),
            "received": received, "sent": sent, "cpu_seconds": round(cpu, 3),
            "us_per_packet": round(1e6 * cpu / max(1, received + sent), 3),
            "packets_per_core": round((received + sent) / max(cpu, 1e-9)),
            "tool_cpu_percent": round(100 * cpu / max(t1 - t0, 1e-9), 1),
            "srtp_errors": snap["srtp_errors"], "verified": snap["rx_verified"], "lost": snap["lost"], "late_ticks": snap["late_ticks"],
            "stand_in": json.loads(out.strip().splitlines()[-1]) if out.strip() else {},
            "expected_received": round(calls * TALKERS * (USERS_PER_CALL - 1) * (t1 - t0) / TICK)}


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.loadtool_cost", description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=50, help="8-user calls with 2 talkers (default 50)")
    parser.add_argument("--seconds", type=float, default=3.0, help="steady window per run")
    parser.add_argument("--rounds", type=int, default=3, help="engines alternated this many times")
    parser.add_argument("--engines", default=",".join(ENGINES),
                        help="comma-separated: python,native,shared; a native engine with :MS waits MS ms between "
                             "busy drains, with +trio waits with Trio sleeps, not a timerfd, with +maintain-all maintains "
                             "every connected leg every 50 ms, with +walk-all gives the send tick every leg, not "
                             "only those with sources; any engine with +gc-default runs with CPython's "
                             "default collector settings; any engine with @N "
                             "decrypts 1 received packet in N (A/B in one run)")
    parser.add_argument("--delay-sample", type=int, default=4,
                        help="decrypt 1 received packet in N for the stamp (capacity benches: 4; callsd loadtest: 1)")
    parser.add_argument("--json", help="write the results here too")
    parser.add_argument("--stand-in", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.stand_in:
        serve_stand_in(args.stand_in)
        return 0
    import trio

    result = trio.run(compare, args.engines.split(","), args.calls, args.seconds, args.rounds, args.delay_sample)
    text = json.dumps(result, indent=1)
    if args.json:
        Path(args.json).write_text(text + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "runs"}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
