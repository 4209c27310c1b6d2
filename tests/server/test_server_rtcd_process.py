"""`callsd serve` with CALLSD_RTC_MEDIA_WORKERS=2 as a subprocess: it starts two `callsd rtcd` children, reports
ready, and SIGTERM stops the server and its workers (none outlives it)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import trio

pytestmark = pytest.mark.slow


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            if ppid == pid:
                found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


async def test_serve_starts_and_stops_its_media_workers(tmp_path: Path) -> None:
    env = dict(os.environ, CALLSD_HTTP_PORT="0", CALLSD_RTC_ICE_PORT_UDP="0", CALLSD_RTC_ICE_PORT_TCP="0", CALLSD_RTC_MEDIA_WORKERS="2",
               CALLSD_LOG_LEVEL="warning")
    proc = subprocess.Popen([sys.executable, "-m", "callsd.app.cli", "serve"], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        with trio.fail_after(60):
            line = await trio.to_thread.run_sync(proc.stdout.readline)  # type: ignore[union-attr]
        assert re.search(r"http://127\.0\.0\.1:\d+/ is ready", line), line
        workers = _children(proc.pid)
        assert len(workers) == 2
        for w in workers:
            assert b"rtcd" in Path(f"/proc/{w}/cmdline").read_bytes()
        proc.send_signal(signal.SIGTERM)
        with trio.fail_after(30):
            while proc.poll() is None:
                await trio.sleep(0.05)
        assert proc.returncode == 0
        with trio.fail_after(10):
            while any(_alive(w) for w in workers):
                await trio.sleep(0.05)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
