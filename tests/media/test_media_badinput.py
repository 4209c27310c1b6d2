"""Bad input on the RTC port: every hostile or broken datagram is dropped and counted by reason, and a connected
peer beside the flood keeps receiving its media."""

from __future__ import annotations

import os
import random
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio
from callsd.adapters.media.dtls import Certificate
from callsd.adapters.media.ice import client_binding_request
from callsd.adapters.media.transport import Peer, TransportConfig, UdpEndpoint
from callsd.peer import MediaClient

SERVER_CERT = Certificate.generate()
CLIENT_CERT = Certificate.generate("client")


def rtp(seq: int, ssrc: int = 0x1234, size: int = 160) -> bytes:
    return bytes([0x80, 111]) + seq.to_bytes(2, "big") + (seq * 960).to_bytes(4, "big") + ssrc.to_bytes(4, "big") \
        + bytes(size)


class Forwarder:
    """Forwards every packet to every other connected peer; fails the test on any callback it should not get."""

    def __init__(self) -> None:
        self.endpoint: UdpEndpoint | None = None
        self.rtp_seen = 0
        self.closed: list[tuple[str, str]] = []

    def on_connected(self, peer: Peer) -> None:
        pass

    def on_closed(self, peer: Peer, reason: str) -> None:
        self.closed.append((peer.session_id, reason))

    def on_rtp(self, peer: Peer, plain: bytes) -> None:
        self.rtp_seen += 1
        assert self.endpoint is not None
        for other in self.endpoint.peers:
            if other is not peer and other.connected:
                other.send_rtp(plain)

    def on_rtcp(self, peer: Peer, plain: bytes) -> None:
        pass


@asynccontextmanager
async def running() -> AsyncIterator[tuple[UdpEndpoint, Forwarder]]:
    handler = Forwarder()
    endpoint = UdpEndpoint(TransportConfig(host="127.0.0.1", port=0), handler, certificate=SERVER_CERT)
    handler.endpoint = endpoint
    async with trio.open_nursery() as nursery:
        await nursery.start(endpoint.serve)
        try:
            yield endpoint, handler
        finally:
            nursery.cancel_scope.cancel()


async def connected_client(endpoint: UdpEndpoint, session_id: str) -> MediaClient:
    assert endpoint.address is not None
    s_ufrag, s_pwd = f"srv{session_id}", os.urandom(12).hex()
    client = MediaClient(endpoint.address, server_ufrag=s_ufrag, server_pwd=s_pwd,
                         server_fingerprint=endpoint.fingerprint, certificate=CLIENT_CERT)
    endpoint.add_peer(session_id, s_ufrag, s_pwd, client.ufrag, client.pwd, client.fingerprint)
    await client.connect()
    return client


async def settle(endpoint: UdpEndpoint, datagrams: int) -> None:
    """Wait (bounded) until the endpoint has read `datagrams` datagrams in total."""
    for _ in range(300):
        if endpoint.counters.datagrams_in >= datagrams:
            return
        await trio.sleep(0.01)
    raise AssertionError(f"endpoint read {endpoint.counters.datagrams_in} datagrams, expected {datagrams}")


def attacker() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    return sock


def nonzero(drops: dict[str, int]) -> dict[str, int]:
    return {k: v for k, v in drops.items() if v}


async def test_each_kind_of_bad_datagram_is_dropped_under_its_reason() -> None:
    async with running() as (endpoint, handler):
        assert endpoint.address is not None
        client = await connected_client(endpoint, "a")
        base = endpoint.counters.datagrams_in
        evil = attacker()
        stun_ok, _ = client_binding_request(server_ufrag="srva", client_ufrag=client.ufrag,
                                            server_pwd=client.server_pwd)
        good = client.protect_rtp(rtp(1))
        sent_by_client = []

        # From an address nobody authenticated:
        evil.sendto(bytes([200]) + os.urandom(40), endpoint.address)  # no RFC 7983 range -> malformed
        evil.sendto(b"\x80", endpoint.address)  # 1 byte -> malformed
        evil.sendto(stun_ok[:30], endpoint.address)  # truncated STUN -> malformed
        evil.sendto(good, endpoint.address)  # valid SRTP, wrong source -> unknown_address
        evil.sendto(bytes([22, 0xFE, 0xFD]) + os.urandom(30), endpoint.address)  # DTLS, wrong source
        wrong_pwd, _ = client_binding_request(server_ufrag="srva", client_ufrag=client.ufrag, server_pwd="nope")
        evil.sendto(wrong_pwd, endpoint.address)  # -> stun_integrity
        stranger, _ = client_binding_request(server_ufrag="nobody", client_ufrag="x", server_pwd="whatever")
        evil.sendto(stranger, endpoint.address)  # -> stun_unknown_user
        # From the client's own (authenticated) address:
        tampered = bytearray(good)
        tampered[20] ^= 0xFF
        sent_by_client += [bytes(tampered), good, good, good[:10], bytes([22, 0xFE, 0xFD, 0, 0])]
        for datagram in sent_by_client:  # auth failure, ok, replay, truncated RTP, truncated DTLS record
            client.send_raw(datagram)
        await settle(endpoint, base + 7 + len(sent_by_client))

        assert nonzero(endpoint.counters.drops()) == {
            "malformed": 5,  # out-of-range byte, 1-byte datagram, truncated STUN, truncated RTP, truncated DTLS
            "unknown_address": 2,
            "stun_integrity": 1,
            "stun_unknown_user": 1,
            "srtp_auth": 1,
            "replay": 1,
        }
        assert handler.rtp_seen == 1
        assert handler.closed == []
        assert endpoint.counters.handler_errors == 0
        evil.close()
        client.close()


async def test_replayed_old_packets_are_dropped_but_new_ones_pass() -> None:
    async with running() as (endpoint, handler):
        client = await connected_client(endpoint, "a")
        base = endpoint.counters.datagrams_in
        packets = [client.protect_rtp(rtp(seq)) for seq in range(100)]
        for p in packets:
            client.send_raw(p)
        for p in packets[::10]:
            client.send_raw(p)
        await settle(endpoint, base + 110)
        assert handler.rtp_seen == 100
        assert endpoint.counters.drop_replay == 10
        client.close()


async def test_tampered_srtcp_fails_authentication() -> None:
    async with running() as (endpoint, _handler):
        client = await connected_client(endpoint, "a")
        base = endpoint.counters.datagrams_in
        srtcp = bytearray(client.protect_rtcp(bytes([0x80, 201, 0, 1, 0, 0, 0x12, 0x34])))
        srtcp[6] ^= 1
        client.send_raw(bytes(srtcp))
        await settle(endpoint, base + 1)
        assert nonzero(endpoint.counters.drops()) == {"srtp_auth": 1}
        assert endpoint.counters.rtcp_in == 0
        client.close()


async def test_a_connected_peer_keeps_receiving_beside_a_flood() -> None:
    async with running() as (endpoint, handler):
        assert endpoint.address is not None
        alice = await connected_client(endpoint, "a")
        bob = await connected_client(endpoint, "b")
        evil = attacker()
        rng = random.Random(7)
        flood = 0
        received: list[tuple[str, bytes]] = []
        for seq in range(200):
            for _ in range(10):  # ten hostile datagrams of every family for each good packet
                first = rng.choice([0, 1, 22, 23, 128, 144, 200, 255, rng.randrange(256)])
                evil.sendto(bytes([first]) + rng.randbytes(rng.randrange(0, 300)), endpoint.address)
                flood += 1
            # And from alice's own address: garbage that passes the demux but not SRTP or DTLS.
            alice.send_raw(bytes([0x80, 111]) + rng.randbytes(rng.randrange(10, 200)))
            alice.send_rtp(rtp(seq, size=160))
            if seq % 20 == 19:
                await trio.sleep(0.005)
                received += bob.poll()
        await settle(endpoint, 2 * 200 + flood)
        received += await bob.receive(200 - len(received), timeout=2)
        assert sorted(p for _, p in received) == sorted(rtp(seq) for seq in range(200))
        assert handler.closed == []
        drops = endpoint.counters.drops()
        assert sum(drops.values()) == flood + 200
        assert endpoint.counters.handler_errors == 0
        evil.close()
        alice.close()
        bob.close()


async def test_garbage_dtls_records_from_a_connected_peer_do_not_break_it() -> None:
    async with running() as (endpoint, handler):
        alice = await connected_client(endpoint, "a")
        bob = await connected_client(endpoint, "b")
        base = endpoint.counters.datagrams_in
        rng = random.Random(3)
        for _ in range(50):
            body = rng.randbytes(rng.randrange(1, 100))
            record = bytes([23, 0xFE, 0xFD]) + rng.randbytes(8) + len(body).to_bytes(2, "big") + body
            alice.send_raw(record)
        await settle(endpoint, base + 50)
        alice.send_rtp(rtp(1))
        assert await bob.receive(1) == [("rtp", rtp(1))]
        assert handler.closed == []
        alice.close()
        bob.close()
