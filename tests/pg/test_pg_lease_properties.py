"""Hypothesis over interleavings of lease operations and appends by three nodes on one real PostgreSQL stream.

A model of the lease row predicts every outcome (acquire, renew, release, append: granted or refused), and after
every step: the log is exactly the appends some node saw acknowledged, in order, seqs contiguous, epochs never going
back (at most one writer per epoch, each epoch's rows after the previous one's), and the chain verifies. Time passing
is a rule too: it expires the lease in the database, as its clock would.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import psycopg
from callsd.adapters.store import CallRecorder
from callsd.adapters.store.pg_leases import StaleLease
from callsd.adapters.store.postgres import PostgresStore
from callsd.core import Mute
from callsd.core.calls.replay import replay
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

NODES = ("a", "b", "c")
_streams = itertools.count(1)


@dataclass
class LeaseRow:
    owner: str
    epoch: int
    live: bool


def test_lease_interleavings_keep_one_writer_per_epoch(pg_url: str) -> None:
    class Cluster(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.stream = f"prop-{next(_streams)}"
            self.stores = {n: PostgresStore(pg_url, stream=self.stream) for n in NODES}
            self.recorders: dict[str, CallRecorder | None] = dict.fromkeys(NODES)
            self.row: LeaseRow | None = None
            self.acked: list[tuple[int, int]] = []  # (seq, epoch) of every acknowledged append
            self.db = psycopg.connect(pg_url, autocommit=True)

        def teardown(self) -> None:
            for store in self.stores.values():
                store.close()
            self.db.close()

        @rule(node=st.sampled_from(NODES))
        def acquire(self, node: str) -> None:
            lease = self.stores[node].acquire_lease(f"node-{node}", 60)
            if self.row is not None and self.row.live:
                assert lease is None
                return
            assert lease is not None and lease.epoch == (self.row.epoch + 1 if self.row else 1)
            self.row = LeaseRow(f"node-{node}", lease.epoch, True)
            self.recorders[node] = CallRecorder.open(self.stores[node])  # rebuild from the log, then act

        def _holds(self, node: str) -> bool:
            fence = self.stores[node].fence
            return (self.row is not None and self.row.live and fence is not None
                    and (fence.owner, fence.epoch) == (self.row.owner, self.row.epoch))

        @rule(node=st.sampled_from(NODES))
        def append(self, node: str) -> None:
            recorder = self.recorders[node]
            if recorder is None:
                return
            expected = self._holds(node)
            try:
                recorder.handle(Mute(at=len(self.acked), session_id=f"ghost-{node}"))
            except StaleLease:
                assert not expected
                self.recorders[node] = None  # broken: this node stops acting until it acquires again
                return
            assert expected
            self.acked.append((recorder.seq, self.stores[node].fence.epoch))  # type: ignore[union-attr]

        @rule(node=st.sampled_from(NODES))
        def renew(self, node: str) -> None:
            if self.stores[node].fence is None:
                return
            expected = self._holds(node)
            assert (self.stores[node].renew_lease() is not None) == expected

        @rule(node=st.sampled_from(NODES))
        def release(self, node: str) -> None:
            if self._holds(node):
                assert self.row is not None
                self.row.live = False
            self.stores[node].release_lease()

        @rule()
        def time_passes(self) -> None:
            self.db.execute("UPDATE call_leases SET expires_at = clock_timestamp() WHERE stream = %s",
                            (self.stream,))
            if self.row is not None:
                self.row.live = False

        @invariant()
        def the_log_is_exactly_the_acknowledged_appends(self) -> None:
            rows = self.db.execute("SELECT seq, epoch FROM events WHERE stream = %s ORDER BY seq",
                                   (self.stream,)).fetchall()
            assert rows == self.acked
            assert [seq for seq, _ in rows] == list(range(1, len(rows) + 1))
            epochs = [epoch for _, epoch in rows]
            assert epochs == sorted(epochs)

        @invariant()
        def the_chain_is_whole(self) -> None:
            if self.acked:
                result = replay(self.stores["a"].iter_records())
                assert result.verified and result.chain.chained == len(self.acked)

    run_state_machine_as_test(Cluster, settings=settings(max_examples=25, stateful_step_count=30, deadline=None))
