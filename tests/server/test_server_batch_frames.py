"""Batch frames (protocol 1.3, docs/adr/0027-batch-frames.md): a client that asks with ``batch: true`` gets the
events waiting for it in one ``batch`` frame, in order; a client that does not ask, and a socket that may not carry
batches (a cluster relay), get one frame per event as before. The frame itself: ``batch_frame``."""

from __future__ import annotations

import json
from typing import Any

import trio
import trio.testing
from callsd.adapters.signaling import HubSettings, NullMediaPlane, SignalingHub
from callsd.adapters.signaling_protocol import BATCH_LINGER, PROTOCOL_MINOR, batch_frame, encode
from hub_support import MemoryRecorder


class FrameTransport:
    """A client socket that keeps every frame as sent (a batch stays one frame) and unwraps them for reading."""

    def __init__(self) -> None:
        self.inbox_send, self.inbox = trio.open_memory_channel[Any](100)
        self.frames: list[dict[str, Any]] = []

    async def receive(self) -> str | bytes | None:
        return await self.inbox.receive()  # type: ignore[no-any-return]

    async def send(self, text: str) -> None:
        self.frames.append(json.loads(text))

    async def close(self, code: int, reason: str) -> None:
        pass

    async def push(self, kind: str, data: dict[str, Any]) -> None:
        await self.inbox_send.send(json.dumps({"type": kind, "data": data}))

    def events(self) -> list[dict[str, Any]]:
        """Every event received, batches unwrapped, in order."""
        return [e for f in self.frames for e in (f["data"]["events"] if f["type"] == "batch" else [f])]


async def _frames(socket: FrameTransport, count: int) -> None:
    """Wait until ``socket`` has received ``count`` frames (lazy events linger BATCH_LINGER s first)."""
    with trio.fail_after(5):
        while len(socket.frames) < count:
            await trio.sleep(0.01)


def _hub() -> SignalingHub:
    rec = MemoryRecorder()
    return SignalingHub(rec, rec.machine, plane=NullMediaPlane(), settings=HubSettings(rate=1e9, burst=10**9),
                        clock_ms=lambda: int(trio.current_time() * 1000))


async def _joined(hub: SignalingHub, nursery: trio.Nursery, name: str, *, ask: bool,
                  allowed: bool = True) -> FrameTransport:
    socket = FrameTransport()
    nursery.start_soon(lambda: hub.serve_connection(socket, batch_allowed=allowed))
    await trio.testing.wait_all_tasks_blocked()
    data: dict[str, Any] = {"channel_id": "room", "display_name": name}
    if ask:
        data["batch"] = True
    await socket.push("join", data)
    await trio.testing.wait_all_tasks_blocked()
    return socket


async def test_a_joiner_that_asks_gets_the_events_of_its_join_in_one_frame() -> None:
    hub = _hub()
    async with trio.open_nursery() as nursery:
        await nursery.start(hub.run)
        alice = await _joined(hub, nursery, "alice", ask=True)
        assert [f["type"] for f in alice.frames] == ["hello", "batch"]
        assert [e["type"] for e in alice.frames[1]["data"]["events"]] == ["join_ack", "call_start", "user_joined"]
        bob = await _joined(hub, nursery, "bob", ask=True)
        assert [f["type"] for f in bob.frames] == ["hello", "batch"]
        assert [e["type"] for e in bob.events()] == ["hello", "join_ack", "user_joined"]
        # alice is told of bob once the linger for more presence events has passed (one event: not wrapped)
        await _frames(alice, 3)
        assert alice.frames[-1]["type"] == "user_joined" and alice.frames[-1]["data"]["user_id"] == "bob"
        assert hub.counters.ws_frames_out == 5
        assert hub.counters.ws_events["out", "user_joined"] == 3  # events are still counted one by one
        nursery.cancel_scope.cancel()


async def test_a_client_that_does_not_ask_and_a_relayed_socket_get_one_frame_per_event() -> None:
    hub = _hub()
    async with trio.open_nursery() as nursery:
        await nursery.start(hub.run)
        old = await _joined(hub, nursery, "old", ask=False)
        relayed = await _joined(hub, nursery, "relayed", ask=True, allowed=False)
        assert [f["type"] for f in old.frames] == ["hello", "join_ack", "call_start", "user_joined", "user_joined"]
        assert [f["type"] for f in relayed.frames] == ["hello", "join_ack", "user_joined"]
        nursery.cancel_scope.cancel()


async def test_batches_keep_the_order_of_a_burst_and_stay_within_their_bounds() -> None:
    hub = _hub()
    async with trio.open_nursery() as nursery:
        await nursery.start(hub.run)
        alice = await _joined(hub, nursery, "alice", ask=True)
        for n in range(200):  # queued while the writer sleeps: drained in batches of at most BATCH_MAX_EVENTS
            hub.outbox.send(hub.outbox.conns[next(iter(hub.outbox.conns))], "pong", {"n": n})
        await trio.testing.wait_all_tasks_blocked()
        pongs = [e["data"]["n"] for e in alice.events() if e["type"] == "pong"]
        assert pongs == list(range(200))
        assert all(len(f["data"]["events"]) <= 64 for f in alice.frames if f["type"] == "batch")
        nursery.cancel_scope.cancel()


async def test_presence_events_wait_for_company_and_anything_else_takes_them_at_once() -> None:
    hub = _hub()
    async with trio.open_nursery() as nursery:
        await nursery.start(hub.run)
        alice = await _joined(hub, nursery, "alice", ask=True)
        conn = hub.outbox.conns[next(iter(hub.outbox.conns))]
        hub.outbox.send(conn, "user_joined", {"user_id": "b"})
        await trio.sleep(BATCH_LINGER / 3)
        hub.outbox.send(conn, "user_media_state", {"session_id": "b"})
        hub.outbox.send(conn, "signal", {"type": "slots", "tracks": []}, lazy=True)
        await _frames(alice, 3)  # one frame for the three, after the linger
        assert [e["type"] for e in alice.frames[2]["data"]["events"]] == ["user_joined", "user_media_state", "signal"]
        started = trio.current_time()
        hub.outbox.send(conn, "user_left", {"user_id": "b"})
        hub.outbox.send(conn, "pong", {})  # not lazy: both go now, in order
        await _frames(alice, 4)
        assert trio.current_time() - started < BATCH_LINGER
        assert [e["type"] for e in alice.frames[3]["data"]["events"]] == ["user_left", "pong"]
        nursery.cancel_scope.cancel()


class _WriterSteps(trio.abc.Instrument):
    """Counts the steps of the hub's writer tasks (``SignalingHub._writer``)."""

    def __init__(self) -> None:
        self.steps = 0

    def after_task_step(self, task: trio.lowlevel.Task) -> None:
        if task.name.endswith("SignalingHub._writer"):
            self.steps += 1


async def test_a_lazy_event_for_an_idle_writer_wakes_it_once_at_the_end_of_its_linger() -> None:
    """A join makes each member of its call linger; the member's writer used to wake for the ``user_joined`` and
    again for the linger's end. Deferred, it wakes once; the frame is the same, after the same linger."""
    hub = _hub()
    steps = _WriterSteps()
    async with trio.open_nursery() as nursery:
        await nursery.start(hub.run)
        alice = await _joined(hub, nursery, "alice", ask=True)
        conn = hub.outbox.conns[next(iter(hub.outbox.conns))]
        trio.lowlevel.add_instrument(steps)
        started = trio.current_time()
        hub.outbox.send(conn, "user_joined", {"user_id": "b"})
        hub.outbox.send(conn, "user_media_state", {"session_id": "b"})
        await trio.testing.wait_all_tasks_blocked()
        assert steps.steps == 0 and len(alice.frames) == 2  # not woken, nothing sent: the events linger
        await _frames(alice, 3)
        trio.lowlevel.remove_instrument(steps)
        assert trio.current_time() - started >= BATCH_LINGER
        assert [e["type"] for e in alice.frames[2]["data"]["events"]] == ["user_joined", "user_media_state"]
        assert steps.steps == 1
        nursery.cancel_scope.cancel()


async def test_deferred_events_go_first_when_anything_else_wakes_the_writer_and_before_a_close() -> None:
    hub = _hub()
    async with trio.open_nursery() as nursery:
        await nursery.start(hub.run)
        alice = await _joined(hub, nursery, "alice", ask=True)
        conn = hub.outbox.conns[next(iter(hub.outbox.conns))]
        hub.outbox.send(conn, "user_joined", {"user_id": "b"})  # deferred
        hub.outbox.send(conn, "pong", {"n": 1})  # not lazy: wakes the writer; both go now, in order
        hub.outbox.send(conn, "user_left", {"user_id": "b"})  # queued behind the pong, not deferred
        await trio.testing.wait_all_tasks_blocked()
        assert [e["type"] for e in alice.frames[2]["data"]["events"]] == ["user_joined", "pong", "user_left"]
        hub.outbox.send(conn, "user_joined", {"user_id": "c"})  # deferred again
        conn.finish(1000, "bye", within=1.0)  # the close sends what was deferred, then ends the socket
        hub.outbox.send(conn, "user_left", {"user_id": "c"})  # after the close: dropped, as before
        await _frames(alice, 4)
        assert alice.frames[3]["type"] == "user_joined" and alice.frames[3]["data"]["user_id"] == "c"
        assert conn.backlog == 0
        nursery.cancel_scope.cancel()
    assert len(alice.frames) == 4


def test_batch_frame_is_the_events_in_order_and_one_event_stays_bare() -> None:
    a, b = encode("user_joined", {"user_id": "é"}), encode("pong", {}, request_id=3)
    assert json.loads(batch_frame([a, b])) == {"type": "batch", "data": {"events": [json.loads(a), json.loads(b)]}}
    assert batch_frame([a]) == a
    assert PROTOCOL_MINOR >= 3  # batch frames came with 1.3
