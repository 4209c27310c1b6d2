"""A real ``MediaPlane`` whose peers are keyed directly on loopback sockets, and the timed drain: the rig of the
receive-step benches (``bench.forward_step``, ``bench.simulcast_step``).

No handshake and no receive loop: peer ``i`` gets the SRTP keys of :func:`step_keys` and a connected loopback socket
of its own, session ``s0`` publishes, and :func:`timed_drain` writes a publisher's packets into the SFU's socket a
chunk at a time and times ``ReceivePath.drain`` (the call the receive loop makes) with ``getrusage``, emptying the
receivers' sockets outside the timed part. One rig, so the two benches measure the same thing the same way.
"""

from __future__ import annotations

import os
import resource
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from callsd.adapters.media.dtls import Certificate, SrtpKeys
from callsd.adapters.media.plane import MediaPlane, PlaneConfig
from callsd.adapters.media.transport import PacketStamper

__all__ = ["PROFILE", "StepPlane", "DrainCost", "step_keys", "open_step_plane", "timed_drain", "best_of_rounds"]

PROFILE = b"SRTP_AEAD_AES_128_GCM"


def step_keys(i: int) -> tuple[SrtpKeys, SrtpKeys]:
    """Peer ``i``'s keys: the server's side first, the peer's (which protects what the peer sends) second."""
    a, b = bytes((i + k) % 256 for k in range(28)), bytes((i + 28 + k) % 256 for k in range(28))
    return SrtpKeys(profile=PROFILE, local_key=a, remote_key=b), SrtpKeys(profile=PROFILE, local_key=b, remote_key=a)


@dataclass(frozen=True, slots=True, kw_only=True)
class StepPlane:
    """The plane, the SFU's socket, and one socket per peer (``clients[0]`` is the publisher's)."""

    plane: MediaPlane
    sock: socket.socket
    clients: list[socket.socket]

    def close(self) -> None:
        for s in [self.sock, *self.clients]:
            s.close()


@dataclass(frozen=True, slots=True, kw_only=True)
class DrainCost:
    """CPU seconds spent in the drain (user: the path's own work; system: the kernel's) and packets forwarded."""

    user: float
    system: float
    egress: int

    def per_egress_us(self) -> dict[str, float | None]:
        """The per-egress-packet figures every step bench reports."""
        out = self.egress
        return {"user_us": self.user / out * 1e6 if out else None,
                "system_us": self.system / out * 1e6 if out else None,
                "us_per_egress_packet": (self.user + self.system) / out * 1e6 if out else None}


def _loopback_socket(rcvbuf: int) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.bind(("127.0.0.1", 0))
    s.setblocking(False)
    return s


def handed_up_address(plane: MediaPlane, sock: socket.socket, client: socket.socket) -> Any:
    """The address tuple the receive path hands ``UdpEndpoint.handle_datagram`` for a datagram from ``client``: in a
    server, ICE keys the address table with that very object (``_on_stun``), and the native step finds a known
    source's key by identity (its address memo hands up the same tuple each time). One garbage datagram from
    ``client`` (counted as malformed) is drained through the path to learn it."""
    ep = plane.endpoint
    seen: list[Any] = []
    ep.handle_datagram = lambda _data, addr, _arrival=None: seen.append(addr)  # type: ignore[method-assign,assignment]
    try:
        client.sendto(b"\xff" * 4, sock.getsockname())  # loopback: queued at the socket before sendto returns
        ep.path.drain(sock, 1)
        if not seen:
            raise RuntimeError("the path did not hand up the client's datagram")
        return seen[0]
    finally:
        del ep.handle_datagram


def open_step_plane(fast_path: str, receivers: int, cert: Certificate, *, rcvbuf: int,
                    twcc: Callable[[], PacketStamper] | None = None) -> StepPlane:
    """A plane on ``fast_path`` with sessions ``s0`` .. ``s<receivers>``, each peer keyed and connected; with
    ``twcc``, every receiver (not the publisher) stamps transport-wide sequence numbers with what it returns."""
    plane = MediaPlane(PlaneConfig(ice_port_udp=0, fast_path=fast_path), lambda _e: None)
    ep = plane.endpoint
    sock = _loopback_socket(rcvbuf)
    ep._sock = sock  # noqa: SLF001 - the bench stands in for serve()
    clients = []
    for i in range(receivers + 1):
        client = _loopback_socket(rcvbuf)
        clients.append(client)
        sid = f"s{i}"
        plane.open_session(sid, "bench")
        peer = ep.add_peer(sid, f"u{i}", "p" * 22, f"c{i}", "q" * 22, cert.fingerprint)
        peer.srtp = ep.path.srtp_context(step_keys(i)[0])
        peer._tx = peer.srtp.tx  # noqa: SLF001 - keyed directly, no handshake
        peer.address = client.getsockname()
        peer.connected = True
        ep._by_addr[handed_up_address(plane, sock, client)] = peer  # noqa: SLF001
        ep._handshaking.pop(sid, None)  # noqa: SLF001 - connected: the housekeeping tick no longer walks it
        plane.on_connected(peer)
        if twcc is not None and i:
            peer.twcc = twcc()
    return StepPlane(plane=plane, sock=sock, clients=clients)


def empty_clients(rig: StepPlane) -> int:
    """Read every peer socket of ``rig`` until it is empty; how many datagrams were waiting."""
    got = 0
    for c in rig.clients:
        while True:
            try:
                c.recv(4096)
            except BlockingIOError:
                break
            got += 1
    return got


def timed_drain(rig: StepPlane, wire: Sequence[bytes], chunk: int,
                before_chunk: Callable[[int], None] = lambda _start: None,
                senders: Sequence[int] | None = None) -> DrainCost:
    """Send ``wire`` from the publisher ``chunk`` packets at a time and drain each chunk through the endpoint's path,
    timed; ``before_chunk(start)`` runs before the chunk starting at ``start`` is drained (a bench's virtual clock).
    ``senders``: the index in ``clients`` of each packet's sender (default: every packet from ``clients[0]``)."""
    path = rig.plane.endpoint.path
    server = rig.sock.getsockname()
    user = system = 0.0
    out = 0
    for start in range(0, len(wire), chunk):
        for k in range(start, min(start + chunk, len(wire))):
            rig.clients[senders[k] if senders is not None else 0].sendto(wire[k], server)
        before_chunk(start)
        before = resource.getrusage(resource.RUSAGE_SELF)
        while path.drain(rig.sock, 256) >= 256:
            pass
        after = resource.getrusage(resource.RUSAGE_SELF)
        user += after.ru_utime - before.ru_utime
        system += after.ru_stime - before.ru_stime
        for c in rig.clients[1:]:
            while True:
                try:
                    c.recv(4096)
                except BlockingIOError:
                    break
                out += 1
    return DrainCost(user=user, system=system, egress=out)


def best_of_rounds(rows: list[dict[str, Any]], paths: Sequence[str], conditions: dict[str, Any],
                   load_start: tuple[float, float, float]) -> dict[str, Any]:
    """A step bench's result: every round, the best round of each path, native over Python on the best rounds,
    and the conditions of the run (the bench's own, the CPUs, the load average when it started and now)."""
    best = {p: min((r for r in rows if r["path"] == p), key=lambda r: r["us_per_egress_packet"]) for p in paths}
    return {"paths": best, "rounds": rows,
            "native_over_python": (best["native"]["us_per_egress_packet"] / best["python"]["us_per_egress_packet"]
                                   if {"native", "python"} <= best.keys() else None),
            "conditions": {**conditions, "cpus": os.cpu_count(), "load_average_start": load_start,
                           "load_average_end": os.getloadavg()}}
