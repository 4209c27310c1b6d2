"""The native extension's own contracts: SRTP identical to pylibsrtp's, no reference leaks per packet, errors counted
like the Python path's, and the path without a forwarder hands every packet to the handler."""

from __future__ import annotations

import gc
import logging
import os
import struct
import sys
from typing import Any

import pytest
from callsd.adapters.media.dtls import SrtpKeys
from callsd.adapters.media.native.path import NativeSrtpContext
from callsd.adapters.media.srtp import SrtpContext
from native_support import RouteSpec, Run, Scenario, TrackSpec

PROFILES = {b"SRTP_AEAD_AES_128_GCM": 28, b"SRTP_AES128_CM_SHA1_80": 30}


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_native_srtp_is_byte_identical_to_pylibsrtp(profile: bytes) -> None:
    n = PROFILES[profile]
    a, b = os.urandom(n), os.urandom(n)
    ours = NativeSrtpContext(SrtpKeys(profile=profile, local_key=a, remote_key=b))
    ref = SrtpContext(SrtpKeys(profile=profile, local_key=a, remote_key=b))
    peer = NativeSrtpContext(SrtpKeys(profile=profile, local_key=b, remote_key=a))
    for seq in (1, 2, 3, 0xFFFF, 0, 1, 500):  # wraps: the ROC moves on both sides alike
        plain = struct.pack("!BBHII", 0x80, 111, seq, seq * 960, 0x1234) + os.urandom(50)
        wire = ours.protect_rtp(plain)
        assert wire == bytes(ref.protect_rtp(plain))  # type: ignore[arg-type]
        assert peer.unprotect_rtp(wire) == plain  # type: ignore[arg-type]
    report = bytes.fromhex("80c90001") + b"\x00\x00\x12\x34"
    wire = ours.protect_rtcp(report)
    assert wire == bytes(ref.protect_rtcp(report))  # type: ignore[arg-type]
    assert peer.unprotect_rtcp(wire) == report  # type: ignore[arg-type]
    assert peer.unprotect_rtcp(wire) is None and peer.last_error in (9, 10)  # replayed
    assert peer.unprotect_rtp(b"\x80" * 40) is None and peer.last_error == 7  # forged
    assert ours.protect_rtp(bytes(3000)) is None  # longer than the buffer


def test_native_srtp_refuses_a_short_key() -> None:
    with pytest.raises(ValueError, match="key"):
        NativeSrtpContext(SrtpKeys(profile=b"SRTP_AEAD_AES_128_GCM", local_key=b"x" * 10, remote_key=b"y" * 28))


def _scenario(media: str) -> Scenario:
    return Scenario(profile=b"SRTP_AEAD_AES_128_GCM", publishers=1, receivers=2, receivers_connected=(True, True),
                    tracks=(TrackSpec(publisher=0, media=media, ssrc=0x1234, signalled=True,
                                      level_id=1 if media == "audio" else 0),),
                    routes=(RouteSpec(track=0, receiver=0, ssrc=0xAA, ts_offset=5, last_seq=9, pt=100,
                                      remap=((1, 2),), paused=False, negotiated=True),
                            RouteSpec(track=0, receiver=1, ssrc=0xBB, ts_offset=7, last_seq=0, pt=300,
                                      remap=(), paused=False, negotiated=True)),  # pt 300: unencodable
                    events=())


def _growth(media: str, fast_path: str) -> tuple[int, Any]:
    """Allocated blocks left behind by 2000 rounds of every kind of outcome, the smaller of two such windows, after
    a warm-up that fills the NACK cache (512 packets)."""
    r = Run(_scenario(media), fast_path)
    ctx = r.client_ctx[0]
    assert ctx is not None
    ext = bytes.fromhex("bede0001") + bytes([0x10, 0x05, 0, 0])
    seq = 0

    def burst(n: int) -> None:
        nonlocal seq
        for _ in range(n):
            seq += 1
            for ssrc in (0x1234, 0x9999):  # known, unknown (handed to the plane)
                plain = struct.pack("!BBHII", 0x90, 96 if media == "video" else 111, seq & 0xFFFF,
                                    seq * 960 & 0xFFFFFFFF, ssrc) + ext + bytes(100)
                r.send(0, bytes(ctx.protect_rtp(plain)))  # type: ignore[arg-type]
            r.send(0, b"\x80\x6f" + bytes(40))  # forged SRTP
            r.send(0, b"\x00\x01" + bytes(18))  # STUN-ish: raw handback
        r.drain()
        for got in r.received:
            got.clear()

    for _ in range(12):
        burst(50)
    windows = []
    for _ in range(2):  # a leak per packet grows both windows; a one-time allocation (a table growing) only one
        gc.collect()
        before = sys.getallocatedblocks()
        for _ in range(40):  # 50 rounds at a time: the server socket's default buffer holds them
            burst(50)
        gc.collect()
        windows.append(sys.getallocatedblocks() - before)
    r.close()
    return min(windows), r.endpoint.counters


@pytest.mark.parametrize("media", ["audio", "video"])
def test_the_native_step_leaks_nothing_per_packet(media: str) -> None:
    """Every kind of outcome (forwarded, NACK-cached, unknown SSRC, raw handback, SRTP failure, a Python exception
    from a broken table) repeated 2 × 2000 times leaves no more allocated blocks behind than the Python path does."""
    logging.disable(logging.ERROR)  # 4000 handler errors: counted; their log lines are not what is tested
    try:
        reference, _ = _growth(media, "python")
        growth, counters = _growth(media, "native")
    finally:
        logging.disable(logging.NOTSET)
    assert growth <= max(reference, 0) + 30, (growth, reference)
    assert counters.rtp_out >= 4000  # route 0 forwards
    assert counters.handler_errors >= 4000  # route 1's payload type 300 cannot be encoded: counted, not raised
    assert counters.drop_srtp_auth >= 4000


def test_without_a_forwarder_every_rtp_packet_goes_to_the_handler() -> None:
    from callsd.adapters.media.native.path import NativePath
    from callsd.adapters.media.transport import TransportConfig, UdpEndpoint

    class Recorder:
        def __init__(self) -> None:
            self.rtp: list[bytes] = []

        def on_connected(self, peer: object) -> None: ...
        def on_closed(self, peer: object, reason: str) -> None: ...
        def on_rtp(self, peer: object, plain: bytes) -> None:
            self.rtp.append(plain)

        def on_rtcp(self, peer: object, plain: bytes) -> None: ...

    import socket

    from callsd.adapters.media.dtls import Certificate

    rec = Recorder()
    ep = UdpEndpoint(TransportConfig(port=0), rec, certificate=Certificate.generate(), path=NativePath(None))
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    client.bind(("127.0.0.1", 0))
    ep._sock = sock
    peer = ep.add_peer("a", "u", "p" * 22, "c", "q" * 22, "sha-256 " + ":".join(["AA"] * 32))
    keys = SrtpKeys(profile=b"SRTP_AEAD_AES_128_GCM", local_key=bytes(28), remote_key=bytes(range(28)))
    peer.srtp = ep.path.srtp_context(keys)
    peer._tx = peer.srtp.tx
    peer.address = client.getsockname()
    ep._by_addr[peer.address] = peer
    sender = SrtpContext(SrtpKeys(profile=keys.profile, local_key=keys.remote_key, remote_key=keys.local_key))
    plains = [struct.pack("!BBHII", 0x80, 111, s, s, 7) + bytes(20) for s in range(1, 6)]
    for p in plains:
        client.sendto(bytes(sender.protect_rtp(p)), sock.getsockname())  # type: ignore[arg-type]
    assert ep.path.drain(sock, 256) == 5
    assert rec.rtp == plains
    assert ep.counters.rtp_in == 5 and ep.counters.datagrams_in == 5
    sock.close()
    client.close()
