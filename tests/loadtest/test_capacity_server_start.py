"""bench.capacity's `Server` (every capacity bench starts its `callsd serve` through it) says why a server did not
start: the server's exit code or how long it was waited for, and the end of its log, never a bare "not ready"; and it
leaves no process behind. Before, it gave up after 15 s under load with no log at all."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PROBE = """
import sys, tempfile
from pathlib import Path
from bench.capacity import Server, ServerNotReady
command, timeout = sys.argv[1], float(sys.argv[2])
server = Server(Path(tempfile.mkdtemp()), command=["-c", command], ready_timeout=timeout)
try:
    server.__enter__()
except ServerNotReady as exc:
    assert server.proc is not None and server.proc.poll() is not None, "the server was left running"
    print(exc)
    raise SystemExit(0)
raise SystemExit("started")
"""


def _start(command: str, timeout: float) -> str:
    proc = subprocess.run([sys.executable, "-c", PROBE, command, str(timeout)], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_a_server_that_exits_is_reported_with_its_code_and_log() -> None:
    said = _start("print('config: rtc.ice_port_udp is not a port'); raise SystemExit(3)", 30.0)
    assert "exited with 3 before it was ready" in said
    assert "config: rtc.ice_port_udp is not a port" in said


def test_a_server_that_never_answers_is_stopped_and_reported_with_its_log() -> None:
    said = _start("import time; print('still binding', flush=True); time.sleep(60)", 1.0)
    assert "did not answer" in said and "/healthz in " in said and "load average" in said
    assert "still binding" in said
