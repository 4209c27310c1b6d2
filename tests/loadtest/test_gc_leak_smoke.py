"""`python -m bench.gc_leak` runs end to end on a small load: the server's probe answers each SIGHUP with a full
collection, and the bench reads per session what the collector tracks and what a freeze would have leaked, so the
figure ADR 0048 quotes stays one a person can re-measure."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_leak_bench_counts_per_session(tmp_path: Path) -> None:
    out = tmp_path / "leak.json"
    proc = subprocess.run([sys.executable, "-m", "bench.gc_leak", "--calls", "2", "--rounds", "1", "--steady", "3",
                           "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    doc = json.loads(out.read_text())
    assert [mark["mark"] for mark in doc["marks"]] == ["round 0: before joins", "round 0: joined",
                                                       "round 0: end of steady window", "round 0: left"]
    (only,) = doc["per_round"]
    assert only["tracked_per_session"] > 50  # a joined session's objects are tracked by the collector
    assert only["leak_bound_per_session"] >= 0 and isinstance(doc["marks"][-1]["freed_types"], dict)
