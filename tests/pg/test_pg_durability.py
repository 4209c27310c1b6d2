"""Group commit and durable fan-out on the PostgreSQL store (the twin of tests/server/test_server_durability.py):
the real hub over ``CallRecorder(group_commit=True)`` and a real ``PostgresStore``, in-memory client sockets. What is
not yet committed in PostgreSQL is seen by nobody; a node whose lease was taken stops without fanning out the input
the database refused."""

from __future__ import annotations

import threading
from typing import Any

import psycopg
import trio
import trio.testing
from callsd.adapters.signaling import HubSettings, NullMediaPlane, SignalingHub
from callsd.adapters.store import CallRecorder
from callsd.adapters.store.pg_leases import StaleLease
from callsd.adapters.store.postgres import PostgresStore
from hub_support import MemoryTransport

GATE_TIMEOUT = 20.0


class GatedPostgresStore(PostgresStore):
    """``append`` (run in the recorder's worker thread) first waits for ``gate``; ``appends`` lists committed
    batches."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.gate = threading.Event()
        self.gate.set()
        self.appends: list[list[int]] = []

    def append(self, records: Any) -> None:
        if not self.gate.wait(GATE_TIMEOUT):
            raise TimeoutError("the test never opened the gate")
        super().append(records)
        self.appends.append([r.seq for r in records])


def _hub(store: PostgresStore) -> tuple[SignalingHub, CallRecorder, NullMediaPlane]:
    recorder = CallRecorder(store, group_commit=True)
    plane = NullMediaPlane()
    return SignalingHub(recorder, recorder.machine, plane=plane, settings=HubSettings(rate=1e9, burst=10**9)), \
        recorder, plane


async def _until(condition: Any) -> None:
    with trio.fail_after(10):
        while not condition():
            await trio.sleep(0.005)
    await trio.testing.wait_all_tasks_blocked(0.01)


async def test_nothing_is_sent_before_postgresql_has_the_record(pg_url: str) -> None:
    store = GatedPostgresStore(pg_url)
    hub, recorder, plane = _hub(store)
    a, b = MemoryTransport(), MemoryTransport()
    async with trio.open_nursery() as nursery:
        await nursery.start(hub.run)
        nursery.start_soon(hub.serve_connection, a)
        nursery.start_soon(hub.serve_connection, b)
        await a.wait_for("hello")
        await b.wait_for("hello")
        try:
            store.gate.clear()  # the database holds the commit
            await a.push("join", {"channel_id": "c"})
            await a.push("ping")
            await _until(lambda: recorder.seq >= 1)
            assert recorder.durable_seq == 0 and store.last_seq() == 0
            assert a.types() == ["hello"]  # neither the join_ack nor the pong behind it
            assert [name for name, _ in plane.calls] == []
            store.gate.set()
            await a.wait_for("pong")
            assert a.types() == ["hello", "join_ack", "call_start", "user_joined", "pong"]
            assert store.appends == [[1]]
        finally:
            store.gate.set()
        nursery.cancel_scope.cancel()
    store.close()


async def test_a_node_whose_lease_was_taken_fans_nothing_out_and_stops(pg_url: str) -> None:
    store = PostgresStore(pg_url)
    assert store.acquire_lease("node-a", 30) is not None
    hub, recorder, plane = _hub(store)
    stopped: list[BaseException] = []
    hub.on_fatal = stopped.append
    a, b = MemoryTransport(), MemoryTransport()
    async with trio.open_nursery() as nursery:
        await nursery.start(hub.run)
        nursery.start_soon(hub.serve_connection, a)
        nursery.start_soon(hub.serve_connection, b)
        await a.wait_for("hello")
        await b.wait_for("hello")
        await a.push("join", {"channel_id": "c"})
        await a.wait_for("join_ack")
        seen_a, plane_before = len(a.sent), list(plane.calls)
        with psycopg.connect(pg_url, autocommit=True) as db:  # A's lease ends behind its back (a long pause)
            db.execute("UPDATE call_leases SET expires_at = clock_timestamp() WHERE stream = ''")
        other = PostgresStore(pg_url)  # and node B takes the stream over
        assert other.acquire_lease("node-b", 30) is not None
        await b.push("join", {"channel_id": "c"})
        await b.wait_for("error")
        await _until(lambda: stopped)
        assert [m["data"]["code"] for m in b.sent if m["type"] == "error"] == ["internal_error"]
        assert "join_ack" not in b.types() and len(a.sent) == seen_a  # a never heard of b
        assert plane.calls == plane_before
        assert isinstance(stopped[0].__cause__, StaleLease)
        nursery.cancel_scope.cancel()
    assert other.last_seq() == 1  # the log holds only what was acted upon
    store.close(), other.close()
