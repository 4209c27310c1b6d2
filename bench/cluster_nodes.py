"""Cluster bench helpers: `callsd serve` nodes in cluster mode on loopback, their CPU time, and a throwaway
PostgreSQL when no database is given (bench/cluster_failover.py)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

SECRET = "bench-cluster-secret-0123456789"
TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Node:
    """One node; ``media``: with its media plane on an ephemeral loopback UDP port (else signaling only)."""

    def __init__(self, name: str, store: str, lease: float, where: Path, *, media: bool) -> None:
        self.name, self.port, self.media = name, free_port(), media
        self.url = f"http://127.0.0.1:{self.port}"
        self.ws_url = f"ws://127.0.0.1:{self.port}/api/v1/websocket"
        self.env = dict(os.environ, CALLSD_HTTP_LISTEN="127.0.0.1", CALLSD_HTTP_PORT=str(self.port),
                        CALLSD_RTC_ICE_ADDRESS_UDP="127.0.0.1", CALLSD_RTC_ICE_PORT_UDP="0",
                        CALLSD_RTC_ICE_PORT_TCP="0", CALLSD_HTTP_MAX_CONNECTIONS_PER_ADDRESS="0",
                        CALLSD_STORE_URL=store, CALLSD_STORE_DATA_DIR=str(where / name), CALLSD_AUTH_MODE="open",
                        CALLSD_CLUSTER_ENABLED="true", CALLSD_CLUSTER_NODE_ID=name, CALLSD_CLUSTER_SECRET=SECRET,
                        CALLSD_CLUSTER_ADVERTISE=f"127.0.0.1:{self.port}", CALLSD_CLUSTER_LEASE_SECONDS=str(lease),
                        CALLSD_LOG_LEVEL="warning")
        self.log = where / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        command = [sys.executable, "-m", "callsd.app.cli", "serve", *([] if self.media else ["--no-media"])]
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(command, env=self.env, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=1):
                    return
            except OSError:
                time.sleep(0.05)
        raise SystemExit(f"node {self.name} did not start: {self.log.read_text()[-2000:]}")

    def cpu_seconds(self) -> float:
        """User + system CPU time of the node's process so far (/proc/PID/stat)."""
        assert self.proc is not None
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICKS

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=20)


@contextmanager
def database(store: str | None) -> Iterator[str]:
    """``store`` itself, or an empty database on a throwaway PostgreSQL (tests/pg_support.py: Debian's binaries)."""
    if store:
        yield store
        return
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from pg_support import PostgresServer  # type: ignore[import-not-found]

    with PostgresServer() as server:
        yield server.create_database("bench")


@contextmanager
def cluster(store: str, lease: float, where: Path, *, media: bool, count: int = 3) -> Iterator[list[Node]]:
    nodes = [Node(f"n{i + 1}", store, lease, where, media=media) for i in range(count)]
    try:
        for node in nodes:
            node.start()
        yield nodes
    finally:
        for node in nodes:
            node.stop()
