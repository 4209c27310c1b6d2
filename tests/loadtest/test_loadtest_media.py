"""The load client's media leg against the real media transport (ICE-lite, DTLS, SRTP), with a tiny echo SFU.

No signaling and no SDP here: the test wires each simulated leg to a peer of `UdpEndpoint` directly, and a handler
forwards every participant's RTP to every other participant (same SSRC, no rewriting). The users observe what a
user of the load tool would: every stream arrives, without loss, with a measured one-way delay.
"""

from __future__ import annotations

import secrets

import pytest
import trio
from callsd.adapters.media import transport
from callsd.app.loadtest.sdp import AUDIO_LEVEL_URI, MID_URI
from callsd.peer import Identity, Leg, MediaEngine, Source


class EchoSfu:
    """Forwards each connected peer's RTP to all other connected peers."""

    def __init__(self) -> None:
        self.peers: list[object] = []
        self.connected: list[str] = []
        self.closed: list[tuple[str, str]] = []

    def on_connected(self, peer: object) -> None:
        self.connected.append(peer.session_id)  # type: ignore[attr-defined]
        self.peers.append(peer)

    def on_closed(self, peer: object, reason: str) -> None:
        self.closed.append((peer.session_id, reason))  # type: ignore[attr-defined]

    def on_rtp(self, peer: object, plain: bytes) -> None:
        for other in self.peers:
            if other is not peer:
                other.send_rtp(plain)  # type: ignore[attr-defined]

    def on_rtcp(self, peer: object, plain: bytes) -> None:
        pass


@pytest.mark.parametrize("media", ["python", "native", "shared"])
async def test_legs_connect_and_measure_zero_loss(media: str) -> None:
    sfu = EchoSfu()
    endpoint = transport.UdpEndpoint(transport.TransportConfig(host="127.0.0.1", port=0), sfu)
    engine = MediaEngine(Identity(), delay_sample=1, media=media)
    legs: list[Leg] = []
    async with trio.open_nursery() as nursery:
        address = await nursery.start(endpoint.serve)
        nursery.start_soon(engine.receive_loop)
        nursery.start_soon(engine.send_loop)
        nursery.start_soon(engine.maintain_loop)
        for n in range(3):
            leg = Leg(engine, user_number=n, call_index=0, ufrag=secrets.token_hex(4), pwd=secrets.token_hex(16))
            server_ufrag, server_pwd = secrets.token_hex(4), secrets.token_hex(16)
            endpoint.add_peer(f"s{n}", server_ufrag, server_pwd, leg.local_ufrag, leg.local_pwd,
                              engine.identity.fingerprint, dtls_role="passive")
            leg.set_payload_types({111: ("audio", 48000), 96: ("video", 90000)})
            if n < 2:  # two talkers
                source = Source(kind="audio", ssrc=1000 + n, user_number=n, seed=n)
                engine.add_source(source)
                source.configure("0", 111, {AUDIO_LEVEL_URI: 1, MID_URI: 4})
                source.enabled = True
                leg.add_source(source)
            if n == 0:  # and one screen sharer
                screen = Source(kind="video", ssrc=2000, user_number=n, bitrate=400_000, index=2)
                engine.add_source(screen)
                screen.configure("1", 96, {MID_URI: 4})
                screen.enabled = True
                leg.add_source(screen)
            leg.start(remote_ufrag=server_ufrag, remote_pwd=server_pwd, remote_fingerprint=endpoint.fingerprint,
                      address=address)
            legs.append(leg)
        with trio.fail_after(10):
            while not all(leg.state == "connected" for leg in legs):
                assert not any(leg.state == "failed" for leg in legs), [leg.error for leg in legs]
                await trio.sleep(0.05)
        # Run until every leg hears every stream meant for it, well past its start (not for a guessed time).
        def heard_enough() -> bool:  # leg 0 hears 1's audio; leg 1 hears 0's audio and screen; leg 2 all three
            return engine.tx_packets > 100 and engine.delay.count > 100 and all(
                len(leg.streams) == n and all(st.received >= 10 for st in leg.streams.values())
                for leg, n in zip(legs, [1, 2, 3], strict=True)
            )

        with trio.fail_after(20):
            while not heard_enough():
                await trio.sleep(0.05)
        engine.stop_sending()
        with trio.move_on_after(5):  # what is still in flight arrives (the assertions below say if any was lost)
            while engine.snapshot(legs)["delivery_lost"] or engine.snapshot(legs)["lost"]:
                await trio.sleep(0.02)
        nursery.cancel_scope.cancel()
    snap = engine.snapshot(legs)
    assert snap["tx_packets"] > 100
    assert snap["lost"] == 0
    assert snap["delivery_expected"] > 100 and snap["delivery_lost"] == 0  # counted from the senders' side
    assert snap["srtp_errors"] == 0
    # Leg 2 (silent) hears both talkers and the screen; each talker hears the other (and leg 1 the screen).
    assert sorted(st.kind for st in legs[2].streams.values()) == ["audio", "audio", "video"]
    assert sorted(st.kind for st in legs[0].streams.values()) == ["audio"]
    assert sorted(st.kind for st in legs[1].streams.values()) == ["audio", "video"]
    for leg in legs:
        assert leg.first_audio_ns > 0
        for st in leg.streams.values():
            assert st.received >= 10
            assert st.jitter_ms < 50
    assert engine.delay.count > 100
    assert 0 <= engine.delay.quantile(0.5) < 100
