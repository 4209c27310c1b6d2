"""A simulated cluster (issue 12): pure cores on three nodes, one in-memory log with a lease and fenced appends
(the rules of adapters/store/pg_leases.py and postgres.py), and Hypothesis interleaving node crashes, pauses, lease
expiries, takeovers and inputs. Whatever the interleaving:

- every epoch has one owner, and the log's records are grouped by epoch in increasing order (no two writers);
- replaying the log (checkpoint + tail, as a taking-over node does) gives exactly the state of a single machine fed
  the acknowledged inputs in order — every input acknowledged to a client is in the rebuilt state, nothing else is;
- a node acts only before its local deadline unless paused, and a paused node's late inputs are refused by the log.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from callsd.adapters.store import CallRecorder
from callsd.core import JoinCall, LeaveCall, LowerHand, RaiseHand
from callsd.core.calls.eventlog import Compaction, LogEntry, Record
from callsd.core.calls.machine import CallsMachine
from hypothesis import event as note_event
from hypothesis import given
from hypothesis import strategies as st

LEASE, MARGIN = 6, 1  # ticks; a node stops acting at acquire + LEASE - MARGIN by its own clock


class Refused(Exception):
    """The log refused a write: the writer's lease is not the live one (StaleLease)."""


@dataclass
class SharedLog:
    """The database: the stream's records, its checkpoint, its lease row; ``now`` is the database's clock."""

    records: list[Record] = field(default_factory=list)
    epochs: list[int] = field(default_factory=list)  # the epoch that wrote each record
    checkpoint: dict[str, Any] | None = None
    owner: str = ""
    epoch: int = 0
    expires: int = 0
    now: int = 0
    owners: dict[int, str] = field(default_factory=dict)  # every epoch ever granted, and to whom

    def acquire(self, node: str) -> int | None:
        if self.epoch and self.expires > self.now:
            return None
        self.epoch += 1
        self.owner, self.expires = node, self.now + LEASE
        assert self.epoch not in self.owners
        self.owners[self.epoch] = node
        return self.epoch

    def renew(self, node: str, epoch: int) -> bool:
        if self.owner == node and self.epoch == epoch and self.expires > self.now:
            self.expires = self.now + LEASE
            return True
        return False

    def fenced(self, node: str, epoch: int) -> bool:
        return self.owner == node and self.epoch == epoch and self.expires > self.now


class FencedStore:
    """One node's view of the shared log: every write is conditional on its lease, as in PostgresStore."""

    location = "memory"

    def __init__(self, log: SharedLog, node: str, epoch: int) -> None:
        self.log, self.node, self.epoch = log, node, epoch

    def append(self, records: Sequence[Record]) -> None:
        if not self.log.fenced(self.node, self.epoch):
            raise Refused(f"{self.node} at epoch {self.epoch}")
        self.log.records.extend(records)
        self.log.epochs.extend(self.epoch for _ in records)

    def iter_records(self, from_seq: int = 1) -> Iterator[LogEntry]:
        return iter([r for r in self.log.records if r.seq >= from_seq])

    def last_seq(self) -> int:
        return self.log.records[-1].seq if self.log.records else 0

    def save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if not self.log.fenced(self.node, self.epoch):
            raise Refused(f"checkpoint by {self.node} at epoch {self.epoch}")
        self.log.checkpoint = checkpoint

    def load_checkpoint(self) -> dict[str, Any] | None:
        return self.log.checkpoint

    def compact(self, entry: Compaction) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass


@dataclass
class Node:
    name: str
    recorder: CallRecorder | None = None
    epoch: int = 0
    deadline: int = 0  # local: acquire time + LEASE - MARGIN

    def acts(self, now: int, paused: bool) -> bool:
        return self.recorder is not None and (paused or now < self.deadline)


SESSIONS = ("s0", "s1", "s2")


def _input(kind: int, session: str, at: int) -> Any:
    if kind == 0:
        return JoinCall(at=at, session_id=session, channel_id="ch", user_id="u" + session, call_id="call")
    return (RaiseHand, LowerHand, LeaveCall)[kind - 1](at=at, session_id=session)


# Each step: (what: 0 acquire, 1-5 an input, 6 renew, 7-8 a clock tick, 9 a crash; node: 0-2, or 3-5 for the
# node the lease row names; input kind 0-3 (join, raise, lower, leave); session 0-2; paused: 0 of 0-3).
STEPS = st.lists(st.tuples(st.integers(0, 9), st.integers(0, 5), st.integers(0, 3), st.integers(0, 2),
                           st.integers(0, 3)), min_size=25, max_size=100)
_KINDS = ("acquire", "input", "input", "input", "input", "input", "renew", "tick", "tick", "crash")


@given(STEPS)
def test_crashes_pauses_and_expiries_never_split_the_log_nor_lose_an_acknowledged_input(
        steps: list[tuple[int, int, int, int, int]]) -> None:
    log = SharedLog()
    nodes = [Node(f"n{i}") for i in range(3)]
    acknowledged: list[Any] = []
    for what, index, input_kind, who, pause in steps:
        kind = _KINDS[what]
        if kind == "tick":
            log.now += 1 + index
            continue
        node = nodes[index] if index < 3 else next((n for n in nodes if n.name == log.owner), nodes[0])
        if kind == "crash":
            node.recorder, node.epoch = None, 0
        elif kind == "acquire" and node.recorder is None:
            epoch = log.acquire(node.name)
            if epoch is not None:  # a new owner rebuilds the call from the log (checkpoint + tail)
                store = FencedStore(log, node.name, epoch)
                node.recorder = CallRecorder.open(store, checkpoint_every=4)  # type: ignore[arg-type]
                assert node.recorder.recovered is not None and node.recorder.recovered.verified
                node.epoch, node.deadline = epoch, log.now + LEASE - MARGIN
        elif kind == "renew" and node.recorder is not None and node.acts(log.now, paused=False):
            sent = log.now
            if log.renew(node.name, node.epoch):
                node.deadline = sent + LEASE - MARGIN
            else:
                node.recorder, node.epoch = None, 0
        elif kind == "input":
            paused = pause == 0
            if not node.acts(log.now, paused):
                continue  # an obedient node past its deadline does not act
            assert node.recorder is not None
            event = _input(input_kind, SESSIONS[who], log.now)
            try:
                node.recorder.handle(event)
            except Refused:
                assert paused  # only a node ignoring its deadline can be refused...
                node.recorder, node.epoch = None, 0  # ...and it stops: its machine is ahead of the log
                continue
            acknowledged.append(event)  # durable: the client would be told now

    note_event(f"epochs written: {len(set(log.epochs))}")
    note_event(f"acknowledged inputs: {min(len(acknowledged), 10)}{'+' if len(acknowledged) >= 10 else ''}")
    # One owner per epoch, epochs in increasing order along the log.
    assert log.epochs == sorted(log.epochs)
    assert all(log.owners[e] for e in set(log.epochs))
    # The log rebuilds exactly the single machine fed the acknowledged inputs.
    single = CallsMachine()
    for event in acknowledged:
        single.handle(event)
    rebuilt = CallRecorder.open(FencedStore(log, "reader", 0))  # type: ignore[arg-type]
    assert rebuilt.recovered is not None and rebuilt.recovered.verified
    assert rebuilt.machine.snapshot() == single.snapshot()
    # The live owner, if any, holds that same state.
    for node in nodes:
        if node.recorder is not None and log.fenced(node.name, node.epoch):
            assert node.recorder.machine.snapshot() == single.snapshot()
