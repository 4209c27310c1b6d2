"""Two network namespaces joined by a veth pair: the server's and the load tool's.

Why: Janus (libnice) offers no loopback candidates, so a side-by-side run cannot use 127.0.0.1 the way
bench/capacity.py does. Both servers (Janus and callsd) run in the ``srv`` namespace on ``10.X.Y.1`` and the load
tool in the ``tool`` namespace on ``10.X.Y.2``, so both pay the same network path (a veth hop) and nothing is
added to the machine's own namespace. ``X.Y`` and the names are random per run: several engineers run benches
and tests on this machine at once.

The veth end in the server's namespace counts what the server sends (``tx_packets``, read through
``/proc/<pid>/net/dev`` of the server's process); a UDP GSO batch crosses it as one packet, so the bench uses it
as a cross-check only.
"""

from __future__ import annotations

import atexit
import contextlib
import secrets
import shutil
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["NetnsError", "Pair", "interface_counters", "listening", "softnet_drops", "udp_counters"]

IP = shutil.which("ip") or "/usr/sbin/ip"


class NetnsError(RuntimeError):
    """A namespace or link could not be made; the message names the command and its stderr."""


def _run(args: Sequence[str]) -> str:
    proc = subprocess.run(list(args), capture_output=True, text=True, timeout=20)
    if proc.returncode != 0:
        raise NetnsError(f"`{' '.join(args)}` failed ({proc.returncode}): {proc.stderr.strip() or proc.stdout.strip()}")
    return proc.stdout


@dataclass(frozen=True, slots=True)
class Pair:
    """The two namespaces of one run. ``server_address`` lives on ``server_interface`` in ``server_ns``."""

    server_ns: str
    tool_ns: str
    server_interface: str
    server_address: str
    tool_address: str

    @classmethod
    def create(cls) -> Pair:
        """Make both namespaces, the veth pair and the addresses; deleted by `close` (also at exit)."""
        tag = secrets.token_hex(3)
        octets = secrets.token_bytes(2)
        net = f"10.{200 + octets[0] % 50}.{octets[1]}"
        pair = cls(server_ns=f"pr-{tag}-srv", tool_ns=f"pr-{tag}-tool", server_interface=f"vs{tag}",
                   server_address=f"{net}.1", tool_address=f"{net}.2")
        atexit.register(pair.close)
        try:
            for ns in (pair.server_ns, pair.tool_ns):
                _run([IP, "netns", "add", ns])
                _run([IP, "-n", ns, "link", "set", "lo", "up"])
            tool_if = f"vt{tag}"
            _run([IP, "link", "add", pair.server_interface, "netns", pair.server_ns, "type", "veth", "peer", "name",
                  tool_if, "netns", pair.tool_ns])
            for ns, ifname, address in ((pair.server_ns, pair.server_interface, pair.server_address),
                                        (pair.tool_ns, tool_if, pair.tool_address)):
                _run([IP, "-n", ns, "addr", "add", f"{address}/30", "dev", ifname])
                _run([IP, "-n", ns, "link", "set", ifname, "up"])
        except BaseException:
            pair.close()
            raise
        return pair

    def server_args(self, *args: str) -> list[str]:
        """argv that runs ``args`` in the server's namespace (``ip netns exec`` execs: the pid is the program's)."""
        return [IP, "netns", "exec", self.server_ns, *args]

    def tool_args(self, *args: str) -> list[str]:
        return [IP, "netns", "exec", self.tool_ns, *args]

    def close(self) -> None:
        """Delete both namespaces (the veth pair goes with them). Idempotent."""
        for ns in (self.server_ns, self.tool_ns):
            if Path(f"/run/netns/{ns}").exists():
                with contextlib.suppress(subprocess.SubprocessError, OSError):
                    subprocess.run([IP, "netns", "del", ns], capture_output=True, timeout=20, check=False)


def interface_counters(pid: int, interface: str) -> dict[str, int]:
    """``rx_packets``, ``tx_packets``, ``rx_dropped``, ``tx_dropped`` of ``interface`` in ``pid``'s namespace."""
    for line in Path(f"/proc/{pid}/net/dev").read_text().splitlines()[2:]:
        name, _, rest = line.partition(":")
        if name.strip() == interface:
            fields = [int(x) for x in rest.split()]
            return {"rx_packets": fields[1], "rx_dropped": fields[3], "tx_packets": fields[9],
                    "tx_dropped": fields[11]}
    raise NetnsError(f"no interface {interface!r} in the namespace of pid {pid}")


def udp_counters(where: int | str) -> dict[str, int]:
    """The UDP counters of a namespace (``/proc/net/snmp``), given a pid living in it or the namespace's name:
    ``RcvbufErrors`` are receive-buffer drops at that namespace's sockets, ``SndbufErrors`` sends refused for a
    full buffer."""
    if isinstance(where, int):
        text = Path(f"/proc/{where}/net/snmp").read_text()
    else:
        text = _run([IP, "netns", "exec", where, "cat", "/proc/net/snmp"])
    lines = [ln.split() for ln in text.splitlines() if ln.startswith("Udp:")]
    names, values = lines[0][1:], lines[1][1:]
    return {name: int(value) for name, value in zip(names, values, strict=True)}

def listening(pid: int, port: int) -> bool:
    """Whether a TCP socket listens on ``port`` in ``pid``'s namespace (``/proc/<pid>/net/tcp`` and ``tcp6``: some
    servers listen on a dual-stack socket). False once the process is gone."""
    rows: list[str] = []
    for table in ("tcp", "tcp6"):
        try:
            rows += Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
        except OSError:
            return False
    return any(r.split()[1].endswith(f":{port:04X}") and r.split()[3] == "0A" for r in rows)


class ServerProcess:
    """What the bench needs of a server it started (Janus or ``callsd serve``): wait until it listens, read its
    log, stop it (SIGTERM, then SIGKILL after ``stop_grace`` seconds). A subclass starts ``proc`` writing
    ``log_path``."""

    stop_grace = 10.0

    def __init__(self, log_path: Path) -> None:
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = log_path

    @property
    def pid(self) -> int:
        """The server's own process (``ip netns exec`` and ``taskset`` exec it): the one whose CPU is measured."""
        assert self.proc is not None
        return self.proc.pid

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def wait_listening(self, name: str, port: int, seconds: float, error: type[Exception]) -> None:
        """Return once ``proc`` listens on ``port``; raise ``error`` with the log's tail if it exits or takes longer
        than ``seconds`` (then it is stopped)."""
        assert self.proc is not None
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise error(f"{name} exited ({self.proc.returncode}): {self.log_tail()}")
            if listening(self.proc.pid, port):
                return
            time.sleep(0.1)
        self.stop()
        raise error(f"{name} did not listen on port {port} in {seconds:g} s: {self.log_tail()}")

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=self.stop_grace)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def softnet_drops() -> int:
    """Packets the kernel dropped because a CPU's input backlog was full (``/proc/net/softnet_stat``, second
    column, all CPUs). A veth hands each packet to that backlog; when the softirq that drains it is starved (a
    saturated machine), packets are lost there, counted neither at a socket nor at the interface. Machine-wide."""
    total = 0
    for line in Path("/proc/net/softnet_stat").read_text().splitlines():
        fields = line.split()
        if len(fields) > 1:
            total += int(fields[1], 16)
    return total
