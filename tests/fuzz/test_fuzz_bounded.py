"""A bounded coverage-guided fuzz run of every parser target (fuzz/targets.py) in `make test`.

Each target runs under atheris in its own process for a few seconds (``FUZZ_TEST_SECONDS``, default 4) or
``FUZZ_TEST_RUNS`` inputs, whichever ends first, starting from the seed corpus in fuzz/corpus/<target>/ (every
file in it, crashers found earlier included, runs first). New inputs go to a temporary folder, never into the repo.
A crash fails the test with libFuzzer's report: the input (also in base64) and the Python traceback. ``make fuzz``
runs the same targets for minutes each.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RUNNER = ROOT / "fuzz" / "run.py"
TARGETS = ["stun", "dtls", "rtp", "rtcp", "sdp", "signaling", "eventlog", "checkpoint", "negotiation", "candidate", "token", "rtcd",
           "http_inbound"]
SECONDS = int(os.environ.get("FUZZ_TEST_SECONDS", "4"))
RUNS = int(os.environ.get("FUZZ_TEST_RUNS", "200000"))


def test_every_target_has_a_seed_corpus() -> None:
    sys.path.insert(0, str(ROOT / "fuzz"))
    try:
        import targets
    finally:
        sys.path.remove(str(ROOT / "fuzz"))
    assert sorted(targets.TARGETS) == sorted(TARGETS)
    for name in TARGETS:
        assert any((ROOT / "fuzz" / "corpus" / name).iterdir()), name


@pytest.mark.parametrize("target", TARGETS)
def test_fuzz_target_parses_or_raises_its_declared_error(target: str, tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    result = subprocess.run(
        [sys.executable, str(RUNNER), target, f"-max_total_time={SECONDS}", f"-runs={RUNS}", "-timeout=20",
         "-rss_limit_mb=1024", f"-artifact_prefix={tmp_path}/", str(work), str(ROOT / "fuzz" / "corpus" / target)],
        capture_output=True, text=True, timeout=SECONDS + 120, cwd=tmp_path,
    )
    report = result.stderr[-6000:]
    assert result.returncode == 0, f"fuzz target {target} crashed:\n{report}"
    assert "Done " in result.stderr, report
