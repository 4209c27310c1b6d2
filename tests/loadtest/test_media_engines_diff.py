"""The load tool's media engines count the same things: the same packet streams (reordered, lost, duplicated,
garbage, several SSRCs, a sequence wrap) delivered to a Python-engine leg and a native-engine leg give the same
stream statistics, delivery counts, delay-sample counts and engine counters. Only the clocks differ (jitter and
delay are measured against arrival times), so those are compared for presence, not value.
"""

from __future__ import annotations

import os
import socket
import time

import pylibsrtp
import pytest
import trio
from callsd.peer import Identity, Leg, MediaEngine, Source
from callsd.peer._fastpeer import SrtpSession as NativeSession
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

PROFILE = pylibsrtp.Policy.SRTP_PROFILE_AEAD_AES_128_GCM
KEY = os.urandom(28)
STREAM_FIELDS = ("kind", "base_seq", "max_seq", "cycles", "received", "started", "sender", "first_counter",
                 "first_index", "last_counter", "last_index")
ENGINE_FIELDS = ("rx_packets", "rx_bytes", "rx_rtcp", "rx_verified", "srtp_errors")


def _rx(media: str) -> object:
    if media != "python":
        return NativeSession(int(PROFILE), KEY, False)
    policy = pylibsrtp.Policy(key=KEY, ssrc_type=pylibsrtp.Policy.SSRC_ANY_INBOUND, srtp_profile=PROFILE)
    policy.window_size = 1024
    return pylibsrtp.Session(policy)


def _wire(ops: list[tuple[int, int, str]]) -> list[bytes]:
    """Encrypted datagrams: each op is (source 0-2, packet index, what) with what in ok/dup/garbage/rtcp/stun."""
    tx = pylibsrtp.Session(pylibsrtp.Policy(key=KEY, ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND,
                                            srtp_profile=PROFILE))
    sources = [Source(kind="audio" if i < 2 else "video", ssrc=7000 + i, user_number=i, seed=0xFFF0 + i)
               for i in range(3)]
    for i, source in enumerate(sources):
        source.configure(str(i), 111 if i < 2 else 96, {})
    made: dict[tuple[int, int], bytes] = {}
    out = []
    for source_index, index, what in ops:
        if what == "garbage":
            out.append(bytes([0x80, 111]) + os.urandom(60))
            continue
        if what == "rtcp":
            out.append(bytes([0x80, 200]) + os.urandom(30))
            continue
        if what == "stun":
            out.append(b"\x00\x01\x00\x00" + os.urandom(16))
            continue
        key = (source_index, index)
        if key not in made:  # packets of one source are made in index order (what a sender numbers)
            source = sources[source_index]
            while True:
                source.tick_in_frame = 0
                plain = source.packets(time.monotonic_ns())[0]
                made[(source_index, source.counter)] = tx.protect(plain)
                if source.counter >= index:
                    break
        out.append(made.get(key, b"\x80\x6f" + os.urandom(40)))
    return out


async def _deliver(media: str, datagrams: list[bytes]) -> tuple[MediaEngine, Leg]:
    engine = MediaEngine(Identity(), delay_sample=2, media=media)
    leg = Leg(engine, user_number=9, call_index=0, ufrag="u", pwd="p")
    leg.set_payload_types({111: ("audio", 48000), 96: ("video", 90000)})
    src = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    src.bind(("127.0.0.1", 0))
    leg.sock.connect(src.getsockname())
    leg.state = "connected"
    leg.rx = _rx(media)  # type: ignore[assignment]
    fed: list[bytes] = []
    leg.feed_control = fed.append  # type: ignore[method-assign]
    async with trio.open_nursery() as nursery:
        nursery.start_soon(engine.receive_loop)
        for data in datagrams:
            src.sendto(data, leg.local_address)
        with trio.fail_after(5):
            while engine.rx_packets + engine.rx_rtcp + engine.stats.malformed + len(fed) < len(datagrams):
                await trio.sleep(0.01)
        nursery.cancel_scope.cancel()
    src.close()
    leg.close()
    if engine.port is not None:
        engine.port.close()
    return engine, leg


op = st.tuples(st.integers(0, 2), st.integers(1, 40),
               st.sampled_from(["ok"] * 12 + ["dup", "garbage", "rtcp", "stun"]))


@pytest.mark.parametrize("media", ["native", "shared"])
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(st.lists(op, min_size=1, max_size=80))
def test_both_engines_count_the_same(media: str, ops: list[tuple[int, int, str]]) -> None:
    datagrams = _wire(ops)
    (py, py_leg), (nat, nat_leg) = (trio.run(_deliver, engine, datagrams) for engine in ("python", media))
    assert {f: getattr(py, f) for f in ENGINE_FIELDS} == {f: getattr(nat, f) for f in ENGINE_FIELDS}
    assert py.stats.malformed == nat.stats.malformed
    assert py.delay.count == nat.delay.count
    assert sorted(py_leg.streams) == sorted(nat_leg.streams)
    for ssrc, a in py_leg.streams.items():
        b = nat_leg.streams[ssrc]
        assert {f: getattr(a, f) for f in STREAM_FIELDS} == {f: getattr(b, f) for f in STREAM_FIELDS}, ssrc
        assert (a.jitter >= 0) and (b.jitter >= 0)
    assert py_leg.rx_count == nat_leg.rx_count
    assert py_leg.delay[1] == nat_leg.delay[1]
    assert bool(py_leg.first_audio_ns) == bool(nat_leg.first_audio_ns)
    assert py.delay.count == 0 or nat.delay.maximum >= 0
