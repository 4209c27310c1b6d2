"""`python -m bench.loadtool_step` drives the engines' receive pump body directly (the C drain and what it hands
back): a few rounds on every engine must count every packet, so a change of the drain's interface cannot break the
bench unnoticed (the instruction counts in docs/performance.md come from it)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LEGS, TALKERS, ROUNDS = 64, 9, 5  # bench/loadtool_step.py's shape


@pytest.mark.parametrize("media", ["python", "native", "shared"])
def test_loadtool_step_counts_every_packet(media: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "bench.loadtool_step", media, str(ROUNDS), "--delay-sample", "1"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    counts = json.loads(proc.stdout.strip().splitlines()[-1])
    assert counts == {"received": ROUNDS * LEGS, "sent": ROUNDS * TALKERS, "srtp_errors": 0}
