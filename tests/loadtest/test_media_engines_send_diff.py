"""The native send tick (peer/fastpeer_send.h) sends what the Python one does: the same random sequences of ticks
(several owed at once), mute/unmute, legs losing and regaining their connection (the counter jump a stopped
source owes), renegotiations that rebuild a source's templates, audio and multi-packet video frames, on a clock
of the test's own, give byte-identical plaintext packets in the same order, the same Source state and the same
engine counters, on a socket per user and on a shared port.
"""

from __future__ import annotations

import os
import socket

import pylibsrtp
import pytest
from callsd.app.loadtest.sdp import AUDIO_LEVEL_URI, MID_URI
from callsd.peer import Identity, Leg, MediaEngine, Source
from callsd.peer._fastpeer import SrtpSession as NativeSession
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

PROFILE = pylibsrtp.Policy.SRTP_PROFILE_AEAD_AES_128_GCM
KEY = os.urandom(28)
SOURCE_FIELDS = ("seq", "ts", "counter", "tick_in_frame", "frames", "started_ns", "stopped_ns", "pt", "mid")
ENGINE_FIELDS = ("tx_packets", "tx_bytes", "srtp_errors")
T0 = 10**15


def _tx(media: str) -> object:
    if media != "python":
        return NativeSession(int(PROFILE), KEY, True)
    return pylibsrtp.Session(pylibsrtp.Policy(key=KEY, ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND,
                                              srtp_profile=PROFILE))


Run = tuple[list[bytes], dict[str, int], list[dict[str, object]], list[int]]


def _run(media: str, ops: list[tuple[str, int]]) -> Run:
    """The plaintexts the sink got, the engine's counters, each source's state and intended counter."""
    engine = MediaEngine(Identity(), media=media)
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    sink.bind(("127.0.0.1", 0))
    sink.setblocking(False)
    shapes = [("audio", 0, 0), ("video", 300_000, 1), ("audio", 0, 0), ("video", 700_000, 2)]
    legs, sources = [], []
    for n in range(3):
        leg = Leg(engine, user_number=n, call_index=0, ufrag="u", pwd="p")
        leg.sock.connect(sink.getsockname())
        leg.state = "connected"
        leg.tx = _tx(media)  # type: ignore[assignment]
        legs.append(leg)
    for i, (kind, bitrate, index) in enumerate(shapes):
        source = Source(kind=kind, ssrc=5000 + i, user_number=i, bitrate=bitrate, seed=0xFFF0 + 7 * i,
                        index=index)
        source.configure(str(i), 111 if kind == "audio" else 96, {AUDIO_LEVEL_URI: 1, MID_URI: 4} if i else {})
        source.enabled = i != 2
        engine.add_source(source)
        legs[min(i, 2)].add_source(source)
        sources.append(source)
    now = T0
    for what, arg in ops:
        if what == "tick":
            engine.send_tick(arg, now)
            now += 20_000_000 * arg
        elif what == "wait":
            now += arg * 1_000_000
        elif what == "mute":
            sources[arg].enabled = not sources[arg].enabled
        elif what == "drop":  # the leg loses its connection, or gets it back
            leg = legs[arg]
            leg.state = "checking" if leg.state == "connected" else "connected"
        elif what == "renegotiate":
            source = sources[arg]
            source.configure(source.mid + "x", source.pt ^ 1, {MID_URI: 3})
    engine.sync()
    counters = {f: getattr(engine, f) for f in ENGINE_FIELDS}
    state = [{f: getattr(source, f) for f in SOURCE_FIELDS} for source in sources]
    intended = [source.intended(now + 10**9) for source in sources]  # a second after: what stopped ones owe
    got = []
    while True:
        try:
            got.append(sink.recv(4096))
        except BlockingIOError:
            break
    sink.close()
    for leg in legs:
        leg.close()
    if engine.port is not None:
        engine.port.close()
    rx_policy = pylibsrtp.Policy(key=KEY, ssrc_type=pylibsrtp.Policy.SSRC_ANY_INBOUND, srtp_profile=PROFILE)
    rx_policy.window_size = 1024
    rx = pylibsrtp.Session(rx_policy)
    return [rx.unprotect(data) for data in got], counters, state, intended


op = st.one_of(
    st.tuples(st.just("tick"), st.sampled_from([1] * 8 + [2, 3, 5])),
    st.tuples(st.just("wait"), st.integers(1, 300)),
    st.tuples(st.just("mute"), st.integers(0, 3)),
    st.tuples(st.just("drop"), st.integers(0, 2)),
    st.tuples(st.just("renegotiate"), st.integers(0, 3)),
)


@pytest.mark.parametrize("media", ["native", "shared"])
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(st.lists(op, min_size=1, max_size=40))
def test_both_send_ticks_send_the_same(media: str, ops: list[tuple[str, int]]) -> None:
    py_packets, *py = _run("python", ops)
    nat_packets, *nat = _run(media, ops)
    assert len(py_packets) == len(nat_packets)
    assert py_packets == nat_packets
    assert py == nat


def test_a_long_run_sends_every_packet_on_time() -> None:
    """Enough ticks to wrap the 16-bit sequence of the seeded sources, all sent."""
    ops = [("tick", 1)] * 40
    py_packets, *py = _run("python", ops)
    nat_packets, *nat = _run("native", ops)
    assert py_packets == nat_packets and py == nat
    assert nat[0]["tx_packets"] == len(nat_packets) > 100  # type: ignore[index]
