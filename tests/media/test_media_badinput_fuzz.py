"""Fuzzing the receive path without sockets: whatever arrives, the endpoint drops it under exactly one reason or
delivers it, and never raises; the STUN parser returns a request or raises its one declared error."""

from __future__ import annotations

import os
from typing import Any

from callsd.adapters.media.dtls import Certificate, SrtpKeys
from callsd.adapters.media.ice import (
    BindingRequest,
    StunRejected,
    client_binding_request,
    parse_binding_request,
)
from callsd.adapters.media.srtp import SrtpContext
from callsd.adapters.media.transport import Peer, TransportConfig, UdpEndpoint
from callsd.adapters.media.udp import CLASSIFY, KIND_DTLS
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

CERT = Certificate.generate()
CLIENT = ("127.0.0.1", 40000)
STRANGER = ("127.0.0.1", 40001)
KEYS = SrtpKeys(profile=b"SRTP_AEAD_AES_128_GCM", local_key=bytes(range(28)), remote_key=bytes(range(28, 56)))


class Sink:
    def __init__(self) -> None:
        self.rtp: list[bytes] = []
        self.rtcp: list[bytes] = []

        self.closed: list[str] = []

    def on_connected(self, peer: Peer) -> None: ...

    def on_closed(self, peer: Peer, reason: str) -> None:
        self.closed.append(reason)

    def on_rtp(self, peer: Peer, plain: bytes) -> None:
        self.rtp.append(plain)

    def on_rtcp(self, peer: Peer, plain: bytes) -> None:
        self.rtcp.append(plain)


def connected_endpoint() -> tuple[UdpEndpoint, Sink, SrtpContext]:
    """An endpoint with one peer already 'connected' at CLIENT, keyed directly (no socket, no handshake)."""
    sink = Sink()
    endpoint = UdpEndpoint(TransportConfig(port=0), sink, certificate=CERT)
    peer = endpoint.add_peer("a", "srv", "serverpassword", "cli", "clientpassword", CERT.fingerprint)
    peer.srtp = SrtpContext(KEYS)
    peer._tx = peer.srtp.tx
    peer._sendto = lambda data, addr: len(data)
    peer.address = CLIENT
    peer.connected = True
    peer.ice.addresses.add(CLIENT)
    endpoint._by_addr[CLIENT] = peer
    return endpoint, sink, client_ctx()


def client_ctx() -> SrtpContext:
    """The client's side of the same keys (a fresh one, so that what it protects depends only on the input)."""
    return SrtpContext(SrtpKeys(profile=KEYS.profile, local_key=KEYS.remote_key, remote_key=KEYS.local_key))


def outcome_total(endpoint: UdpEndpoint) -> int:
    c = endpoint.counters
    return sum(c.drops().values()) + c.rtp_in + c.rtcp_in + c.stun_out


def rtp(seq: int, size: int) -> bytes:
    return bytes([0x80, 111]) + seq.to_bytes(2, "big") + bytes(4) + (0xABCD).to_bytes(4, "big") + bytes(size)


valid_stun, _ = client_binding_request(server_ufrag="srv", client_ufrag="cli", server_pwd="serverpassword")


@st.composite
def datagrams(draw: Any) -> tuple[tuple[str, int], bytes]:
    source = draw(st.sampled_from([CLIENT, STRANGER]))
    family = draw(st.sampled_from(["random", "stun", "rtp", "rtcp", "dtls"]))
    if family == "random":
        return source, draw(st.binary(max_size=300))
    if family == "stun":
        base = valid_stun
    elif family == "rtp":
        base = client_ctx().protect_rtp(rtp(draw(st.integers(0, 65535)), draw(st.integers(0, 1100)))) or b""
    elif family == "rtcp":
        base = client_ctx().protect_rtcp(bytes([0x80, 200, 0, 6]) + bytes(24)) or b""
    else:
        body = draw(st.binary(max_size=80))
        base = bytes([draw(st.sampled_from([20, 21, 22, 23])), 0xFE, 0xFD]) + bytes(8) \
            + len(body).to_bytes(2, "big") + body
    # Mutate: truncate, flip bytes, or leave intact.
    data = bytearray(base[: draw(st.integers(0, len(base)))] if draw(st.booleans()) else base)
    for _ in range(draw(st.integers(0, 3))):
        if data:
            i = draw(st.integers(0, len(data) - 1))
            data[i] ^= draw(st.integers(1, 255))
    return source, bytes(data)




@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(datagrams(), min_size=1, max_size=20))
def test_every_datagram_is_delivered_or_dropped_exactly_once(batch: list[tuple[tuple[str, int], bytes]]) -> None:
    endpoint, sink, _ = connected_endpoint()
    for source, data in batch:
        before = outcome_total(endpoint)
        queue = [(data, source)]

        def recvmsg(_size: int, _ancillary: int, queue: list[tuple[bytes, tuple[str, int]]] = queue) -> tuple[Any, ...]:
            if not queue:
                raise BlockingIOError
            data, source = queue.pop()
            return data, [], 0, source

        assert endpoint._drain(recvmsg, 8) == 1
        delta = outcome_total(endpoint) - before
        if data and CLASSIFY[data[0]] == KIND_DTLS and len(data) >= 13:
            assert delta <= 1  # a well-formed DTLS record from the peer may be absorbed by OpenSSL silently
        else:
            assert delta == 1, (source, data[:24].hex())
        assert endpoint.counters.handler_errors == 0
    # Only a broken DTLS handshake (the fake peer never had one) may end the session; nothing else does.
    assert set(sink.closed) <= {"dtls_failed"}
    if not sink.closed:
        assert endpoint.peer("a") is not None


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_stun_parser_returns_a_request_or_raises_its_declared_error(data: bytes) -> None:
    try:
        request = parse_binding_request(data)
    except StunRejected as rejected:
        assert rejected.reason in ("malformed", "stun_other", "stun_integrity")
    else:
        assert isinstance(request, BindingRequest)


def test_intact_packets_of_each_kind_are_delivered() -> None:
    endpoint, sink, client = connected_endpoint()
    queue: list[tuple[bytes, Any]] = [
        (client.protect_rtp(rtp(5, 100)) or b"", CLIENT),
        (client.protect_rtcp(bytes([0x80, 201, 0, 1]) + bytes(4)) or b"", CLIENT),
        (valid_stun, CLIENT),
        (os.urandom(50), STRANGER),
    ][::-1]

    def recvmsg(_size: int, _ancillary: int) -> tuple[Any, ...]:
        if not queue:
            raise BlockingIOError
        data, source = queue.pop()
        return data, [], 0, source

    assert endpoint._drain(recvmsg, 16) == 4
    assert sink.rtp == [rtp(5, 100)]
    assert len(sink.rtcp) == 1
    assert endpoint.counters.stun_out == 1  # answered (the send itself is skipped: no socket)
    assert sum(endpoint.counters.drops().values()) == 1
