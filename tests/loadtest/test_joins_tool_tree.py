"""bench.joins ``--tool-tree``: whose load tool joins the base tree's server in ``--compare tree``.

The default is this checkout's tool for both servers (an A/B between servers sees the same joins); ``base`` runs
the base tree's own tool, which must have its own native engine built: a tree without one is refused before any
server starts, never run on this checkout's extension (which would not match its Python).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_tool_tree_base_needs_compare_tree() -> None:
    done = subprocess.run([sys.executable, "-m", "bench.joins", "--tool-tree", "base"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "--tool-tree base needs --compare tree" in done.stderr


def test_a_base_tree_without_its_own_native_engine_is_refused_before_a_server_starts(tmp_path: Path) -> None:
    shim = tmp_path / "shim"
    (shim / "callsd" / "peer").mkdir(parents=True)
    script = "import sys; from bench.memory import run_server; run_server(1, 2, 0, 1.0, 1.0, tool_tree=sys.argv[1])"
    done = subprocess.run([sys.executable, "-c", script, str(shim)], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 1 and "has no built _fastpeer" in done.stderr, done.stderr[-2000:]
    assert "callsd serve" not in done.stderr
