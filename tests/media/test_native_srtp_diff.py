"""The native SRTP on libcrypto (adapters/media/native/srtp_transform.h) against libsrtp2 as the Python path runs it
(pylibsrtp: libsrtp 2.7 on OpenSSL), for both negotiated profiles, call by call.

A random scenario drives one sender and one receiver of each implementation with the same keys: RTP on several
SSRCs with sequence numbers that step, jump, go back (the sender's retransmissions) and wrap (the rollover counter),
SRTCP compound packets, and on the wire delivery out of order, replays of packets already delivered, packets with one
bit flipped, truncated packets and garbage. Every protect must give the same bytes (or the same refusal), every
unprotect the same plaintext or the same libsrtp status (7 authentication, 9/10 replay, 2/21/... malformed).
"""

from __future__ import annotations

import os
import struct
from typing import Any

import pytest
from callsd.adapters.media.native.path import SrtpSession
from callsd.adapters.media.srtp import Direction
from hypothesis import given, settings
from hypothesis import strategies as st
from pylibsrtp import Policy
from pylibsrtp._binding import lib  # type: ignore[import-not-found]

PROFILES = {  # libsrtp's profile id -> master key + salt length
    int(Policy.SRTP_PROFILE_AEAD_AES_128_GCM): 28,
    int(Policy.SRTP_PROFILE_AES128_CM_SHA1_80): 30,
}
SSRCS = (0x11111111, 0x22222222, 0xDEADBEEF)


class Reference:
    """One pylibsrtp session driven through its cffi functions, so that a refusal gives libsrtp's status."""

    def __init__(self, profile: int, key: bytes, outbound: bool) -> None:
        kind = Policy.SSRC_ANY_OUTBOUND if outbound else Policy.SSRC_ANY_INBOUND
        self.d = Direction(profile, key, kind)

    def run(self, fn: Any, packet: bytes) -> tuple[int, bytes | None]:
        if len(packet) > 1900:
            return 6, None
        d = self.d
        d.buf[0 : len(packet)] = packet
        d.lenp[0] = len(packet)
        rc = fn(d.srtp, d.cbuf, d.lenp)
        return (int(rc), None) if rc else (0, bytes(d.buf[0 : d.lenp[0]]))


def ours(session: SrtpSession, method: str, packet: bytes) -> tuple[int, bytes | None]:
    out = getattr(session, method)(packet)
    return (session.last_error, None) if out is None else (0, out)


def rtp(ssrc: int, seq: int, csrcs: int, ext_words: int, payload: bytes) -> bytes:
    first = 0x80 | csrcs | (0x10 if ext_words >= 0 else 0)
    head = struct.pack("!BBHII", first, 111, seq & 0xFFFF, (seq * 960) & 0xFFFFFFFF, ssrc)
    head += b"".join(struct.pack("!I", 0x1000 + i) for i in range(csrcs))
    if ext_words >= 0:
        head += struct.pack("!HH", 0xBEDE, ext_words) + bytes(range(4 * ext_words))
    return head + payload


def rtcp(ssrc: int, kind: int, body: bytes) -> bytes:
    body = body[: len(body) // 4 * 4]
    return struct.pack("!BBHI", 0x81, kind, (len(body) + 4) // 4, ssrc) + body


op = st.one_of(
    st.tuples(st.just("rtp"), st.integers(0, 2),  # which SSRC
              st.sampled_from([1, 1, 1, 2, 5, -1, -3, -30, 100, 1500, 20000, 33000, -1100]),  # sequence step
              st.integers(0, 2), st.integers(-1, 2), st.binary(max_size=120)),
    st.tuples(st.just("rtcp"), st.integers(0, 2), st.sampled_from([200, 201, 205, 206]), st.binary(max_size=60)),
    st.tuples(st.just("deliver"), st.integers(0, 10**6)),  # one pending packet, any of them: reordering
    st.tuples(st.just("replay"), st.integers(0, 10**6)),  # a packet already delivered
    st.tuples(st.just("flip"), st.integers(0, 10**6), st.integers(0, 7)),  # one bit of a sent packet
    st.tuples(st.just("cut"), st.integers(0, 10**6), st.integers(1, 40)),  # a sent packet, truncated
    st.tuples(st.just("garbage"), st.binary(min_size=0, max_size=80), st.booleans()),
)


def _check(profile: int, start: int, ops: list[tuple[Any, ...]]) -> None:
    key = os.urandom(PROFILES[profile])
    tx_ref, rx_ref = Reference(profile, key, True), Reference(profile, key, False)
    tx, rx = SrtpSession(profile, key, True), SrtpSession(profile, key, False)
    seqs = dict.fromkeys(SSRCS, start)
    pending: list[tuple[bool, bytes]] = []  # (is RTCP, wire bytes) sent but not delivered
    sent: list[tuple[bool, bytes]] = []
    delivered: list[tuple[bool, bytes]] = []

    def deliver(is_rtcp: bool, wire: bytes) -> None:
        method, fn = ("unprotect_rtcp", lib.srtp_unprotect_rtcp) if is_rtcp else ("unprotect", lib.srtp_unprotect)
        assert ours(rx, method, wire) == rx_ref.run(fn, wire), (method, wire.hex())

    for step in ops:
        kind = step[0]
        if kind == "rtp":
            _, which, jump, csrcs, ext, payload = step
            ssrc = SSRCS[which]
            seqs[ssrc] = max(0, seqs[ssrc] + jump)
            plain = rtp(ssrc, seqs[ssrc], csrcs, ext, payload)
            got = ours(tx, "protect", plain)
            assert got == tx_ref.run(lib.srtp_protect, plain), plain.hex()
            if got[1] is not None:
                pending.append((False, got[1]))
                sent.append((False, got[1]))
        elif kind == "rtcp":
            _, which, pt, body = step
            plain = rtcp(SSRCS[which], pt, body)
            got = ours(tx, "protect_rtcp", plain)
            assert got == tx_ref.run(lib.srtp_protect_rtcp, plain), plain.hex()
            if got[1] is not None:
                pending.append((True, got[1]))
                sent.append((True, got[1]))
        elif kind == "deliver" and pending:
            packet = pending.pop(step[1] % len(pending))
            delivered.append(packet)
            deliver(*packet)
        elif kind == "replay" and delivered:
            deliver(*delivered[step[1] % len(delivered)])
        elif kind == "flip" and sent:
            is_rtcp, wire = sent[step[1] % len(sent)]
            at = (step[1] // 7) % len(wire)
            deliver(is_rtcp, wire[:at] + bytes([wire[at] ^ (1 << step[2])]) + wire[at + 1 :])
        elif kind == "cut" and sent:
            is_rtcp, wire = sent[step[1] % len(sent)]
            deliver(is_rtcp, wire[: max(0, len(wire) - step[2])])
        elif kind == "garbage":
            deliver(step[2], step[1])
    for packet in pending:  # whatever is still in flight arrives last
        deliver(*packet)


@pytest.mark.parametrize("profile", sorted(PROFILES))
@settings(max_examples=120, deadline=None)
@given(start=st.one_of(st.integers(0, 0xFFFF), st.integers(0xFF00, 0xFFFF), st.integers(0x7F00, 0x8100)),
       ops=st.lists(op, min_size=1, max_size=150))
def test_native_srtp_matches_libsrtp_call_by_call(profile: int, start: int, ops: list[tuple[Any, ...]]) -> None:
    _check(profile, start, ops)


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_native_srtp_long_stream_through_many_rollovers(profile: int) -> None:
    """Three rollovers of the 16-bit sequence number with some loss, reordering and a replay every 1000 packets:
    the receiver's ROC estimation keeps up exactly as libsrtp's does."""
    ops: list[tuple[Any, ...]] = []
    for i in range(3 * 65536 // 97):
        ops.append(("rtp", i % 2, 97, 0, -1, b"x" * 20))
        if i % 3 == 0:
            ops.append(("rtp", 2, 1, 0, 0, b"y"))
        ops.append(("deliver", i * 7919))
        if i % 10 == 0:
            ops.append(("replay", i))
        if i % 50 == 0:
            ops.append(("rtcp", i % 3, 201, b"r" * 24))
    _check(profile, 0xFFF0, ops)


@pytest.mark.parametrize("profile", sorted(PROFILES))
@settings(max_examples=60, deadline=None)
@given(turns=st.lists(st.tuples(st.booleans(), st.booleans(), st.integers(-1, 15), st.binary(max_size=60)),
                      min_size=1, max_size=60))
def test_native_srtp_one_session_both_directions(profile: int, turns: list[tuple[bool, bool, int, bytes]]) -> None:
    """One session that protects and unprotects in turn, RTP and SRTCP, as two ends of a call each do with their
    key (each end sends its own SSRC): the GCM context changes direction between packets (srtp_keys.h keeps the
    direction and sets only the IV per packet), and a refused packet (a flipped bit: `bad` is which bit of the
    tag, or none for -1) leaves nothing behind that changes the next packet's bytes."""
    key = os.urandom(PROFILES[profile])
    ends = [(SrtpSession(profile, key, True), Reference(profile, key, True), Reference(profile, key, False))
            for _ in range(2)]
    seqs = [0xFFF0, 7]
    for from_a, is_rtcp, bad, payload in turns:
        (sender, sender_tx, _), (receiver, _, receiver_rx) = ends if from_a else ends[::-1]
        ssrc = SSRCS[0] if from_a else SSRCS[1]
        if is_rtcp:
            plain, protect, unprotect = rtcp(ssrc, 200, payload), "protect_rtcp", "unprotect_rtcp"
            protect_fn, unprotect_fn = lib.srtp_protect_rtcp, lib.srtp_unprotect_rtcp
        else:
            seqs[not from_a] += 1
            plain, protect, unprotect = rtp(ssrc, seqs[not from_a], 0, 0, payload), "protect", "unprotect"
            protect_fn, unprotect_fn = lib.srtp_protect, lib.srtp_unprotect
        got = ours(sender, protect, plain)
        assert got == sender_tx.run(protect_fn, plain)
        assert got[1] is not None
        wire = got[1]
        if bad >= 0:
            wire = wire[:-1 - bad] + bytes([wire[-1 - bad] ^ 1]) + wire[len(wire) - bad:]
        opened = ours(receiver, unprotect, wire)
        assert opened == receiver_rx.run(unprotect_fn, wire)
        assert (opened[1] == plain) == (bad < 0)
