"""Crash safety of the JSON Lines store: a write torn at any byte loses nothing that was acknowledged."""

from __future__ import annotations

import tempfile
from pathlib import Path

from callsd.adapters.store import CallRecorder, JsonlStore
from callsd.core import JoinCall, LeaveCall, Mute, Unmute, encode_record, make_record
from hypothesis import given
from hypothesis import strategies as st


def _events(n: int) -> list:  # type: ignore[type-arg]
    out = []
    for i in range(n):
        sid = f"s{i % 3}"
        kind = i % 4
        if kind == 0:
            out.append(JoinCall(at=i, channel_id="ch", session_id=sid, user_id=f"u{sid}", call_id="k"))
        elif kind == 1:
            out.append(Unmute(at=i, session_id=sid))
        elif kind == 2:
            out.append(Mute(at=i, session_id=sid))
        else:
            out.append(LeaveCall(at=i, session_id=sid))
    return out


@given(n=st.integers(0, 12), data=st.data())
def test_a_torn_append_loses_only_the_unacknowledged_record(n: int, data: st.DataObject) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "log.jsonl"
        events = _events(n + 1)
        with JsonlStore(path, fsync="never") as store:
            recorder = CallRecorder(store)
            for event in events[:n]:
                recorder.handle(event)
        acknowledged = path.read_bytes()
        # The (n+1)th append dies after writing a prefix of its line (possibly all but the newline).
        line = (encode_record(make_record(n + 1, events[n], recorder.machine.handle(events[n]))) + "\n").encode()
        cut = data.draw(st.integers(0, len(line) - 1), label="cut")
        path.write_bytes(acknowledged + line[:cut])
        with JsonlStore(path, fsync="never") as store:
            complete = cut == len(line) - 1  # the whole record but its newline: kept
            assert store.last_seq() == n + (1 if complete else 0)
            assert path.read_bytes() == (acknowledged + line if complete else acknowledged)
            reopened = CallRecorder.open(store)
            assert reopened.recovered is not None and reopened.recovered.mismatches == []
