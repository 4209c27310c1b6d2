"""`callsd serve` on a log it must not serve from as is (issue 8, items 7 and 9): a tampered log is refused in one
line unless --accept-broken-log, which names what it accepts; a corrupt log is one line and exit 2, not a
traceback; a full disk at start is never announced as "ready"."""

from __future__ import annotations

import json
import os
import shlex
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from callsd.adapters.store import CallRecorder, JsonlStore, SqliteStore
from callsd.core import JoinCall, Mute, Unmute

pytestmark = pytest.mark.slow

EVENTS = [
    JoinCall(at=1, channel_id="ch", session_id="a", user_id="alice", call_id="k"),
    Unmute(at=2, session_id="a"),
    Mute(at=3, session_id="a"),
]
SERVE = [sys.executable, "-m", "callsd.app.cli", "serve", "--no-media"]


def env_for(**extra: str) -> dict[str, str]:
    return {**os.environ, "CALLSD_HTTP_PORT": "0", "CALLSD_RTC_ICE_PORT_UDP": "0", "CALLSD_RTC_ICE_PORT_TCP": "0", **extra}


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


def test_a_full_disk_at_start_is_never_called_ready(tmp_path: Path) -> None:
    """A private tmpfs of 256 KiB (a mount namespace the test creates) holds a log whose session was connected, so
    start-up must record a Disconnect; the disk is then filled (the log padded to a whole page, so that append needs
    a new one). The data directory (the reconnect key) is elsewhere: this is about the log."""
    source = tmp_path / "events.jsonl"
    with JsonlStore(source, fsync="never") as store:
        recorder = CallRecorder(store)
        for event in EVENTS:
            recorder.handle(event)
    size = source.stat().st_size  # pad to a whole page (blank lines are allowed) so the next write needs a new one
    with source.open("ab") as f:
        f.write(b"\n" * (-size % 4096))
    disk = tmp_path / "disk"
    disk.mkdir()
    script = (
        f"mount -t tmpfs -o size=256k tmpfs {shlex.quote(str(disk))} && "
        f"cp {shlex.quote(str(source))} {shlex.quote(str(disk))}/events.jsonl && "
        f"(dd if=/dev/zero of={shlex.quote(str(disk))}/fill bs=4k 2>/dev/null; true) && "
        f"exec {' '.join(shlex.quote(a) for a in SERVE)}"
    )
    result = subprocess.run(
        ["unshare", "--mount", "--map-root-user", "sh", "-c", script], cwd=tmp_path, capture_output=True, text=True,
        timeout=60, env=env_for(CALLSD_STORE_URL=f"jsonl://{disk}/events.jsonl", CALLSD_STORE_DATA_DIR=str(tmp_path / "data")),
    )
    assert "is ready" not in result.stdout
    assert result.returncode == 2, result.stderr
    assert "CRITICAL" in result.stderr  # the hub says why it stops
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("callsd serve: cannot start: the event log cannot record: ")
    assert "No space left on device" in last


def test_a_full_disk_under_the_default_sqlite_log_is_one_line(tmp_path: Path) -> None:
    """SQLite needs room for its WAL index before it can read anything: the open fails, and says so in one line."""
    store = SqliteStore(tmp_path / "events.sqlite")
    recorder = CallRecorder(store)
    for event in EVENTS:
        recorder.handle(event)
    store.close()
    disk = tmp_path / "disk"
    disk.mkdir()
    script = (
        f"mount -t tmpfs -o size=256k tmpfs {shlex.quote(str(disk))} && "
        f"cp {shlex.quote(str(tmp_path / 'events.sqlite'))} {shlex.quote(str(disk))}/ && "
        f"(dd if=/dev/zero of={shlex.quote(str(disk))}/fill bs=4k 2>/dev/null; true) && "
        f"exec {' '.join(shlex.quote(a) for a in SERVE)}"
    )
    result = subprocess.run(
        ["unshare", "--mount", "--map-root-user", "sh", "-c", script], cwd=tmp_path, capture_output=True, text=True,
        timeout=60, env=env_for(CALLSD_STORE_DATA_DIR=str(disk)),
    )
    assert "is ready" not in result.stdout
    assert result.returncode == 2, result.stderr
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("callsd serve: cannot start: the event log")
    assert "cannot open the SQLite log" in line or "cannot record" in line
