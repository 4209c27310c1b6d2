"""``LeaseKeeper`` against a real PostgreSQL: it keeps a lease alive, and when it cannot renew (the database stops
answering its renewals) it declares the lease lost at the local deadline, while the database still holds the lease,
so no other node could have taken it yet (docs/adr/0016, claim 1)."""

from __future__ import annotations

import dataclasses
import time

import psycopg
import trio
from callsd.adapters.store.lease_keeper import LeaseKeeper
from callsd.adapters.store.postgres import PostgresStore


def _held_by_database(url: str, stream: str) -> bool:
    """Whether the database still counts the stream's lease as live (a plain read: row locks do not block it)."""
    with psycopg.connect(url) as db:
        return bool(db.execute("SELECT expires_at > clock_timestamp() FROM call_leases WHERE stream = %s",
                               (stream,)).fetchone()[0])  # type: ignore[index]


async def test_the_keeper_renews_and_nobody_else_can_take_the_lease(pg_url: str) -> None:
    store, other = PostgresStore(pg_url, stream="k"), PostgresStore(pg_url, stream="k")
    lease = store.acquire_lease("node-a", 2.5)  # long enough that a loaded machine still renews in time
    assert lease is not None
    keeper = LeaseKeeper(store)
    async with trio.open_nursery() as nursery:
        await nursery.start(keeper.run)
        with trio.fail_after(60):
            while keeper.renewals < 6:  # ~5 s: twice the lease
                assert other.acquire_lease("node-b", 5) is None
                await trio.sleep(0.05)
        assert not keeper.lost.is_set()
        assert store.fence is not None and store.fence.epoch == lease.epoch
        assert store.fence.local_deadline > lease.local_deadline
        nursery.cancel_scope.cancel()
    store.close(), other.close()


async def test_a_keeper_started_late_renews_at_once_not_a_third_of_the_lease_later(pg_url: str) -> None:
    """A host that took a while to rebuild its call from the log starts its keeper late: the first renewal is due a
    third of the lease after the request that granted it, so it goes out at once (a fixed sleep from the keeper's
    start ran past the local deadline: a 2 s lease lost 0.4 s after hosting under load)."""
    store = PostgresStore(pg_url, stream="late")
    lease = store.acquire_lease("node-a", 6.0)  # local deadline 4.8 s after the request; a renewal due at 2 s
    assert lease is not None
    store.fence = dataclasses.replace(lease, local_deadline=lease.local_deadline - 3.5)  # requested 3.5 s ago
    assert store.fence.requested_at < time.monotonic() - 3.4
    keeper = LeaseKeeper(store)
    async with trio.open_nursery() as nursery:
        await nursery.start(keeper.run)
        with trio.fail_after(30):
            while keeper.renewals < 1:
                assert not keeper.lost.is_set(), keeper.why  # a sleep of 2 s from now would pass the deadline
                await trio.sleep(0.02)
        nursery.cancel_scope.cancel()
    assert not keeper.lost.is_set() and store.fence.local_deadline > lease.local_deadline
    store.close()


async def test_a_keeper_that_cannot_renew_stops_before_the_database_lets_anyone_else_in(pg_url: str) -> None:
    store = PostgresStore(pg_url, stream="p")
    lease = store.acquire_lease("node-a", 3.0)
    assert lease is not None
    keeper = LeaseKeeper(store)
    # A "partition": another session locks the lease row, so the keeper's renewals hang unanswered.
    with psycopg.connect(pg_url) as blocker:
        blocker.execute("SELECT 1 FROM call_leases WHERE stream = 'p' FOR UPDATE")
        async with trio.open_nursery() as nursery:
            await nursery.start(keeper.run)
            with trio.fail_after(30):
                await keeper.lost.wait()
            lost_at = time.monotonic()
            assert _held_by_database(pg_url, "p")  # the database still holds it: nobody else could take it yet
            nursery.cancel_scope.cancel()
        assert lost_at >= lease.local_deadline and "local deadline passed" in keeper.why
        blocker.rollback()
    other = PostgresStore(pg_url, stream="p")
    with trio.fail_after(30):
        while other.acquire_lease("node-b", 3.0) is None:  # once the database's expiry passes
            await trio.sleep(0.05)
    assert other.fence is not None and other.fence.epoch == 2
    store.close(), other.close()


async def test_a_keeper_whose_lease_was_taken_says_so_at_the_next_renewal(pg_url: str) -> None:
    store = PostgresStore(pg_url, stream="t")
    assert store.acquire_lease("node-a", 1.5) is not None
    keeper = LeaseKeeper(store)
    with psycopg.connect(pg_url, autocommit=True) as db:  # released behind its back, and taken
        db.execute("UPDATE call_leases SET expires_at = clock_timestamp() WHERE stream = 't'")
    assert PostgresStore(pg_url, stream="t").acquire_lease("node-b", 30) is not None
    async with trio.open_nursery() as nursery:
        await nursery.start(keeper.run)
        with trio.fail_after(30):
            await keeper.lost.wait()
        nursery.cancel_scope.cancel()
    assert "refused to renew epoch 1" in keeper.why
    store.close()
