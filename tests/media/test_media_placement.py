"""PlaneRouter placement over remote hosts (adapters/media/router.py): fewest sessions among the hosts whose
cpu_load is within LOAD_STEP of the lightest; only accepting, live planes get new calls; a call stays on its host; a dead host's sessions move
with their next offer (SessionMoved). The planes are real RemotePlanes whose links are never served."""

from __future__ import annotations

from typing import Any

import trio.testing
from callsd.adapters.media.events import MediaEvent, SessionMoved
from callsd.adapters.media.remote import RemotePlane
from callsd.adapters.media.router import PlaneRouter
from callsd.app.config import RtcConfig


class _NoHosts:
    async def run(self, router: PlaneRouter, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started(None)


def _router(n: int) -> tuple[PlaneRouter, list[RemotePlane], list[MediaEvent]]:
    events: list[MediaEvent] = []
    router = PlaneRouter(RtcConfig(), events.append, hosts=_NoHosts())
    planes = []
    for i in range(n):
        stream, _ = trio.testing.memory_stream_pair()
        plane = RemotePlane(stream, router.emit, name=f"rtcd {i}")
        router.add_plane(plane)
        planes.append(plane)
    return router, planes, events


def test_lowest_load_then_fewest_sessions_and_calls_stay() -> None:
    router, planes, _ = _router(2)
    planes[0].cpu_load, planes[1].cpu_load = 0.50, 0.10
    router.open_session("a1", "A")
    assert router.channel_worker["A"] == 1  # lower load
    planes[1].cpu_load = 0.54  # within 5 % of a core of host 0: sessions decide
    router.open_session("b1", "B")
    assert router.channel_worker["B"] == 0
    planes[0].cpu_load = 0.51
    router.open_session("a2", "A")  # a call stays on its host whatever the load
    assert router.session_worker["a2"] == 1


def test_only_accepting_live_hosts_get_new_calls() -> None:
    router, planes, events = _router(2)
    router.open_session("a1", "A")
    assert router.channel_worker["A"] == 0
    planes[0].accepting = False  # left DNS, failed health, or drains
    router.open_session("b1", "B")
    router.open_session("a2", "A")
    assert router.channel_worker["B"] == 1 and router.session_worker["a2"] == 0  # A's call continues on host 0
    planes[1].accepting = False
    router.open_session("c1", "C")
    router.handle_signal("c1", {"type": "offer", "sdp": "v=0"})
    assert "c1" not in router.session_worker
    assert events[-1].session_id == "c1" and "unavailable" in getattr(events[-1], "reason", "")
    # host 0 dies: A's sessions are reported closed; their next offer moves them to a live accepting host
    planes[1].accepting = True
    planes[0].lost("test")
    router.handle_signal("a1", {"type": "offer", "sdp": "v=0"})
    assert router.session_worker["a1"] == 1 and router.channel_worker["A"] == 1
    assert any(isinstance(e, SessionMoved) and e.session_id == "a1" for e in events)


def test_a_relinked_host_reuses_a_free_slot() -> None:
    router, planes, _ = _router(2)
    router.open_session("a1", "A")  # on plane 0
    planes[0].lost("gone")
    planes[1].lost("gone")
    stream, _ = trio.testing.memory_stream_pair()
    fresh = RemotePlane(stream, router.emit, name="rtcd 1")
    assert router.add_plane(fresh) == 1  # slot 0 is still named by call A's session; slot 1 is free
    assert len(router.planes) == 2
