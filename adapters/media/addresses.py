"""Which addresses the RTC port advertises in its ICE candidates, and why: never one a client cannot use.

Theory of operation
-------------------
The server is ICE-lite: clients learn where to send media only from the host candidates in the server's SDP. A
wrong candidate fails silently (every client's ICE times out after a minute), so the choice is made in one pure
function, ``plan_advertised``, from everything that bears on it, and the result carries a sentence saying why;
start-up logs it, ``callsd config check`` prints it and ``/healthz`` reports it.

In order of precedence:

1. ``rtc.ice_host_override`` set:
   - an IP: advertise it;
   - a host name: advertise what it resolves to (IPv4 first), re-resolved periodically; a name that does not
     resolve falls through to the rules below, with a warning;
   - mappings ``"PUBLIC/LOCAL,PUBLIC2/LOCAL2"``: advertise PUBLIC for each LOCAL that is an address of this host
     (the bound address, or any interface address when bound to the wildcard); one candidate per mapping.
2. The STUN-discovered public address (``stun_discovery.py``), when the override is empty and a STUN server is
   configured and answered.
3. A specific bind address (``rtc.ice_address_udp``): advertise it.
4. A wildcard bind (``0.0.0.0``/``::``): advertise every non-loopback interface address of the host (loopback only if
   there is nothing else, with a warning). ``0.0.0.0`` itself is never advertised.

The port is ``rtc.ice_host_port_override`` or the bound port. ``interface_addresses()`` reads the host's IPv4
addresses with the SIOCGIFCONF ioctl (every address of every interface that is up, secondaries included) and IPv6
ones from /proc/net/if_inet6; nothing else in this module touches the system, so the rules are unit-tested with
plain lists.
"""

from __future__ import annotations

import array
import fcntl
import ipaddress
import socket
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "HostMapping",
    "HostOverride",
    "Advertised",
    "parse_host_override",
    "plan_advertised",
    "interface_addresses",
    "resolve_host",
    "display_address",
]

_SIOCGIFCONF = 0x8912
_IFREQ_SIZE = 40  # struct ifreq on 64-bit Linux: 16-byte name + 24-byte union


@dataclass(frozen=True, slots=True, kw_only=True)
class HostMapping:
    """Advertise ``public`` for the local interface address ``local`` (a 1:1 NAT, a cloud VM's public IP)."""

    public: str
    local: str


@dataclass(frozen=True, slots=True, kw_only=True)
class HostOverride:
    """``rtc.ice_host_override`` parsed: empty, one IP, one host name, or mappings (exactly one is set)."""

    ip: str = ""
    hostname: str = ""
    mappings: tuple[HostMapping, ...] = ()

    @property
    def empty(self) -> bool:
        return not (self.ip or self.hostname or self.mappings)


@dataclass(frozen=True, slots=True, kw_only=True)
class Advertised:
    """What the RTC port advertises: ``addresses`` (first one also goes in ``c=``), ``port``, and why."""

    addresses: tuple[str, ...]
    port: int
    source: str  # override_ip, override_hostname, override_mappings, stun, bind, interfaces, loopback_only
    reason: str  # a sentence for operators
    warnings: tuple[str, ...] = field(default=())

    def describe(self) -> str:
        """``198.51.100.3:8443 (why)``: the line start-up logs and ``config check`` prints."""
        listed = ", ".join(_hostport(a, self.port) for a in self.addresses)
        return f"{listed} ({self.reason})"

    def as_json(self) -> dict[str, object]:
        return {"addresses": list(self.addresses), "port": self.port, "source": self.source, "reason": self.reason,
                "warnings": list(self.warnings)}


def _hostport(address: str, port: int) -> str:
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def display_address(addr: object) -> str:
    """A socket address for logs: ``198.51.100.2:40312`` (IPv4-mapped IPv6 shown as IPv4), ``[2001:db8::30]:5000``."""
    if isinstance(addr, tuple) and len(addr) >= 2:
        host = str(addr[0])
        if host.startswith("::ffff:") and "." in host:
            host = host[7:]
        return _hostport(host, int(addr[1]))
    return str(addr)


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _unspecified(text: str) -> bool:
    return ipaddress.ip_address(text).is_unspecified


def parse_host_override(text: str) -> HostOverride:
    """Parse ``rtc.ice_host_override``; ValueError with a sentence an operator can act on."""
    value = text.strip()
    if not value:
        return HostOverride()
    if "/" in value or "," in value:
        mappings = []
        for i, item in enumerate(part.strip() for part in value.split(",")):
            public, sep, local = item.partition("/")
            public, local = public.strip(), local.strip()
            if not sep or not _is_ip(public) or not _is_ip(local):
                raise ValueError(f"mapping {i + 1} must be PUBLIC_IP/LOCAL_IP, got {item!r}")
            if _unspecified(public):
                raise ValueError(f"mapping {i + 1}: {public} cannot be advertised (clients cannot send to it)")
            mappings.append(HostMapping(public=public, local=local))
        locals_ = [m.local for m in mappings]
        if len(set(locals_)) != len(locals_):
            raise ValueError("each LOCAL address may appear in one mapping only")
        return HostOverride(mappings=tuple(mappings))
    if _is_ip(value):
        if _unspecified(value):
            raise ValueError(f"{value} cannot be advertised (clients cannot send to it); leave it empty instead")
        return HostOverride(ip=value)
    labels = value.rstrip(".").split(".")
    if len(value) > 253 or not all(0 < len(label) <= 63 and label.replace("-", "").isalnum()
                                   and not label.startswith("-") and not label.endswith("-") for label in labels):
        raise ValueError(f"must be an IP address, a host name or PUBLIC/LOCAL mappings, got {text!r}")
    return HostOverride(hostname=value)


def resolve_host(name: str) -> list[str]:
    """The addresses ``name`` resolves to, IPv4 first, without duplicates; [] when it does not resolve."""
    try:
        infos = socket.getaddrinfo(name, None, type=socket.SOCK_DGRAM)
    except (OSError, UnicodeError):
        return []
    found: list[str] = []
    for family in (socket.AF_INET, socket.AF_INET6):
        for info in infos:
            address = str(info[4][0])
            if info[0] == family and address not in found:
                found.append(address)
    return found


def plan_advertised(*, bind: str, port: int, override: HostOverride, port_override: int = 0,
                    interfaces: Sequence[str] = (), resolve: Callable[[str], list[str]] = resolve_host,
                    discovered: str | None = None, discovered_via: str = "", dual_stack: bool = False) -> Advertised:
    """The addresses to advertise and why (rules in the module docstring). ``interfaces``: the host's addresses;
    ``discovered``: the public address a STUN server reported (``discovered_via`` names it); ``dual_stack``: the
    socket is bound to ``::`` and takes IPv4 too (``rtc.enable_ipv6``), so addresses of both families count, IPv4
    first."""
    advertised_port = port_override or port
    warnings: list[str] = []
    wildcard = _unspecified(bind)
    family_v6 = ":" in bind
    if wildcard and dual_stack:
        own = [a for a in interfaces if ":" not in a] + [a for a in interfaces if ":" in a]
    else:
        own = [a for a in interfaces if (":" in a) == family_v6] if wildcard else [bind]
    global_v6 = [a for a in own if ":" in a and ipaddress.ip_address(a).is_global] if dual_stack else []

    def made(addresses: Sequence[str], source: str, reason: str) -> Advertised:
        return Advertised(addresses=tuple(addresses), port=advertised_port, source=source, reason=reason,
                          warnings=tuple(warnings))

    if override.ip:
        return made([override.ip], "override_ip", "rtc.ice_host_override")
    if override.hostname:
        resolved = resolve(override.hostname)
        if resolved:
            return made(resolved[:1], "override_hostname",
                        f"rtc.ice_host_override {override.hostname} resolves to {resolved[0]}")
        warnings.append(f"rtc.ice_host_override {override.hostname!r} does not resolve: advertising the "
                        "addresses below instead until it does")
    if override.mappings:
        matched = [m for m in override.mappings if m.local in own]
        for m in override.mappings:
            if m not in matched:
                warnings.append(f"rtc.ice_host_override mapping {m.public}/{m.local}: {m.local} is not an address "
                                f"of this host ({', '.join(own) or 'none'}); skipped")
        if matched:
            pairs = ", ".join(f"{m.public} for {m.local}" for m in matched)
            return made([m.public for m in matched], "override_mappings", f"rtc.ice_host_override mappings: {pairs}")
        warnings.append("no rtc.ice_host_override mapping matches an address of this host")
    if discovered:
        extra = [a for a in global_v6 if a != discovered]  # IPv6 is seldom NATed: keep global ones reachable
        return made([discovered, *extra], "stun", f"public address discovered through {discovered_via}"
                    + (" (and the global IPv6 addresses)" if extra else ""))
    if not wildcard:
        return made([bind], "bind", "rtc.ice_address_udp")
    usable = [a for a in own if not ipaddress.ip_address(a).is_loopback and not ipaddress.ip_address(a).is_link_local]
    if usable:
        return made(usable, "interfaces", f"every interface address: rtc.ice_address_udp is {bind}"
                    f"{' (dual-stack, rtc.enable_ipv6)' if dual_stack else ''} and nothing overrides it")
    loopback = [a for a in own if ipaddress.ip_address(a).is_loopback] or ["::1" if family_v6 else "127.0.0.1"]
    warnings.append(f"rtc.ice_address_udp is {bind} but this host has no non-loopback address: only clients on "
                    "this machine can reach the advertised loopback address")
    return made(loopback[:1], "loopback_only", "the host has loopback addresses only")


def interface_addresses() -> list[str]:
    """Every address of every interface that is up: IPv4 (SIOCGIFCONF) then IPv6 (/proc/net/if_inet6)."""
    return _ipv4_addresses() + _ipv6_addresses()


def _ipv4_addresses() -> list[str]:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        size = 64
        while True:
            buf = array.array("B", bytes(size * _IFREQ_SIZE))
            address, _ = buf.buffer_info()
            ifconf = struct.pack("iL", size * _IFREQ_SIZE, address)
            used = struct.unpack("iL", fcntl.ioctl(sock.fileno(), _SIOCGIFCONF, ifconf))[0]
            if used < size * _IFREQ_SIZE or size >= 4096:
                break
            size *= 4
    raw = buf.tobytes()
    found: list[str] = []
    for offset in range(0, used, _IFREQ_SIZE):
        ip = socket.inet_ntoa(raw[offset + 20:offset + 24])  # sockaddr_in.sin_addr after the 16-byte name
        if ip not in found:
            found.append(ip)
    return found


def _ipv6_addresses(path: Path = Path("/proc/net/if_inet6")) -> list[str]:
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return []
    found = []
    for line in lines:
        fields = line.split()
        if len(fields) >= 6:
            found.append(str(ipaddress.IPv6Address(bytes.fromhex(fields[0]))))
    return found
