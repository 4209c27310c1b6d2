"""STUN rejection benchmark: CPU µs per refused binding request, the pre-fix path against today's, in one run.

    python -m bench.stun [--packets 20000] [--rounds 5]

Issue 8 item 6 measured 26–34 µs per unknown-ufrag or bad-integrity packet: the old `_on_stun` ran aioice's full
parser (every attribute, FINGERPRINT's CRC) before it looked the ufrag up, and checked MESSAGE-INTEGRITY (HMAC-SHA1)
for every request naming a peer. This bench feeds the same datagrams to both paths in one process, alternating
rounds so that machine load hits both alike, and prints µs per packet and the ratio:

* ``unknown ufrag``: USERNAME names no peer. Old: full parse, then lookup. New: a peek at USERNAME, then lookup.
* ``bad integrity``: USERNAME names a peer, the HMAC is wrong, sent from one source IP. Old: full parse + HMAC every
  time. New: the source's failure bucket empties after ``stun_failure_burst`` packets, then requests are refused
  before parsing (``stun_rate_limited``).
* ``spoofed sources``: bad integrity again, each packet from a different 127.x.y.z address (the limiter table is
  fixed-size, so this is its worst case: every packet lands on a fresh bucket until the table's buckets are spent).

Nothing is sent: the endpoint is not bound, and the handler path is called directly, so the figures are the
server's CPU per refused packet without the socket read (~2 µs), which both paths share.
"""

from __future__ import annotations

import argparse
import functools
import time
from collections.abc import Callable
from typing import Any

import trio
from aioice import stun
from callsd.adapters.media.dtls import Certificate
from callsd.adapters.media.ice import StunRejected, client_binding_request
from callsd.adapters.media.transport import Peer, TransportConfig, UdpEndpoint

FINGERPRINT = "sha-256 " + ":".join(["AB"] * 32)


class _NoHandler:
    def on_connected(self, peer: Peer) -> None: ...
    def on_closed(self, peer: Peer, reason: str) -> None: ...
    def on_rtp(self, peer: Peer, plain: bytes) -> None: ...
    def on_rtcp(self, peer: Peer, plain: bytes) -> None: ...


def legacy_on_stun(endpoint: UdpEndpoint, data: bytes, addr: Any) -> None:
    """The refusal path before the fix (transport.py at 70f5356): parse everything, then look the ufrag up."""
    c = endpoint.counters
    c.stun_in += 1
    try:
        try:  # aioice's full parse, as ice.py did then
            message = stun.parse_message(data)
        except Exception as exc:
            raise StunRejected("malformed") from exc
        local, _, remote = str(message.attributes.get("USERNAME", "")).partition(":")
        peer = endpoint._by_ufrag.get(local)
        if peer is None:
            raise StunRejected("stun_unknown_user")
        if local != peer.ice.local_ufrag or remote != peer.ice.remote_ufrag:
            raise StunRejected("stun_unknown_user")
        if not message.check_message_integrity(peer.ice.local_pwd.encode()):
            raise StunRejected("stun_integrity")
    except StunRejected as rejected:
        c.count_drop(rejected.reason)


def _endpoint() -> UdpEndpoint:
    endpoint = UdpEndpoint(TransportConfig(port=0), _NoHandler(), certificate=Certificate.generate())
    endpoint.add_peer("s1", "srvufrag", "server-password-0123456789", "cliufrag", "client-password-0123456789",
                      FINGERPRINT)
    return endpoint


def _per_packet(handle: Callable[[bytes, Any], None], packets: list[tuple[bytes, Any]]) -> float:
    start = time.process_time()
    for data, addr in packets:
        handle(data, addr)
    return 1e6 * (time.process_time() - start) / len(packets)


def run(packets: int, rounds: int) -> list[dict[str, Any]]:
    """Run the cases inside Trio, as the server does (the endpoint reads ``trio.current_time()``)."""
    return trio.run(_run, packets, rounds)


async def _run(packets: int, rounds: int) -> list[dict[str, Any]]:
    """Returns one row per case: old and new µs per packet (median over rounds), ratio, new drop reasons."""
    unknown, _ = client_binding_request(server_ufrag="nosuchpeer", client_ufrag="cliufrag",
                                        server_pwd="guessed-password-000000")
    bad, _ = client_binding_request(server_ufrag="srvufrag", client_ufrag="cliufrag",
                                    server_pwd="wrong-password-0000000000")
    assert stun.parse_message(bad).attributes["USERNAME"] == "srvufrag:cliufrag"
    one_source = ("127.0.0.9", 40000)
    cases = {
        "unknown ufrag": [(unknown, one_source)] * packets,
        "bad integrity": [(bad, one_source)] * packets,
        "spoofed sources": [(bad, (f"127.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}", 40000))
                            for i in range(packets)],
    }
    rows = []
    for name, datagrams in cases.items():
        old: list[float] = []
        new: list[float] = []
        drops: dict[str, int] = {}
        for _ in range(rounds):
            legacy = _endpoint()
            old.append(_per_packet(functools.partial(legacy_on_stun, legacy), datagrams))
            fixed = _endpoint()
            new.append(_per_packet(fixed._on_stun, datagrams))
            drops = {k: v for k, v in fixed.counters.drops().items() if v}
        old_us, new_us = sorted(old)[rounds // 2], sorted(new)[rounds // 2]
        rows.append({"case": name, "old_us": round(old_us, 2), "new_us": round(new_us, 2),
                     "ratio": round(old_us / new_us, 1), "new_drops": drops})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.stun", description=__doc__.split("\n\n")[0])
    parser.add_argument("--packets", type=int, default=20000, help="datagrams per case and round")
    parser.add_argument("--rounds", type=int, default=5, help="alternating old/new rounds (median is printed)")
    args = parser.parse_args(argv)
    rows = run(args.packets, args.rounds)
    print(f"{'case':<16} {'old µs/pkt':>10} {'new µs/pkt':>10} {'old/new':>8}  new drops")
    for row in rows:
        print(f"{row['case']:<16} {row['old_us']:>10.2f} {row['new_us']:>10.2f} {row['ratio']:>7.1f}x  "
              f"{row['new_drops']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
