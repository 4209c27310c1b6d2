"""Benches remove their scratch directories when they end well and keep them, named, when they fail (bench/scratch.py).

Run as the benches run, from the repository root (``bench`` is not an installed package)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = """
import sys
from bench.scratch import scratch_dir
with scratch_dir("callsd-scratch-test-") as work:
    print(work.path, flush=True)
    (work.path / "serve.log").write_text("why it failed")
    if sys.argv[1] == "fail":
        raise SystemExit(3)
    if sys.argv[1] == "kept":
        work.keep("2 users failed")
"""


def run(outcome: str) -> tuple[subprocess.CompletedProcess[str], Path]:
    done = subprocess.run([sys.executable, "-c", SCRIPT, outcome], cwd=ROOT, capture_output=True, text=True,
                          timeout=60, check=False)
    return done, Path(done.stdout.strip())


def test_removed_after_a_good_run() -> None:
    done, work = run("ok")
    assert done.returncode == 0, done.stderr
    assert not work.exists()


def test_kept_when_the_run_reports_a_failure() -> None:
    done, work = run("kept")
    assert done.returncode == 0, done.stderr
    assert f"kept {work} (2 users failed)" in done.stderr
    (work / "serve.log").unlink()
    work.rmdir()


def test_kept_and_named_after_a_failure() -> None:
    done, work = run("fail")
    assert done.returncode == 3
    assert (work / "serve.log").read_text() == "why it failed"
    assert f"kept {work}" in done.stderr
    (work / "serve.log").unlink()
    work.rmdir()
