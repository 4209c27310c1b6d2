"""The native engines' steady state (peer/engine.py `NATIVE_TICK_DRAIN`, ADR 0030's session-8 addendum): with no
leg connecting, the send tick reads every socket and the receive and maintenance loops sleep; a leg registering
ends it at once and the maintenance round that finds every leg connected starts it again. Every packet sent to a
leg in the steady state is counted, on a socket per user and on a shared port; the Python engine never enters it.
No timing is asserted: the test waits on conditions."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable

import pylibsrtp
import pytest
import trio
from callsd.peer import Identity, Leg, MediaEngine, Source
from callsd.peer._fastpeer import SrtpSession as NativeSession

PROFILE = pylibsrtp.Policy.SRTP_PROFILE_AEAD_AES_128_GCM
KEY = os.urandom(28)
PACKETS = 40


def _connected_leg(engine: MediaEngine, number: int, server: socket.socket, media: str) -> Leg:
    leg = Leg(engine, user_number=number, call_index=0, ufrag="u", pwd="p")
    leg.set_payload_types({111: ("audio", 48000)})
    leg.sock.connect(server.getsockname())
    leg.consent_interval = None  # the stand-in server answers no STUN
    leg.state = "connected"
    leg.rx = (NativeSession(int(PROFILE), KEY, False) if media != "python"
              else pylibsrtp.Session(pylibsrtp.Policy(key=KEY, ssrc_type=pylibsrtp.Policy.SSRC_ANY_INBOUND,
                                                      srtp_profile=PROFILE)))
    return leg


async def _until(condition: Callable[[], bool], what: str) -> None:
    """Wait for ``condition`` (bounded: 20 s, a loaded host's worst case for a few ticks)."""
    with trio.move_on_after(20):
        while not condition():
            await trio.sleep(0.005)
        return
    raise AssertionError(f"never reached: {what}")


@pytest.mark.parametrize("media", ["native", "shared", "python"])
def test_steady_state_reads_on_the_tick_and_ends_when_a_leg_registers(media: str) -> None:
    engine = MediaEngine(Identity(), delay_sample=1, media=media)
    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    server.bind(("127.0.0.1", 0))
    legs = [_connected_leg(engine, n, server, media) for n in range(3)]
    tx = pylibsrtp.Session(pylibsrtp.Policy(key=KEY, ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND,
                                            srtp_profile=PROFILE))
    talker = Source(kind="audio", ssrc=777, user_number=9, seed=9)
    talker.configure("0", 111, {})

    async def run() -> None:
        async with trio.open_nursery() as nursery:
            for loop in (engine.receive_loop, engine.send_loop, engine.maintain_loop):
                nursery.start_soon(loop)
            if media == "python":
                await _until(lambda: engine.connecting == 0, "the maintenance round counted")
                assert not engine.steady  # the reference keeps its own loops
            else:
                await _until(lambda: engine.steady, "the steady state")
            for _ in range(PACKETS):
                wire = tx.protect(talker.packets(time.monotonic_ns())[0])
                for leg in legs:
                    server.sendto(wire, leg.local_address)
            await _until(lambda: engine.rx_packets == PACKETS * len(legs), "every packet counted")
            assert engine.steady == (media != "python")
            newcomer = Leg(engine, user_number=5, call_index=0, ufrag="u", pwd="p")
            assert not engine.steady  # registering ends it at once: ICE and DTLS want answers now
            newcomer.sock.connect(server.getsockname())
            newcomer.consent_interval = None
            newcomer.state = "connected"
            legs.append(newcomer)
            if media != "python":
                await _until(lambda: engine.steady, "the steady state again")
            nursery.cancel_scope.cancel()

    try:
        trio.run(run)
        engine.sync()
        assert engine.srtp_errors == 0 and engine.rx_verified == PACKETS * 3
        assert all(leg.streams[777].received == PACKETS for leg in legs[:3])
    finally:
        for leg in legs:
            leg.close()
        if engine.port is not None:
            engine.port.close()
        server.close()
