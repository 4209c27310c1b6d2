"""JSON Lines and SQLite event stores, ``open_store`` and the ``CallRecorder`` that the server uses."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest
from callsd.adapters.store import (
    CallRecorder,
    EventStore,
    JsonlStore,
    RecorderBroken,
    SqliteStore,
    open_store,
)
from callsd.core import (
    CallsMachine,
    Disconnect,
    EventLogError,
    JoinCall,
    LocalProtocolError,
    Mute,
    PublishTrack,
    TimerFired,
    TrackKind,
    Unmute,
    make_record,
)


def join(sid: str, at: int = 0) -> JoinCall:
    return JoinCall(at=at, channel_id="ch", session_id=sid, user_id=f"u-{sid}", call_id="k")


EVENTS = [
    join("a", 1),
    PublishTrack(at=2, session_id="a", track_id="mic", kind=TrackKind.AUDIO),
    join("b", 3),
    Unmute(at=4, session_id="a"),
    Disconnect(at=5, session_id="b"),
    Mute(at=6, session_id="ghost"),  # rejected inputs are logged too
]


@pytest.fixture(params=["jsonl", "sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The same store contract on every store; PostgreSQL is the session's real server (tests/conftest.py)."""
    if request.param == "postgresql":
        return str(request.getfixturevalue("pg_url"))
    return f"jsonl://{tmp_path}/log.jsonl" if request.param == "jsonl" else f"sqlite://{tmp_path}/log.db"


def test_a_recorded_log_reopens_to_the_same_machine(url: str) -> None:
    store = open_store(url)
    assert isinstance(store, EventStore)
    recorder = CallRecorder(store)
    for event in EVENTS:
        recorder.handle(event)
    store.close()
    reopened = CallRecorder.open(open_store(url))
    assert reopened.seq == len(EVENTS)
    assert reopened.recovered is not None and reopened.recovered.mismatches == []
    assert reopened.machine.snapshot() == recorder.machine.snapshot()
    assert reopened.machine.timers() == {"reconnect:b": 30_005}
    # And it goes on appending where it stopped.
    reopened.handle(TimerFired(at=30_005, key="reconnect:b"))
    reopened.store.close()
    with open_store(url, readonly=True) as ro:  # type: ignore[attr-defined]
        assert [r.seq for r in ro.iter_records()] == list(range(1, len(EVENTS) + 2))
        assert [r.seq for r in ro.iter_records(from_seq=5)] == [5, 6, 7]
        with pytest.raises(ValueError, match="read-only"):
            ro.append([make_record(8, join("z"), [])])


def test_checkpoints_shorten_recovery(url: str) -> None:
    store = open_store(url)
    recorder = CallRecorder(store, checkpoint_every=4)
    for event in EVENTS:
        recorder.handle(event)
    checkpoint = store.load_checkpoint()
    assert checkpoint is not None and checkpoint["seq"] == 4
    store.close()
    reopened = CallRecorder.open(open_store(url))
    assert reopened.machine.snapshot() == recorder.machine.snapshot()
    assert reopened.recovered is not None and reopened.recovered.last_seq == len(EVENTS)
    reopened.store.close()


def test_misuse_is_not_logged(url: str) -> None:
    store = open_store(url)
    recorder = CallRecorder(store)
    recorder.handle(join("a"))
    with pytest.raises(LocalProtocolError):
        recorder.handle(TimerFired(at=1, key="no-such-timer"))
    assert store.last_seq() == 1
    store.close()


def test_appends_must_continue_the_log(url: str) -> None:
    store = open_store(url)
    with pytest.raises(ValueError, match="does not continue"):
        store.append([make_record(2, join("a"), [])])
    store.append([make_record(1, join("a"), []), make_record(2, join("b"), [])])
    with pytest.raises(ValueError):
        store.append([make_record(2, join("c"), [])])
    assert store.last_seq() == 2
    store.close()


def test_a_failed_append_stops_the_recorder(tmp_path: Path) -> None:
    class FullDisk(JsonlStore):
        def append(self, records: object) -> None:  # type: ignore[override]
            raise OSError(28, "No space left on device")

    store = FullDisk(tmp_path / "log.jsonl")
    recorder = CallRecorder(store)
    with pytest.raises(OSError):
        recorder.handle(join("a"))
    with pytest.raises(RecorderBroken):
        recorder.handle(join("b"))
    store.close()


def test_a_torn_last_line_is_dropped_when_reopened_for_writing(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    with JsonlStore(path, fsync="never") as store:
        recorder = CallRecorder(store)
        for event in EVENTS[:3]:
            recorder.handle(event)
    whole = path.read_bytes()
    path.write_bytes(whole + b'{"event":{"at":4,"sess')  # a crash in the middle of the 4th append
    with pytest.raises(EventLogError, match=r"log.jsonl:4: corrupt JSON"):
        JsonlStore(path, readonly=True)
    with JsonlStore(path) as store:
        assert store.last_seq() == 3
        assert path.read_bytes() == whole
    # A complete last record that only lost its newline is kept.
    path.write_bytes(whole.rstrip(b"\n"))
    with JsonlStore(path) as store:
        assert store.last_seq() == 3
    assert path.read_bytes() == whole


def test_corruption_before_the_end_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    with JsonlStore(path, fsync="never") as store:
        recorder = CallRecorder(store)
        for event in EVENTS:
            recorder.handle(event)
    lines = path.read_text().splitlines()
    lines[2] = lines[2].replace('"v":2', '"v":9')
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(EventLogError) as info:
        JsonlStore(path)
    assert str(info.value) == f"{path}:3: unknown version 9"
    lines[2] = lines[3]
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(EventLogError, match=r":3: seq 4 out of order, expected 3"):
        JsonlStore(path, readonly=True)


def test_sqlite_corruption_names_the_row(tmp_path: Path) -> None:
    path = tmp_path / "log.db"
    with SqliteStore(path) as store:
        recorder = CallRecorder(store)
        for event in EVENTS:
            recorder.handle(event)
    db = sqlite3.connect(path)
    db.execute("UPDATE events SET record = ? WHERE seq = 4", ('{"v":1,"seq":4,"event":{"type":"Nope"},"out":"x"}',))
    db.commit()
    db.close()
    with SqliteStore(path, readonly=True) as store, pytest.raises(EventLogError) as info:
        list(store.iter_records())
    assert str(info.value).startswith(f"{path}:4: ")


def test_sqlite_uses_wal_and_full_sync(tmp_path: Path) -> None:
    with SqliteStore(tmp_path / "log.db") as store:
        assert store._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert store._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        ("sqlite://{d}/a.db", SqliteStore),
        ("jsonl://{d}/a.jsonl", JsonlStore),
        ("{d}/a.jsonl", JsonlStore),
        ("{d}/a.ndjson", JsonlStore),
        ("{d}/a.sqlite3", SqliteStore),
        ("{d}/a.db", SqliteStore),
    ],
)
def test_open_store_picks_the_implementation(tmp_path: Path, url: str, kind: type) -> None:
    store = open_store(url.format(d=tmp_path))  # tmp_path is absolute: "sqlite://" + "/tmp/..."
    assert isinstance(store, kind)
    store.close()


@pytest.mark.parametrize("url", ["log.txt", "sqlite://", "noext"])  # postgresql:// is a store now (tests/pg)
def test_open_store_refuses_what_it_cannot_place(url: str) -> None:
    with pytest.raises(ValueError):
        open_store(url)


def test_recorder_defaults_to_a_fresh_machine(tmp_path: Path) -> None:
    with JsonlStore(tmp_path / "x.jsonl", fsync="never") as store:
        recorder = CallRecorder(store)
        assert isinstance(recorder.machine, CallsMachine)
        assert recorder.seq == 0


# ---------------------------------------------------------------------------------------------- group commit


async def test_group_commit_writes_a_batch_in_one_transaction(url: str) -> None:
    import trio

    store = open_store(url)
    recorder = CallRecorder(store, group_commit=True, checkpoint_every=4)
    async with trio.open_nursery() as nursery:
        await nursery.start(recorder.commit_loop)
        for event in EVENTS:  # no checkpoint in between: all six are queued before the loop runs
            recorder.handle(event)
        assert recorder.seq == len(EVENTS) and recorder.durable_seq == 0 and store.last_seq() == 0
        await recorder.flush()
        assert recorder.durable_seq == store.last_seq() == len(EVENTS)
        assert recorder.commits == 1
        for i in range(20):  # one input per loop turn: each may wait for the previous commit, never more than 20
            recorder.handle(join(f"x{i}", 10 + i))
            await trio.sleep(0)
        await recorder.flush()
        assert recorder.commits <= 21
        nursery.cancel_scope.cancel()
    store.close()
    reopened = CallRecorder.open(open_store(url))
    assert reopened.seq == len(EVENTS) + 20
    assert reopened.recovered is not None and reopened.recovered.mismatches == []
    assert reopened.store.load_checkpoint() is not None
    assert reopened.machine.snapshot() == recorder.machine.snapshot()
    reopened.store.close()


async def test_group_commit_failure_breaks_the_recorder(tmp_path: Path) -> None:
    import trio

    class FullDisk(SqliteStore):
        def append(self, records: object) -> None:  # type: ignore[override]
            raise OSError(28, "No space left on device")

    store = FullDisk(tmp_path / "log.db")
    recorder = CallRecorder(store, group_commit=True)
    async with trio.open_nursery() as nursery:
        await nursery.start(recorder.commit_loop)
        recorder.handle(join("a"))
        with pytest.raises(RecorderBroken) as info:
            await recorder.wait_durable(1)
        assert isinstance(info.value.__cause__, OSError)
        assert recorder.durable_seq == 0
        with pytest.raises(RecorderBroken):
            recorder.handle(join("b"))
        nursery.cancel_scope.cancel()
    store.close()


def test_a_deeply_nested_checkpoint_is_a_corrupt_log_not_a_recursion_error(tmp_path: Path) -> None:
    """Found by the checkpoint fuzz target's reasoning: json.loads raises RecursionError, not ValueError."""
    deep = "[" * 100_000 + "]" * 100_000
    jsonl = JsonlStore(tmp_path / "log.jsonl", fsync="never")
    (tmp_path / "log.jsonl.checkpoint.json").write_text(deep)
    with pytest.raises(EventLogError, match="corrupt checkpoint"):
        jsonl.load_checkpoint()
    jsonl.close()
    db = SqliteStore(tmp_path / "log.db")
    db.save_checkpoint({"seq": 0})
    raw = sqlite3.connect(tmp_path / "log.db")
    with raw:
        raw.execute("UPDATE checkpoints SET body = ?", (deep,))
    raw.close()
    with pytest.raises(EventLogError, match="corrupt checkpoint"):
        db.load_checkpoint()
    db.close()


# ---------------------------------------------------------------------------------------------- the WAL laid out


def _wal_size(path: Path) -> int:
    wal = Path(f"{path}-wal")
    return wal.stat().st_size if wal.exists() else 0


def test_sqlite_lays_its_wal_out_so_the_first_commits_do_not_grow_it(tmp_path: Path) -> None:
    """``prepare_appends`` (adapters/store/sqlite.py, "The WAL's blocks"): afterwards the WAL holds a checkpoint's
    worth of frames and the commits up to the next checkpoint overwrite them (the file's size does not move, so an
    ``fdatasync`` writes no inode); the log holds exactly its records, every one synced, and nothing else remains."""
    path = tmp_path / "log.db"
    store = SqliteStore(path)
    store.prepare_appends()
    laid_out = _wal_size(path)
    assert laid_out >= 1000 * (4096 + 24)  # SQLite's default checkpoint: 1,000 pages
    recorder = CallRecorder(store)
    for i in range(200):  # ~1 page per commit: well before the checkpoint
        recorder.handle(join(f"s{i}", i))
        assert _wal_size(path) == laid_out
    store.prepare_appends()  # long enough already: nothing more written
    assert _wal_size(path) == laid_out
    tables = {row[0] for row in store._db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert tables == {"events", "checkpoints"}
    assert store._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL: each commit still syncs the WAL
    store.close()
    reopened = CallRecorder.open(SqliteStore(path))
    assert reopened.seq == 200 and reopened.recovered is not None and reopened.recovered.mismatches == []
    reopened.store.close()


def test_laying_the_wal_out_is_best_effort(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    class FullDisk:
        """The store's connection on a disk that refuses the blob: nothing is laid out, the log still appends."""

        def __init__(self, db: sqlite3.Connection) -> None:
            self.db = db

        def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
            if "zeroblob" in sql:
                raise sqlite3.OperationalError("database or disk is full")
            return self.db.execute(sql, *args)

    store = SqliteStore(tmp_path / "log.db")
    real = store._db
    store._db = FullDisk(real)  # type: ignore[assignment]
    store.prepare_appends()
    store._db = real
    assert "could not lay out" in caplog.text
    CallRecorder(store).handle(join("a"))
    assert store.last_seq() == 1
    store.close()
    with SqliteStore(tmp_path / "log.db", readonly=True) as readonly:
        readonly.prepare_appends()  # a reader lays nothing out


async def test_the_server_recorder_lays_the_log_out_before_its_first_batch(url: str) -> None:
    import trio

    store = open_store(url)
    recorder = CallRecorder(store, group_commit=True)
    async with trio.open_nursery() as nursery:
        await nursery.start(recorder.commit_loop)
        recorder.handle(join("a"))  # queued while the layout runs: the first batch holds it
        await recorder.flush()
        assert recorder.commits == 1 and store.last_seq() == 1
        if isinstance(store, SqliteStore):
            assert _wal_size(store.path) >= 1000 * (4096 + 24)
        nursery.cancel_scope.cancel()
    store.close()
