"""The hash chain catches every single edit of a chained log (issue 8, item 7): change any value of any record's
event, its digest or its links, or remove, duplicate or swap records, and replay either refuses the log
(``EventLogError``: a gap, an input the machine refuses) or reports a chain break at or right after the edit."""

from __future__ import annotations

import json
from typing import Any

from callsd.core import JoinCall, LeaveCall, Mute, PublishTrack, TrackKind, Unmute
from callsd.core.calls.eventlog import GENESIS, EventLogError, decode_entry, encode_record, make_record
from callsd.core.calls.machine import CallsMachine
from callsd.core.calls.replay import replay
from hypothesis import given
from hypothesis import strategies as st

EVENTS = [
    JoinCall(at=10, channel_id="ch", session_id="a", user_id="ann", call_id="k"),
    PublishTrack(at=20, session_id="a", track_id="mic", kind=TrackKind.AUDIO),
    JoinCall(at=30, channel_id="ch", session_id="b", user_id="bob", call_id="k"),
    Unmute(at=40, session_id="a"),
    Mute(at=50, session_id="a"),
    Unmute(at=60, session_id="b"),
    LeaveCall(at=70, session_id="b"),
]


def chained_lines() -> list[str]:
    machine, prev, lines = CallsMachine(), GENESIS, []
    for seq, event in enumerate(EVENTS, start=1):
        record = make_record(seq, event, machine.handle(event), prev)
        prev = record.hash
        lines.append(encode_record(record))
    return lines


LINES = chained_lines()


def edited(doc: dict[str, Any], path: tuple[str, ...], value: Any) -> dict[str, Any]:
    copy = json.loads(json.dumps(doc))
    target = copy
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return copy


def leaves(doc: dict[str, Any], prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found: list[tuple[str, ...]] = []
    for key, value in doc.items():
        if key in ("v", "type"):
            continue  # a changed version or type is a decode error, tested elsewhere
        if isinstance(value, dict):
            found += leaves(value, (*prefix, key))
        else:
            found.append((*prefix, key))
    return found


def caught(lines: list[str]) -> tuple[bool, int | None]:
    """(caught, seq of the first chain break or None)."""
    try:
        result = replay(decode_entry(line) for line in lines)
    except EventLogError:
        return True, None
    first = min((b.seq for b in result.chain.breaks), default=None)
    return not result.verified, first


@given(index=st.integers(0, len(LINES) - 1), data=st.data())
def test_any_changed_value_is_caught_at_its_record(index: int, data: st.DataObject) -> None:
    doc = json.loads(LINES[index])
    path = data.draw(st.sampled_from(leaves(doc)))
    old = doc
    for key in path:
        old = old[key]
    if isinstance(old, bool):
        new: Any = not old
    elif isinstance(old, int):
        new = old + data.draw(st.integers(1, 1000))
    else:
        new = data.draw(st.one_of(st.just(old + "x"), st.just("f" * 64), st.text(min_size=1, max_size=8)))
    if new == old:
        return
    lines = list(LINES)
    lines[index] = json.dumps(edited(doc, path, new))
    try:
        decode_entry(lines[index])
    except EventLogError:
        return  # the edit is not even a record any more: a corrupt log, refused outright
    was_caught, first_break = caught(lines)
    assert was_caught
    if first_break is not None:
        assert first_break in (index + 1, index + 2)  # the record itself, or the next one's link


@given(st.data())
def test_removed_duplicated_or_swapped_records_are_caught(data: st.DataObject) -> None:
    lines = list(LINES)
    i = data.draw(st.integers(0, len(lines) - 2))
    kind = data.draw(st.sampled_from(["remove", "duplicate", "swap", "drop-last-and-renumber"]))
    if kind == "remove":
        del lines[i]
    elif kind == "duplicate":
        lines.insert(i, lines[i])
    elif kind == "swap":
        lines[i], lines[i + 1] = lines[i + 1], lines[i]
    else:  # remove record i and renumber the rest so there is no gap: only the chain can tell
        docs = [json.loads(line) for line in lines[:i] + lines[i + 1:]]
        for seq, doc in enumerate(docs, start=1):
            doc["seq"] = seq
        lines = [json.dumps(doc) for doc in docs]
    assert caught(lines)[0]
