"""The hub's pieces alone (ADR 0010): the timer service on Trio's virtual clock, the media bridge fed typed events."""

from __future__ import annotations

from typing import Any

import trio
import trio.testing
from callsd.adapters.media.events import SessionMoved, SignalRejected, TrackPublished
from callsd.adapters.signaling import NullMediaPlane, SignalingHub
from callsd.adapters.signaling_timers import TimerService
from callsd.core.calls import events as ev
from callsd.core.calls import outputs as out
from hub_support import MemoryRecorder, MemoryTransport


def _clock_ms() -> int:
    return int(trio.current_time() * 1000)


async def test_timers_fire_in_deadline_order_never_early(autojump_clock: trio.testing.MockClock) -> None:
    fired: list[tuple[str, int, int]] = []
    timers = TimerService(_clock_ms, lambda key, at: fired.append((key, at, _clock_ms())))
    start = _clock_ms()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(timers.run)
        timers.follow(out.StartTimer(key="b", deadline=start + 2_000))
        timers.follow(out.StartTimer(key="a", deadline=start + 1_000))
        timers.follow(out.StartTimer(key="gone", deadline=start + 1_500))
        timers.follow(out.CancelTimer(key="gone"))
        await trio.sleep(5)
        nursery.cancel_scope.cancel()
    assert [key for key, _, _ in fired] == ["a", "b"]
    for key, at, now in fired:
        deadline = start + (1_000 if key == "a" else 2_000)
        assert deadline <= at <= now and now - deadline < 50  # on time, and never before the deadline
    assert dict(timers.pending) == {}


def _hub() -> tuple[SignalingHub, MemoryRecorder, NullMediaPlane]:
    rec, plane = MemoryRecorder(), NullMediaPlane()
    return SignalingHub(rec, rec.machine, plane=plane, clock_ms=_clock_ms), rec, plane


async def _joined(hub: SignalingHub, nursery: trio.Nursery, count: int) -> list[MemoryTransport]:
    sockets = [MemoryTransport() for _ in range(count)]
    for s in sockets:
        nursery.start_soon(hub.serve_connection, s)
        await s.wait_for("hello")
        await s.push("join", {"channel_id": "c"})
        await s.wait_for("join_ack")
    return sockets


async def test_the_media_bridge_restores_a_moved_sessions_routes_and_reports_refusals() -> None:
    hub, rec, plane = _hub()
    async with trio.open_nursery() as nursery:
        await nursery.start(hub.run)
        a, b = await _joined(hub, nursery, 2)
        sid_a, sid_b = (s.last("join_ack")["data"]["session_id"] for s in (a, b))
        hub.emit(TrackPublished(session_id=sid_a, track_id=f"{sid_a}_0", kind=ev.TrackKind.AUDIO))
        await trio.testing.wait_all_tasks_blocked()
        plane.calls.clear()
        hub.emit(SessionMoved(session_id=sid_b))  # its media worker died; the router re-opened it elsewhere
        hub.emit(SignalRejected(session_id=sid_b, action="sdp", reason="media worker unavailable"))
        await b.wait_for("error")
        restored: list[Any] = [args for name, args in plane.calls if name == "restore_routes"]
        assert [(r.track_id, r.receiver_id) for r in restored[0]] == [(f"{sid_a}_0", sid_b)]
        error = b.last("error")["data"]
        assert (error["code"], error["action"]) == ("sdp_rejected", "sdp")
        assert "media worker unavailable" in error["message"]
        nursery.cancel_scope.cancel()


class _BridgeSteps(trio.abc.Instrument):
    """Counts the steps of the hub's media task (``MediaBridge.run``)."""

    def __init__(self) -> None:
        self.steps = 0

    def after_task_step(self, task: trio.lowlevel.Task) -> None:
        if task.name.endswith("MediaBridge.run"):
            self.steps += 1


async def test_the_media_bridge_handles_what_is_queued_in_order_without_a_step_per_event() -> None:
    """Events emitted together (one plane call emits an answer and the others' slot updates) are handled in the
    order emitted, up to ``DRAIN_PER_STEP`` in one task step, where ``async for`` took a step per event."""
    from callsd.adapters.signaling_media import DRAIN_PER_STEP

    hub, rec, plane = _hub()
    steps = _BridgeSteps()
    async with trio.open_nursery() as nursery:
        await nursery.start(hub.run)
        a, b = await _joined(hub, nursery, 2)
        sid_a = a.last("join_ack")["data"]["session_id"]
        await trio.testing.wait_all_tasks_blocked()
        trio.lowlevel.add_instrument(steps)
        count = DRAIN_PER_STEP + 4
        for n in range(count):
            hub.emit(TrackPublished(session_id=sid_a, track_id=f"{sid_a}_{n}", kind=ev.TrackKind.AUDIO))
        await trio.testing.wait_all_tasks_blocked()
        trio.lowlevel.remove_instrument(steps)
        published = [e.track_id for e in rec.log if isinstance(e, ev.PublishTrack)]
        assert published == [f"{sid_a}_{n}" for n in range(count)]
        assert steps.steps == 2  # the wake-up (DRAIN_PER_STEP events), then one yield for the other 4
        nursery.cancel_scope.cancel()


def test_adapters_never_import_the_app() -> None:
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "adapters"
    upward = []
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            upward += [f"{path.name}: {n}" for n in names if n == "callsd.app" or n.startswith("callsd.app.")]
    assert upward == []
