"""The signaling hub's test doubles, shared by the hub tests (one of each): ``MemoryTransport``, an in-memory
WebSocket, and ``MemoryRecorder``, a synchronous recorder that keeps the inputs it was fed; ``connected`` opens a
client on a running hub, and ``group_commit_hub`` with ``GatedAppends`` builds the durability tests' hub over a
store whose commits the test holds (SQLite and PostgreSQL alike)."""

from __future__ import annotations

import json
import threading
from typing import Any

import trio
from callsd.adapters.signaling import HubSettings, NullMediaPlane, SignalingHub
from callsd.adapters.store import CallRecorder, EventStore
from callsd.core.calls import events as ev
from callsd.core.calls import outputs as out
from callsd.core.calls.machine import CallsMachine


class MemoryTransport:
    """A client socket: the test pushes frames in; what the hub sends is collected (or blocks, when ``stuck``)."""

    def __init__(self, *, stuck: bool = False, inbox_size: int = 1000) -> None:
        self.inbox_send, self.inbox = trio.open_memory_channel[Any](inbox_size)
        self.sent: list[dict[str, Any]] = []
        self.closed: tuple[int, str] | None = None
        self.stuck = stuck

    async def receive(self) -> str | bytes | None:
        return await self.inbox.receive()  # type: ignore[no-any-return]

    async def send(self, text: str) -> None:
        if self.stuck:
            await trio.sleep_forever()
        self.sent.append(json.loads(text))

    async def close(self, code: int, reason: str) -> None:
        self.closed = (code, reason)

    async def push(self, kind: str, data: dict[str, Any] | None = None, **top: Any) -> None:
        """Send one client message; ``top`` adds top-level fields (e.g. ``id``)."""
        await self.inbox_send.send(json.dumps({"type": kind, "data": data or {}, **top}))

    async def hang_up(self) -> None:
        await self.inbox_send.send(None)

    def types(self) -> list[str]:
        return [m["type"] for m in self.sent]

    def last(self, kind: str) -> dict[str, Any]:
        return next(m for m in reversed(self.sent) if m["type"] == kind)

    async def wait_for(self, kind: str, count: int = 1) -> None:
        with trio.fail_after(10):
            while self.types().count(kind) < count:
                await trio.sleep(0.005)

    async def settle(self) -> None:
        """Wait until every message the server owed this client before now has arrived: a ping's pong comes after
        them (one outbox per connection, in order). A reply such as ``join_ack`` is only the first of its batch."""
        pongs = self.types().count("pong")
        await self.push("ping")
        await self.wait_for("pong", pongs + 1)


class MemoryRecorder:
    """A synchronous ``Recorder`` without a store: every input is durable at once; ``log`` keeps them."""

    group_commit = False

    def __init__(self) -> None:
        self.machine = CallsMachine()
        self.log: list[ev.InputEvent] = []

    @property
    def seq(self) -> int:
        return len(self.log)

    @property
    def durable_seq(self) -> int:
        return len(self.log)

    def handle(self, event: ev.InputEvent) -> list[out.OutputEvent]:
        outputs = self.machine.handle(event)
        self.log.append(event)
        return outputs

    async def wait_durable(self, seq: int) -> None:
        """Everything is durable."""

    async def commit_loop(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()


async def connected(hub: SignalingHub, nursery: trio.Nursery) -> MemoryTransport:
    """A new in-memory client of ``hub`` (which runs in ``nursery``), past the server's ``hello``."""
    socket = MemoryTransport()
    nursery.start_soon(hub.serve_connection, socket)
    await socket.wait_for("hello")
    return socket


GATE_TIMEOUT = 20.0  # a forgotten gate fails the test instead of hanging it


class GatedAppends:
    """Mixed into a store class before it: ``append`` (run in the recorder's worker thread) first waits for
    ``gate``, then fails with ``fail`` if set; ``appends`` lists the seqs of every committed batch."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.gate = threading.Event()
        self.gate.set()
        self.fail: BaseException | None = None
        self.appends: list[list[int]] = []

    def append(self, records: Any) -> None:
        if not self.gate.wait(GATE_TIMEOUT):
            raise TimeoutError("the test never opened the gate")
        if self.fail is not None:
            raise self.fail
        super().append(records)  # type: ignore[misc]
        self.appends.append([r.seq for r in records])


def group_commit_hub(store: EventStore) -> tuple[SignalingHub, CallRecorder, NullMediaPlane]:
    """The real hub over ``CallRecorder(group_commit=True)`` on ``store``, a recording media plane, no rate limit."""
    recorder = CallRecorder(store, group_commit=True)
    plane = NullMediaPlane()
    hub = SignalingHub(recorder, recorder.machine, plane=plane, settings=HubSettings(rate=1e9, burst=10**9))
    return hub, recorder, plane
