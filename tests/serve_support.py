"""A `callsd serve` subprocess on loopback for tests that must kill, restart or watch the real process.

    server = ServeProcess(tmp_path)          # picks a free HTTP port; RTC port ephemeral; open mode
    server.start()                           # waits for /healthz (fails the test with the log tail otherwise)
    server.url, server.pid, server.kill(), server.start()   # start again: same port, same data directory
    server.stop()
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from process_support import terminate


def healthy(url: str, proc: subprocess.Popen[bytes], timeout: float) -> bool:
    """True once ``url``/healthz answers; False when ``proc`` exits first or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=1):
                return True
        except OSError:
            time.sleep(0.1)
    return False


def metric_sample(url: str, sample: str) -> float:
    """One sample of a server's /metrics, named as the exposition writes it (``name{labels}``); 0 while absent."""
    with urllib.request.urlopen(url + "/metrics", timeout=5) as response:
        for line in response.read().decode().splitlines():
            name, _, value = line.rpartition(" ")
            if name == sample:
                return float(value)
    return 0.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServeProcess:
    def __init__(self, tmp_path: Path, **env: str) -> None:
        self.tmp_path = tmp_path
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = dict(os.environ, CALLSD_HTTP_LISTEN="127.0.0.1", CALLSD_HTTP_PORT=str(self.port),
                        CALLSD_RTC_ICE_ADDRESS_UDP="127.0.0.1", CALLSD_RTC_ICE_PORT_UDP="0", CALLSD_RTC_ICE_PORT_TCP="0",
                        CALLSD_STORE_DATA_DIR=str(tmp_path / "data"), CALLSD_AUTH_MODE="open", **env)
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.log_path = tmp_path / "serve.log"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout: float = 60.0) -> None:
        self.starts += 1
        with open(self.log_path, "a") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "callsd.app.cli", "serve"], env=self.env,
                                         stdout=log, stderr=subprocess.STDOUT, cwd=self.tmp_path)
        if healthy(self.url, self.proc, timeout):
            return
        pytest.fail(f"callsd serve (start {self.starts}) is not healthy:\n" + self.log_path.read_text()[-3000:])

    def kill(self) -> None:
        """SIGKILL, as `kill -9` would: no drain, no goodbye."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None:
            terminate(self.proc)
