"""Issue 8, item 5: unjoined connections were unlimited (500 idle sockets stayed open, ~46 KB each). Now a socket
must join a call (or finish its first request) within ``http.join_timeout``, and connections are capped per client
address and in total (app/http_guard.py). Deadlines here are short configured ones; every wait is on a condition."""

from __future__ import annotations

import trio
from attack_support import http_request, open_upgraded, read_close_code
from callsd.adapters.signaling_protocol import encode
from callsd.app.signaling_socket import JOIN_ACK_PREFIX


async def _until_closed(stream: trio.SocketStream, data: bytes = b"", timeout: float = 5) -> bytes:
    """Read until the server closes the socket; return everything it sent."""
    with trio.fail_after(timeout):
        while chunk := await stream.receive_some(65536):
            data += chunk
    return data


async def _metric(port: int, name: str) -> float:
    """Scraped from 127.0.0.9, an address the tests' sockets do not use (so the caps do not refuse the scrape)."""
    status, body = await http_request(port, "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1", local_address="127.0.0.9")
    assert status == 200
    for line in body.decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return 0.0


async def test_a_socket_that_does_not_join_in_time_is_closed_and_one_that_joins_stays(start_server, connect):
    info, _ = await start_server(http={"join_timeout": "0.5"})
    async with connect(info) as member:
        await member.request("join", {"channel_id": "room"}, expect="join_ack")
        idle, head = await open_upgraded(info.http_port)
        silent = await trio.open_tcp_stream("127.0.0.1", info.http_port)  # never sends a request head
        assert head.startswith(b"HTTP/1.1 101 ")
        data = await _until_closed(idle, head)
        assert read_close_code(data.partition(b"\r\n\r\n")[2]) == 1008
        assert await _until_closed(silent) == b""
        await member.request("ping", expect="pong")  # the joined socket outlived the deadline
    assert await _metric(info.http_port, 'callsd_http_refused_total{reason="join_timeout"}') == 2


async def test_connections_are_capped_per_address_and_in_total(start_server):
    info, _ = await start_server(http={"max_connections_per_address": "3", "max_connections": "5"})
    port = info.http_port
    held = [(await open_upgraded(port, local_address="127.0.0.1"))[0] for _ in range(3)]
    over, head = await open_upgraded(port, local_address="127.0.0.1")
    assert head == b""  # closed at accept: no response at all
    held += [(await open_upgraded(port, local_address="127.0.0.2"))[0] for _ in range(2)]
    full, head = await open_upgraded(port, local_address="127.0.0.3")
    assert head == b""
    for stream in held[:2]:
        await stream.aclose()
    with trio.fail_after(5):  # the freed places are taken again (the server sees the closes asynchronously)
        while not (await open_upgraded(port, local_address="127.0.0.3"))[1].startswith(b"HTTP/1.1 101 "):
            await trio.sleep(0.05)
    for stream in (*held[2:], over, full):
        await stream.aclose()


async def test_hundreds_of_idle_sockets_are_bounded_then_gone(start_server):
    info, _ = await start_server(http={"join_timeout": "1", "max_connections_per_address": "100"})
    port = info.http_port
    streams = [await trio.open_tcp_stream("127.0.0.1", port) for _ in range(300)]
    try:
        with trio.fail_after(10):
            while await _metric(port, 'callsd_http_refused_total{reason="over_max_connections_per_address"}') < 200:
                await trio.sleep(0.05)
        with trio.fail_after(10):  # 1: the scrape itself
            while await _metric(port, "callsd_http_connections_open") > 1:
                await trio.sleep(0.1)
        assert await _metric(port, 'callsd_http_refused_total{reason="join_timeout"}') == 100
    finally:
        for stream in streams:
            await stream.aclose()


def test_the_join_ack_prefix_matches_what_the_hub_sends():
    assert encode("join_ack", {"session_id": "s", "reconnected": True}).startswith(JOIN_ACK_PREFIX)
    assert not encode("join_ack_other", {}).startswith(JOIN_ACK_PREFIX)


async def test_a_client_that_never_reads_is_closed_after_the_write_timeout(start_server):
    # hypercorn's sends are shielded with no deadline: pipelined requests whose answers are never read used to hold
    # the connection (its task, its socket buffers) forever. Now a send that waits idle_timeout seconds closes it.
    info, _ = await start_server(http={"idle_timeout": "1"})
    sock = trio.socket.socket()
    sock.setsockopt(trio.socket.SOL_SOCKET, trio.socket.SO_RCVBUF, 4096)
    await sock.connect(("127.0.0.1", info.http_port))
    stream = trio.SocketStream(sock)
    request = b"GET /static/app.js HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    await stream.send_all(request * 400)  # ~10 MB of answers, far more than the socket buffers hold
    with trio.fail_after(20):
        while await _metric(info.http_port, 'callsd_http_refused_total{reason="write_timeout"}') < 1:
            await trio.sleep(0.1)
    await stream.aclose()
