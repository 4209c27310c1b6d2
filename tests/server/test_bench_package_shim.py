"""bench.joins' base-tree shim is removed when the bench's process ends (it was left in /tmp by every A/B run)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_shim_is_gone_after_the_process_ends_and_the_tree_is_untouched(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    (tree / "core").mkdir(parents=True)
    (tree / "core" / "__init__.py").write_text("")
    (tree / "adapters" / "media" / "native").mkdir(parents=True)
    script = ("import sys; from bench.joins import _package_shim; shim = _package_shim(sys.argv[1]); "
              "from pathlib import Path; assert (Path(shim) / 'callsd' / 'core' / '__init__.py').exists(); print(shim)")
    done = subprocess.run([sys.executable, "-c", script, str(tree)], cwd=ROOT, capture_output=True, text=True,
                          timeout=60, check=True)
    shim = Path(done.stdout.strip().splitlines()[-1])
    assert shim.name.startswith("callsd-base-tree-")
    assert not shim.exists()
    assert (tree / "core" / "__init__.py").exists()


def test_the_shim_is_gone_after_the_process_fails(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    (tree / "core").mkdir(parents=True)
    (tree / "core" / "__init__.py").write_text("")
    (tree / "adapters" / "media" / "native").mkdir(parents=True)
    script = "import sys; from bench.joins import _package_shim; print(_package_shim(sys.argv[1])); raise SystemExit(3)"
    done = subprocess.run([sys.executable, "-c", script, str(tree)], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 3
    assert not Path(done.stdout.strip().splitlines()[-1]).exists()
