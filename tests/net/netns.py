"""Network namespaces for the networking tests: hosts, a switched "public" segment, NAT routers, torn down on exit.

Theory of operation
-------------------
Each test run makes its own namespaces, named ``<tag>-<host>`` with a tag unique per process and run (several
engineers run the suite at once on one machine), so two runs never see each other. Nothing is created in the
machine's own namespace: the public segment is a Linux bridge inside a dedicated "switch" namespace, each host's
``eth0`` is one end of a veth pair whose other end is a port of that bridge, and a router's private side is a
second veth pair straight to the private host. Addresses are TEST-NET/private ranges that exist only inside these
namespaces (public 198.51.100.0/24, private 10.N.0.0/24); no host has a route out of the test topology.

NAT is Debian's nftables inside the router namespace: ``masquerade`` on the public interface (a home router), plus
optional ``dnat`` rules (a server behind a port forward). Because each router is its own namespace, its conntrack and
rule set are private to the test.

``Topology.close()`` deletes every namespace it made (killing what still runs in them); it is registered with
``atexit`` too, so a crashed test run does not leave namespaces behind. Anything that cannot be created raises
``NetnsError`` with the failing command and its stderr: these tests fail loudly, they never skip.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import secrets
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["NetnsError", "Host", "Topology", "PUBLIC_PREFIX"]

IP = shutil.which("ip") or "/usr/sbin/ip"
NFT = shutil.which("nft") or "/usr/sbin/nft"
PUBLIC_PREFIX = "198.51.100"  # TEST-NET-2 (RFC 5737): the "internet" of the topology
PUBLIC6_PREFIX = "2001:db8::"  # the IPv6 documentation prefix (RFC 3849), on the same segment


class NetnsError(RuntimeError):
    """A namespace, link, address or rule could not be made; the message has the command and its stderr."""


def run(args: Sequence[str], *, input_text: str | None = None, timeout: float = 20) -> str:
    """Run a command; its stdout, or NetnsError with the command line and stderr."""
    proc = subprocess.run(list(args), input=input_text, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise NetnsError(f"`{' '.join(args)}` failed ({proc.returncode}): {proc.stderr.strip() or proc.stdout.strip()}")
    return proc.stdout


@dataclass(slots=True)
class Host:
    """One namespace: a machine of the topology. ``address`` is its first IPv4 address (public or private)."""

    name: str  # the namespace name (unique per run)
    short: str  # the name the test uses ("server", "client1", ...)
    address: str = ""
    interfaces: list[str] = field(default_factory=list)

    def exec_args(self, *args: str) -> list[str]:
        """The argv that runs ``args`` inside this host's namespace."""
        return [IP, "netns", "exec", self.name, *args]

    def run(self, *args: str, input_text: str | None = None, timeout: float = 20) -> str:
        return run(self.exec_args(*args), input_text=input_text, timeout=timeout)

    def popen(self, args: Sequence[str], **kwargs: object) -> subprocess.Popen[bytes]:
        """Start a process inside the namespace (its own process group, so the test can kill it and its children)."""
        return subprocess.Popen(self.exec_args(*args), start_new_session=True, **kwargs)  # type: ignore[call-overload, no-any-return]

    def nft(self, ruleset: str) -> None:
        self.run(NFT, "-f", "-", input_text=ruleset)


class Topology:
    """A set of namespaces made by one test run. See the module docstring."""

    def __init__(self, tag: str | None = None) -> None:
        self.tag = tag or f"cn{os.getpid() % 100000}{secrets.token_hex(2)}"
        self.hosts: dict[str, Host] = {}
        self._switch: Host | None = None
        self._ports = 0
        self._closed = False
        self.etc_dirs: list[Path] = []
        atexit.register(self.close)

    # --- building ---------------------------------------------------------------------------------------------
    def _namespace(self, short: str) -> Host:
        if short in self.hosts:
            raise NetnsError(f"host {short!r} exists already")
        host = Host(name=f"{self.tag}-{short}", short=short)
        run([IP, "netns", "add", host.name])
        self.hosts[short] = host
        host.run(IP, "link", "set", "lo", "up")
        return host

    def isolated_host(self, short: str) -> Host:
        """A namespace with only its own loopback: a private machine for a test that runs everything in it."""
        return self._namespace(short)

    def _switch_ns(self) -> Host:
        if self._switch is None:
            self._switch = self._namespace("switch")
            self._switch.run(IP, "link", "add", "br0", "type", "bridge")
            self._switch.run(IP, "link", "set", "br0", "up")
        return self._switch

    def _plug(self, host: Host, ifname: str, address: str) -> None:
        """A veth from ``host`` (named ``ifname``, with ``address``/24) to a port of the public bridge."""
        switch = self._switch_ns()
        self._ports += 1
        port = f"p{self._ports}"
        switch.run(IP, "link", "add", port, "type", "veth", "peer", "name", ifname, "netns", host.name)
        switch.run(IP, "link", "set", port, "master", "br0", "up")
        host.run(IP, "addr", "add", f"{address}/24", "dev", ifname)
        host.run(IP, "link", "set", ifname, "up")
        host.interfaces.append(ifname)

    def public_host(self, short: str, last_octet: int) -> Host:
        """A host on the public segment at 198.51.100.<last_octet>, with no route beyond it."""
        host = self._namespace(short)
        host.address = f"{PUBLIC_PREFIX}.{last_octet}"
        self._plug(host, "eth0", host.address)
        return host

    def ipv6_host(self, short: str, address6: str) -> Host:
        """A host on the public segment with an IPv6 address only (an IPv6-only client network)."""
        host = self._namespace(short)
        host.address = address6
        switch = self._switch_ns()
        self._ports += 1
        port = f"p{self._ports}"
        switch.run(IP, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", host.name)
        switch.run(IP, "link", "set", port, "master", "br0", "up")
        host.run(IP, "link", "set", "eth0", "up")
        self.add_ipv6(host, address6)
        host.interfaces.append("eth0")
        return host

    @staticmethod
    def add_ipv6(host: Host, address6: str, ifname: str = "eth0") -> None:
        """Give ``host`` an IPv6 address on ``ifname`` (/64, usable at once: no duplicate address detection)."""
        host.run(IP, "-6", "addr", "add", f"{address6}/64", "dev", ifname, "nodad")

    def private_host(self, short: str, *, router: str, subnet: int, public_octet: int,
                     forwards: Sequence[tuple[str, int]] = ()) -> Host:
        """A host at 10.<subnet>.0.10 behind a NAT router ``router`` (public 198.51.100.<public_octet>, private
        10.<subnet>.0.1). The router masquerades what leaves through its public side and forwards each
        ``(protocol, port)`` of ``forwards`` arriving at its public address to the host (a port forward, DNAT)."""
        gw = self.public_host(router, public_octet)
        gw.run("sysctl", "-q", "-w", "net.ipv4.ip_forward=1")
        host = self._namespace(short)
        host.address = f"10.{subnet}.0.10"
        gw.run(IP, "link", "add", "eth1", "type", "veth", "peer", "name", "eth0", "netns", host.name)
        gw.run(IP, "addr", "add", f"10.{subnet}.0.1/24", "dev", "eth1")
        gw.run(IP, "link", "set", "eth1", "up")
        gw.interfaces.append("eth1")
        host.run(IP, "addr", "add", f"{host.address}/24", "dev", "eth0")
        host.run(IP, "link", "set", "eth0", "up")
        host.run(IP, "route", "add", "default", "via", f"10.{subnet}.0.1")
        host.interfaces.append("eth0")
        dnat = "\n".join(f'        iifname "eth0" {proto} dport {port} dnat to {host.address}'
                         for proto, port in forwards)
        gw.nft(
            "table ip nat {\n"
            "    chain prerouting {\n"
            "        type nat hook prerouting priority -100;\n"
            f"{dnat}\n"
            "    }\n"
            "    chain postrouting {\n"
            "        type nat hook postrouting priority 100;\n"
            '        oifname "eth0" masquerade\n'
            "    }\n"
            "}\n"
        )
        return host

    def hosts_file(self, host: Host, entries: dict[str, str]) -> None:
        """What names resolve to inside ``host``: ``ip netns exec`` bind-mounts /etc/netns/<ns>/hosts."""
        folder = Path("/etc/netns") / host.name
        folder.mkdir(parents=True, exist_ok=True)
        if folder not in self.etc_dirs:
            self.etc_dirs.append(folder)
        lines = ["127.0.0.1 localhost"] + [f"{address} {name}" for name, address in entries.items()]
        # rewritten in place: a process started earlier sees the file through its bind mount (same inode)
        with open(folder / "hosts", "w") as f:
            f.write("\n".join(lines) + "\n")

    # --- teardown ---------------------------------------------------------------------------------------------
    def close(self) -> None:
        """Kill what runs in the namespaces and delete them (idempotent)."""
        if self._closed:
            return
        self._closed = True
        for host in self.hosts.values():
            pids = subprocess.run([IP, "netns", "pids", host.name], capture_output=True, text=True).stdout.split()
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), 9)
            subprocess.run([IP, "netns", "del", host.name], capture_output=True)
        for folder in self.etc_dirs:
            shutil.rmtree(folder, ignore_errors=True)
        atexit.unregister(self.close)


