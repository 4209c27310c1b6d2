"""Forwarding benchmark: SFU CPU per forwarded packet on the real receive -> unprotect -> rewrite -> protect -> sendto
path, on loopback.

    python -m bench.forward [--seconds 5] [--senders 1] [--receivers 4] [--pps 5000] [--sizes 160,1200]
                            [--forwarder glue|minimal] [--paths python,native] [--rounds 1] [--json] [--profile]
                            [--twcc]

Three processes: this one runs the SFU (a `UdpEndpoint` whose handler forwards every publisher packet to every
receiver), one child runs the SRTP senders and one the receivers. The children connect with the real ICE + DTLS
client (callsd.peer, the project's one client engine), so the SFU uses keys from a real handshake. The SFU's CPU is this process's CPU
time (`time.process_time`, all threads) over the measurement window; children are not counted.

Printed per packet size: SFU CPU µs per forwarded (egress) packet, the egress packets/s one core could sustain at
that cost, the egress rate actually offered, and loss (1 - received / expected at the receivers, counted on the
wire; every 64th packet is also decrypted by the receiver to check it is valid SRTP), split into ingress loss
(sender -> SFU socket: the SFU fell behind and its receive buffer overflowed) and egress loss (SFU -> receivers).
On a shared 2-core machine all three processes compete for CPU: loss at high rates says more about the machine
than about the SFU, so compare the CPU figure across rates and read loss at rates the machine can carry.

`--forwarder glue` (the default) forwards through adapters/media/forwarder.py (per-route SSRC/seq/timestamp rewrite,
header-extension mapping, reception stats); `minimal` only rewrites the SSRC (Python path only).

`--paths` runs the same workload through each receive path (`rtc.fast_path`, adapters/media/paths.py), alternating
them size by size (and `--rounds` times) so both see the same machine. `--json` prints one JSON object instead of
the table: ``{"paths": {"python": {"us_per_egress_packet": ..., "rows": [...]}, "native": {...}},
"native_over_python": ..., "conditions": {...}}``; a path's figure is its CPU over all its rows divided by all the
packets it forwarded.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import selectors
import sys
import time
from multiprocessing.connection import Connection
from types import SimpleNamespace
from typing import Any

import trio
from callsd.adapters.media.dtls import Certificate
from callsd.adapters.media.paths import make_path
from callsd.adapters.media.transport import Peer, TransportConfig, UdpEndpoint
from callsd.adapters.media.twcc_send import TransportSequencer
from callsd.peer import MediaClient

PT = 111
SAMPLE = 64  # receivers decrypt one packet in SAMPLE


# --- children ------------------------------------------------------------------------------------------------------

def _make_clients(server: tuple[str, int], specs: list[dict[str, str]], cert_pem: tuple[bytes, bytes],
                  server_fp: str) -> list[MediaClient]:
    cert = Certificate.from_pem(*cert_pem)
    return [MediaClient(server, server_ufrag=s["s_ufrag"], server_pwd=s["s_pwd"], server_fingerprint=server_fp,
                        certificate=cert, ufrag=s["c_ufrag"], pwd=s["c_pwd"], rcvbuf=16 * 1024 * 1024)
            for s in specs]


async def _connect_all(clients: list[MediaClient]) -> None:
    async with trio.open_nursery() as nursery:
        for c in clients:
            nursery.start_soon(c.connect, 10.0)


def sender_main(conn: Connection, server: tuple[str, int], specs: list[dict[str, str]],
                cert_pem: tuple[bytes, bytes], server_fp: str) -> None:
    clients = _make_clients(server, specs, cert_pem, server_fp)
    trio.run(_connect_all, clients)
    conn.send("ready")
    seqs = [0] * len(clients)
    while True:
        cmd = conn.recv()
        if cmd[0] == "quit":
            break
        _, size, seconds, pps, burst_ms = cmd
        payload = bytes(size - 12)
        interval = burst_ms / 1000.0
        per_burst = pps * interval
        credit = 0.0
        sent = 0
        start = time.perf_counter()
        end = start + seconds
        next_t = start
        socks = [(c.srtp, c.sock.sendto, c.server, 0x1000 + i) for i, c in enumerate(clients)]
        while True:
            now = time.perf_counter()
            if now >= end:
                break
            credit += per_burst
            n = int(credit)
            credit -= n
            for i, (srtp, sendto, addr, ssrc) in enumerate(socks):
                seq = seqs[i]
                head = ssrc.to_bytes(4, "big")
                for _ in range(n):
                    seq += 1
                    plain = (bytes((0x80, PT)) + (seq & 0xFFFF).to_bytes(2, "big")
                             + ((seq * 960) & 0xFFFFFFFF).to_bytes(4, "big") + head + payload)
                    data = srtp.protect_rtp(plain)
                    try:
                        sendto(data, addr)
                        sent += 1
                    except BlockingIOError:
                        pass
                seqs[i] = seq
            next_t += interval
            delay = next_t - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
        conn.send(("sent", sent, time.perf_counter() - start))
    for c in clients:
        c.close()


def receiver_main(conn: Connection, server: tuple[str, int], specs: list[dict[str, str]],
                  cert_pem: tuple[bytes, bytes], server_fp: str) -> None:
    clients = _make_clients(server, specs, cert_pem, server_fp)
    trio.run(_connect_all, clients)
    conn.send("ready")
    sel = selectors.DefaultSelector()
    for i, c in enumerate(clients):
        sel.register(c.sock, selectors.EVENT_READ, i)
    sel.register(conn, selectors.EVENT_READ, -1)
    buf = bytearray(4096)
    while True:
        cmd = conn.recv()
        if cmd[0] == "quit":
            break
        counts = [0] * len(clients)
        bad = 0
        checked = 0
        running = True
        while running:
            for key, _ in sel.select(0.5):
                idx = key.data
                if idx < 0:
                    conn.recv()  # "stop"
                    running = False
                    continue
                sock = key.fileobj
                recv_into = sock.recv_into  # type: ignore[union-attr]
                srtp = clients[idx].srtp
                n = counts[idx]
                while True:
                    try:
                        ln = recv_into(buf)
                    except BlockingIOError:
                        break
                    n += 1
                    if n % SAMPLE == 0 and srtp is not None:
                        checked += 1
                        if srtp.unprotect_rtp(bytes(buf[:ln])) is None:
                            bad += 1
                counts[idx] = n
        conn.send(("received", counts, checked, bad))
    for c in clients:
        c.close()


# --- the SFU side --------------------------------------------------------------------------------------------------

class MinimalForwarder:
    """Rewrites the SSRC per receiver and sends: the least an SFU does."""

    def __init__(self) -> None:
        self.routes: dict[str, list[tuple[Peer, bytes]]] = {}

    def add_route(self, sender: Peer, receiver: Peer, ssrc: int) -> None:
        self.routes.setdefault(sender.session_id, []).append((receiver, ssrc.to_bytes(4, "big")))

    def finish(self, senders: list[Peer]) -> None:
        for p in senders:
            p.data = tuple(self.routes.get(p.session_id, ()))

    def on_rtp(self, peer: Peer, plain: bytes) -> None:
        head = plain[:8]
        tail = plain[12:]
        for out, ssrc in peer.data:
            out.send_rtp(head + ssrc + tail)


class BenchSession:
    """What the plane's Session is to the forwarder (native.ForwardingSession): the publisher's SSRC table."""

    def __init__(self) -> None:
        self.closed = False
        self.inbound: dict[int, Any] = {}


class GlueForwarder:
    """Drives adapters/media/forwarder.py: one audio/video InTrack per sender, one OutRoute per receiver."""

    def __init__(self, media: str) -> None:
        from callsd.adapters.media.forwarder import Forwarder, InTrack, OutRoute
        from callsd.core.calls.events import TrackKind

        self._InTrack, self._OutRoute, self._kind = InTrack, OutRoute, TrackKind
        self.fwd = Forwarder(send_pli=lambda _t: None, on_voice=lambda _s, _v: None)
        self.media = media
        self.tracks: dict[str, Any] = {}

    def add_route(self, sender: Peer, receiver: Peer, ssrc: int) -> None:
        track = self.tracks.get(sender.session_id)
        if track is None:
            kind = self._kind.AUDIO if self.media == "audio" else self._kind.VIDEO
            track = self._InTrack(track_id=f"t-{sender.session_id}", session=sender.session_id, kind=kind,
                                  media=self.media, mid="0", ssrc=None, clock_rate=48000,
                                  codecs={PT: ("opus", 48000, 2, "")}, ext={}, stream_id="s")
            self.tracks[sender.session_id] = track
        route = self._OutRoute(track=track, receiver=SimpleNamespace(peer=receiver), ssrc=ssrc, mid="0",
                               paused=False, ts_offset=0)
        route.set_mapping({PT: PT}, (0,) * 16)
        route.negotiated = True
        track.routes[receiver.session_id] = route
        track.relive()

    def finish(self, senders: list[Peer]) -> None:
        for i, p in enumerate(senders):
            track = self.tracks[p.session_id]
            track.ssrc = 0x1000 + i
            p.data = BenchSession()
            p.data.inbound[track.ssrc] = track

    def on_rtp(self, peer: Peer, plain: bytes) -> None:
        self.fwd.on_rtp(peer.data.inbound, plain)


class BenchHandler:
    def __init__(self, forwarder: Any) -> None:
        self.forwarder = forwarder
        self.connected = 0

    def on_connected(self, peer: Peer) -> None:
        self.connected += 1

    def on_closed(self, peer: Peer, reason: str) -> None:
        print(f"peer {peer.session_id} closed: {reason}", file=sys.stderr)

    def on_rtp(self, peer: Peer, plain: bytes) -> None:
        self.forwarder.on_rtp(peer, plain)

    def on_rtcp(self, peer: Peer, plain: bytes) -> None:
        pass


def _direct(glue_on_rtp: Any) -> Any:
    def on_rtp(peer: Peer, plain: bytes) -> None:
        glue_on_rtp(peer.data.inbound, plain)

    return on_rtp


def calibrate_sendto(size: int, rounds: int = 200, per_round: int = 100) -> float:
    """CPU µs of one loopback sendto of `size` bytes (kernel delivery to the receiving socket included)."""
    import socket

    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind(("127.0.0.1", 0))
    rx.setblocking(False)
    tx.setblocking(False)
    addr, data, spent = rx.getsockname(), bytes(size), 0.0
    for _ in range(rounds):
        t = time.process_time()
        for _ in range(per_round):
            tx.sendto(data, addr)
        spent += time.process_time() - t
        while True:
            try:
                rx.recv(4096)
            except BlockingIOError:
                break
    rx.close()
    tx.close()
    return spent / (rounds * per_round) * 1e6


def _spec(kind: str, i: int) -> dict[str, str]:
    return {"sid": f"{kind}{i}", "s_ufrag": f"s{kind}{i}", "s_pwd": os.urandom(12).hex(),
            "c_ufrag": f"c{kind}{i}", "c_pwd": os.urandom(12).hex()}


async def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    sizes = [int(s) for s in args.sizes.split(",")]
    paths = args.paths.split(",")
    results = []
    for _round in range(args.rounds):
        for size in sizes:
            for path in paths:
                results.append(await run_one(args, size, path))
    return results


async def run_one(args: argparse.Namespace, size: int, path_name: str) -> dict[str, Any]:
    """One measurement: `size`-byte packets through the `path_name` receive path."""
    media = "audio" if size <= 300 else "video"
    forwarder: Any = GlueForwarder(media) if args.forwarder == "glue" else MinimalForwarder()
    handler = BenchHandler(forwarder)
    path = make_path(path_name, forwarder.fwd if isinstance(forwarder, GlueForwarder) else None)
    if path.name != path_name:
        raise SystemExit(f"bench.forward: the {path_name} path is not available")
    endpoint = UdpEndpoint(TransportConfig(host="127.0.0.1", port=0, batch=args.batch,
                                           coalesce=args.coalesce_ms / 1000.0), handler, path=path)
    async with trio.open_nursery() as nursery:
        server = await nursery.start(endpoint.serve)
        client_cert = Certificate.generate("bench-client")
        pem = client_cert.to_pem()
        s_specs = [_spec("snd", i) for i in range(args.senders)]
        r_specs = [_spec("rcv", i) for i in range(args.receivers)]
        peers: dict[str, Peer] = {}
        for s in s_specs + r_specs:
            peers[s["sid"]] = endpoint.add_peer(s["sid"], s["s_ufrag"], s["s_pwd"], s["c_ufrag"], s["c_pwd"],
                                                client_cert.fingerprint)
        senders = [peers[s["sid"]] for s in s_specs]
        for i, s in enumerate(s_specs):
            for j, r in enumerate(r_specs):
                forwarder.add_route(peers[s["sid"]], peers[r["sid"]], 0x5000 + i * 100 + j)
        forwarder.finish(senders)
        # Skip one level of indirection on the hot path: the endpoint calls the forwarding function directly.
        if isinstance(forwarder, GlueForwarder):
            handler.on_rtp = _direct(forwarder.fwd.on_rtp)  # type: ignore[method-assign]
        else:
            handler.on_rtp = forwarder.on_rtp  # type: ignore[method-assign]

        ctx = mp.get_context("spawn")
        s_conn, s_child = ctx.Pipe()
        r_conn, r_child = ctx.Pipe()
        procs = [
            ctx.Process(target=sender_main, args=(s_child, server, s_specs, pem, endpoint.fingerprint)),
            ctx.Process(target=receiver_main, args=(r_child, server, r_specs, pem, endpoint.fingerprint)),
        ]
        for p in procs:
            p.start()
        try:
            for conn in (s_conn, r_conn):
                msg = await trio.to_thread.run_sync(conn.recv)
                assert msg == "ready", msg
            assert handler.connected == args.senders + args.receivers, handler.connected
            if args.twcc:  # receivers that negotiated transport-cc: each packet to them is stamped (twcc_send.py)
                for r in r_specs:
                    peers[r["sid"]].twcc = TransportSequencer(3, time.monotonic)
            r_conn.send(("run",))
            c = endpoint.counters
            in0, out0 = c.rtp_in, c.rtp_out
            drops0 = sum(c.drops().values())
            cpu0, wall0 = time.process_time(), time.perf_counter()
            prof = None
            if args.profile:
                import cProfile

                prof = cProfile.Profile()
                prof.enable()
            s_conn.send(("run", size, args.seconds, args.pps, args.burst_ms))
            _, sent, send_wall = await trio.to_thread.run_sync(s_conn.recv)
            # Let the tail drain through the SFU.
            for _ in range(100):
                before = c.rtp_in
                await trio.sleep(0.05)
                if c.rtp_in == before:
                    break
            cpu1, wall1 = time.process_time(), time.perf_counter()
            if prof is not None:
                prof.disable()
            r_conn.send(("stop",))
            _, counts, checked, bad = await trio.to_thread.run_sync(r_conn.recv)
            for conn in (s_conn, r_conn):
                conn.send(("quit",))
        finally:
            for p in procs:
                p.join(timeout=10)
                if p.is_alive():
                    p.kill()
        forwarded = c.rtp_out - out0
        ingress = c.rtp_in - in0
        expected = sent * args.receivers
        received = sum(counts)
        cpu = cpu1 - cpu0
        us = cpu / forwarded * 1e6 if forwarded else float("nan")
        row = {
            "size": size, "sent": sent, "ingress": ingress, "forwarded": forwarded, "received": received,
            "us_per_pkt": us, "per_core_pps": 1e6 / us if forwarded else 0.0,
            "offered_egress_pps": expected / send_wall, "cpu_s": cpu, "wall_s": wall1 - wall0,
            "loss_pct": 100.0 * (1 - received / expected) if expected else float("nan"),
            "sfu_drops": sum(c.drops().values()) - drops0, "checked": checked, "bad": bad,
            "in_loss_pct": 100.0 * (1 - ingress / sent) if sent else float("nan"),
            "out_loss_pct": 100.0 * (1 - received / forwarded) if forwarded else float("nan"),
            "sendto_us": calibrate_sendto(size + 28),
        }
        if prof is not None:
            import pstats

            pstats.Stats(prof).sort_stats("tottime").print_stats(18)
        nursery.cancel_scope.cancel()
    row["path"] = path_name
    return row


def print_table(args: argparse.Namespace, results: list[dict[str, Any]]) -> None:
    print(f"\nforward bench: {args.senders} sender(s) x {args.receivers} receiver(s), {args.pps} pps per sender, "
          f"{args.seconds} s, forwarder={args.forwarder}, batch={args.batch}, burst={args.burst_ms} ms, "
          f"coalesce={args.coalesce_ms} ms")
    print(f"{'path':>7} {'bytes':>6} {'µs/pkt':>8} {'egress pps/core':>16} {'offered pps':>12} {'forwarded':>10} "
          f"{'loss %':>7} {'(in':>6} {'out)':>6} {'SFU drops':>9} {'SRTP ok':>9} {'sendto µs':>9} {'SFU CPU%':>8}")
    for r in results:
        print(f"{r['path']:>7} {r['size']:>6} {r['us_per_pkt']:>8.2f} {r['per_core_pps']:>16,.0f} "
              f"{r['offered_egress_pps']:>12,.0f} "
              f"{r['forwarded']:>10} {r['loss_pct']:>7.3f} {r['in_loss_pct']:>6.2f} {r['out_loss_pct']:>6.2f} "
              f"{r['sfu_drops']:>9} "
              f"{r['checked'] - r['bad']:>4}/{r['checked']:<4} {r['sendto_us']:>9.2f} "
              f"{100 * r['cpu_s'] / r['wall_s']:>8.0f}")
    print("sendto µs: CPU of one bare loopback sendto of that size in this process (it includes the kernel's")
    print("delivery to the receiving socket), the floor under the per-packet figure on loopback. SFU CPU%: the SFU's")
    print("CPU time over the window's wall time; ingress loss while it is well under 100 % means the machine did not")
    print("give the SFU the CPU it needed (other processes), not that the SFU was saturated.")
    print(f"load average at the end: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")


def summary(args: argparse.Namespace, results: list[dict[str, Any]], load_start: tuple[float, ...]) -> dict[str, Any]:
    """The `--json` object: per path, CPU over all its rows / all packets it forwarded, and its rows."""
    paths: dict[str, Any] = {}
    for name in args.paths.split(","):
        rows = [r for r in results if r["path"] == name]
        cpu = sum(r["cpu_s"] for r in rows)
        forwarded = sum(r["forwarded"] for r in rows)
        paths[name] = {"us_per_egress_packet": cpu / forwarded * 1e6 if forwarded else None,
                       "loss_pct": max((r["loss_pct"] for r in rows), default=None), "rows": rows}
    py, nat = paths.get("python"), paths.get("native")
    ratio = None
    if py and nat and py["us_per_egress_packet"] and nat["us_per_egress_packet"]:
        ratio = nat["us_per_egress_packet"] / py["us_per_egress_packet"]
    return {
        "paths": paths,
        "native_over_python": ratio,
        "conditions": {
            "senders": args.senders, "receivers": args.receivers, "pps_per_sender": args.pps,
            "seconds": args.seconds, "sizes": args.sizes, "rounds": args.rounds, "forwarder": args.forwarder,
            "burst_ms": args.burst_ms, "cpus": os.cpu_count(), "load_average_start": load_start,
            "load_average_end": os.getloadavg(), "unix_time": time.time(),
        },
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.forward", description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--senders", type=int, default=1)
    ap.add_argument("--receivers", type=int, default=4)
    ap.add_argument("--pps", type=float, default=5000.0, help="packets per second per sender")
    ap.add_argument("--burst-ms", type=float, default=1.0, help="sender pacing granularity")
    ap.add_argument("--sizes", default="160,1200", help="plain RTP packet sizes to run, comma separated")
    ap.add_argument("--forwarder", choices=("glue", "minimal"), default="glue")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--coalesce-ms", type=float, default=0.0,
                    help="TransportConfig.coalesce: pause after a non-empty read so one wakeup serves more packets")
    ap.add_argument("--profile", action="store_true", help="cProfile the SFU during the measurement")
    ap.add_argument("--twcc", action="store_true",
                    help="receivers stamp transport-wide sequence numbers (the native step stamps in C)")
    ap.add_argument("--paths", default="python,native", help="receive paths to compare (rtc.fast_path values)")
    ap.add_argument("--rounds", type=int, default=1, help="repeat the whole comparison, paths alternating")
    ap.add_argument("--json", action="store_true", help="print one JSON object (see the module docstring)")
    args = ap.parse_args(argv)
    if args.seconds <= 0 or args.seconds > 120:
        ap.error("--seconds must be in (0, 120]")
    if not 1 <= args.rounds <= 20:
        ap.error("--rounds must be in 1..20")
    if not set(args.paths.split(",")) <= {"python", "native"}:
        ap.error("--paths takes python and/or native")
    if args.forwarder == "minimal" and "native" in args.paths.split(","):
        ap.error("--forwarder minimal runs on the Python path only (--paths python)")
    load_start = os.getloadavg()
    results = trio.run(run, args)
    if args.json:
        print(json.dumps(summary(args, results, load_start), indent=1))
    else:
        print_table(args, results)


if __name__ == "__main__":
    main()
