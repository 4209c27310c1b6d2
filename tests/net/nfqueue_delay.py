"""A userspace ``netem`` for the namespace tests: holds each queued packet ``delay ± jitter`` and drops ``loss`` of them.

    python nfqueue_delay.py --queue 0 --delay 0.08 --jitter 0.02 --loss 0.02 --seconds 120
    python nfqueue_delay.py --queue 1 --rate-bps 300000 --queue-ms 200 --delay 0 --jitter 0

With ``--rate-bps`` it is also a link of that capacity (a token-bucket *shaper*, like ``tc tbf``, which the
kernel these tests were written on lacked): each packet leaves when the ones before it have been sent at that rate, and one that would wait
longer than ``--queue-ms`` is dropped (a drop-tail queue); the packet's length comes from the first bytes of its IP
header, copied with it (``NFQNL_COPY_PACKET``, 6 bytes). Unlike a kernel policer (nftables ``limit``, xtables
``hashlimit``: their byte buckets hold at least one second of the rate, so a short burst at twice the rate passes
whole), a queue shows the sender the link's rate at once, in delay and then in loss.

The kernel of these machines has no ``sch_netem`` (``tc qdisc add ... netem``: "Specified qdisc kind is unknown")
and nftables' native ``queue`` expression is missing too, but the xtables ``NFQUEUE`` target and
``nfnetlink_queue`` are there. So a router namespace sends the forwarded packets of a link to an NFQUEUE
(``iptables -A FORWARD -i eth1 -j NFQUEUE --queue-num 0``: Debian's iptables, through nft_compat), and this
process, started in that namespace with ``ip netns exec``, receives each packet's id over netlink
(``NETLINK_NETFILTER``, copy mode "meta": the payload is never copied), picks a verdict time
``now + uniform(delay - jitter, delay + jitter)`` (netem's default uniform jitter; like netem with jitter, packets
may leave out of order) and then tells the kernel ``NF_ACCEPT``: the real packet continues through the router's
forward path (NAT included) untouched. ``--loss`` packets get ``NF_DROP`` at once.

The netlink messages are the ones of ``linux/netfilter/nfnetlink_queue.h``, written here with ``struct`` (no C
library needed): a config message binds the queue and sets the copy mode, the kernel sends one ``NFQNL_MSG_PACKET``
per packet, and a ``NFQNL_MSG_VERDICT`` per id releases it (ids may be verdicted in any order).

Prints ``ready`` once bound; on SIGTERM/SIGINT or after ``--seconds`` it accepts whatever it still holds, unbinds,
and prints one JSON line: packets seen, dropped, accepted, and the hold times it applied (min/mean/max, seconds).
"""

from __future__ import annotations

import argparse
import errno
import heapq
import json
import os
import random
import select
import signal
import socket
import struct
import sys
import time

NETLINK_NETFILTER = 12
NFNL_SUBSYS_QUEUE = 3
NFQNL_MSG_PACKET, NFQNL_MSG_VERDICT, NFQNL_MSG_CONFIG = 0, 1, 2
NFQA_CFG_CMD, NFQA_CFG_PARAMS, NFQA_CFG_QUEUE_MAXLEN = 1, 2, 3
NFQNL_CFG_CMD_BIND, NFQNL_CFG_CMD_UNBIND = 1, 2
NFQNL_COPY_META, NFQNL_COPY_PACKET = 1, 2
NFQA_PACKET_HDR, NFQA_VERDICT_HDR, NFQA_PAYLOAD = 1, 2, 10
LENGTH_BYTES = 6  # copied per packet in rate mode: an IPv4 total length (bytes 2-3) or IPv6 payload length (4-5)
NF_DROP, NF_ACCEPT = 0, 1
NLM_F_REQUEST, NLM_F_ACK = 1, 4
NLMSG_ERROR = 2
NETLINK_NO_ENOBUFS = 5
SOL_NETLINK = 270
NLMSG_HEADER = struct.Struct("=IHHII")  # len, type, flags, seq, pid (host byte order)


def _attribute(kind: int, payload: bytes) -> bytes:
    body = struct.pack("=HH", 4 + len(payload), kind) + payload
    return body + b"\0" * (-len(body) % 4)


def _message(msg: int, queue: int, attributes: bytes, *, seq: int, flags: int = NLM_F_REQUEST) -> bytes:
    nfgen = struct.pack("=BB", socket.AF_UNSPEC, 0) + struct.pack("!H", queue)  # family, version, res_id (be16)
    return NLMSG_HEADER.pack(NLMSG_HEADER.size + len(nfgen) + len(attributes), (NFNL_SUBSYS_QUEUE << 8) | msg,
                             flags, seq, 0) + nfgen + attributes


def _messages(data: bytes) -> list[tuple[int, bytes]]:
    """The (type, payload after the netlink header) of each message in one datagram."""
    out, at = [], 0
    while at + NLMSG_HEADER.size <= len(data):
        length, kind, _flags, _seq, _pid = NLMSG_HEADER.unpack_from(data, at)
        if length < NLMSG_HEADER.size:
            break
        out.append((kind, data[at + NLMSG_HEADER.size:at + length]))
        at += (length + 3) & ~3
    return out


def _packet_id(payload: bytes) -> tuple[int, int] | None:
    """The packet id in an NFQNL_MSG_PACKET (its NFQA_PACKET_HDR attribute, after the 4-byte nfgenmsg) and the IP
    packet's length when its first bytes were copied (NFQA_PAYLOAD), else 0."""
    at = 4
    packet: int | None = None
    size = 0
    while at + 4 <= len(payload):
        length, kind = struct.unpack_from("=HH", payload, at)
        if length < 4:
            break
        if kind & 0x7FFF == NFQA_PACKET_HDR:
            packet = struct.unpack_from("!I", payload, at + 4)[0]
        elif kind & 0x7FFF == NFQA_PAYLOAD and length >= 4 + LENGTH_BYTES:
            head = payload[at + 4:at + 4 + LENGTH_BYTES]
            size = (head[2] << 8 | head[3]) if head[0] >> 4 == 4 else 40 + (head[4] << 8 | head[5])
        at += (length + 3) & ~3
    return None if packet is None else (packet, size)


class Queue:
    """One bound NFQUEUE: configure, receive packet ids, send verdicts."""

    def __init__(self, number: int, copy_bytes: int = 0) -> None:
        self.number = number
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        self.sock.setsockopt(SOL_NETLINK, NETLINK_NO_ENOBUFS, 1)
        self.sock.bind((0, 0))
        self.seq = 0
        self._config(_attribute(NFQA_CFG_CMD, struct.pack("!BxH", NFQNL_CFG_CMD_BIND, socket.AF_INET)))
        mode = NFQNL_COPY_PACKET if copy_bytes else NFQNL_COPY_META
        self._config(_attribute(NFQA_CFG_PARAMS, struct.pack("!IB", copy_bytes, mode)))
        self._config(_attribute(NFQA_CFG_QUEUE_MAXLEN, struct.pack("!I", 8192)))
        self.sock.setblocking(False)

    def _config(self, attributes: bytes) -> None:
        """Send one config message and wait for its ack; OSError with the kernel's errno if it refuses."""
        self.seq += 1
        self.sock.send(_message(NFQNL_MSG_CONFIG, self.number, attributes, seq=self.seq,
                                flags=NLM_F_REQUEST | NLM_F_ACK))
        for _ in range(1000):  # packet messages may come first; bounded
            for kind, payload in _messages(self.sock.recv(65536)):
                if kind == NLMSG_ERROR:
                    code = -struct.unpack_from("=i", payload)[0]
                    if code:
                        raise OSError(code, f"nfnetlink_queue config of queue {self.number}: {os.strerror(code)}")
                    return
        raise OSError(errno.EPROTO, "nfnetlink_queue config: no ack")

    def receive(self) -> list[tuple[int, int]]:
        """(id, IP length or 0) of the packets queued since the last call (non-blocking; drains the socket)."""
        ids: list[tuple[int, int]] = []
        while True:
            try:
                data = self.sock.recv(65536)
            except BlockingIOError:
                return ids
            for kind, payload in _messages(data):
                if kind == (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET:
                    packet = _packet_id(payload)
                    if packet is not None:
                        ids.append(packet)

    def verdict(self, packet: int, verdict: int) -> None:
        self.seq += 1
        self.sock.send(_message(NFQNL_MSG_VERDICT, self.number,
                                _attribute(NFQA_VERDICT_HDR, struct.pack("!II", verdict, packet)), seq=self.seq))

    def close(self) -> None:
        try:
            self.sock.setblocking(True)
            self.sock.settimeout(2)
            self._config(_attribute(NFQA_CFG_CMD, struct.pack("!BxH", NFQNL_CFG_CMD_UNBIND, socket.AF_INET)))
        finally:
            self.sock.close()


def run(args: argparse.Namespace) -> dict[str, object]:
    rng = random.Random(args.seed)
    rate = args.rate_bps
    queue = Queue(args.queue, LENGTH_BYTES if rate else 0)
    free_at = 0.0  # rate mode: when the link finishes sending what it holds
    stop = False

    def on_signal(_signum: int, _frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    print("ready", flush=True)
    held: list[tuple[float, int, float]] = []  # (release at, packet id, queued at)
    seen = dropped = accepted = 0
    holds: list[float] = []
    poller = select.poll()
    poller.register(queue.sock, select.POLLIN)
    end = time.monotonic() + args.seconds
    while not stop and time.monotonic() < end:
        wait = (held[0][0] - time.monotonic()) if held else 0.2
        poller.poll(max(0, min(200, int(wait * 1000) + 1)) if wait > 0 else 0)
        now = time.monotonic()
        for packet, size in queue.receive():
            seen += 1
            start = max(now, free_at)
            if rng.random() < args.loss or (rate and start - now > args.queue_ms / 1000):
                queue.verdict(packet, NF_DROP)  # random loss, or a full link queue (drop-tail)
                dropped += 1
                continue
            if rate:  # a link of `rate` bit/s: each packet leaves when the ones before it have been sent
                free_at = start + size * 8 / rate
            hold = (free_at - now if rate else 0.0) + rng.uniform(args.delay - args.jitter, args.delay + args.jitter)
            heapq.heappush(held, (now + hold, packet, now))
        now = time.monotonic()
        while held and held[0][0] <= now:
            _due, packet, queued = heapq.heappop(held)
            queue.verdict(packet, NF_ACCEPT)
            accepted += 1
            holds.append(now - queued)
    for _due, packet, _queued in held:
        queue.verdict(packet, NF_ACCEPT)
    queue.close()
    return {"seen": seen, "dropped": dropped, "accepted": accepted + len(held),
            "hold_s": {"min": round(min(holds), 4), "mean": round(sum(holds) / len(holds), 4),
                       "max": round(max(holds), 4)} if holds else None}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queue", type=int, default=0)
    parser.add_argument("--delay", type=float, default=0.08, help="mean hold per packet, seconds")
    parser.add_argument("--jitter", type=float, default=0.02, help="hold is uniform in delay ± jitter")
    parser.add_argument("--loss", type=float, default=0.0, help="fraction of packets dropped")
    parser.add_argument("--seconds", type=float, default=300, help="exit after this long at most")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--rate-bps", type=float, default=0.0,
                        help="a link of this many bit/s (0: no limit): packets queue behind each other")
    parser.add_argument("--queue-ms", type=float, default=200.0,
                        help="with --rate-bps: a packet that would wait longer than this is dropped (drop-tail)")
    sys.stdout.write(json.dumps(run(parser.parse_args())) + "\n")
