"""`callsd replay` and `callsd log stats|compact` on a PostgreSQL log, as on a file: same output, same exit codes."""

from __future__ import annotations

import json
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
    rc, _, err = _run(capsys, "log", "stats", pg_url)
    assert rc == 2 and "no callsd event log in this database" in err
