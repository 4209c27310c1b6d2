"""Leases and fencing on the PostgreSQL log (docs/adr/0016): one writer per stream and epoch, a stale writer refused
by the database itself, a lease lost never revived, and a takeover that sees every record the old owner had
acknowledged."""

from __future__ import annotations

import threading
import time

import psycopg
import pytest
from callsd.adapters.store import CallRecorder, pg_leases
from callsd.adapters.store.pg_leases import StaleLease
from callsd.adapters.store.postgres import _FENCED, PostgresStore
from callsd.core import Mute, make_record
from callsd.core.calls.replay import replay

RACE_TIMEOUT_S = 60.0


def _ghost(at: int, who: str) -> Mute:
    """An input the machine rejects (no such session) but that is logged all the same: valid in any state."""
    return Mute(at=at, session_id=f"ghost-{who}")


def _wait_expired(url: str, stream: str) -> None:
    """Poll the database's clock until the stream's lease has expired (bounded)."""
    deadline = time.monotonic() + RACE_TIMEOUT_S
    with psycopg.connect(url) as db:
        while not db.execute("SELECT expires_at <= clock_timestamp() FROM call_leases WHERE stream = %s",
                             (stream,)).fetchone()[0]:  # type: ignore[index]
            assert time.monotonic() < deadline, "the lease never expired"
            time.sleep(0.02)


def test_one_live_lease_per_stream_epochs_grow_and_release_hands_over(pg_url: str) -> None:
    a, b = PostgresStore(pg_url, stream="call-1"), PostgresStore(pg_url, stream="call-1")
    first = a.acquire_lease("node-a", 30)
    assert first is not None and first.epoch == 1 and first.live(time.monotonic())
    assert b.acquire_lease("node-b", 30) is None  # live: not taken
    assert a.acquire_lease("node-a", 30) is None  # not even by its holder: it renews
    renewed = a.renew_lease()
    assert renewed is not None and renewed.epoch == 1 and renewed.expires_at >= first.expires_at
    a.release_lease()  # drain: give it up now
    second = b.acquire_lease("node-b", 30)
    assert second is not None and second.epoch == 2
    assert PostgresStore(pg_url, stream="call-2").acquire_lease("node-a", 30).epoch == 1  # type: ignore[union-attr]
    a.close(), b.close()


def test_the_local_deadline_falls_before_the_database_expiry(pg_url: str) -> None:
    store = PostgresStore(pg_url, stream="s")
    with psycopg.connect(pg_url) as db:
        lease = store.acquire_lease("node-a", 10)
        assert lease is not None
        local_left = lease.local_deadline - time.monotonic()
        db_left = db.execute("SELECT extract(epoch FROM expires_at - clock_timestamp()) FROM call_leases "
                             "WHERE stream = 's'").fetchone()[0]  # type: ignore[index]
    assert 0 < local_left < float(db_left) - 1.0  # the margin: 20 % of 10 s, at least 0.5 s
    store.close()


def test_an_append_in_flight_holds_off_a_takeover_but_not_its_owners_renewal(pg_url: str) -> None:
    """ADR 0041: the fence locks the lease row FOR KEY SHARE until the append commits. A takeover changes the epoch
    (a key column since schema 5), so it waits for the append (claim 2 of ADR 0016); the owner's renewal changes only
    ``expires_at``, so it does not (under load, renewals queued behind slow commits and 2 s leases were lost)."""
    owner = PostgresStore(pg_url, stream="inflight")
    lease = owner.acquire_lease("node-a", 1.0)
    assert lease is not None
    params = {"stream": "inflight", "owner": "node-a", "epoch": lease.epoch}
    with psycopg.connect(pg_url) as append, psycopg.connect(pg_url, autocommit=True) as other:
        other.execute("SET lock_timeout = '2s'")  # a wait longer than this is the lock, not a slow machine
        assert append.execute(f"SELECT {_FENCED}", params).fetchone() == (True,)  # the append's guard, uncommitted
        renewed = pg_leases.renew(other, lease, now=time.monotonic)  # does not wait for the append's commit
        assert renewed is not None and renewed.epoch == lease.epoch
        other.execute("UPDATE call_leases SET expires_at = clock_timestamp() WHERE stream = 'inflight'")
        with pytest.raises(psycopg.errors.LockNotAvailable):  # the takeover waits for the append in flight
            pg_leases.acquire(other, "inflight", "node-b", 30, margin=pg_leases.DEFAULT_MARGIN, now=time.monotonic)
        append.commit()
        taken = pg_leases.acquire(other, "inflight", "node-b", 30, margin=pg_leases.DEFAULT_MARGIN,
                                  now=time.monotonic)
        assert taken is not None and taken.epoch == lease.epoch + 1
    owner.close()


def test_a_paused_owner_past_its_lease_is_refused_by_the_database(pg_url: str) -> None:
    """SIGSTOP in miniature: node A stops renewing (paused) past its lease; B takes the stream at a higher epoch
    and writes; A resumes, ignores its own deadline and tries to append and to renew: both refused, nothing of A's
    written after B's takeover."""
    a, b = PostgresStore(pg_url, stream="call"), PostgresStore(pg_url, stream="call")
    lease_a = a.acquire_lease("node-a", 0.6)
    assert lease_a is not None
    recorder_a = CallRecorder(a)
    for i in range(3):
        recorder_a.handle(_ghost(i, "a"))
    _wait_expired(pg_url, "call")  # A is "paused" here
    assert not lease_a.live(time.monotonic())  # A's own clock already told it to stop
    with pytest.raises(StaleLease):  # expired, not yet taken: refused all the same
        recorder_a.handle(_ghost(3, "a"))
    lease_b = b.acquire_lease("node-b", 30)
    assert lease_b is not None and lease_b.epoch == 2
    recorder_b = CallRecorder.open(b)
    assert recorder_b.seq == 3
    recorder_b.handle(_ghost(100, "b"))
    with pytest.raises(StaleLease):  # A resumes and tries the seq B already wrote: refused, not a conflict
        a.append([make_record(4, _ghost(4, "a"), [], prev=recorder_a.head)])
    with pytest.raises(StaleLease):  # nor can it checkpoint over B's
        a.save_checkpoint({"seq": 3, "calls": []})
    assert a.renew_lease() is None  # an expired lease is never revived
    unfenced = PostgresStore(pg_url, stream="call")
    with pytest.raises(StaleLease, match="is leased"):  # a writer without the lease cannot append either
        unfenced.append([make_record(5, _ghost(5, "x"), [], prev=recorder_b.head)])
    with psycopg.connect(pg_url) as db:
        rows = db.execute("SELECT seq, epoch FROM events WHERE stream = 'call' ORDER BY seq").fetchall()
    assert rows == [(1, 1), (2, 1), (3, 1), (4, 2)]
    assert replay(b.iter_records()).verified
    for store in (a, b, unfenced):
        store.close()


@pytest.mark.parametrize("lease_s", [0.3, 0.6, 1.0])
def test_two_writers_race_and_the_stale_one_is_refused(pg_url: str, lease_s: float) -> None:
    """Writer A appends as fast as it can under a lease it never renews; writer B tries to take the stream all the
    while and, once it has, rebuilds from the log and appends. A is refused from the moment its lease expires by the
    database's clock (whether B has taken the stream yet or not); every record A had acknowledged is in the log
    and none it was refused; every epoch-1 row precedes every epoch-2 row; and the chain is whole: B's first
    record links to A's last, so B rebuilt from everything A wrote."""
    stream = f"race-{lease_s}"
    a, b = PostgresStore(pg_url, stream=stream), PostgresStore(pg_url, stream=stream)
    assert a.acquire_lease("node-a", lease_s) is not None
    acked_a: list[int] = []
    refused_a: list[BaseException] = []
    written_b: list[int] = []
    failures: list[BaseException] = []
    start = threading.Barrier(2)

    def writer_a() -> None:
        recorder = CallRecorder(a)
        start.wait()
        deadline = time.monotonic() + RACE_TIMEOUT_S
        try:
            while time.monotonic() < deadline:
                try:
                    recorder.handle(_ghost(len(acked_a), "a"))
                except StaleLease as exc:
                    refused_a.append(exc)
                    return
                acked_a.append(recorder.seq)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            failures.append(exc)

    def writer_b() -> None:
        start.wait()
        deadline = time.monotonic() + RACE_TIMEOUT_S
        try:
            while b.acquire_lease("node-b", 30) is None:
                assert time.monotonic() < deadline, "B never got the lease"
                time.sleep(0.005)
            recorder = CallRecorder.open(b)
            for i in range(20):
                recorder.handle(_ghost(10**6 + i, "b"))
                written_b.append(recorder.seq)
        except BaseException as exc:  # noqa: BLE001
            failures.append(exc)

    threads = [threading.Thread(target=writer_a), threading.Thread(target=writer_b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(RACE_TIMEOUT_S + 10)
    assert not failures, failures
    assert len(refused_a) == 1 and acked_a and len(written_b) == 20
    with psycopg.connect(pg_url) as db:
        rows = db.execute("SELECT seq, epoch FROM events WHERE stream = %s ORDER BY seq", (stream,)).fetchall()
    epoch1 = [seq for seq, epoch in rows if epoch == 1]
    epoch2 = [seq for seq, epoch in rows if epoch == 2]
    assert epoch1 == acked_a  # every acknowledged record of A, and nothing A was refused
    assert epoch2 == written_b and max(epoch1) < min(epoch2)
    result = replay(b.iter_records())
    assert result.verified and result.chain.chained == len(rows)
    a.close(), b.close()


def test_compacting_a_leased_stream_keeps_its_checkpoint_in_step(pg_url: str, tmp_path: object) -> None:
    """`callsd log compact` holds no lease; on a leased stream its checkpoint is written with the compaction, in one
    transaction, so the owner's restart finds a checkpoint at the cut, never one pointing into deleted rows."""
    from callsd.adapters.store.compaction import compact

    owner = PostgresStore(pg_url, stream="leased")
    assert owner.acquire_lease("node-a", 30) is not None
    recorder = CallRecorder(owner)
    for i in range(6):
        recorder.handle(_ghost(i, "a"))
    tool = PostgresStore(pg_url, stream="leased")
    done = compact(tool, cut=4)
    assert done is not None and tool.load_checkpoint()["seq"] == 4  # type: ignore[index]
    recorder.handle(_ghost(6, "a"))  # the owner goes on appending
    owner.release_lease()
    reopened = CallRecorder.open(PostgresStore(pg_url, stream="leased"))
    assert reopened.recovered is not None and reopened.recovered.verified and reopened.seq == 7
    owner.close(), tool.close(), reopened.store.close()


def test_a_takeover_rebuilds_the_dead_owners_calls_from_its_checkpoint_and_tail(pg_url: str) -> None:
    """What a node taking a channel over does (adapters/cluster/host.py): the next epoch's lease, then the dead
    owner's last checkpoint and only the records after it; the rebuilt machine is the dead owner's, and the new
    owner's records continue the same chain."""
    from callsd.adapters.store.startup import open_verified
    from callsd.core import JoinCall, RaiseHand

    stream = "channel/room"
    dead = PostgresStore(pg_url, stream=stream)
    assert dead.acquire_lease("node-a", 1) is not None
    before = CallRecorder(dead, checkpoint_every=4)
    for i, sid in enumerate(("s0", "s1", "s2")):
        before.handle(JoinCall(at=i, session_id=sid, channel_id="room", user_id=f"u{i}", call_id="k"))
    before.handle(RaiseHand(at=3, session_id="s1"))
    for i in range(4, 10):
        before.handle(_ghost(i, "a"))
    assert before.seq == 10 and dead.load_checkpoint()["seq"] == 8  # type: ignore[index]
    _wait_expired(pg_url, stream)  # node-a died: nobody released its lease

    taker = PostgresStore(pg_url, stream=stream)
    lease = taker.acquire_lease("node-b", 30)
    assert lease is not None and lease.epoch == 2
    rebuilt = open_verified(taker, checkpoint_every=4)
    assert rebuilt.recovered is not None and rebuilt.recovered.verified
    assert rebuilt.recovered.chain.chained == 2  # records 9 and 10: the tail after the checkpoint, not seq 1..10
    assert rebuilt.seq == 10 and rebuilt.machine.snapshot() == before.machine.snapshot()
    rebuilt.handle(RaiseHand(at=11, session_id="s2"))
    with pytest.raises(StaleLease):  # the dead owner, were it only paused, could not append any more
        before.handle(_ghost(12, "a"))
    reader = PostgresStore(pg_url, stream=stream, readonly=True)
    whole = replay(reader.iter_records(1))
    assert whole.verified and whole.last_seq == 11 and whole.machine.snapshot() == rebuilt.machine.snapshot()
    with psycopg.connect(pg_url) as db:
        epochs = [e for (e,) in db.execute("SELECT epoch FROM events WHERE stream = %s ORDER BY seq", (stream,))]
    assert epochs == [1] * 10 + [2]
    for store in (dead, taker, reader):
        store.close()
