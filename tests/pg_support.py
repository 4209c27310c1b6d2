"""A throwaway PostgreSQL server for the tests, started from Debian's ``postgresql`` binaries.

The suite never skips for lack of PostgreSQL: ``scripts/system-deps.sh`` installs the package, and if the server
still cannot start, ``PostgresServer.start`` raises with the server's own log, so the failure says why.

The cluster lives in a fresh temporary directory (``initdb``, trust authentication, superuser ``postgres``) and
listens on a free TCP port on 127.0.0.1 and on a unix socket in that directory, never on the machine's default
socket or port, so several test runs (and other engineers' runs) coexist. PostgreSQL refuses to run as root, so as
root every server command runs as the ``postgres`` user (``runuser -u postgres --``) and the directory is handed to
that user. ``create_database`` gives each test its own database, so tests share one server (one start, ~1 s) but
never each other's rows.
"""

from __future__ import annotations

import itertools
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

__all__ = ["PostgresServer", "find_bindir"]

START_TIMEOUT_S = 60
PORT_ATTEMPTS = 3  # a free port can be taken between our probe and the server's bind: try another


def find_bindir() -> Path:
    """The newest ``/usr/lib/postgresql/<version>/bin`` holding ``initdb``; raises if none is installed."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"),
                   key=lambda p: int(re.sub(r"\D", "", p.parent.parent.name) or 0))
    if not found:
        raise RuntimeError("PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin: "
                           "run scripts/system-deps.sh (as root) to install Debian's postgresql package")
    return found[-1].parent


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class PostgresServer:
    """One PostgreSQL cluster in a temporary directory; ``start()`` then ``stop()`` (or use it as a context)."""

    def __init__(self, bindir: Path | None = None) -> None:
        self.bindir = bindir or find_bindir()
        self.root = Path(tempfile.mkdtemp(prefix="callsd-pg-"))
        self.data = self.root / "data"
        self.sockets = self.root / "sock"
        self.logfile = self.root / "server.log"
        self.port = 0
        self._as_postgres = os.geteuid() == 0
        self._names = itertools.count(1)

    # ------------------------------------------------------------------ process control

    def _run(self, args: Sequence[str], *, timeout: float = START_TIMEOUT_S) -> subprocess.CompletedProcess[str]:
        command = [str(self.bindir / args[0]), *args[1:]]
        if self._as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=self.root)

    def _log_tail(self) -> str:
        try:
            return "\n".join(self.logfile.read_text(errors="replace").splitlines()[-20:])
        except OSError:
            return "(no server log)"

    def start(self) -> PostgresServer:
        """initdb (the first time) and start the server; raises ``RuntimeError`` with the server's log if it does
        not come up. After ``halt`` it starts the same cluster again on the same port (crash recovery included)."""
        if not self.data.exists():
            self._initdb()
        for _ in range(PORT_ATTEMPTS):
            self.port = self.port or _free_port()
            options = (f"-c listen_addresses=127.0.0.1 -p {self.port} -c unix_socket_directories={self.sockets} "
                       "-c max_connections=200 -c log_min_messages=warning")
            done = self._run(["pg_ctl", "-D", str(self.data), "-l", str(self.logfile), "-w", "-t",
                              str(START_TIMEOUT_S), "-o", options, "start"], timeout=START_TIMEOUT_S + 10)
            if done.returncode == 0:
                return self
            if "could not bind" not in self._log_tail():
                break
            self.port = 0
        raise RuntimeError(f"PostgreSQL did not start ({done.returncode}): {done.stdout}{done.stderr}\n"
                           f"server log ({self.logfile}):\n{self._log_tail()}")

    def _initdb(self) -> None:
        self.sockets.mkdir()
        if self._as_postgres:
            user = pwd.getpwnam("postgres")
            for path in (self.root, self.sockets):
                os.chown(path, user.pw_uid, user.pw_gid)
        done = self._run(["initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
                          "--locale=C.UTF-8", "--no-sync"])
        if done.returncode != 0:
            raise RuntimeError(f"initdb failed ({done.returncode}): {done.stdout}{done.stderr}")

    def halt(self, mode: str = "immediate") -> None:
        """Stop the server, keeping its data: ``immediate`` is a crash (no checkpoint, connections cut; the next
        ``start`` recovers from the WAL), ``fast`` a clean shutdown."""
        if (self.data / "postmaster.pid").exists():
            done = self._run(["pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop"])
            if done.returncode != 0:
                raise RuntimeError(f"pg_ctl stop failed: {done.stdout}{done.stderr}")

    def stop(self) -> None:
        """Stop the server and delete its directory. Immediate, not fast: a fast shutdown first writes a checkpoint
        of every database the session created, only for the directory to be deleted (measured: 18 s for 40
        databases on a moderately loaded machine, 119 s at the end of tests/pg + tests/cluster under load; 0.1 s
        immediate)."""
        if self.data.exists():
            self.halt("immediate")
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ databases

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, prefix: str = "t") -> str:
        """A new empty database; returns its URL."""
        import psycopg

        name = f"{prefix}_{next(self._names)}"
        with psycopg.connect(self.url(), autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)
