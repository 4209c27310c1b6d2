"""Real aiortc peers (each in its own thread and asyncio loop) in one call through the MediaPlane and the core."""

from __future__ import annotations

import pytest
from callsd.core.calls import events as ev
from callsd.core.calls.events import TrackKind

from .conftest import AiortcClient, CallHarness, wait_until

pytestmark = pytest.mark.slow


async def test_two_peers_exchange_audio(loopback_only: None) -> None:
    h = CallHarness()
    a = AiortcClient("a", audio_hz=440)
    b = AiortcClient("b", audio_hz=660)
    async with h.running([a, b], timeout=60):
        await h.join("A", a)
        await h.join("B", b)
        h.core(ev.Unmute(at=h.now(), session_id="A"))
        h.core(ev.Unmute(at=h.now(), session_id="B"))
        ta, tb = h.track_of("A", "audio"), h.track_of("B", "audio")
        await wait_until(lambda: b.frames.get(ta, 0) > 20 and a.frames.get(tb, 0) > 20,
                         what="audio both ways", diag=h.diagnostics)
        assert h.connected == {"A", "B"}
        # both send a loud sine: the audio-level extension reports them speaking
        await wait_until(lambda: {v.session_id for v in h.voice if v.speaking} == {"A", "B"},
                         what="voice activity", diag=h.diagnostics)


async def test_three_peers_mute_leave_and_late_joiner(loopback_only: None) -> None:
    """Two send Opus, one sends VP8; everyone decodes the others; mute pauses, leave removes, a late joiner decodes."""
    h = CallHarness()
    a = AiortcClient("a", audio_hz=440)
    b = AiortcClient("b", audio_hz=660)
    c = AiortcClient("c", video=True)
    d = AiortcClient("d", audio_hz=880)
    clients = [a, b, c, d]
    async with h.running(clients, timeout=90):
        await h.join("A", a)
        await h.join("B", b)
        await h.join("C", c)
        h.core(ev.Unmute(at=h.now(), session_id="A"))
        h.core(ev.Unmute(at=h.now(), session_id="B"))
        await wait_until(lambda: {"A_0", "B_0", "C_0"} <= set(h.plane.tracks), what="tracks published")
        ta, tb, tc = "A_0", "B_0", "C_0"

        def flowing() -> bool:
            return (
                b.frames.get(ta, 0) > 20 and c.frames.get(ta, 0) > 20
                and a.frames.get(tb, 0) > 20 and c.frames.get(tb, 0) > 20
                and a.frames.get(tc, 0) > 5 and b.frames.get(tc, 0) > 5
            )

        await wait_until(flowing, timeout=30, what="media between three peers", diag=h.diagnostics)
        assert a.kinds[tc] == "video" and b.kinds[ta] == "audio"

        # mute A: its audio stops reaching B and C while B's keeps flowing. B's audio at C (50 frames/s) is the
        # clock: wait for it to advance rather than for wall time, so a loaded machine makes this slower, not wrong.
        h.core(ev.Mute(at=h.now(), session_id="A"))
        drained = c.frames[tb] + 25  # ~0.5 s of audio: packets in flight and jitter buffers drain meanwhile
        await wait_until(lambda: c.frames[tb] >= drained, what="B's audio after the mute", diag=h.diagnostics)
        at_b, at_c, b_at_c = b.frames[ta], c.frames[ta], c.frames[tb]
        await wait_until(lambda: c.frames[tb] - b_at_c >= 75, what="1.5 s more of B's audio", diag=h.diagnostics)
        assert b.frames[ta] - at_b <= 3 and c.frames[ta] - at_c <= 3  # A's muted audio did not come through

        # unmute: it flows again
        h.core(ev.Unmute(at=h.now(), session_id="A"))
        await wait_until(lambda: b.frames[ta] - at_b > 20 and c.frames[ta] - at_c > 20,
                         what="audio after unmute", diag=h.diagnostics)

        # a late joiner receives the existing tracks and decodes video (it needs a keyframe)
        await h.join("D", d)
        await wait_until(
            lambda: d.frames.get(tc, 0) > 5 and d.frames.get(ta, 0) > 20 and d.frames.get(tb, 0) > 20,
            timeout=30, what="late joiner media", diag=h.diagnostics,
        )
        assert h.plane.counters["pli_out"] >= 1

        # C leaves: after renegotiation its video section is inactive at every remaining peer
        await h.leave("C")
        clients.remove(c)
        await wait_until(
            lambda: all(x.directions().get(tc) == "inactive" for x in (a, b, d)),
            what="C's track removed", diag=h.diagnostics,
        )
        assert "C_0" not in h.plane.tracks
        assert not h.errors


async def test_screen_share_added_by_a_client_reoffer(loopback_only: None) -> None:
    """A client re-offers to add its screen; the plane publishes it as SCREEN_VIDEO and the others decode it."""
    h = CallHarness()
    a = AiortcClient("a", audio_hz=440)
    b = AiortcClient("b", audio_hz=660)
    async with h.running([a, b], timeout=60):
        await h.join("A", a)
        await h.join("B", b)
        await wait_until(lambda: {"A", "B"} <= h.connected and not h.plane.sessions["B"].offer_pending
                         and "A_0" in h.plane.sessions["B"].routes_in, what="B settled",
                         diag=h.diagnostics)
        stream = h.plane.tracks["B_0"].stream_id
        h.core(ev.ScreenOn(at=h.now(), session_id="B", stream_id=stream))
        h.plane.set_screen_stream("B", stream)
        offer = await b.add_video_and_offer()
        h.plane.handle_signal("B", {"type": "offer", "sdp": offer})
        await wait_until(lambda: any(t.kind == TrackKind.SCREEN_VIDEO for t in h.plane.tracks.values()),
                         what="screen published", diag=h.diagnostics)
        screen = next(t.track_id for t in h.plane.tracks.values() if t.kind == TrackKind.SCREEN_VIDEO)
        await wait_until(lambda: a.frames.get(screen, 0) > 5, what="screen decoded at A",
                         diag=h.diagnostics)
        assert a.kinds[screen] == "video"
        assert not h.errors


async def test_reconnect_on_a_new_peer_connection_keeps_receiving(loopback_only: None) -> None:
    """The server's reconnect path: the old media session is closed and re-opened under the same id and given back
    the routes the core has towards it (``restore_routes``); the new peer connection receives the existing tracks
    and its own track reaches the others again."""
    h = CallHarness()
    a = AiortcClient("a", audio_hz=440, video=True)
    b = AiortcClient("b", audio_hz=660)
    b2 = AiortcClient("b2", audio_hz=880)
    clients = [a, b, b2]
    async with h.running(clients, timeout=60):
        await h.join("A", a)
        await h.join("B", b)
        h.core(ev.Unmute(at=h.now(), session_id="A"))
        h.core(ev.Unmute(at=h.now(), session_id="B"))
        await wait_until(lambda: b.frames.get("A_0", 0) > 20 and a.frames.get("B_0", 0) > 20,
                         what="media before the reconnect", diag=h.diagnostics)
        # B's page reloads: as the server does, unpublish its tracks, re-open its media session
        h.clients["B"] = b2
        h.core(ev.UnpublishTrack(at=h.now(), session_id="B", track_id="B_0"))
        h.plane.close_session("B")
        h.plane.open_session("B", h.CHANNEL)
        h.plane.restore_routes([r for r in h.machine.routes(h.CHANNEL) if r.receiver_id == "B"])
        h.plane.handle_signal("B", {"type": "offer", "sdp": await b2.offer()})
        at_a = a.frames.get("B_0", 0)
        await wait_until(
            lambda: b2.frames.get("A_0", 0) > 20 and b2.frames.get("A_1", 0) > 5
            and a.frames.get("B_0", 0) - at_a > 20,
            what="media after the reconnect", diag=h.diagnostics,
        )
        assert not h.errors
