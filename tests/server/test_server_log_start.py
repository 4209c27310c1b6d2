"""`callsd serve` on a log it must not serve from as is (issue 8, items 7 and 9): a tampered log is refused in one
line unless --accept-broken-log, which names what it accepts; a corrupt log is one line and exit 2, not a
traceback; a full disk at start is never announced as "ready"."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from callsd.adapters.store import CallRecorder, SqliteStore
from callsd.core import JoinCall, Mute, Unmute

pytestmark = pytest.mark.slow

EVENTS = [
    JoinCall(at=1, channel_id="ch", session_id="a", user_id="alice", call_id="k"),
    Unmute(at=2, session_id="a"),
    Mute(at=3, session_id="a"),
]
SERVE = [sys.executable, "-m", "callsd.app.cli", "serve", "--no-media"]


def env_for(**extra: str) -> dict[str, str]:
    return {**os.environ, "CALLSD_HTTP_PORT": "0", "CALLSD_RTC_ICE_PORT_UDP": "0", **extra}


def recorded_db(tmp_path: Path) -> Path:
    path = tmp_path / "data" / "events.sqlite"
    store = SqliteStore(path)
    recorder = CallRecorder(store)
    for event in EVENTS:
        recorder.handle(event)
    store.close()
    return path


def set_row(path: Path, seq: int, text: str) -> None:
    db = sqlite3.connect(path)
    with db:
        db.execute("UPDATE events SET record = ? WHERE seq = ?", (text, seq))
    db.close()


def row(path: Path, seq: int) -> str:
    db = sqlite3.connect(path)
    try:
        return str(db.execute("SELECT record FROM events WHERE seq = ?", (seq,)).fetchone()[0])
    finally:
        db.close()


def refused(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*SERVE, *args], cwd=tmp_path, env=env_for(), capture_output=True, text=True, timeout=60)


def test_a_tampered_log_is_refused_in_one_line_and_accepted_only_when_told(tmp_path: Path) -> None:
    path = recorded_db(tmp_path)
    doc = json.loads(row(path, 2))
    doc["event"]["at"] = 5_000  # a changed time: outputs alike, chain broken
    set_row(path, 2, json.dumps(doc, sort_keys=True, separators=(",", ":")))
    result = refused(tmp_path)
    assert result.returncode == 2
    assert "is ready" not in result.stdout
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("callsd serve: cannot start: the event log ") and "fails verification" in line
    assert "seq 2: chain break: its hash does not match its content" in line and "--accept-broken-log" in line

    proc = subprocess.Popen([*SERVE, "--accept-broken-log"], cwd=tmp_path, env=env_for(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        ready = proc.stdout.readline()  # type: ignore[union-attr]
        assert "is ready" in ready
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    assert "--accept-broken-log: accepting unverified seq 2: chain break" in err
    assert "with 1 unverified record(s)" in err


def test_a_corrupt_log_is_one_line_and_exit_2(tmp_path: Path) -> None:
    path = recorded_db(tmp_path)
    set_row(path, 2, '{"v":2,"seq":2,"event":{"type":"Nope"}}')
    result = refused(tmp_path)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and "is ready" not in result.stdout
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("callsd serve: cannot start: the event log is corrupt: ")
    assert f"{path.resolve()}:2: " in line
