"""`callsd replay` and `callsd log stats|compact` on a PostgreSQL log, as on a file: same output, same exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from callsd.adapters.store import CallRecorder, open_store
from callsd.app.cli import main
from callsd.core import JoinCall, LeaveCall, RaiseHand


def _record_two_calls(url: str) -> CallRecorder:
    """Call k1 (a, b) ends; call k2 (c, d) goes on: 7 records."""
    recorder = CallRecorder(open_store(url))
    for i, sid in enumerate("abcd"):
        call = "k1" if sid in "ab" else "k2"
        recorder.handle(JoinCall(at=10 + i, channel_id=f"ch-{call}", session_id=sid, user_id=f"u-{sid}",
                                 call_id=call))
    recorder.handle(LeaveCall(at=20, session_id="a"))
    recorder.handle(LeaveCall(at=21, session_id="b"))
    recorder.handle(RaiseHand(at=100, session_id="c"))
    recorder.store.close()
    return recorder


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def test_replay_verifies_a_postgresql_log_and_finds_an_edit(pg_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    recorder = _record_two_calls(pg_url)
    rc, out, err = _run(capsys, "replay", pg_url, "--verify")
    assert rc == 0, err
    assert f"verify: all 7 record digests match; chain: 7 chained record(s) whole, head {recorder.head}" in out
    rc, out, _ = _run(capsys, "replay", pg_url, "--call", "k2", "--json")
    assert rc == 0 and [c["call_id"] for c in json.loads(out)["calls"]] == ["k2"]

    with psycopg.connect(pg_url, autocommit=True) as db:  # an editor changes when c raised a hand
        db.execute("UPDATE events SET record = replace(record, '\"at\":100', '\"at\":99') WHERE seq = 7")
    rc, _, err = _run(capsys, "replay", pg_url, "--verify")
    assert rc == 1 and "seq 7: chain break" in err


def test_replay_of_a_clusters_database_verifies_each_stream_and_finds_a_call_by_id(
        pg_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    """A cluster keeps one stream per channel: `callsd replay URL --call ID --verify` replays and verifies each and
    shows the call in its channel's stream; an edit in one stream fails the whole command."""
    for channel, call in (("a", "ka"), ("b", "kb")):
        recorder = CallRecorder(open_store(f"{pg_url}?stream=channel%2F{channel}"))
        recorder.handle(JoinCall(at=1, channel_id=channel, session_id="s" + channel, user_id="u", call_id=call))
        recorder.handle(RaiseHand(at=2, session_id="s" + channel))
        recorder.store.close()
    rc, out, err = _run(capsys, "replay", pg_url, "--call", "kb", "--verify")
    assert rc == 0, err
    a, b = out.split("== stream 'channel/b'")
    assert "== stream 'channel/a'" in a and "no call with id 'kb'" in a and "verify: all 2 record" in a
    assert "call kb" in b and "raised@2" in b and "verify: all 2 record" in b
    rc, out, err = _run(capsys, "replay", pg_url, "--call", "kb", "--verify", "--json")
    streams = json.loads(out)["streams"]  # one document for the whole database: each stream's report in it
    assert rc == 0 and sorted(streams) == ["channel/a", "channel/b"], err
    assert [c["call_id"] for c in streams["channel/b"]["calls"]] == ["kb"] and streams["channel/a"]["calls"] == []
    assert all(doc["verified"] for doc in streams.values()) and "verify: all 2 record" in err
    with psycopg.connect(pg_url, autocommit=True) as db:
        db.execute("UPDATE events SET record = replace(record, '\"at\":2', '\"at\":3') "
                   "WHERE stream = 'channel/a' AND seq = 2")
    rc, out, err = _run(capsys, "replay", pg_url, "--call", "kb", "--verify")
    assert rc == 1 and "seq 2: chain break" in err and "call kb" in out


def test_log_stats_and_compact_on_postgresql(pg_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    recorder = _record_two_calls(pg_url)
    rc, out, err = _run(capsys, "log", "stats", pg_url, "--json")
    doc = json.loads(out)
    assert rc == 0, err
    assert (doc["entries"], doc["last_seq"], doc["ongoing_calls"], doc["ended_calls"]) == (7, 7, 1, 1)
    assert doc["bytes"] > 0 and doc["chain"]["head"] == recorder.head and doc["location"] == pg_url

    rc, out, err = _run(capsys, "log", "compact", pg_url, "--before-seq", "6")
    assert rc == 0, err
    assert "compacted up to seq 6: 6 entries archived to data/archive/t_" in out  # no file to sit next to
    archives = list((tmp_path / "data" / "archive").glob("*.1-6.jsonl"))  # <store.data_dir>/archive
    assert len(archives) == 1
    rc, out, err = _run(capsys, "replay", str(archives[0]), "--verify")
    assert rc == 0, err

    rc, out, err = _run(capsys, "replay", pg_url, "--verify")
    assert rc == 0, err
    assert "compacted up to seq 6" in out
    rc, out, _ = _run(capsys, "log", "stats", pg_url, "--json")
    doc = json.loads(out)
    assert (doc["entries"], doc["first_seq"], doc["compacted_to_seq"], doc["ongoing_calls"]) == (2, 6, 6, 1)


def test_an_unreachable_or_empty_database_is_exit_2_in_one_line(pg_url: str,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    rc, _, err = _run(capsys, "replay", "postgresql://postgres@127.0.0.1:1/nowhere", "--verify")
    assert rc == 2 and err.count("\n") == 1 and "cannot open the PostgreSQL log" in err
    rc, _, err = _run(capsys, "replay", pg_url)
    assert rc == 2 and "no callsd event log in this database" in err
    rc, _, err = _run(capsys, "replay", pg_url + "?stream=x&bogus=1")
    assert rc == 64 and 'invalid URI query parameter: "bogus"' in err  # a usage error, as for any bad LOG
    rc, _, err = _run(capsys, "log", "stats", pg_url)
    assert rc == 2 and "no callsd event log in this database" in err


def _serve(tmp_path: Path, url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CALLSD_HTTP_PORT": "0", "CALLSD_RTC_ICE_PORT_UDP": "0", "CALLSD_RTC_ICE_PORT_TCP": "0", "CALLSD_STORE_URL": url}
    return subprocess.run([sys.executable, "-m", "callsd.app.cli", "serve", *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60)


def test_serve_refuses_an_unreachable_database_or_a_tampered_log_in_one_line(pg_url: str, tmp_path: Path) -> None:
    down = _serve(tmp_path, "postgresql://callsd:hunter2@127.0.0.1:1/calls")
    assert down.returncode == 2 and "Traceback" not in down.stderr
    [line] = down.stderr.strip().splitlines()
    assert "cannot open the PostgreSQL log" in line and "hunter2" not in line

    _record_two_calls(pg_url)
    with psycopg.connect(pg_url, autocommit=True) as db:
        db.execute("UPDATE events SET record = replace(record, '\"at\":100', '\"at\":99') WHERE seq = 7")
    tampered = _serve(tmp_path, pg_url)
    assert tampered.returncode == 2
    [line] = tampered.stderr.strip().splitlines()
    assert "fails verification" in line and "seq 7: chain break" in line and "--accept-broken-log" in line


def test_the_store_commits_synchronously_whatever_the_database_default(pg_url: str) -> None:
    with psycopg.connect(pg_url, autocommit=True) as db:
        db.execute(f"ALTER DATABASE {pg_url.rpartition('/')[2]} SET synchronous_commit = off")
    with psycopg.connect(pg_url) as db:
        assert db.execute("SHOW synchronous_commit").fetchone() == ("off",)
    store = open_store(pg_url)
    with store.connect() as db:  # type: ignore[attr-defined]  # a fresh session sees the database's default...
        assert db.execute("SHOW synchronous_commit").fetchone() == ("off",)
    # ... but the store's own session commits synchronously (docs/adr/0016, "Durability")
    assert store._db.execute("SHOW synchronous_commit").fetchone() == ("on",)  # type: ignore[attr-defined]
    store.close()
