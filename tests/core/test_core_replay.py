"""Pure replay: digests, --until, per-call filtering, checkpoints, damaged logs; snapshot documents."""

from __future__ import annotations

import json
from typing import Any

import pytest
from callsd.core import (
    CallEnded,
    CallsMachine,
    EventLogError,
    JoinCall,
    LeaveCall,
    PublishTrack,
    Record,
    SnapshotError,
    TimerFired,
    TrackKind,
    Unmute,
    checkpoint,
    from_checkpoint,
    make_record,
    replay,
)


def join(sid: str, channel: str, at: int = 0) -> JoinCall:
    return JoinCall(at=at, channel_id=channel, session_id=sid, user_id=f"u-{sid}", call_id=f"call-{channel}")


EVENTS = [
    join("a", "x", 10),
    join("b", "y", 20),
    PublishTrack(at=30, session_id="a", track_id="mic", kind=TrackKind.AUDIO),
    join("c", "x", 40),
    Unmute(at=50, session_id="a"),
    LeaveCall(at=60, session_id="a"),
    LeaveCall(at=70, session_id="c"),
    Unmute(at=80, session_id="b"),
]


def record_all(events: list[Any]) -> tuple[CallsMachine, list[Record]]:
    m = CallsMachine()
    return m, [make_record(i, e, m.handle(e)) for i, e in enumerate(events, start=1)]


def test_replay_reproduces_state_and_digests() -> None:
    live, records = record_all(EVENTS)
    result = replay(records)
    assert result.mismatches == []
    assert result.last_seq == 8
    assert result.machine.snapshot() == live.snapshot()
    assert [seq for seq, _ in result.ended] == [7]


def test_until_stops_after_that_seq() -> None:
    _, records = record_all(EVENTS)
    result = replay(records, until=4)
    assert result.last_seq == 4
    assert result.machine.sessions("x") == ("a", "c")


def test_call_keeps_only_that_calls_outputs() -> None:
    _, records = record_all(EVENTS)
    result = replay(records, call="call-x")
    assert {getattr(o, "channel_id", None) for _, o in result.outputs} == {"x"}
    assert isinstance(result.outputs[-1][1], CallEnded)
    assert result.machine.sessions("y") == ("b",)  # every record was still applied


def test_a_changed_output_is_a_mismatch() -> None:
    _, records = record_all(EVENTS)
    original = records[2].out
    records[2] = Record(seq=3, event=records[2].event, out="f" * 64)
    result = replay(records)
    assert [(m.seq, m.expected, m.actual) for m in result.mismatches] == [(3, "f" * 64, original)]


def test_a_gap_or_a_refused_input_is_a_damaged_log() -> None:
    _, records = record_all(EVENTS)
    with pytest.raises(EventLogError, match="seq 4 follows seq 2"):
        replay(records[:2] + records[3:])
    bad = make_record(9, TimerFired(at=90, key="bogus"), [])
    with pytest.raises(EventLogError, match="seq 9: the machine refuses"):
        replay([*records, bad])


@pytest.mark.parametrize("cut", range(0, 9))
def test_checkpoint_plus_tail_equals_full_replay(cut: int) -> None:
    _, records = record_all(EVENTS)
    at_cut = replay(records, until=cut) if cut else None
    start = checkpoint(at_cut.machine if at_cut else CallsMachine(), cut)
    start = json.loads(json.dumps(start))  # it is plain JSON
    tail = replay(records, start=start)
    assert tail.machine.snapshot() == replay(records).machine.snapshot()
    assert tail.last_seq == 8 and tail.mismatches == []


def test_restore_gives_an_equal_and_independent_machine() -> None:
    live, _ = record_all(EVENTS[:5])
    copy = CallsMachine.restore(live.snapshot())
    assert copy.snapshot() == live.snapshot()
    assert copy.routes() == live.routes()
    copy.handle(LeaveCall(at=99, session_id="c"))
    assert copy.snapshot() != live.snapshot()


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda s: s.update(v=2), "unknown version"),
        (lambda s: s["calls"][0].update(host_id="nobody"), "host 'nobody' is not a participant"),
        (lambda s: s["calls"][0]["participants"][0].update(muted="yes"), "muted: expected bool"),
        (lambda s: s["calls"][0]["participants"][0]["tracks"].append(["t", "smell"]), "unknown kind"),
        (lambda s: s["calls"][0].update(participants=[]), "without participants"),
        (lambda s: s["calls"].append(s["calls"][0]), "second call in channel"),
    ],
)
def test_a_damaged_snapshot_raises_snapshot_error(damage: Any, message: str) -> None:
    live, _ = record_all(EVENTS[:5])
    snap = json.loads(json.dumps(live.snapshot()))
    damage(snap)
    with pytest.raises(SnapshotError, match=message):
        CallsMachine.restore(snap)


def test_a_checkpoint_needs_its_seq() -> None:
    with pytest.raises(SnapshotError):
        from_checkpoint({"v": 1, "state": CallsMachine().snapshot()})
    machine, seq = from_checkpoint(checkpoint(CallsMachine(), 5))
    assert seq == 5 and machine.calls() == ()
