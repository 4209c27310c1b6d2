"""The UDP media endpoint end to end on loopback: a real ICE + DTLS + SRTP client connects and gets media back."""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
from callsd.adapters.media.dtls import Certificate
from callsd.adapters.media.ice import client_binding_request
from callsd.adapters.media.transport import Peer, TransportConfig, UdpEndpoint
from callsd.peer import ClientError, MediaClient

# One certificate pair for the whole module: generation is the slow part of a test.
SERVER_CERT = Certificate.generate()
CLIENT_CERT = Certificate.generate("client")


async def until(condition: Callable[[], bool], client: MediaClient, timeout: float = 5.0) -> None:
    """Wait until ``condition`` holds, handling what reaches ``client`` meanwhile (the server's STUN answers):
    the server has acted, rather than "0.1 s passed"."""
    with trio.fail_after(timeout):
        while True:
            client.poll()
            if condition():
                return
            await trio.sleep(0.005)


def rtp(seq: int, ssrc: int = 0x1234, payload: bytes = b"\x00" * 160, pt: int = 111) -> bytes:
    return bytes([0x80, pt]) + seq.to_bytes(2, "big") + (seq * 960).to_bytes(4, "big") + ssrc.to_bytes(4, "big") \
        + payload


def rtcp_rr(ssrc: int = 0x1234) -> bytes:
    return bytes([0x80, 201, 0, 1]) + ssrc.to_bytes(4, "big")


class Recorder:
    """A test handler: echoes RTP/RTCP back to the sender, or forwards to every other peer if `forward`."""

    def __init__(self, endpoint_ref: list[UdpEndpoint], forward: bool = False) -> None:
        self.endpoint_ref = endpoint_ref
        self.forward = forward
        self.connected: list[str] = []
        self.closed: list[tuple[str, str]] = []
        self.rtp: list[tuple[str, bytes]] = []
        self.rtcp: list[tuple[str, bytes]] = []
        self.connected_event = trio.Event()
        self.closed_event = trio.Event()

    def on_connected(self, peer: Peer) -> None:
        self.connected.append(peer.session_id)
        self.connected_event.set()

    def on_closed(self, peer: Peer, reason: str) -> None:
        self.closed.append((peer.session_id, reason))
        self.closed_event.set()

    def _targets(self, peer: Peer) -> list[Peer]:
        if not self.forward:
            return [peer]
        return [p for p in self.endpoint_ref[0].peers if p is not peer and p.connected]

    def on_rtp(self, peer: Peer, plain: bytes) -> None:
        self.rtp.append((peer.session_id, plain))
        for target in self._targets(peer):
            target.send_rtp(plain)

    def on_rtcp(self, peer: Peer, plain: bytes) -> None:
        self.rtcp.append((peer.session_id, plain))
        for target in self._targets(peer):
            target.send_rtcp(plain)


@asynccontextmanager
async def running(forward: bool = False, **config: Any) -> AsyncIterator[tuple[UdpEndpoint, Recorder]]:
    ref: list[UdpEndpoint] = []
    handler = Recorder(ref, forward)
    endpoint = UdpEndpoint(TransportConfig(host="127.0.0.1", port=0, **config), handler, certificate=SERVER_CERT)
    ref.append(endpoint)
    async with trio.open_nursery() as nursery:
        await nursery.start(endpoint.serve)
        try:
            yield endpoint, handler
        finally:
            nursery.cancel_scope.cancel()


def new_client(endpoint: UdpEndpoint, session_id: str, *, dtls_role: str = "passive",
               register: bool = True, fingerprint: str | None = None) -> MediaClient:
    assert endpoint.address is not None
    s_ufrag, s_pwd = f"srv{session_id}", os.urandom(12).hex()
    client = MediaClient(endpoint.address, server_ufrag=s_ufrag, server_pwd=s_pwd,
                         server_fingerprint=endpoint.fingerprint, certificate=CLIENT_CERT,
                         dtls_server=(dtls_role == "active"))
    if register:
        endpoint.add_peer(session_id, s_ufrag, s_pwd, client.ufrag, client.pwd,
                          fingerprint or client.fingerprint, dtls_role=dtls_role)
    return client


async def test_client_connects_and_gets_its_srtp_echoed_back() -> None:
    async with running() as (endpoint, handler):
        with new_client(endpoint, "a") as client:
            await client.connect()
            assert handler.connected == ["a"]
            peer = endpoint.peer("a")
            assert peer is not None and peer.connected
            assert peer.srtp_profile == "SRTP_AEAD_AES_128_GCM"
            assert peer.address == client.address
            assert client.mapped_address == client.address
            for seq in range(20):
                client.send_rtp(rtp(seq))
            client.send_rtcp(rtcp_rr())
            got = await client.receive(21)
            assert sorted(p for kind, p in got if kind == "rtp") == sorted(rtp(seq) for seq in range(20))
            assert [p for kind, p in got if kind == "rtcp"] == [rtcp_rr()]
            c = endpoint.counters
            assert (c.rtp_in, c.rtp_out, c.rtcp_in, c.rtcp_out) == (20, 20, 1, 1)
            assert sum(endpoint.counters.drops().values()) == 0


async def test_media_is_forwarded_between_two_clients() -> None:
    async with running(forward=True) as (endpoint, _handler):
        with new_client(endpoint, "a") as alice, new_client(endpoint, "b") as bob:
            await alice.connect()
            await bob.connect()
            for seq in range(50):
                alice.send_rtp(rtp(seq, ssrc=1, payload=b"\x01" * 1000, pt=96))
            got = await bob.receive(50)
            assert [p for _, p in got] == [rtp(seq, ssrc=1, payload=b"\x01" * 1000, pt=96) for seq in range(50)]
            assert await alice.receive(1, timeout=0.2) == []


async def test_server_can_be_the_active_dtls_side() -> None:
    async with running() as (endpoint, handler):
        with new_client(endpoint, "a", dtls_role="active") as client:
            await client.connect()
            await handler.connected_event.wait()
            client.send_rtp(rtp(1))
            assert await client.receive(1) == [("rtp", rtp(1))]


async def test_wrong_remote_fingerprint_closes_the_peer() -> None:
    other = Certificate.generate("impostor")
    async with running() as (endpoint, handler):
        with new_client(endpoint, "a", fingerprint=other.fingerprint) as client:
            with pytest.raises(ClientError):
                await client.connect(timeout=1.0)
            assert handler.closed == [("a", "fingerprint_mismatch")]
            assert handler.connected == []
            assert endpoint.peer("a") is None


async def test_consent_expiry_closes_a_silent_peer_and_refreshes_keep_it() -> None:
    async with running(consent_timeout=0.6, tick=0.05) as (endpoint, handler):
        with new_client(endpoint, "quiet") as quiet, new_client(endpoint, "chatty") as chatty:
            await quiet.connect()
            await chatty.connect()
            for _ in range(12):  # 1.2 s: twice the timeout, refreshing every 0.1 s
                chatty.binding_request(use_candidate=False)
                await trio.sleep(0.1)
                chatty.poll()
            await handler.closed_event.wait()
            assert handler.closed == [("quiet", "consent_expired")]
            assert endpoint.counters.consent_expired == 1
            assert endpoint.peer("quiet") is None
            assert endpoint.peer("chatty") is not None
            # The expired peer's media is now from an unknown address.
            quiet.send_rtp(rtp(1))
            chatty.send_rtp(rtp(2))
            assert await chatty.receive(1) == [("rtp", rtp(2))]
            assert endpoint.counters.drop_unknown_address == 1


async def test_a_connected_peer_is_checked_for_consent_once_a_walk_not_every_tick() -> None:
    """The tick walks only the peers still handshaking; connected ones are checked for consent every
    ``consent_walk(consent_timeout)`` (1 s for 30 s): an expiry is noticed at the next walk, not the next tick."""
    from callsd.adapters.media.transport import consent_walk

    assert consent_walk(30.0) == 1.0 and consent_walk(0.5) == 0.05
    async with running(consent_timeout=30.0, tick=3600.0) as (endpoint, handler):  # no tick of its own here
        with new_client(endpoint, "a") as client:
            await client.connect()
            peer = endpoint.peer("a")
            assert peer is not None and peer.connected
            last = peer.ice.last_consent
            endpoint.check_timers(last + 29.5)  # a walk: nothing expired; the next one is due at last + 30.5
            endpoint.check_timers(last + 30.2)  # expired, but between walks a connected peer is not looked at
            assert handler.closed == [] and endpoint.peer("a") is peer
            endpoint.check_timers(last + 30.5)
            assert handler.closed == [("a", "consent_expired")]
            assert endpoint.counters.consent_expired == 1


async def test_a_client_that_never_shows_up_times_out() -> None:
    async with running(consent_timeout=0.3, tick=0.05) as (endpoint, handler):
        with new_client(endpoint, "ghost"):
            await handler.closed_event.wait()
            assert handler.closed == [("ghost", "ice_timeout")]


async def test_remove_peer_is_silent_and_stops_media() -> None:
    async with running() as (endpoint, handler):
        with new_client(endpoint, "a") as client:
            await client.connect()
            peer = endpoint.peer("a")
            assert peer is not None
            endpoint.remove_peer("a")
            assert handler.closed == []
            assert peer.send_rtp(rtp(1)) is False
            client.send_rtp(rtp(1))
            assert await client.receive(1, timeout=0.2) == []
            assert endpoint.counters.drop_unknown_address == 1


async def test_nomination_moves_media_to_the_new_address() -> None:
    async with running() as (endpoint, _handler):
        with new_client(endpoint, "a") as client:
            await client.connect()
            # The client "changes network": same credentials and keys, new socket.
            old = client.rebind()
            client.binding_request(use_candidate=True)
            peer = endpoint.peer("a")
            assert peer is not None
            await until(lambda: peer.address == client.sock.getsockname(), client)
            client.send_rtp(rtp(7))
            assert await client.receive(1) == [("rtp", rtp(7))]
            old.close()


def test_add_peer_rejects_bad_arguments() -> None:
    endpoint = UdpEndpoint(TransportConfig(port=0), Recorder([]), certificate=SERVER_CERT)
    with pytest.raises(ValueError):
        endpoint.add_peer("a", "u", "p", "cu", "cp", "sha-1 AB:CD", dtls_role="passive")
    with pytest.raises(ValueError):
        endpoint.add_peer("a", "u", "p", "cu", "cp", CLIENT_CERT.fingerprint, dtls_role="actpass")
    endpoint.add_peer("a", "u", "p", "cu", "cp", CLIENT_CERT.fingerprint)
    with pytest.raises(ValueError):
        endpoint.add_peer("b", "u", "p2", "cu2", "cp2", CLIENT_CERT.fingerprint)
    assert endpoint.fingerprint.startswith("sha-256 ") and len(endpoint.fingerprint) == 8 + 95


async def test_client_close_notify_closes_the_peer() -> None:
    async with running() as (endpoint, handler):
        with new_client(endpoint, "a") as client:
            await client.connect()
            client.send_close_notify()
            await handler.closed_event.wait()
            assert handler.closed == [("a", "dtls_closed")]
            assert endpoint.peer("a") is None


async def test_handshake_survives_a_lost_server_flight() -> None:
    async with running() as (endpoint, handler):
        with new_client(endpoint, "a") as client:
            client.binding_request(use_candidate=True)
            await until(lambda: client.stun_responses == 1, client)  # the ClientHello went out on that response
            with trio.fail_after(5):  # the server writes its whole flight at once: wait for its first datagram
                await trio.lowlevel.wait_readable(client.sock)
            lost = 0
            while True:  # the server's first flight is "lost": read and thrown away
                try:
                    client.sock.recv(4096)
                    lost += 1
                except BlockingIOError:
                    break
            assert lost >= 1
            await client.connect(timeout=5.0)  # retransmissions (ours and the server's) finish the handshake
            await handler.connected_event.wait()
            client.send_rtp(rtp(3))
            assert await client.receive(1) == [("rtp", rtp(3))]


async def test_coalesced_reads_deliver_everything() -> None:
    async with running(coalesce=0.002) as (endpoint, _handler):
        with new_client(endpoint, "a") as client:
            await client.connect()
            for seq in range(300):
                client.send_rtp(rtp(seq))
                if seq % 50 == 0:
                    await trio.sleep(0.001)
            got = await client.receive(300)
            assert sorted(p for _, p in got) == sorted(rtp(seq) for seq in range(300))


def test_config_rejects_nonsense() -> None:
    for bad in ({"port": 70000}, {"consent_timeout": 0}, {"batch": 0}, {"coalesce": 1.0}, {"catch_up": -1.0}):
        with pytest.raises(ValueError):
            TransportConfig(**bad)  # type: ignore[arg-type]


async def test_a_handshake_that_never_finishes_times_out() -> None:
    async with running(connect_timeout=0.4, tick=0.05) as (endpoint, handler):
        # Not a peer: a socket that does ICE (consent stays fresh) but never starts DTLS.
        assert endpoint.address is not None
        endpoint.add_peer("stuck", "srvstuck", "s" * 24, "cstuck", "c" * 24, CLIENT_CERT.fingerprint)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as stuck:
            stuck.bind(("127.0.0.1", 0))
            stuck.setblocking(False)
            responses = 0
            for _ in range(10):
                request, _tid = client_binding_request(server_ufrag="srvstuck", client_ufrag="cstuck",
                                                       server_pwd="s" * 24)
                stuck.sendto(request, endpoint.address)
                await trio.sleep(0.06)
                with contextlib.suppress(BlockingIOError):
                    while stuck.recv(4096):
                        responses += 1
            await handler.closed_event.wait()
            assert handler.closed == [("stuck", "dtls_timeout")]
            assert responses >= 1


async def test_twenty_clients_connect_at_once_and_each_gets_its_own_media() -> None:
    async with running() as (endpoint, handler):
        clients = [new_client(endpoint, f"c{i}") for i in range(20)]
        try:
            async with trio.open_nursery() as nursery:
                for c in clients:
                    nursery.start_soon(c.connect)
            assert sorted(handler.connected) == sorted(f"c{i}" for i in range(20))
            for i, c in enumerate(clients):
                c.send_rtp(rtp(i, ssrc=i))
            for i, c in enumerate(clients):
                assert await c.receive(1) == [("rtp", rtp(i, ssrc=i))]
        finally:
            for c in clients:
                c.close()


async def test_an_address_taken_over_by_another_session_stops_the_old_one_sending_there() -> None:
    async with running() as (endpoint, _handler):
        with new_client(endpoint, "old") as old:
            await old.connect()
            old_peer = endpoint.peer("old")
            assert old_peer is not None
            # A second session authenticates from the very same address (a NAT reused the port).
            assert endpoint.address is not None
            endpoint.add_peer("new", "srvnew", "newpassword", "cnew", "cnewpwd", CLIENT_CERT.fingerprint)
            req, _ = client_binding_request(server_ufrag="srvnew", client_ufrag="cnew", server_pwd="newpassword")
            old.send_raw(req)
            await until(lambda: old_peer.address is None, old)
            assert old_peer.send_rtp(rtp(1)) is False
            assert endpoint.counters.drop_not_ready == 1
            # The old session authenticates again from its address: it can send again.
            old.binding_request(use_candidate=True)
            await until(lambda: old_peer.address == old.address, old)
            assert old_peer.send_rtp(rtp(2)) is True


async def _turns_to_count(endpoint: UdpEndpoint, sent: int, held: float) -> int:
    """Send ``sent`` malformed datagrams, hold the loop for ``held`` seconds, then count this task's turns until the
    receive loop has counted them all (bounded)."""
    import socket as socket_module
    import time as time_module

    assert endpoint.address is not None
    before = endpoint.counters.drop_malformed
    with socket_module.socket(socket_module.AF_INET, socket_module.SOCK_DGRAM) as sender:
        for _ in range(sent):
            sender.sendto(b"\xff" * 40, endpoint.address)  # first byte 255: no protocol, dropped as malformed
        time_module.sleep(held)  # the loop is held: the receive loop is away while the socket holds them all
    for turn in range(1, 200):
        await trio.lowlevel.checkpoint()
        if endpoint.counters.drop_malformed - before >= sent:
            return turn
    return 200


async def test_after_the_loop_was_held_the_receive_loop_catches_up_in_one_turn() -> None:
    # One batch (4) per turn would need 50 turns for 200 datagrams; held for 50 ms, the loop drains for as long
    # as it was away (catch_up), which 200 malformed datagrams need far less than.
    async with running(batch=4) as (endpoint, _handler):
        assert await _turns_to_count(endpoint, 200, 0.05) <= 3
    async with running(batch=4, catch_up=0.0) as (endpoint, _handler):  # without catching up: a batch a turn
        assert await _turns_to_count(endpoint, 200, 0.05) >= 20
