"""One peer driven by its own awaits: the form tests and `bench.forward` use (the load tool drives hundreds of
transports from one engine instead, engine.py).

    client = MediaClient(("127.0.0.1", port), server_ufrag="s1", server_pwd="...", server_fingerprint=fp)
    endpoint.add_peer("sess", "s1", "...", client.ufrag, client.pwd, client.fingerprint)
    await client.connect()                         # ICE with USE-CANDIDATE, then DTLS, retransmitting as needed
    client.send_rtp(plain) / client.send_rtcp(plain) / client.send_raw(datagram)
    packets = await client.receive(n, timeout=2)   # [("rtp" | "rtcp", plain bytes), ...]
    client.poll()                                  # the same, non-blocking, whatever has arrived
    client.close()

No consent refresh runs by itself (tests drive ``binding_request``). After `connect` the send side needs no event
loop: a bench process can blast packets with ``client.srtp.protect_rtp`` and ``client.sock``.
"""

from __future__ import annotations

import time
from typing import Any

import trio
from callsd.adapters.media.dtls import Certificate

from .transport import Identity, PeerTransport

__all__ = ["MediaClient", "ClientError"]


class ClientError(Exception):
    """The client could not connect (timeout, DTLS failure, fingerprint mismatch)."""


class MediaClient(PeerTransport):
    def __init__(self, server: tuple[str, int], *, server_ufrag: str, server_pwd: str, server_fingerprint: str,
                 certificate: Certificate | None = None, ufrag: str | None = None, pwd: str | None = None,
                 host: str = "127.0.0.1", dtls_server: bool = False, rcvbuf: int = 4 * 1024 * 1024) -> None:
        super().__init__(Identity(certificate or Certificate.generate("callsd-client")), ufrag=ufrag, pwd=pwd,
                         host=host, rcvbuf=rcvbuf, dtls_server=dtls_server, consent_interval=None)
        self.server = server
        self.server_ufrag = server_ufrag
        self.server_pwd = server_pwd
        self.server_fingerprint = server_fingerprint
        self.undecryptable = 0

    @property
    def ufrag(self) -> str:
        return self.local_ufrag

    @property
    def pwd(self) -> str:
        return self.local_pwd

    @property
    def fingerprint(self) -> str:
        return str(self.identity.fingerprint)

    @property
    def address(self) -> tuple[str, int]:
        return self.local_address

    @property
    def stun_responses(self) -> int:
        return self.stats.stun_responses

    def _begin(self) -> None:
        assert self.server is not None
        if self.state == "new":
            self.start(remote_ufrag=self.server_ufrag, remote_pwd=self.server_pwd,
                       remote_fingerprint=self.server_fingerprint, address=self.server, check=False)

    # --- sending ----------------------------------------------------------------------------------------------------
    def binding_request(self, *, use_candidate: bool = True, pwd: str | None = None) -> bytes:
        """Send a binding request (a check, or a consent refresh); returns its transaction id."""
        self._begin()
        return self.send_check(use_candidate=use_candidate, pwd=pwd)

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
        """Handle every datagram waiting on the socket; returns the media packets among them, decrypted."""
        got: list[tuple[str, bytes]] = []
        while True:
            try:
                data = self.sock.recv(4096)
            except BlockingIOError:
                break
            except OSError:
                continue
            if not data:
                continue
            if 128 <= data[0] <= 191:
                if self.srtp is None:
                    continue
                if 192 <= data[1] <= 223:
                    plain, label = self.srtp.unprotect_rtcp(data), "rtcp"
                else:
                    plain, label = self.srtp.unprotect_rtp(data), "rtp"
                if plain is None:
                    self.undecryptable += 1
                else:
                    got.append((label, plain))
            else:
                self.feed_control(data)
        return got

    async def _wait(self, deadline: float) -> bool:
        """Wait until readable or the deadline (trio time); False on timeout."""
        with trio.move_on_at(deadline):
            await trio.lowlevel.wait_readable(self.sock)
            return True
        return False

    async def connect(self, timeout: float = 5.0) -> None:
        """ICE (a nominating binding request, retried) then the DTLS handshake; raises ClientError."""
        self._begin()
        deadline = trio.current_time() + timeout
        while self.state != "connected":
            if self.state == "failed":
                raise ClientError(self.error)
            if trio.current_time() >= deadline:
                raise ClientError("no STUN binding response" if self.state == "checking"
                                  else f"{self.state}: timed out")
            self.maintain(time.monotonic())
            await self._wait(min(deadline, trio.current_time() + self.next_wakeup(time.monotonic())))
            self.poll()

    async def receive(self, count: int, timeout: float = 2.0) -> list[tuple[str, bytes]]:
        """Wait for `count` media packets (or the timeout); returns what arrived (maybe fewer, maybe more)."""
        deadline = trio.current_time() + timeout
        got = self.poll()
        while len(got) < count and await self._wait(deadline):
            got.extend(self.poll())
        return got

    def __enter__(self) -> MediaClient:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
