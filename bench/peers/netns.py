"""Two network namespaces joined by a veth pair: the server's and the load tool's.

Why: Janus (libnice) offers no loopback candidates, so a side-by-side run cannot use 127.0.0.1 the way
bench/capacity.py does. Both servers (Janus and callsd) run in the ``srv`` namespace on ``10.X.Y.1`` and the load
tool in the ``tool`` namespace on ``10.X.Y.2``, so both pay the same network path (a veth hop) and nothing is
added to the machine's own namespace. ``X.Y`` and the names are random per run: several engineers run benches
and tests on this machine at once.

The veth end in the server's namespace counts what the server sends (``tx_packets``, read through
``/proc/<pid>/net/dev`` of the server's process); a UDP GSO batch crosses it as one packet, so the bench uses it
as a cross-check only.

Receive steering (`Pair.steer`, docs/adr/0049): a datagram sent into a veth is, by default, received (IP, UDP, the
socket's queue) in the sender's own system call, on the sender's CPU, as on loopback: the sender's CPU time then
holds the receiver's receive path, which on two hosts the receiving machine pays. ``"napi"`` steering gives each
end the receive side of a real network card: NAPI mode, a kernel thread per end pinned to that side's CPU at
real-time priority (as a softirq pre-empts a process), and interrupt moderation, so a sender pays its send path and
a wake-up now and then, not a cross-CPU interrupt per packet; the threads' CPU time is each side's receive work.
``"rps"`` (Receive Packet Steering) also moves the receive to the other CPU, but the sender then raises an
inter-processor interrupt per packet, which on this virtual machine is a write to an MSR that exits to the
hypervisor: a cost no real network charges the sender. ``"backlog"`` leaves the kernel's default.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import secrets
import shutil
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["STEERINGS", "NetnsError", "Pair", "ReceiveThreads", "cpu_ns", "entered", "interface_counters",
           "listening", "softnet_drops", "udp_counters"]

IP = shutil.which("ip") or "/usr/sbin/ip"
ETHTOOL = shutil.which("ethtool") or "/usr/sbin/ethtool"
TC = shutil.which("tc") or "/usr/sbin/tc"
TX_QUEUE = 1000  # packets: a host's default txqueuelen
STEERINGS = ("backlog", "rps", "napi")
# "napi" steering's interrupt moderation: an idle end's thread polls again after this many ns, this many times,
# before it waits for a wake-up (`gro_flush_timeout`, `napi_defer_hard_irqs`): a network card's coalescing, tens
# of microseconds. Without it the thread sleeps after every packet and every send wakes it across CPUs.
MODERATION_NS = 50_000
MODERATION_POLLS = 2
RECEIVE_PRIORITY = 50  # SCHED_FIFO: the receive threads pre-empt the processes of their CPU, as softirqs do


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
    tool_interface: str

    @classmethod
    def create(cls) -> Pair:
        """Make both namespaces, the veth pair and the addresses; deleted by `close` (also at exit)."""
        tag = secrets.token_hex(3)
        octets = secrets.token_bytes(2)
        net = f"10.{200 + octets[0] % 50}.{octets[1]}"
        pair = cls(server_ns=f"pr-{tag}-srv", tool_ns=f"pr-{tag}-tool", server_interface=f"vs{tag}",
                   server_address=f"{net}.1", tool_address=f"{net}.2", tool_interface=f"vt{tag}")
        atexit.register(pair.close)
        try:
            for ns in (pair.server_ns, pair.tool_ns):
                _run([IP, "netns", "add", ns])
                _run([IP, "-n", ns, "link", "set", "lo", "up"])
            _run([IP, "link", "add", pair.server_interface, "netns", pair.server_ns, "type", "veth", "peer", "name",
                  pair.tool_interface, "netns", pair.tool_ns])
            for ns, ifname, address in ((pair.server_ns, pair.server_interface, pair.server_address),
                                        (pair.tool_ns, pair.tool_interface, pair.tool_address)):
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

    def steer(self, steering: str, *, server_cpu: int = 0, tool_cpu: int = 1) -> ReceiveThreads:
        """Where each end's receive path runs (one of STEERINGS, see the module's docstring): the server's end on
        ``server_cpu``, the tool's on ``tool_cpu``. Returns the "napi" threads (none for the others); raises
        `NetnsError` if the kernel refuses a setting, so a run never measures a topology it did not get."""
        ends = ((self.server_ns, self.server_interface, server_cpu), (self.tool_ns, self.tool_interface, tool_cpu))
        if steering == "backlog":
            return ReceiveThreads(server=(), tool=())
        if steering == "rps":
            for ns, ifname, cpu in ends:
                self._write_sys(ns, f"/sys/class/net/{ifname}/queues/rx-0/rps_cpus", f"{1 << cpu:x}")
            return ReceiveThreads(server=(), tool=())
        if steering != "napi":
            raise NetnsError(f"unknown receive steering {steering!r}: one of {', '.join(STEERINGS)}")
        threads: list[tuple[int, ...]] = []
        for ns, ifname, cpu in ends:
            # veth takes the NAPI path only with GRO on, and for a socket's UDP only if the receiving end forwards
            # UDP GRO (veth_skb_is_eligible_for_gro); neither merges datagrams bound for ordinary sockets. And a
            # sender segments its own UDP GSO batches, as on a card without UDP segmentation offload (most; a veth
            # would pass the batch whole and leave the segmentation to the receiver's CPU)
            _run([IP, "netns", "exec", ns, ETHTOOL, "-K", ifname, "gro", "on", "rx-udp-gro-forwarding", "on",
                  "tx-udp-segmentation", "off"])
            # a queue in front of the 256-entry veth ring, as a host has in front of its card's: a full ring then
            # stops the queue (the kernel's veth backpressure, 6.17+) where without one it drops the packet
            _run([IP, "netns", "exec", ns, TC, "qdisc", "replace", "dev", ifname, "root", "pfifo", "limit",
                  str(TX_QUEUE)])
            self._write_sys(ns, f"/sys/class/net/{ifname}/threaded", "1")
            self._write_sys(ns, f"/sys/class/net/{ifname}/napi_defer_hard_irqs", str(MODERATION_POLLS))
            self._write_sys(ns, f"/sys/class/net/{ifname}/gro_flush_timeout", str(MODERATION_NS))
            pids = _napi_threads(ifname)
            if not pids:
                raise NetnsError(f"no NAPI thread for {ifname} in {ns}: threaded NAPI not honoured by this kernel")
            for pid in pids:
                os.sched_setaffinity(pid, {cpu})
                os.sched_setscheduler(pid, os.SCHED_FIFO, os.sched_param(RECEIVE_PRIORITY))
            threads.append(pids)
        return ReceiveThreads(server=threads[0], tool=threads[1])

    def route_to_tool(self, network: str) -> None:
        """Every address of ``network`` (a CIDR) belongs to the tool's namespace: routed there from the server's,
        and local in the tool's (a wildcard socket receives for all of them), so a forwarder can send each
        receiver's copy to an address of its own, as the load tool's users have."""
        _run([IP, "-n", self.server_ns, "route", "add", network, "via", self.tool_address])
        _run([IP, "-n", self.tool_ns, "route", "add", "local", network, "dev", "lo"])

    @staticmethod
    def _write_sys(ns: str, path: str, value: str) -> None:
        """Write a /sys file as the namespace sees it (`ip netns exec` mounts the namespace's own /sys)."""
        _run([IP, "netns", "exec", ns, "sh", "-c", f"echo {value} > {path}"])

    def close(self) -> None:
        """Delete both namespaces (the veth pair goes with them). Idempotent."""
        for ns in (self.server_ns, self.tool_ns):
            if Path(f"/run/netns/{ns}").exists():
                with contextlib.suppress(subprocess.SubprocessError, OSError):
                    subprocess.run([IP, "netns", "del", ns], capture_output=True, timeout=20, check=False)


@dataclass(frozen=True, slots=True)
class ReceiveThreads:
    """The kernel threads that receive for each end under "napi" steering: their CPU time is that side's receive
    path (IP, UDP, the socket's queue), counted apart from its processes'."""

    server: tuple[int, ...]
    tool: tuple[int, ...]


CLONE_NEWNET = 0x40000000


@contextlib.contextmanager
def entered(namespace: str) -> Iterator[None]:
    """The calling thread inside network namespace ``namespace`` for the block, back in its own after: a bench in
    the machine's namespace reads a server's /metrics this way (a socket keeps the namespace it was made in).
    A network namespace belongs to a thread, so other threads of the process are not moved."""
    libc = ctypes.CDLL(None, use_errno=True)
    with open(f"/run/netns/{namespace}") as target, open("/proc/thread-self/ns/net") as home:
        if libc.setns(target.fileno(), CLONE_NEWNET) != 0:
            raise NetnsError(f"setns into {namespace}: {os.strerror(ctypes.get_errno())}")
        try:
            yield
        finally:
            if libc.setns(home.fileno(), CLONE_NEWNET) != 0:
                raise NetnsError(f"setns back from {namespace}: {os.strerror(ctypes.get_errno())}")


def _napi_threads(interface: str) -> tuple[int, ...]:
    """The pids of ``interface``'s NAPI threads (named ``napi/<interface>-<id>``, cut to 15 characters)."""
    prefix = f"napi/{interface}-"[:15]
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if (entry / "comm").read_text().strip().startswith(prefix):
                    found.append(int(entry.name))
    return tuple(sorted(found))


def cpu_ns(pids: Sequence[int]) -> int:
    """Nanoseconds on CPU of ``pids`` so far (``/proc/<pid>/schedstat``: exact, where /proc/<pid>/stat counts 10 ms
    ticks); a pid that is gone counts 0."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError, ValueError, IndexError):
            total += int(Path(f"/proc/{pid}/schedstat").read_text().split()[0])
    return total


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
