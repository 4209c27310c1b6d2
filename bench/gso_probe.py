"""Does UDP GSO pay on loopback? Kernel CPU per datagram: k plain sends vs one ``UDP_SEGMENT`` send of k segments.

    python -m bench.gso_probe [--size 190] [--rounds 20000]

GSO (``UDP_SEGMENT``, Linux 4.18+) sends k equal-size datagrams to one destination as one skb through the stack.
For an SFU it only applies where one receiver gets several equal-size packets in one send batch (issue 13); this
probe measures the ceiling of the gain, system CPU per delivered datagram (getrusage around the sends, receiver
drained outside the timed part), so the decision can be made from a number.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import struct

UDP_SEGMENT = 103  # <linux/udp.h>


def _drain(rx: socket.socket) -> int:
    n = 0
    while True:
        try:
            rx.recv(4096)
        except BlockingIOError:
            return n
        n += 1


def measure(k: int, gso: bool, size: int, rounds: int) -> float:
    """µs of system CPU per datagram delivered."""
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind(("127.0.0.1", 0))
    rx.setblocking(False)
    rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tx.connect(rx.getsockname())
    packet = bytes(size)
    segment = [(socket.SOL_UDP, UDP_SEGMENT, struct.pack("=H", size))]
    got, system = 0, 0.0
    for _ in range(max(1, rounds // 100)):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_stime
        for _ in range(100):
            if gso:
                tx.sendmsg([packet * k], segment)
            else:
                for _ in range(k):
                    tx.send(packet)
        system += resource.getrusage(resource.RUSAGE_SELF).ru_stime - before
        got += _drain(rx)
    rx.close()
    tx.close()
    return round(system / max(1, got) * 1e6, 2)


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.gso_probe", description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=190)
    ap.add_argument("--rounds", type=int, default=20000)
    args = ap.parse_args()
    rows = [{"segments": k, "plain_us": measure(k, False, args.size, args.rounds),
             "gso_us": measure(k, True, args.size, args.rounds)} for k in (2, 4) for _ in range(2)]
    print(json.dumps({"size": args.size, "loadavg": os.getloadavg(), "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
