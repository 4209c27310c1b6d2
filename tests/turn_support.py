"""A real coturn for the TURN tests: started as a subprocess on 127.0.0.1, probed until it answers, killed at the end.

``Coturn(work_dir, secret="S").start()`` runs Debian's ``turnserver`` with TURN REST auth (``use-auth-secret``),
listening on one free loopback port (UDP and TCP), relaying over UDP from a small port range on 127.0.0.1, with
loopback peers allowed (coturn refuses to relay to 127.x otherwise). It reads no system config file (``-n``) and
writes its pid file, database and log in ``work_dir``. ``start()`` returns once coturn answers a STUN Binding request
(bounded); ``stop()`` terminates it.

``url`` is the ``turn:`` URL (UDP) to hand to callsd (``rtc.ice_servers``); ``url_for("tcp")`` is the one for
clients that reach TURN only over TCP. ``allocations()`` / ``refusals()`` / ``permissions()`` read coturn's log for
the outcome of requests per TURN username (coturn logs ``user <name>`` on each processed request in verbose mode).

Every wait is time-boxed; every address is 127.0.0.1.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import struct
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from process_support import terminate

TURNSERVER = shutil.which("turnserver") or "/usr/sbin/turnserver"
REALM = "callsd.test"
STUN_MAGIC = 0x2112A442


@dataclass(frozen=True, slots=True, kw_only=True)
class TurnRequest:
    """One processed TURN request as coturn logged it."""

    user: str
    # "ALLOCATE", "CREATE_PERMISSION", "CHANNEL_BIND", "REFRESH", ... or "message" (refused before its method)
    method: str
    outcome: str  # "success" or e.g. "error 401: Unauthorized"
    line: str


# e.g. "session 001000000000000001: realm <callsd.test> user <1767225600:abc>: incoming packet ALLOCATE processed,
#       success"  /  "...: incoming packet ALLOCATE processed, error 401: Unauthorized"
_REQUEST_RE = re.compile(
    r"user <(?P<user>[^>]*)>: incoming packet (?P<method>[A-Za-z_]+) processed, (?P<outcome>.+)$"
)


def _free_ports(low: int, high: int, *, span: int = 1, kinds: tuple[int, ...] = (socket.SOCK_DGRAM,)) -> int:
    """The first of ``span`` consecutive ports free on 127.0.0.1 for every socket kind in ``kinds``, in [low, high)."""
    width = high - low - span
    start = (os.getpid() * 7919 + time.monotonic_ns() // 1000) % width
    for offset in range(0, width, 29):
        first = low + (start + offset) % width
        socks: list[socket.socket] = []
        try:
            for port in range(first, first + span):
                for kind in kinds:
                    s = socket.socket(socket.AF_INET, kind)
                    socks.append(s)
                    s.bind(("127.0.0.1", port))
            return first
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError(f"no {span} free ports in {low}-{high}")


def stun_binding_ok(port: int, *, timeout: float = 0.3) -> bool:
    """Send one STUN Binding request to 127.0.0.1:port; True if a Binding success response comes back."""
    tid = os.urandom(12)
    request = struct.pack("!HHI", 0x0001, 0, STUN_MAGIC) + tid
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.bind(("127.0.0.1", 0))
        try:
            s.sendto(request, ("127.0.0.1", port))
            data, _ = s.recvfrom(2048)
        except OSError:  # timeout, or ICMP port unreachable surfacing as ConnectionRefusedError
            return False
    return len(data) >= 20 and struct.unpack("!H", data[:2])[0] == 0x0101 and data[8:20] == tid


class Coturn:
    """coturn in a subprocess on 127.0.0.1 with TURN REST (static auth secret) credentials."""

    def __init__(self, work_dir: Path, *, secret: str, relay_ports: int = 20) -> None:
        self.work_dir = work_dir
        self.secret = secret
        self.port = _free_ports(21_000, 32_000, kinds=(socket.SOCK_DGRAM, socket.SOCK_STREAM))
        self.min_port = _free_ports(40_000, 48_000, span=relay_ports)
        self.max_port = self.min_port + relay_ports - 1
        self.url = self.url_for("udp")
        self.log_path = work_dir / "coturn.log"
        self.stdout_path = work_dir / "coturn.stdout"
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def url_for(self, transport: str) -> str:
        """The ``turn:`` URL a client uses to reach this coturn over ``transport`` ("udp" or "tcp")."""
        return f"turn:127.0.0.1:{self.port}?transport={transport}"

    def command(self) -> list[str]:
        d = self.work_dir
        return [
            TURNSERVER,
            "-n",  # no /etc/turnserver.conf: everything is on this command line
            f"--listening-port={self.port}",
            "--listening-ip=127.0.0.1",
            "--relay-ip=127.0.0.1",
            f"--min-port={self.min_port}",
            f"--max-port={self.max_port}",
            "--use-auth-secret",
            f"--static-auth-secret={self.secret}",
            f"--realm={REALM}",
            "--allow-loopback-peers",  # coturn 4.6 refuses 127.x peers (callsd's RTC port here) without it
            "--fingerprint",
            "--no-tls",
            "--no-dtls",
            "--no-tcp-relay",
            "--no-cli",
            "--no-rfc5780",
            "--relay-threads=1",
            "--verbose",  # coturn logs each processed request (user, method, outcome) only in verbose mode
            f"--log-file={self.log_path}",  # not stdout: coturn's stdout to a file is block-buffered
            "--simple-log",
            "--no-stdout-log",
            f"--pidfile={d / 'turnserver.pid'}",
            f"--userdb={d / 'turndb'}",
        ]

    def start(self, *, timeout: float = 10.0) -> Coturn:
        self._log = open(self.stdout_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            self.command(), stdout=self._log, stderr=subprocess.STDOUT, cwd=self.work_dir
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            if stun_binding_ok(self.port):
                return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(
            f"coturn did not answer STUN on 127.0.0.1:{self.port} within {timeout}s:\n" + self.log()[-4000:]
        )

    def log(self) -> str:
        """coturn's log so far (and anything it printed to stdout, e.g. before it could open the log)."""
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return self.stdout_path.read_text(errors="replace") + text

    def requests(self) -> list[TurnRequest]:
        """Every processed request coturn logged with a username, in log order."""
        out = []
        for line in self.log().splitlines():
            m = _REQUEST_RE.search(line)
            if m:
                out.append(
                    TurnRequest(user=m["user"], method=m["method"], outcome=m["outcome"].strip(), line=line)
                )
        return out

    def allocations(self, user: str) -> list[TurnRequest]:
        """Successful ALLOCATE requests by ``user``."""
        return [
            r for r in self.requests() if r.user == user and r.method == "ALLOCATE" and r.outcome == "success"
        ]

    def permissions(self, user: str) -> list[TurnRequest]:
        """Successful CREATE_PERMISSION requests by ``user`` (the client asked coturn to relay to a peer)."""
        return [
            r
            for r in self.requests()
            if r.user == user and r.method == "CREATE_PERMISSION" and r.outcome == "success"
        ]

    def refusals(self, user: str) -> list[TurnRequest]:
        """Requests carrying ``user`` that coturn answered with 401 (bad credentials).

        coturn rejects a request whose MESSAGE-INTEGRITY does not match before looking at its method, so it logs
        these as ``incoming packet message processed, error 401``. The first, credential-less 401 challenge of every
        allocation is logged with an empty user and is not counted.
        """
        return [r for r in self.requests() if r.user == user and r.outcome.startswith("error 401")]

    def wait_for(self, predicate: Callable[[], object], *, timeout: float = 10.0) -> bool:
        """Poll ``predicate()`` (over the log) every 0.1 s until it is truthy or ``timeout`` passes."""
        deadline = time.monotonic() + timeout
        while True:
            if predicate():
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.1)

    def stop(self) -> None:
        if self.proc is not None:
            terminate(self.proc, 5)
        if self._log is not None:
            self._log.close()
            self._log = None
