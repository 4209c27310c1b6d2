"""The hash chain over log records (issue 8, item 7): a changed ``at`` is caught, and so is a record rewritten with
its hash recomputed, a removed or reordered record, and a tail that no longer fits its checkpoint. Old (v1) logs
stay readable and are reported as unchained."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from callsd.adapters.store import CallRecorder, JsonlStore, SqliteStore
from callsd.adapters.store.startup import LogRefused, open_verified
from callsd.app.cli import main
from callsd.core import JoinCall, Mute, PublishTrack, TrackKind, Unmute
from callsd.core.calls.eventlog import (
    GENESIS,
    ChainCheck,
    decode_record,
    encode_record,
    make_record,
    record_hash,
)
from callsd.core.calls.replay import replay

EXAMPLE = Path(__file__).resolve().parent.parent / "data" / "example.jsonl"

EVENTS = [
    JoinCall(at=1, channel_id="ch", session_id="a", user_id="alice", call_id="k"),
    PublishTrack(at=2, session_id="a", track_id="mic", kind=TrackKind.AUDIO),
    JoinCall(at=3, channel_id="ch", session_id="b", user_id="bob", call_id="k"),
    Unmute(at=4, session_id="a"),
    Mute(at=5, session_id="a"),
    Unmute(at=6, session_id="b"),
]


def write_log(path: Path, events: list[Any] = EVENTS, **kwargs: Any) -> None:
    with JsonlStore(path, fsync="never") as store:
        recorder = CallRecorder(store, **kwargs)
        for event in events:
            recorder.handle(event)


def edit_line(path: Path, number: int, change: Any) -> None:
    lines = path.read_text().splitlines()
    doc = json.loads(lines[number - 1])
    change(doc)
    lines[number - 1] = json.dumps(doc, sort_keys=True, separators=(",", ":"))
    path.write_text("\n".join(lines) + "\n")


def rehash(doc: dict[str, Any]) -> None:
    """What a careful forger does: recompute the edited record's own hash."""
    record = decode_record(json.dumps({**doc, "hash": "0" * 64}))
    doc["hash"] = record_hash(record, record.prev)


def verify(capsys: Any, path: Path) -> tuple[int, str, str]:
    rc = main(["replay", str(path), "--verify"])
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def test_records_are_version_2_and_link_to_the_one_before(tmp_path: Path) -> None:
    write_log(tmp_path / "log.jsonl")
    docs = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert {d["v"] for d in docs} == {2}
    assert docs[0]["prev"] == GENESIS
    assert [d["prev"] for d in docs[1:]] == [d["hash"] for d in docs[:-1]]
    record = decode_record(json.dumps(docs[2]))
    assert decode_record(encode_record(record)) == record and record.chained


def test_a_changed_at_was_invisible_to_digests_and_is_a_chain_break(tmp_path: Path, capsys: Any) -> None:
    path = tmp_path / "log.jsonl"
    write_log(path)
    edit_line(path, 4, lambda d: d["event"].update(at=9_999_999))  # Unmute's outputs do not carry `at`
    result = replay(JsonlStore(path, readonly=True).iter_records())
    assert result.mismatches == []  # the output digest alone misses it: that was the hole
    rc, _, err = verify(capsys, path)
    assert rc == 1
    assert "seq 4: chain break: its hash does not match its content" in err
    assert "verify: 0 mismatch(es), 1 chain break(s)" in err


def test_a_rehashed_forgery_breaks_the_link_of_the_next_record(tmp_path: Path, capsys: Any) -> None:
    path = tmp_path / "log.jsonl"
    write_log(path)

    def rename(doc: dict[str, Any]) -> None:
        doc["event"]["user_id"] = "mallory"
        rehash(doc)

    edit_line(path, 3, rename)
    rc, _, err = verify(capsys, path)
    assert rc == 1
    assert "seq 4: chain break: its 'prev' is not the hash of seq 3" in err
    assert "seq 3: expected" in err  # the renamed user also changes seq 3's outputs


def test_swapped_records_break_the_chain(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    write_log(path)
    lines = path.read_text().splitlines()
    docs = [json.loads(line) for line in lines]
    docs[3]["event"], docs[4]["event"] = docs[4]["event"], docs[3]["event"]  # Unmute <-> Mute, seqs kept
    docs[3]["out"], docs[4]["out"] = docs[4]["out"], docs[3]["out"]
    check = ChainCheck()
    for doc in docs:
        check.feed(decode_record(json.dumps(doc)))
    assert [b.seq for b in check.breaks] == [4, 5]


def test_the_v1_example_stays_readable_and_says_it_is_unchained(capsys: Any) -> None:
    rc, out, err = verify(capsys, EXAMPLE)
    assert rc == 0, err
    assert "chain: unchained (v1): 33 record(s)" in out


def test_a_v1_log_continued_by_this_version_is_covered_by_its_first_chained_record(tmp_path: Path,
                                                                                      capsys: Any) -> None:
    path = tmp_path / "old.jsonl"
    path.write_text(EXAMPLE.read_text())
    with JsonlStore(path, fsync="never") as store:
        recorder = CallRecorder.open(store)
        recorder.handle(Mute(at=1764259500000, session_id="s-dave-1"))
    rc, out, err = verify(capsys, path)
    assert rc == 0, err
    assert "1 chained record(s) whole" in out and "33 earlier unchained (v1) record(s)" in out
    edit_line(path, 5, lambda d: d["event"].update(at=d["event"]["at"] + 1))  # an old v1 record
    rc, _, err = verify(capsys, path)
    assert rc == 1 and "seq 34: chain break: its 'prev' is not the hash of seq 33" in err


@pytest.mark.parametrize("kind", ["jsonl", "sqlite"])
def test_restart_checks_the_tail_against_the_checkpoint_head(tmp_path: Path, kind: str) -> None:
    path = tmp_path / f"log.{'jsonl' if kind == 'jsonl' else 'db'}"
    store = JsonlStore(path, fsync="never") if kind == "jsonl" else SqliteStore(path)
    recorder = CallRecorder(store, checkpoint_every=4)
    for event in EVENTS:
        recorder.handle(event)
    checkpoint = store.load_checkpoint()
    assert checkpoint is not None and checkpoint["seq"] == 4 and checkpoint["head"] == store_hash(store, 4)
    store.close()
    reopened = open_verified(JsonlStore(path) if kind == "jsonl" else SqliteStore(path))
    assert reopened.recovered is not None and reopened.recovered.chain.breaks == []
    assert reopened.head == store_hash(reopened.store, 6)
    reopened.store.close()
    # Rewrite the checkpoint's own record with a consistent hash: only the checkpoint's head can tell.
    forged = make_record(4, Unmute(at=77, session_id="a"), [], prev=store_hash_of_file(path, kind, 3))
    replace_record(path, kind, forged)
    store = JsonlStore(path) if kind == "jsonl" else SqliteStore(path)
    with pytest.raises(LogRefused, match=r"fails verification .*seq 4: chain break: its hash is not the head the "
                                         r"checkpoint stored"):
        open_verified(store)
    accepted = open_verified(store, accept_broken=True)
    assert accepted.seq == 6
    store.close()


def store_hash(store: Any, seq: int) -> str:
    return str(next(iter(store.iter_records(seq))).hash)


def store_hash_of_file(path: Path, kind: str, seq: int) -> str:
    store = JsonlStore(path, readonly=True) if kind == "jsonl" else SqliteStore(path, readonly=True)
    try:
        return store_hash(store, seq)
    finally:
        store.close()


def replace_record(path: Path, kind: str, record: Any) -> None:
    if kind == "jsonl":
        lines = path.read_text().splitlines()
        lines[record.seq - 1] = encode_record(record)
        path.write_text("\n".join(lines) + "\n")
        return
    import sqlite3

    db = sqlite3.connect(path)
    with db:
        db.execute("UPDATE events SET record = ? WHERE seq = ?", (encode_record(record), record.seq))
    db.close()
