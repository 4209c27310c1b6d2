"""Processes for the namespace tests: ``callsd serve``, the aiortc client script and coturn, each started inside a
namespace with ``ip netns exec``; every wait is bounded and every failure says what the process logged."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from callsd.app.auth import create_token
from net.netns import Host, Topology

HTTP_PORT = 8080
RTC_PORT = 8443
STUN_PORT = 3478
SECRET = "net-tests-secret-0123456789"
TURN_SECRET = "net-tests-turn-secret"
BIN = Path(sys.executable).parent
CLIENT_SCRIPT = Path(__file__).with_name("net_client.py")
BROWSER_SCRIPT = Path(__file__).with_name("browser_client.py")
TURNSERVER = "/usr/bin/turnserver"


@dataclass(frozen=True, slots=True)
class Net:
    topology: Topology
    server: Host
    stun: Host
    client1: Host
    client2: Host
    hidden: Host  # the server host behind nat2's port forward
    nat2: Host  # hidden's router; its public address is what clients reach
    client6: Host  # an IPv6-only client on the public segment


class CallsdProcess:
    """``callsd serve`` inside a namespace, with its log kept in a file for the test to read."""

    def __init__(self, host: Host, work: Path, rtc: dict[str, Any], http_listen: str = "0.0.0.0") -> None:
        self.host = host
        self.work = work
        self.log_path = work / "callsd.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("CALLSD_")}
        env.update({
            "CALLSD_HTTP_LISTEN": http_listen, "CALLSD_HTTP_PORT": str(HTTP_PORT),
            "CALLSD_AUTH_MODE": "token", "CALLSD_AUTH_SECRET": SECRET,
            "CALLSD_RTC_ICE_PORT_UDP": str(RTC_PORT), "CALLSD_STORE_DATA_DIR": str(work / "data"),
            "CALLSD_LOG_LEVEL": "info",
        })
        for key, value in rtc.items():
            env[f"CALLSD_RTC_{key.upper()}"] = value if isinstance(value, str) else json.dumps(value)
        self._log = open(self.log_path, "wb")  # noqa: SIM115 (closed in stop)
        self.proc = host.popen([str(BIN / "callsd"), "serve"], stdout=subprocess.PIPE, stderr=self._log, env=env)
        self.ready_line = self._wait_ready()

    def _wait_ready(self, timeout: float = 30) -> str:
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline().decode()
            if "is ready" in line:
                return line
            if not line and self.proc.poll() is not None:
                break
        self.stop()
        raise AssertionError(f"callsd did not start in {self.host.short}: {self.log()}")

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def wait_log(self, text: str, timeout: float = 30) -> str:
        """Wait until ``text`` appears in the log; the log."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = self.log()
            if text in got:
                return got
            time.sleep(0.2)
        raise AssertionError(f"{text!r} not in the log of callsd in {self.host.short} after {timeout} s:\n{self.log()}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self._log.close()


def _host(address: str) -> str:
    return f"[{address}]" if ":" in address else address


def _token(channel: str, user: str) -> str:
    return create_token(secret=SECRET, user_id=user, channels=[channel], expires_at=int(time.time()) + 600)


def start_aiortc(host: Host, server_address: str, *, user: str, seconds: float = 40, want: int = 50,
                 hold: float = 3, channel: str = "net", done: tuple[Path, int] | None = None) -> subprocess.Popen[bytes]:
    """net_client.py (one aiortc participant) in ``host`` against ``ws://server_address:8080``. ``done``: a folder
    shared with the other clients of the call and how many they are (each stays until all have heard enough)."""
    args = [sys.executable, str(CLIENT_SCRIPT), "--ws", f"ws://{_host(server_address)}:{HTTP_PORT}/api/v1/websocket",
            "--token", _token(channel, user), "--channel", channel, "--seconds", str(seconds), "--want", str(want),
            "--hold", str(hold)]
    if done is not None:
        args += ["--done-dir", str(done[0]), "--peers", str(done[1])]
    return host.popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def start_chromium(host: Host, server_address: str, *, user: str, seconds: float = 60, relay_only: bool = False,
                   want: int = 100, hold: float = 5, channel: str = "net") -> subprocess.Popen[bytes]:
    """browser_client.py (Chromium on callsd's page) in ``host`` against ``http://server_address:8080``."""
    args = [sys.executable, str(BROWSER_SCRIPT), "--url", f"http://{_host(server_address)}:{HTTP_PORT}",
            "--token", _token(channel, user), "--channel", channel, "--seconds", str(seconds), "--want", str(want),
            "--hold", str(hold)]
    return host.popen(args + (["--relay-only"] if relay_only else []), stdout=subprocess.PIPE,
                      stderr=subprocess.PIPE)


def collect(proc: subprocess.Popen[bytes], timeout: float = 120) -> dict[str, Any]:
    """Wait for a client script; its JSON result (or an AssertionError with its stderr)."""
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
    if proc.returncode != 0 or not out.strip():
        raise AssertionError(f"client failed ({proc.returncode}): {err.decode(errors='replace')[-3000:]}")
    return json.loads(out.decode().strip().splitlines()[-1])  # type: ignore[no-any-return]


def summary(results: list[dict[str, Any]]) -> str:
    """One line per client for a failure message: what it heard and the events it got (not their payloads)."""
    return "\n".join(f"{r.get('session_id')}: frames={r.get('frames')} loud={r.get('loud_frames')} "
                     f"ice={r.get('ice_state')} events={[e[0] for e in r.get('events', [])]}" for r in results)


def run_clients(clients: list[Host], server_address: str, *, seconds: float = 60, want: int = 50,
                channel: str = "net") -> list[dict[str, Any]]:
    """Run one aiortc participant per host at once (each stays until all have heard enough); their JSON results."""
    with tempfile.TemporaryDirectory(prefix="callsd-net-done-") as done:
        procs = [start_aiortc(host, server_address, user=f"user{i}", seconds=seconds, want=want, channel=channel,
                              done=(Path(done), len(clients)))
                 for i, host in enumerate(clients)]
        return [collect(proc, seconds + 30) for proc in procs]


class Coturn:
    """Debian's coturn on the "stun" host: STUN and TURN (REST credentials) on 198.51.100.20:3478."""

    def __init__(self, host: Host, work: Path) -> None:
        self.host = host
        self.log_path = work / "turnserver.log"
        self.proc = host.popen([
            TURNSERVER, "-n", f"--listening-ip={host.address}", f"--listening-port={STUN_PORT}",
            f"--relay-ip={host.address}", "--min-port=49160", "--max-port=49200", "--use-auth-secret",
            f"--static-auth-secret={TURN_SECRET}", "--realm=callsd.test", "--fingerprint", "--no-tls", "--no-dtls",
            "--no-cli", "--relay-threads=1", f"--log-file={self.log_path}", "--simple-log", "--no-stdout-log",
            f"--pidfile={work / 'turnserver.pid'}", f"--userdb={work / 'turndb'}",
        ], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self._wait_ready()

    def _wait_ready(self, timeout: float = 15) -> None:
        probe = ("import os,socket,struct;s=socket.socket(2,2);s.settimeout(0.3);"
                 "s.sendto(struct.pack('!HHI',1,0,0x2112A442)+os.urandom(12),"
                 f"({self.host.address!r},{STUN_PORT}));print(s.recv(100)[:2].hex())")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            proc = subprocess.run(self.host.exec_args(sys.executable, "-c", probe), capture_output=True, text=True)
            if proc.returncode == 0 and proc.stdout.strip() == "0101":
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.2)
        raise AssertionError(f"coturn did not answer STUN in {self.host.short}: "
                             f"{self.log_path.read_text(errors='replace') if self.log_path.exists() else ''}")

    @property
    def stun_url(self) -> str:
        return f"stun:{self.host.address}:{STUN_PORT}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
