"""Bounded bad traffic for soak runs: malformed UDP and bad STUN at the RTC port, abusive WebSocket clients at the
HTTP port. Loopback targets only; every generator is rate-limited and stops when told.

    traffic = HostileTraffic(rtc=("127.0.0.1", 40000), http=("127.0.0.1", 8080), udp_rate=200, ws_rate=1.0)
    thread = traffic.start()        # a daemon thread
    ...
    traffic.stop(); thread.join()
    traffic.sent                    # {"udp_garbage": n, "stun_unknown_user": n, "stun_bad_integrity": n, "ws_...": n}

The WebSocket abuse is deliberately modest (one connection at a time, at most 64 KiB actually sent per frame): it
exercises the size limit, garbage frames and half-finished handshakes without reproducing the 48 MB-frame crash of
issue 8 item 0, which has its own test.
"""

from __future__ import annotations

import base64
import contextlib
import ipaddress
import os
import random
import socket
import struct
import threading
import time

from callsd.adapters.media.ice import client_binding_request

__all__ = ["HostileTraffic", "WS_KINDS"]

# oversized: a frame announcing 4 MiB (over the 1 MiB limit), 64 KiB of it sent; garbage: an upgraded socket that
# sends bytes that are no valid frame; http: bytes that are no HTTP request.
WS_KINDS = ("oversized", "garbage", "http")


def _loopback(addr: tuple[str, int]) -> tuple[str, int]:
    if not ipaddress.ip_address(addr[0]).is_loopback:
        raise ValueError(f"hostile traffic goes to loopback only, not {addr[0]}")
    return addr


def _masked_frame_header(opcode: int, length: int, mask: bytes) -> bytes:
    """A client frame header (FIN set, masked) announcing `length` bytes of payload (RFC 6455 §5.2)."""
    if length < 126:
        return bytes([0x80 | opcode, 0x80 | length]) + mask
    if length < 1 << 16:
        return bytes([0x80 | opcode, 0x80 | 126]) + struct.pack("!H", length) + mask
    return bytes([0x80 | opcode, 0x80 | 127]) + struct.pack("!Q", length) + mask


class HostileTraffic:
    def __init__(self, *, rtc: tuple[str, int], http: tuple[str, int], udp_rate: float = 200.0,
                 ws_rate: float = 1.0, ws_kinds: tuple[str, ...] = WS_KINDS, seed: int = 8) -> None:
        unknown = set(ws_kinds) - set(WS_KINDS)
        if unknown or not ws_kinds:
            raise ValueError(f"ws_kinds must be some of {WS_KINDS}, not {ws_kinds}")
        self.ws_kinds = ws_kinds
        self.rtc = _loopback(rtc)
        self.http = _loopback(http)
        self.udp_rate = udp_rate
        self.ws_rate = ws_rate
        self.sent: dict[str, int] = {"udp_garbage": 0, "stun_unknown_user": 0, "stun_bad_integrity": 0,
                                     "ws_oversized": 0, "ws_garbage": 0, "http_garbage": 0, "ws_errors": 0}
        self._stop = threading.Event()
        self._rng = random.Random(seed)

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self.run, name="hostile-traffic", daemon=True)
        thread.start()
        return thread

    def stop(self) -> None:
        self._stop.set()

    def run(self) -> None:
        """Interleave the generators on one thread: UDP every 1/udp_rate s, one WebSocket abuse every 1/ws_rate s."""
        sources = []
        for i in range(4):  # a few source addresses, as a sprayer would use
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.bind((f"127.0.0.{20 + i}", 0))
            sources.append(sock)
        udp_every = 1.0 / self.udp_rate if self.udp_rate > 0 else float("inf")
        ws_every = 1.0 / self.ws_rate if self.ws_rate > 0 else float("inf")
        next_udp = next_ws = time.monotonic()
        kinds = [{"oversized": "ws_oversized", "garbage": "ws_garbage", "http": "http_garbage"}[k]
                 for k in self.ws_kinds]
        n = 0
        try:
            while not self._stop.is_set():
                now = time.monotonic()
                if now >= next_udp:
                    next_udp += udp_every
                    self._udp_one(sources[n % len(sources)], n)
                    n += 1
                if now >= next_ws:
                    next_ws += ws_every
                    self._ws_one(kinds[int(now / ws_every) % len(kinds)])
                self._stop.wait(max(0.0, min(next_udp, next_ws) - time.monotonic()))
        finally:
            for sock in sources:
                sock.close()

    def _udp_one(self, sock: socket.socket, n: int) -> None:
        rng = self._rng
        kind = n % 3
        if kind == 0:
            data = bytes([rng.choice([0, 1, 22, 128, 200, 255])]) + rng.randbytes(rng.randrange(0, 400))
            name = "udp_garbage"
        elif kind == 1:
            data, _ = client_binding_request(server_ufrag=rng.randbytes(4).hex(), client_ufrag="x",
                                             server_pwd="guess" * 5)
            name = "stun_unknown_user"
        else:
            # A well-formed request for a ufrag that does not exist with a wrong key; the server cannot tell
            # it from a bad-integrity attempt on a real one without knowing the ufrag (cheap refusal either way).
            data, _ = client_binding_request(server_ufrag="ab" * 4, client_ufrag="y", server_pwd="wrong" * 5)
            name = "stun_bad_integrity"
        try:
            sock.sendto(data, self.rtc)
            self.sent[name] += 1
        except OSError:
            pass

    def _ws_one(self, kind: str) -> None:
        try:
            with socket.create_connection(self.http, timeout=3) as sock:
                if kind == "http_garbage":
                    sock.sendall(self._rng.randbytes(2048) + b"\r\n\r\n")
                else:
                    if not self._upgrade(sock):
                        self.sent["ws_errors"] += 1
                        return
                    mask = os.urandom(4)
                    if kind == "ws_oversized":  # announce 4 MiB, send 64 KiB of it, then go away
                        sock.sendall(_masked_frame_header(0x1, 4 << 20, mask) + bytes(64 * 1024))
                    else:  # frames with reserved opcodes, RSV bits and lengths that lie
                        sock.sendall(bytes([0x7F, 0xFF]) + self._rng.randbytes(4096))
                sock.settimeout(1.0)
                with contextlib.suppress(OSError):
                    sock.recv(4096)
                self.sent[kind] += 1
        except OSError:
            self.sent["ws_errors"] += 1

    def _upgrade(self, sock: socket.socket) -> bool:
        key = base64.b64encode(os.urandom(16)).decode()
        host = f"{self.http[0]}:{self.http[1]}"
        sock.sendall((f"GET /api/v1/websocket HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
                      f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n")
                     .encode())
        head = b""
        while b"\r\n\r\n" not in head and len(head) < 8192:
            chunk = sock.recv(4096)
            if not chunk:
                return False
            head += chunk
        return head.startswith(b"HTTP/1.1 101")
