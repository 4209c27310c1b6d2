"""Group commit and durable fan-out on the PostgreSQL store (the twin of tests/server/test_server_durability.py):
the real hub over ``CallRecorder(group_commit=True)`` and a real ``PostgresStore``, in-memory client sockets. What is
not yet committed in PostgreSQL is seen by nobody; a node whose lease was taken stops without fanning out the input
the database refused."""

from __future__ import annotations

from typing import Any

import psycopg
import trio
import trio.testing
from callsd.adapters.store.pg_leases import StaleLease
from callsd.adapters.store.postgres import PostgresStore
from hub_support import GatedAppends, connected, group_commit_hub


class GatedPostgresStore(GatedAppends, PostgresStore):
    """A PostgresStore whose commits the test holds (hub_support.GatedAppends)."""


async def _until(condition: Any) -> None:
    with trio.fail_after(10):
        while not condition():
            await trio.sleep(0.005)
    await trio.testing.wait_all_tasks_blocked(0.01)


async def test_nothing_is_sent_before_postgresql_has_the_record(pg_url: str) -> None:
    store = GatedPostgresStore(pg_url)
    hub, recorder, plane = group_commit_hub(store)
    async with trio.open_nursery() as nursery:
        await nursery.start(hub.run)
        a, _bystander = await connected(hub, nursery), await connected(hub, nursery)
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
    hub, recorder, plane = group_commit_hub(store)
    stopped: list[BaseException] = []
    hub.on_fatal = stopped.append
    async with trio.open_nursery() as nursery:
        await nursery.start(hub.run)
        a, b = await connected(hub, nursery), await connected(hub, nursery)
        await a.push("join", {"channel_id": "c"})
        await a.settle()  # join_ack, call_start, user_joined: all of them
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
