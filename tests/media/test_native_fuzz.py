"""A bounded fuzz run of the native fast path under ASan + UBSan (`make fuzz` runs the long one).

scripts/fuzz-native.sh runs libFuzzer on the C RTP rules and video rules, and the differential scenarios (audio
and video) against a sanitized build of the whole extension; any crash, sanitizer report or difference from the
Python path fails it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SECONDS = int(os.environ.get("CALLSD_FUZZ_SECONDS", "20"))
EXAMPLES = int(os.environ.get("CALLSD_FUZZ_EXAMPLES", "30"))


def test_native_fast_path_survives_a_bounded_fuzz_run(tmp_path: Path) -> None:
    env = dict(os.environ, PYTHON=sys.executable)
    done = subprocess.run(["bash", str(ROOT / "scripts" / "fuzz-native.sh"), str(SECONDS), str(EXAMPLES),
                           str(tmp_path)], capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    assert "no crash, no sanitizer report" in done.stdout
    assert "video rules" in done.stdout  # the second target (video_rules.h) ran too
    assert "native == python, no sanitizer report" in done.stdout
