"""A minimal ICE-controlling + DTLS + SRTP client of the RTC port, for tests, benches and the load tool.

It is not a browser: one host candidate, no gathering, no SDP. The caller exchanges credentials out of band (the
test or bench plays signaling): the client needs the server's ufrag, password and fingerprint; the server needs the
client's ufrag, password and `fingerprint`.

    client = MediaClient(("127.0.0.1", port), server_ufrag="s1", server_pwd="...", server_fingerprint=fp)
    endpoint.add_peer("sess", "s1", "...", client.ufrag, client.pwd, client.fingerprint)
    await client.connect()                         # binding request with USE-CANDIDATE, then DTLS as client
    client.send_rtp(plain) / client.send_rtcp(plain) / client.send_raw(datagram)
    packets = await client.receive(n, timeout=2)   # [("rtp" | "rtcp", plain bytes), ...]
    client.poll()                                  # the same, non-blocking, whatever has arrived
    client.close()

The socket is a plain non-blocking stdlib socket: after `connect` the send side needs no event loop, so a bench
process can blast packets at plain-socket speed.
"""

from __future__ import annotations

import os
import socket
from typing import Any

import trio

from .dtls import Certificate, DtlsError, DtlsSession
from .ice import StunRejected, check_binding_response, client_binding_request
from .srtp import SrtpContext
from .udp import CLASSIFY, KIND_DTLS, KIND_RTP, KIND_STUN

__all__ = ["MediaClient", "ClientError"]


class ClientError(Exception):
    """The client could not connect (timeout, DTLS failure)."""


class MediaClient:
    def __init__(self, server: tuple[str, int], *, server_ufrag: str, server_pwd: str, server_fingerprint: str,
                 certificate: Certificate | None = None, ufrag: str | None = None, pwd: str | None = None,
                 host: str = "127.0.0.1", dtls_server: bool = False, rcvbuf: int = 4 * 1024 * 1024) -> None:
        self.server = server
        self.server_ufrag = server_ufrag
        self.server_pwd = server_pwd
        self.ufrag = ufrag or os.urandom(4).hex()
        self.pwd = pwd or os.urandom(12).hex()
        self.certificate = certificate or Certificate.generate("callsd-client")
        self.dtls = DtlsSession(self.certificate.context(), server=dtls_server,
                                remote_fingerprint=server_fingerprint)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.bind((host, 0))
        self.sock.setblocking(False)
        self.address: tuple[str, int] = self.sock.getsockname()
        self.srtp: SrtpContext | None = None
        self.mapped_address: tuple[str, int] | None = None
        self._transactions: set[bytes] = set()
        self.stun_responses = 0
        self.undecryptable = 0

    @property
    def fingerprint(self) -> str:
        return self.certificate.fingerprint

    # --- sending ----------------------------------------------------------------------------------------------------

    def send_raw(self, datagram: bytes) -> None:
        self.sock.sendto(datagram, self.server)

    def binding_request(self, *, use_candidate: bool = True, pwd: str | None = None) -> bytes:
        """Send a binding request (consent refresh); returns its transaction id. `pwd` overrides the key (tests)."""
        data, tid = client_binding_request(server_ufrag=self.server_ufrag, client_ufrag=self.ufrag,
                                           server_pwd=pwd if pwd is not None else self.server_pwd,
                                           use_candidate=use_candidate)
        self._transactions.add(tid)
        self.send_raw(data)
        return tid

    def protect_rtp(self, plain: bytes) -> bytes:
        assert self.srtp is not None, "not connected"
        data = self.srtp.protect_rtp(plain)
        assert data is not None
        return data

    def protect_rtcp(self, plain: bytes) -> bytes:
        assert self.srtp is not None, "not connected"
        data = self.srtp.protect_rtcp(plain)
        assert data is not None
        return data

    def send_rtp(self, plain: bytes) -> None:
        self.send_raw(self.protect_rtp(plain))

    def send_rtcp(self, plain: bytes) -> None:
        self.send_raw(self.protect_rtcp(plain))

    # --- receiving --------------------------------------------------------------------------------------------------

    def poll(self) -> list[tuple[str, bytes]]:
        """Handle every datagram waiting on the socket; returns the media packets among them (and keeps them)."""
        got: list[tuple[str, bytes]] = []
        while True:
            try:
                data, _addr = self.sock.recvfrom(4096)
            except BlockingIOError:
                break
            except OSError:
                continue
            if not data:
                continue
            kind = CLASSIFY[data[0]]
            if kind == KIND_RTP and self.srtp is not None:
                if 192 <= data[1] <= 223:
                    plain = self.srtp.unprotect_rtcp(data)
                    label = "rtcp"
                else:
                    plain = self.srtp.unprotect_rtp(data)
                    label = "rtp"
                if plain is None:
                    self.undecryptable += 1
                else:
                    got.append((label, plain))
            elif kind == KIND_STUN:
                self._on_stun(data)
            elif kind == KIND_DTLS:
                self._on_dtls(data)
        return got

    def _on_stun(self, data: bytes) -> None:
        tid = data[8:20]
        if tid not in self._transactions:
            return
        try:
            self.mapped_address = check_binding_response(data, tid, self.server_pwd)
        except StunRejected:
            return
        self._transactions.discard(tid)
        self.stun_responses += 1

    def _on_dtls(self, data: bytes) -> None:
        try:
            done = self.dtls.feed(data)
        except DtlsError:
            self._flush()
            return
        self._flush()
        if done and self.dtls.keys is not None:
            self.srtp = SrtpContext(self.dtls.keys)

    def _flush(self) -> None:
        for datagram in self.dtls.take_datagrams():
            self.send_raw(datagram)

    async def _wait(self, deadline: float) -> bool:
        """Wait until readable or the deadline; False on timeout."""
        with trio.move_on_at(deadline):
            await trio.lowlevel.wait_readable(self.sock)
            return True
        return False

    async def connect(self, timeout: float = 5.0) -> None:
        """ICE (one nominating binding request, retried) then the DTLS handshake, retransmitting as needed."""
        deadline = trio.current_time() + timeout
        next_stun = 0.0
        while self.stun_responses == 0:
            now = trio.current_time()
            if now >= deadline:
                raise ClientError("no STUN binding response")
            if now >= next_stun:
                self.binding_request(use_candidate=True)
                next_stun = now + 0.2
            await self._wait(min(deadline, next_stun))
            self.poll()
        self.dtls.start()
        self._flush()
        while self.srtp is None:
            if self.dtls.failed:
                raise ClientError(f"DTLS failed: {self.dtls.failed}")
            now = trio.current_time()
            if now >= deadline:
                raise ClientError("DTLS handshake timed out")
            t = self.dtls.next_timeout()
            wake = deadline if t is None else min(deadline, now + max(t, 0.0))
            if not await self._wait(wake):
                try:
                    self.dtls.handle_timeout()
                except DtlsError as exc:
                    raise ClientError(str(exc)) from exc
                self._flush()
            self.poll()

    async def receive(self, count: int, timeout: float = 2.0) -> list[tuple[str, bytes]]:
        """Wait for `count` media packets (or the timeout); returns what arrived (maybe fewer, maybe more)."""
        deadline = trio.current_time() + timeout
        got = self.poll()
        while len(got) < count and await self._wait(deadline):
            got.extend(self.poll())
        return got

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> MediaClient:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
