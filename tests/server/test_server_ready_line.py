"""The one line `callsd serve` prints when it is ready names every port a user's firewall must open."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def _free_tcp_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_the_ready_line_names_the_udp_and_the_ice_tcp_port(tmp_path: Path) -> None:
    tcp = _free_tcp_port()
    env = dict(os.environ, CALLSD_HTTP_PORT="0", CALLSD_RTC_ICE_PORT_UDP="0", CALLSD_RTC_ICE_PORT_TCP=str(tcp),
               CALLSD_LOG_LEVEL="warning")
    proc = subprocess.Popen([sys.executable, "-m", "callsd.app.cli", "serve"], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()  # type: ignore[union-attr]
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=30)
    assert "is ready" in line, line
    assert "media: udp 127.0.0.1:" in line and f" and ICE-TCP tcp 127.0.0.1:{tcp}," in line, line
