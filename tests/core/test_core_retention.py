"""Retention (issue 8, item 8): old records are compacted into one entry, archived or deleted; the retained records
still replay and verify, the chain stays verifiable across the cut (and from archive to archive), a restart works,
and `callsd log stats|compact` report and apply it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from callsd.adapters.store import CallRecorder, JsonlStore, SqliteStore
from callsd.adapters.store.compaction import Retention, compact, find_cut
from callsd.adapters.store.startup import LogRefused, open_verified
from callsd.app.cli import main
from callsd.core import JoinCall, LeaveCall, Mute, PublishTrack, TrackKind, Unmute
from callsd.core.calls.eventlog import Compaction, EventLogError, encode_record
from callsd.core.calls.replay import replay

DAY = 86_400_000
EXAMPLE = Path(__file__).resolve().parent.parent / "data" / "example.jsonl"

# Call "old" in channel a ends on day 1; call "long" in channel b starts on day 1 and is still going on day 9.
OLD = [
    JoinCall(at=1 * DAY, channel_id="a", session_id="a1", user_id="ann", call_id="old"),
    JoinCall(at=1 * DAY + 1, channel_id="b", session_id="b1", user_id="bob", call_id="long"),
    PublishTrack(at=1 * DAY + 2, session_id="a1", track_id="mic", kind=TrackKind.AUDIO),
    Unmute(at=1 * DAY + 3, session_id="b1"),
    LeaveCall(at=1 * DAY + 4, session_id="a1"),
]
NEW = [
    JoinCall(at=9 * DAY, channel_id="b", session_id="b2", user_id="bea", call_id="long"),
    Mute(at=9 * DAY + 1, session_id="b1"),
    JoinCall(at=9 * DAY + 2, channel_id="c", session_id="c1", user_id="cy", call_id="new"),
]


def open_kind(path: Path, kind: str, **kwargs: Any) -> Any:
    return JsonlStore(path, fsync="never", **kwargs) if kind == "jsonl" else SqliteStore(path, **kwargs)


def recorded(tmp_path: Path, kind: str) -> tuple[Path, Any]:
    path = tmp_path / ("log.jsonl" if kind == "jsonl" else "log.db")
    store = open_kind(path, kind)
    recorder = CallRecorder(store)
    for event in OLD + NEW:
        recorder.handle(event)
    return path, recorder


@pytest.mark.parametrize("kind", ["jsonl", "sqlite"])
def test_compaction_keeps_retained_calls_verifiable_and_the_chain_linked(tmp_path: Path, kind: str) -> None:
    path, recorder = recorded(tmp_path, kind)
    store = recorder.store
    full = replay(store.iter_records())
    assert find_cut(store, 5 * DAY) == len(OLD)
    done = compact(store, before_ms=5 * DAY, archive_dir=tmp_path / "archive")
    assert done is not None and done.cut == len(OLD) and done.dropped == len(OLD)
    assert (done.ended_calls, done.ongoing_calls) == (1, 1)  # "old" is gone, "long" lives on in the entry
    entries = list(store.iter_records())
    assert isinstance(entries[0], Compaction) and [e.seq for e in entries] == [5, 6, 7, 8]
    retained = replay(entries)
    assert retained.verified and retained.chain.compacted == 5 and retained.chain.chained == 3
    assert retained.machine.snapshot() == full.machine.snapshot()
    # The archive is a log of its own whose last hash is the entry's head: the chain runs through the cut.
    assert done.archive is not None and done.archive.name == f"{path.name}.1-5.jsonl"
    archived = replay(JsonlStore(done.archive, readonly=True).iter_records())
    assert archived.verified and archived.last_seq == 5 and archived.chain.head == entries[0].head
    store.close()

    # A restart verifies checkpoint + tail, and new records chain on.
    reopened = open_verified(open_kind(path, kind))
    assert reopened.seq == 8
    reopened.handle(Unmute(at=9 * DAY + 5, session_id="c1"))
    # A second compaction archives the first entry with the records after it.
    done2 = compact(reopened.store, cut=7, archive_dir=tmp_path / "archive")
    assert done2 is not None and done2.archive is not None and done2.archive.name == f"{path.name}.5-7.jsonl"
    assert replay(JsonlStore(done2.archive, readonly=True).iter_records()).verified
    after = replay(reopened.store.iter_records())
    assert after.verified and after.last_seq == 9 and after.machine.snapshot() == reopened.machine.snapshot()
    reopened.store.close()


@pytest.mark.parametrize("kind", ["jsonl", "sqlite"])
def test_delete_mode_leaves_no_archive_and_nothing_new_is_a_no_op(tmp_path: Path, kind: str) -> None:
    path, recorder = recorded(tmp_path, kind)
    done = compact(recorder.store, before_ms=5 * DAY, archive_dir=None)
    assert done is not None and done.archive is None
    assert compact(recorder.store, before_ms=5 * DAY) is None
    assert not (tmp_path / "archive").exists()
    recorder.store.close()


def test_a_changed_compaction_entry_is_a_chain_break(tmp_path: Path, capsys: Any) -> None:
    path, recorder = recorded(tmp_path, "jsonl")
    compact(recorder.store, before_ms=5 * DAY)
    recorder.store.close()
    lines = path.read_text().splitlines()
    doc = json.loads(lines[0])
    doc["compacted"]["checkpoint"]["state"]["calls"][0]["participants"][0]["user_id"] = "mallory"
    lines[0] = json.dumps(doc)
    path.write_text("\n".join(lines) + "\n")
    assert main(["replay", str(path), "--verify"]) == 1
    assert "seq 5: chain break: the compaction entry's hash does not match its content" in capsys.readouterr().err
    with pytest.raises(LogRefused, match="seq 5: chain break"):
        open_verified(JsonlStore(path))


def test_compaction_refuses_a_prefix_that_fails_verification(tmp_path: Path) -> None:
    path, recorder = recorded(tmp_path, "jsonl")
    recorder.store.close()
    lines = path.read_text().splitlines()
    doc = json.loads(lines[1])
    doc["event"]["at"] += 1
    lines[1] = json.dumps(doc)
    path.write_text("\n".join(lines) + "\n")
    store = JsonlStore(path)
    with pytest.raises(EventLogError, match="will not compact a log that fails verification .*seq 2"):
        compact(store, before_ms=5 * DAY)
    assert not isinstance(next(iter(store.iter_records())), Compaction)
    store.close()


def test_serve_start_applies_retention_through_open_verified(tmp_path: Path) -> None:
    path, recorder = recorded(tmp_path, "sqlite")
    recorder.store.close()
    reopened = open_verified(SqliteStore(path), retention=Retention(days=5, archive_dir=tmp_path / "arch"),
                             now_ms=10 * DAY)
    assert isinstance(next(iter(reopened.store.iter_records())), Compaction)
    assert (tmp_path / "arch" / "log.db.1-5.jsonl").exists() and reopened.seq == 8
    reopened.store.close()


def test_log_stats_and_compact_commands(tmp_path: Path, capsys: Any) -> None:
    log = tmp_path / "example.jsonl"
    log.write_text(EXAMPLE.read_text())
    assert main(["log", "stats", str(log), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert (doc["entries"], doc["last_seq"], doc["ongoing_calls"], doc["ended_calls"]) == (33, 33, 1, 1)
    assert doc["chain"]["unchained"] == 33 and doc["chain"]["breaks"] == []
    # The example was recorded in 2025: one day of retention compacts all of it, keeping the ongoing call's state.
    assert main(["log", "compact", str(log), "--days", "1", "--delete"]) == 0
    assert "compacted up to seq 33: 33 entries deleted; 1 ended call(s) gone, 1 ongoing" in capsys.readouterr().out
    assert main(["log", "stats", str(log)]) == 0
    out = capsys.readouterr().out
    assert "entries      1 (seq 33..33)" in out and "compacted    up to seq 33, deleted" in out
    assert "calls        1 ongoing, 0 ended" in out
    assert main(["replay", str(log), "--verify"]) == 0
    assert "channel dev-team  call call-91c0" in capsys.readouterr().out
    assert main(["log", "compact", str(log)]) == 64  # no retention configured, none asked for
    assert "--days N, --before-seq N, or store.retention_days" in capsys.readouterr().err


def test_an_archive_line_is_the_original_record(tmp_path: Path) -> None:
    path, recorder = recorded(tmp_path, "jsonl")
    before = path.read_text().splitlines()[:5]
    done = compact(recorder.store, before_ms=5 * DAY, archive_dir=tmp_path / "archive")
    assert done is not None and done.archive is not None
    assert done.archive.read_text().splitlines() == before
    assert encode_record(next(iter(recorder.store.iter_records()))) == path.read_text().splitlines()[0]
    recorder.store.close()


@pytest.mark.parametrize("kind", ["jsonl", "sqlite"])
def test_a_running_recorder_compacts_as_event_time_passes(tmp_path: Path, kind: str) -> None:
    """Retention in a running server: the recorder checks on its first input, then once per check interval of
    event time, after the append; the log keeps verifying and the machine is untouched."""
    path = tmp_path / ("log.jsonl" if kind == "jsonl" else "log.db")
    retention = Retention(days=5, archive_dir=tmp_path / "archive", check_every_ms=DAY)
    recorder = CallRecorder(open_kind(path, kind), retention=retention)
    for event in OLD:
        recorder.handle(event)
    assert not isinstance(next(iter(recorder.store.iter_records())), Compaction)  # nothing older than 5 days yet
    for event in NEW:  # day 9: the day-1 records are now older than 5 days
        recorder.handle(event)
    first = next(iter(recorder.store.iter_records()))
    assert isinstance(first, Compaction) and first.seq == len(OLD)
    result = replay(recorder.store.iter_records())
    assert result.verified and result.machine.snapshot() == recorder.machine.snapshot()
    recorder.store.close()


async def test_group_commit_compacts_in_the_commit_thread(tmp_path: Path) -> None:
    import trio

    path = tmp_path / "log.jsonl"
    recorder = CallRecorder(JsonlStore(path, fsync="never"), group_commit=True,
                            retention=Retention(days=5, archive_dir=None, check_every_ms=DAY))
    async with trio.open_nursery() as nursery:
        await nursery.start(recorder.commit_loop)
        for event in OLD + NEW:
            recorder.handle(event)
            await trio.sleep(0)
        await recorder.flush()
        recorder.handle(Unmute(at=11 * DAY, session_id="c1"))  # a check is due again: it runs after this batch
        await recorder.flush()
        nursery.cancel_scope.cancel()
    entries = list(JsonlStore(path, readonly=True).iter_records())
    assert isinstance(entries[0], Compaction) and entries[0].seq >= len(OLD) and entries[-1].seq == 9
    assert replay(entries).verified
    recorder.store.close()


def test_replay_until_a_compacted_seq_points_to_the_archive(tmp_path: Path, capsys: Any) -> None:
    path, recorder = recorded(tmp_path, "jsonl")
    compact(recorder.store, before_ms=5 * DAY, archive_dir=tmp_path / "archive")
    recorder.store.close()
    assert main(["replay", str(path), "--until", "3"]) == 2
    assert "records up to seq 5 were compacted; replay the archive log.jsonl.1-5.jsonl" in capsys.readouterr().err
    assert main(["replay", str(tmp_path / "archive" / "log.jsonl.1-5.jsonl"), "--until", "3"]) == 0
