"""ICE-TCP relay (adapters/media/ice_tcp.py) on loopback: RFC 4571 frames become datagrams at the RTC port and
back; a client that does not read is disconnected once its bounded queue fills; bad frames close the connection."""

from __future__ import annotations

import contextlib
import socket

import trio
from callsd.adapters.media.ice_tcp import IceTcpListener, frame


async def _setup(nursery: trio.Nursery, **kwargs: object) -> tuple[IceTcpListener, socket.socket, int]:
    rtc = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # stands in for the endpoint's UDP port
    rtc.bind(("127.0.0.1", 0))
    rtc.setblocking(False)
    listener = IceTcpListener(host="127.0.0.1", port=0, udp_address=rtc.getsockname(), **kwargs)  # type: ignore[arg-type]
    port = await nursery.start(listener.serve)
    return listener, rtc, port


async def _recv(sock: socket.socket) -> tuple[bytes, tuple[str, int]]:
    with trio.fail_after(5):
        await trio.lowlevel.wait_readable(sock)
    data, addr = sock.recvfrom(4096)
    return data, addr


async def test_frames_are_relayed_both_ways_and_the_relay_address_names_the_client(nursery: trio.Nursery) -> None:
    listener, rtc, port = await _setup(nursery)
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    # two frames in one write, the second split across writes
    await stream.send_all(frame(b"\x00\x01stun") + frame(b"\x80rtp-packet")[:5])
    await stream.send_all(frame(b"\x80rtp-packet")[5:])
    first, relay = await _recv(rtc)
    second, relay2 = await _recv(rtc)
    assert (first, second, relay2) == (b"\x00\x01stun", b"\x80rtp-packet", relay)
    client = stream.socket.getsockname()
    assert listener.client_address(relay) == f"{client[0]}:{client[1]} over TCP"
    rtc.sendto(b"\x16dtls-flight", relay)
    with trio.fail_after(5):
        got = await stream.receive_some(100)
    assert got == frame(b"\x16dtls-flight")
    await stream.aclose()
    with trio.fail_after(5):
        while listener.counters.open:
            await trio.sleep(0.01)
    assert listener.client_address(relay) is None


async def test_a_client_that_does_not_read_is_dropped_not_buffered(nursery: trio.Nursery) -> None:
    listener, rtc, port = await _setup(nursery, max_buffered=16 * 1024)
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    await stream.send_all(frame(b"\x00\x01hello"))
    _, relay = await _recv(rtc)
    payload = b"\x80" + bytes(1199)
    for _ in range(20_000):  # bounded: a few MB at most, far more than the socket buffers and the queue hold
        if listener.counters.slow_reader:
            break
        with contextlib.suppress(BlockingIOError, ConnectionRefusedError):
            rtc.sendto(payload, relay)
        await trio.sleep(0)
    with trio.fail_after(5):
        while listener.counters.open:
            await trio.sleep(0.01)
    assert listener.counters.slow_reader == 1
    await stream.aclose()


async def test_an_oversized_frame_closes_the_connection(nursery: trio.Nursery) -> None:
    listener, _rtc, port = await _setup(nursery)
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    await stream.send_all((60000).to_bytes(2, "big") + b"x" * 10)
    with trio.fail_after(5):
        assert await stream.receive_some(100) == b""
    assert listener.counters.bad_frame == 1
    await stream.aclose()
