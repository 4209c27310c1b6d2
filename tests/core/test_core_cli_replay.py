"""``callsd replay`` on the recorded example log, on copies of it that are corrupt, tampered with or in SQLite."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from callsd.adapters.store import JsonlStore, SqliteStore
from callsd.app.cli import main

EXAMPLE = Path(__file__).resolve().parent.parent / "data" / "example.jsonl"


def run(capsys: Any, *argv: str) -> tuple[int, str, str]:
    try:
        rc = main(["replay", *argv])
    except SystemExit as exc:  # argparse usage errors
        rc = int(exc.code or 0)
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def test_the_example_log_verifies_and_prints_the_ongoing_call(capsys: Any) -> None:
    rc, out, err = run(capsys, str(EXAMPLE), "--verify")
    assert rc == 0, err
    assert "replayed 33 record(s); 1 ongoing call(s)" in out
    assert "channel dev-team  call call-91c0  host s-dave-1" in out
    erin = next(line for line in out.splitlines() if "s-erin-1" in line).split()
    assert erin[:4] == ["s-erin-1", "erin", "-", "yes"]  # not host, muted
    assert erin[4].startswith("raised@")
    assert "call call-7f3a in channel town-square ended at seq 32" in out
    assert "verify: all 33 record digests match" in out


def test_until_and_call_show_the_state_at_that_point(capsys: Any) -> None:
    rc, out, _ = run(capsys, str(EXAMPLE), "--until", "20", "--call", "call-7f3a", "--json")
    assert rc == 0
    doc = json.loads(out)
    assert doc["last_seq"] == 20
    [call] = doc["calls"]
    assert call["host_id"] == "s-alice-1" and call["screen_sharer"] == "s-bob-1"
    by_id = {p["session_id"]: p for p in call["participants"]}
    assert list(by_id) == ["s-alice-1", "s-bob-1", "s-carol-1"]
    assert by_id["s-carol-1"]["connected"] is False and by_id["s-carol-1"]["video"] is True
    assert by_id["s-alice-1"]["muted"] is False and by_id["s-bob-1"]["muted"] is True
    assert doc["ended"] == [] and doc["mismatches"] == []


def test_an_ended_call_is_reported_with_its_participants(capsys: Any) -> None:
    rc, out, _ = run(capsys, str(EXAMPLE), "--call", "call-7f3a", "--json")
    assert rc == 0
    doc = json.loads(out)
    assert doc["calls"] == []
    assert doc["ended"][0]["participants"] == ["s-alice-1", "s-bob-1", "s-carol-1"]
    assert doc["ended"][0]["seq"] == 32


def test_a_corrupt_line_exits_2_naming_file_and_line(capsys: Any, tmp_path: Path) -> None:
    lines = EXAMPLE.read_text().splitlines()
    lines[6] = lines[6][:40]  # line 7 cut short
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join(lines) + "\n")
    rc, _, err = run(capsys, str(bad), "--verify")
    assert rc == 2
    assert f"{bad}:7: corrupt JSON" in err


def test_an_unknown_event_type_exits_2_with_the_reason(capsys: Any, tmp_path: Path) -> None:
    lines = EXAMPLE.read_text().splitlines()
    lines[11] = lines[11].replace('"type":"RaiseHand"', '"type":"Teleport"')
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join(lines) + "\n")
    rc, _, err = run(capsys, str(bad))
    assert rc == 2
    assert f"{bad}:12: event: unknown type 'Teleport'" in err


def test_a_tampered_digest_fails_verify_with_exit_1(capsys: Any, tmp_path: Path) -> None:
    lines = EXAMPLE.read_text().splitlines()
    record = json.loads(lines[4])
    expected = record["out"]
    record["out"] = "0" * 64
    lines[4] = json.dumps(record)
    bad = tmp_path / "tampered.jsonl"
    bad.write_text("\n".join(lines) + "\n")
    rc, _, err = run(capsys, str(bad), "--verify")
    assert rc == 1
    assert f"seq 5: expected {'0' * 64}, actual {expected}" in err
    rc, _, _ = run(capsys, str(bad))  # without --verify the state is still printed
    assert rc == 0


def test_an_sqlite_copy_replays_to_the_same_report(capsys: Any, tmp_path: Path) -> None:
    db = tmp_path / "log.db"
    with JsonlStore(EXAMPLE, readonly=True) as src, SqliteStore(db) as dst:
        dst.append(list(src.iter_records()))
    rc1, out1, _ = run(capsys, str(EXAMPLE), "--json", "--verify")
    rc2, out2, _ = run(capsys, f"sqlite://{db}", "--json", "--verify")
    assert rc1 == rc2 == 0
    assert out1 == out2


@pytest.mark.parametrize(
    "argv",
    [[], ["x.jsonl", "--until", "0"], ["x.jsonl", "--until", "soon"], ["log.txt"], ["x.jsonl", "--bogus"]],
)
def test_usage_errors_exit_64(capsys: Any, argv: list[str]) -> None:
    rc, _, _ = run(capsys, *argv)
    assert rc == 64


def test_a_missing_or_non_database_file_exits_2(capsys: Any, tmp_path: Path) -> None:
    rc, _, err = run(capsys, str(tmp_path / "missing.jsonl"))
    assert rc == 2 and "missing.jsonl" in err
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not sqlite" * 100)
    rc, _, err = run(capsys, str(junk))
    assert rc == 2 and "junk.db" in err


def test_the_installed_command_exits_with_the_documented_codes(tmp_path: Path) -> None:
    import subprocess
    import sys

    callsd = Path(sys.executable).with_name("callsd")
    ok = subprocess.run([str(callsd), "replay", str(EXAMPLE), "--verify"], capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stderr
    bad = tmp_path / "bad.jsonl"
    bad.write_text(EXAMPLE.read_text().replace('"v":1', '"v":7', 1))
    corrupt = subprocess.run([str(callsd), "replay", str(bad)], capture_output=True, text=True, timeout=60)
    assert corrupt.returncode == 2
    assert corrupt.stderr.strip() == f"{bad}:1: unknown version 7"
