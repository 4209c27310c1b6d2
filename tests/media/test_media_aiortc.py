"""Real aiortc peers (each in its own thread and asyncio loop) in one call through the MediaPlane and the core."""

from __future__ import annotations

import pytest
import trio
from callsd.core import events as ev

from .conftest import AiortcClient, CallHarness, wait_until

pytestmark = pytest.mark.slow


async def test_two_peers_exchange_audio(loopback_only: None) -> None:
    h = CallHarness()
    a = AiortcClient("a", audio_hz=440)
    b = AiortcClient("b", audio_hz=660)
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            await nursery.start(h.plane.serve)
            nursery.start_soon(h.pump)
            try:
                await h.join("A", a)
                await h.join("B", b)
                h.core(ev.Unmute(at=h.now(), session_id="A"))
                h.core(ev.Unmute(at=h.now(), session_id="B"))
                ta, tb = h.track_of("A", "audio"), h.track_of("B", "audio")
                await wait_until(lambda: b.frames.get(ta, 0) > 20 and a.frames.get(tb, 0) > 20,
                                 what="audio both ways\n" + h.diagnostics())
                assert h.connected == {"A", "B"}
            finally:
                await a.close()
                await b.close()
                nursery.cancel_scope.cancel()
