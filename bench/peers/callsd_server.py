"""`callsd serve` in the server namespace of a side-by-side run, pinned to one CPU (the counterpart of janus.py).

The settings are bench/capacity.py's (fresh data directory, logging at warning, no per-address caps:
every simulated user comes from one address), except token auth (open auth is for loopback only) and the addresses: HTTP and the ICE candidate are the namespace's
veth address, so the load tool reaches callsd over the same veth hop as Janus. The namespace is private to the
run, so the HTTP port can be fixed.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import tempfile
from pathlib import Path

from .netns import Pair, ServerProcess

__all__ = ["CallsdProcess", "HTTP_PORT", "TOKEN_ENV"]

HTTP_PORT = 8045
TOKEN_ENV = "CALLSD_PEERS_TOKEN_SECRET"


class CallsdProcess(ServerProcess):
    """A context manager: ``url`` is its HTTP base, ``pid`` the server's own process (what is measured)."""

    stop_grace = 15.0  # a drain of the calls the run left

    def __init__(self, pair: Pair, workdir: Path, *, cpu: int | None = 0, fast_path: str = "") -> None:
        self.pair = pair
        self.workdir = workdir
        self.cpu = cpu
        self.fast_path = fast_path
        # Open auth is refused off loopback, so token auth; the load process mints tokens with the same secret
        # (passed in its environment as TOKEN_ENV, never on a command line).
        self.token_secret = secrets.token_hex(16)
        self.url = f"http://{pair.server_address}:{HTTP_PORT}"
        super().__init__(workdir / "serve.log")

    def __enter__(self) -> CallsdProcess:
        data = Path(tempfile.mkdtemp(prefix="callsd-peers-", dir=self.workdir))
        self.log_path = data / "serve.log"
        address = self.pair.server_address
        env = dict(os.environ, CALLSD_HTTP_LISTEN=address, CALLSD_HTTP_PORT=str(HTTP_PORT),
                   CALLSD_RTC_ICE_ADDRESS_UDP=address, CALLSD_RTC_ICE_PORT_UDP="0", CALLSD_RTC_ICE_PORT_TCP="0",
                   CALLSD_STORE_DATA_DIR=str(data / "data"), CALLSD_AUTH_MODE="token",
                   CALLSD_AUTH_SECRET=self.token_secret, CALLSD_LOG_LEVEL="warning",
                   CALLSD_HTTP_MAX_CONNECTIONS_PER_ADDRESS="0", CALLSD_HTTP_MAX_CONNECTIONS="0",
                   CALLSD_HTTP_JOIN_TIMEOUT="120")
        if self.fast_path:
            env["CALLSD_RTC_FAST_PATH"] = self.fast_path
        pin = ["taskset", "-c", str(self.cpu)] if self.cpu is not None else []
        log = open(self.log_path, "wb")  # noqa: SIM115 - owned by the child
        self.proc = subprocess.Popen(self.pair.server_args(*pin, sys.executable, "-m", "callsd.app.cli", "serve"),
                                     env=env, stdout=log, stderr=subprocess.STDOUT, cwd=data, start_new_session=True)
        log.close()
        self.wait_listening("callsd serve", HTTP_PORT, 30, RuntimeError)
        return self
