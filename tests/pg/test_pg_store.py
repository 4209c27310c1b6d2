"""The PostgreSQL event store against a real server: a versioned schema, compaction, streams, and loud errors for
what cannot be read. The contract every store shares (reopen, checkpoints, appends, group commit) is in
tests/core/test_core_stores.py, run there on PostgreSQL too."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import psycopg
import pytest
from callsd.adapters.store import CallRecorder, open_store
from callsd.adapters.store import postgres as pg_module
from callsd.adapters.store.compaction import compact
from callsd.adapters.store.pg_schema import MIGRATIONS, SCHEMA_VERSION
from callsd.adapters.store.postgres import PostgresStore, split_store_url
from callsd.core import (
    Disconnect,
    EventLogError,
    JoinCall,
    LeaveCall,
    Mute,
    PublishTrack,
    RaiseHand,
    TrackKind,
    Unmute,
)
from callsd.core.calls.eventlog import Compaction
from callsd.core.calls.replay import replay
from psycopg.conninfo import conninfo_to_dict


def join(sid: str, at: int = 0, call: str = "k") -> JoinCall:
    return JoinCall(at=at, channel_id=f"ch-{call}", session_id=sid, user_id=f"u-{sid}", call_id=call)


EVENTS = [
    join("a", 1),
    PublishTrack(at=2, session_id="a", track_id="mic", kind=TrackKind.AUDIO),
    join("b", 3),
    Unmute(at=4, session_id="a"),
    Disconnect(at=5, session_id="b"),
    Mute(at=6, session_id="ghost"),  # rejected inputs are logged too
]


@pytest.fixture(params=["sqlite", "postgresql"])
def any_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The same contract on both database stores."""
    if request.param == "sqlite":
        return f"sqlite://{tmp_path}/log.db"
    return str(request.getfixturevalue("pg_url"))


def test_compaction_archives_the_prefix_and_the_rest_verifies(any_url: str, tmp_path: Path) -> None:
    store = open_store(any_url)
    recorder = CallRecorder(store)
    for i, sid in enumerate("abcd"):  # call k1 ends (a, b leave); call k2 goes on
        recorder.handle(join(sid, at=10 + i, call="k1" if sid in "ab" else "k2"))
    recorder.handle(LeaveCall(at=20, session_id="a"))
    recorder.handle(LeaveCall(at=21, session_id="b"))
    recorder.handle(RaiseHand(at=100, session_id="c"))
    done = compact(store, before_ms=50, archive_dir=tmp_path / "archive")
    assert done is not None and (done.cut, done.ended_calls, done.ongoing_calls) == (6, 1, 1)
    entries = list(store.iter_records())
    assert isinstance(entries[0], Compaction) and [e.seq for e in entries] == [6, 7]
    result = replay(entries)
    assert result.verified and result.machine.snapshot() == recorder.machine.snapshot()
    archived = replay(open_store(f"jsonl://{done.archive}", readonly=True).iter_records())
    assert archived.verified and archived.chain.head == entries[0].head  # type: ignore[union-attr]
    recorder.handle(RaiseHand(at=101, session_id="d"))  # appends go on after the compaction entry
    store.close()
    reopened = CallRecorder.open(open_store(any_url))
    assert reopened.recovered is not None and reopened.recovered.verified
    assert reopened.machine.snapshot() == recorder.machine.snapshot()
    reopened.store.close()


def test_the_schema_is_created_once_and_versioned(pg_url: str) -> None:
    PostgresStore(pg_url).close()
    PostgresStore(pg_url).close()  # a second start applies nothing
    with psycopg.connect(pg_url) as db:
        versions = [v for (v,) in db.execute("SELECT version FROM schema_version ORDER BY version")]
        tables = {t for (t,) in db.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
    assert versions == list(range(1, SCHEMA_VERSION + 1))
    assert {"schema_version", "events", "checkpoints", "call_leases"} <= tables


def test_an_older_schema_is_migrated_at_start_and_its_log_kept(pg_url: str) -> None:
    """A database written at schema version 1 (the first release: events and checkpoints only) is brought up to
    date by the next start, in place: the later versions' tables appear, the log is kept and rebuilds the calls."""
    recorder = CallRecorder(open_store(pg_url))
    for event in EVENTS:
        recorder.handle(event)
    recorder.store.close()
    with psycopg.connect(pg_url) as db:  # back to version 1, as that release left it
        db.execute("DROP TABLE call_leases, cluster_nodes, cluster_calls")
        db.execute("DELETE FROM schema_version WHERE version > 1")
    assert [v for v, _ in MIGRATIONS][1:] == [2, 3, 4, 5]  # a new migration adding a table: drop it above too

    reopened = CallRecorder.open(open_store(pg_url))  # what `callsd serve` does at start
    assert reopened.recovered is not None and reopened.recovered.verified
    assert reopened.machine.snapshot() == recorder.machine.snapshot() and reopened.seq == len(EVENTS)
    reopened.store.close()
    with psycopg.connect(pg_url) as db:
        versions = [v for (v,) in db.execute("SELECT version FROM schema_version ORDER BY version")]
        tables = {t for (t,) in db.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
    assert versions == list(range(1, SCHEMA_VERSION + 1))
    assert {"call_leases", "cluster_nodes", "cluster_calls"} <= tables


def test_nodes_starting_together_on_an_empty_database_migrate_it_once(pg_url: str) -> None:
    """Three nodes of a cluster start at once: each migration is applied by exactly one (the advisory lock)."""
    failures: list[BaseException] = []

    def start() -> None:
        try:
            PostgresStore(pg_url).close()
        except BaseException as exc:  # reported below, with the others
            failures.append(exc)

    threads = [threading.Thread(target=start) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not failures, failures
    with psycopg.connect(pg_url) as db:
        versions = [v for (v,) in db.execute("SELECT version FROM schema_version ORDER BY version")]
    assert versions == list(range(1, SCHEMA_VERSION + 1))


def test_a_newer_schema_is_refused_for_reading_and_writing(pg_url: str) -> None:
    PostgresStore(pg_url).close()
    with psycopg.connect(pg_url, autocommit=True) as db:
        db.execute("INSERT INTO schema_version (version) VALUES (%s)", (SCHEMA_VERSION + 7,))
    for readonly in (False, True):
        with pytest.raises(EventLogError, match=f"version {SCHEMA_VERSION + 7}, newer than this callsd"):
            PostgresStore(pg_url, readonly=readonly)


def test_reading_a_database_without_a_log_says_so(pg_url: str) -> None:
    with pytest.raises(EventLogError, match="no callsd event log in this database"):
        open_store(pg_url, readonly=True)
    with psycopg.connect(pg_url) as db:  # and reading created nothing
        assert db.execute("SELECT to_regclass('schema_version')").fetchone() == (None,)


def test_an_unreachable_server_is_one_clear_error() -> None:
    with pytest.raises(EventLogError, match="cannot open the PostgreSQL log") as info:
        open_store("postgresql://postgres:hunter2@127.0.0.1:1/calls")
    assert "hunter2" not in str(info.value) and "postgresql://postgres@127.0.0.1:1/calls" in str(info.value)


def test_a_corrupt_row_or_a_gap_names_the_seq(pg_url: str) -> None:
    store = PostgresStore(pg_url)
    recorder = CallRecorder(store)
    for event in EVENTS:
        recorder.handle(event)
    with psycopg.connect(pg_url, autocommit=True) as db:
        db.execute("UPDATE events SET record = '{\"seq\":3,' WHERE seq = 3")
        with pytest.raises(EventLogError) as info:
            list(store.iter_records())
        assert info.value.line == 3 and info.value.source == store.location
        db.execute("DELETE FROM events WHERE seq = 3")
        with pytest.raises(EventLogError, match="seq 4 follows seq 2: the log has a gap"):
            list(store.iter_records())
    store.close()


def test_streams_are_separate_logs_and_pages_are_contiguous(pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pg_module, "PAGE_ROWS", 3)
    one, two = PostgresStore(pg_url + "?stream=call-1"), PostgresStore(pg_url, stream="call-2")
    for store, call in ((one, "k1"), (two, "k2")):
        recorder = CallRecorder(store)
        recorder.handle(join("a" + call, 1, call=call))
        for i in range(9):
            recorder.handle(RaiseHand(at=2 + i, session_id="a" + call))
    assert [r.seq for r in one.iter_records()] == list(range(1, 11))
    assert [r.seq for r in one.iter_records(4)] == list(range(4, 11))
    assert {r.event.call_id for r in two.iter_records() if isinstance(r.event, JoinCall)} == {"k2"}  # type: ignore[union-attr]
    assert one.location.endswith("?stream=call-1") and PostgresStore(pg_url).last_seq() == 0
    one.close(), two.close()


def test_store_urls_split_into_libpq_conninfo_stream_and_a_shown_location() -> None:
    conninfo, stream, location = split_store_url(
        "postgresql://u:secret@db.example:5433/calls?sslmode=require&stream=s1&keepalives_idle=30")
    assert (stream, location) == ("s1", "postgresql://u@db.example:5433/calls?stream=s1")
    settings = conninfo_to_dict(conninfo)
    assert settings["password"] == "secret" and settings["sslmode"] == "require" and "stream" not in settings
    assert settings["keepalives_idle"] == "30"  # the URL's own settings win over callsd's defaults
    assert settings["tcp_user_timeout"] == "10000" and settings["connect_timeout"] == "10"
    assert split_store_url("postgres://h/calls")[1:] == ("", "postgres://h/calls")


def test_the_connection_carries_the_partition_defaults(pg_url: str) -> None:
    with PostgresStore(pg_url) as store, store.connect() as db:
        params = db.info.get_parameters()
        assert db.info.parameter_status("application_name") == "callsd"
        assert params["tcp_user_timeout"] == "10000" and params["keepalives_idle"] == "5"


def test_sqlite_users_do_not_load_psycopg(tmp_path: Path) -> None:
    """`make run` needs no PostgreSQL: opening the default SQLite log loads nothing of the PostgreSQL store."""
    code = ("import sys; from callsd.adapters.store import open_store; import callsd.app.server; "
            f"open_store('sqlite://{tmp_path}/e.sqlite').close(); "
            "assert not [m for m in sys.modules if m.startswith('psycopg')], 'psycopg loaded'")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
