"""STUN attacks on the RTC port (issue 8 item 6): refusals that cost no HMAC, bounded per-source state, a cap on
the addresses one ICE session may use, and a live call beside it all that loses nothing.

Attackers send from 127.0.0.2–127.0.0.41 (loopback addresses), a bounded number of datagrams."""

from __future__ import annotations

import socket

import trio
from callsd.adapters.media.ice import FailureLimiter, StunRejected, client_binding_request, peek_username
from callsd.adapters.media.transport import TransportConfig
from media.test_media_badinput import attacker, connected_client, rtp, running, settle

SOURCES = 40
HALF = SOURCES // 2
CAP = TransportConfig().max_addresses_per_session
BURST = TransportConfig().stun_failure_burst
RATE = TransportConfig().stun_failures_per_second


def sources() -> list[socket.socket]:
    socks = []
    for i in range(SOURCES):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((f"127.0.0.{i + 2}", 0))
        socks.append(sock)
    return socks


def test_peek_username_reads_what_the_full_parser_reads() -> None:
    data, _ = client_binding_request(server_ufrag="srvA", client_ufrag="cliB", server_pwd="p" * 22)
    assert peek_username(data) == "srvA:cliB"
    for broken, reason in ((data[:19], "malformed"), (data[:-4], "malformed"),
                           (b"\x01\x01" + data[2:], "stun_other"),  # a binding success response
                           (data[:4] + b"\x00\x00\x00\x00" + data[8:], "malformed")):  # no magic cookie
        try:
            peek_username(broken)
        except StunRejected as rejected:
            assert rejected.reason == reason
        else:
            raise AssertionError(f"{broken!r} was accepted")


def test_failure_limiter_is_a_fixed_table_of_token_buckets() -> None:
    limiter = FailureLimiter(slots=64, rate=2.0, burst=3.0)
    for _ in range(3):
        assert not limiter.limited("10.0.0.1", 0.0)
        limiter.failed("10.0.0.1", 0.0)
    assert limiter.limited("10.0.0.1", 0.0)
    assert not limiter.limited("10.0.0.1", 0.5)  # one token back after 1/rate seconds
    for i in range(100_000):  # many sources: the table does not grow
        limiter.failed(f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}", 1.0)
    assert limiter.slots == 64 and len(limiter._level) == 64


async def test_stun_floods_from_many_sources_leave_a_live_call_untouched() -> None:
    async with running() as (endpoint, handler):
        assert endpoint.address is not None
        alice = await connected_client(endpoint, "a")
        bob = await connected_client(endpoint, "b")
        alice_peer = endpoint.peer("a")
        assert alice_peer is not None
        evil = sources()
        unknown, _ = client_binding_request(server_ufrag="nobody", client_ufrag="x", server_pwd="guess" * 5)
        bad_integrity, _ = client_binding_request(server_ufrag="srva", client_ufrag=alice.ufrag,
                                                  server_pwd="wrong" * 5)
        # A holder of alice's valid credentials, asking from every source address (no USE-CANDIDATE).
        valid, _ = client_binding_request(server_ufrag="srva", client_ufrag=alice.ufrag,
                                          server_pwd=alice.server_pwd, use_candidate=False)
        base = endpoint.counters.datagrams_in
        stun_out_before = endpoint.counters.stun_out
        responses_before = alice.stun_responses
        started = trio.current_time()
        received: list[tuple[str, bytes]] = []
        flood = 0
        for seq in range(200):
            for k in range(10):
                evil[(seq * 10 + k) % SOURCES].sendto(unknown, endpoint.address)
                # Bad integrity from the second half of the sources, valid credentials from the first half
                # (an address that authenticated is always checked: it may be the client's own).
                evil[HALF + (seq * 10 + k) % HALF].sendto(bad_integrity, endpoint.address)
                flood += 2
            evil[seq % HALF].sendto(valid, endpoint.address)
            flood += 1
            alice.send_rtp(rtp(seq, size=160))
            if seq % 20 == 19:
                alice.binding_request(use_candidate=True)  # consent refresh from her authenticated address
                await trio.sleep(0.005)
                received += bob.poll()
                alice.poll()
        await settle(endpoint, base + 200 + 10 + flood)
        elapsed = trio.current_time() - started
        received += await bob.receive(200 - len(received), timeout=2)
        for _ in range(100):
            alice.poll()
            if alice.stun_responses - responses_before >= 10:
                break
            await trio.sleep(0.01)

        # The live call: every packet arrived, consent refreshes were answered, nobody was closed.
        assert sorted(p for _, p in received) == sorted(rtp(seq) for seq in range(200))
        assert alice.stun_responses - responses_before == 10
        assert handler.closed == []
        drops = endpoint.counters.drops()
        # Unknown ufrag: all refused (from the peek), none charged.
        assert drops["stun_unknown_user"] == 2000
        # Bad integrity toward alice: HMAC-checked only while alice's session budget lasts, whatever the sources.
        assert drops["stun_integrity"] <= BURST + RATE * elapsed + 1, (drops, elapsed)
        assert drops["stun_rate_limited"] > 1500
        # Valid credentials from 20 new addresses while her session is under attack: refused (rate-limited) or
        # capped; every flood datagram is accounted for.
        assert len(alice_peer.ice.addresses) <= CAP
        accepted = len(alice_peer.ice.addresses) - 1
        assert sum(drops.values()) == flood - (endpoint.counters.stun_out - stun_out_before - 10)
        assert accepted <= HALF
        assert len(endpoint._by_addr) <= CAP + 1  # alice's addresses and bob's
        assert endpoint.counters.stun_out - stun_out_before <= 10 + 200 // HALF * accepted
        assert alice_peer.address == alice.address  # media still goes to alice, not to an attacker's source
        assert endpoint.counters.handler_errors == 0
        for sock in evil:
            sock.close()
        alice.close()
        bob.close()


async def test_a_session_under_integrity_attack_still_lets_its_own_address_refresh() -> None:
    async with running() as (endpoint, _handler):
        assert endpoint.address is not None
        alice = await connected_client(endpoint, "a")
        evil = attacker()
        bad, _ = client_binding_request(server_ufrag="srva", client_ufrag=alice.ufrag, server_pwd="x" * 22)
        base = endpoint.counters.datagrams_in
        for _ in range(300):
            evil.sendto(bad, endpoint.address)
        await settle(endpoint, base + 300)
        assert endpoint.counters.drop_stun_rate_limited >= 300 - BURST - 5
        before = alice.stun_responses
        alice.binding_request()
        for _ in range(100):
            alice.poll()
            if alice.stun_responses > before:
                break
            await trio.sleep(0.01)
        assert alice.stun_responses == before + 1
        evil.close()
        alice.close()


async def test_valid_credentials_from_many_addresses_are_capped_per_session() -> None:
    async with running() as (endpoint, _handler):
        assert endpoint.address is not None
        alice = await connected_client(endpoint, "a")
        alice_peer = endpoint.peer("a")
        assert alice_peer is not None
        evil = sources()
        valid, _ = client_binding_request(server_ufrag="srva", client_ufrag=alice.ufrag,
                                          server_pwd=alice.server_pwd, use_candidate=False)
        base = endpoint.counters.datagrams_in
        stun_out_before = endpoint.counters.stun_out
        for _ in range(5):
            for sock in evil:
                sock.sendto(valid, endpoint.address)
        await settle(endpoint, base + 5 * SOURCES)
        # Her own address plus CAP - 1 of the 40: those are answered each time, the others never.
        assert len(alice_peer.ice.addresses) == CAP
        answered = endpoint.counters.stun_out - stun_out_before
        assert answered == 5 * (CAP - 1)
        assert endpoint.counters.drop_stun_address_cap == 5 * SOURCES - answered
        assert alice_peer.address == alice.address
        for sock in evil:
            sock.close()
        alice.close()
