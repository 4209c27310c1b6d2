"""`callsd --version` prints the installed distribution's version, as `GET /version` reports it: operators and the
container image's smoke test ask the binary which release it is."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import version


def test_version_flag_prints_the_installed_version() -> None:
    done = subprocess.run([sys.executable, "-m", "callsd.app.cli", "--version"], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"callsd {version('callsd')}"
