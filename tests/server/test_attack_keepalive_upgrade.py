"""A WebSocket upgrade on a later request of a keep-alive connection (what nginx ``keepalive`` upstreams and HAProxy
``http-reuse`` send), through the real server: it is answered, joins a call, and its frames are still checked at
their headers (app/http_requests.py, docs/adr/0008-http-guard.md "Amended")."""

from __future__ import annotations

import json
import subprocess

import trio
from attack_support import frame_header, http_request, metric, read_close_code, text_frame, upgrade_request
from haproxy_support import HAProxy
from nginx_support import Nginx

OFFER = "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"


async def _response(stream: trio.SocketStream, buffered: bytes = b"") -> tuple[bytes, bytes, bytes]:
    """One response's head and body (by its Content-Length), and the bytes read past it."""
    data = buffered
    with trio.fail_after(10):
        while b"\r\n\r\n" not in data:
            chunk = await stream.receive_some(65536)
            assert chunk, f"closed before a response: {data!r}"
            data += chunk
        head, _, rest = data.partition(b"\r\n\r\n")
        length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                       if line.lower().startswith(b"content-length:")), 0)
        while len(rest) < length:
            chunk = await stream.receive_some(65536)
            assert chunk, "closed inside a body"
            rest += chunk
    return head, rest[:length], rest[length:]


async def _read_until(stream: trio.SocketStream, data: bytes, marker: bytes) -> bytes:
    with trio.fail_after(10):
        while marker not in data and (chunk := await stream.receive_some(65536)):
            data += chunk
    return data


async def test_an_upgrade_after_plain_requests_on_one_connection_joins_and_is_still_guarded(start_server) -> None:
    info, _ = await start_server()
    port = info.http_port
    host = f"127.0.0.1:{port}"
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(f"GET /healthz HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        head, _, left = await _response(stream)
        assert head.startswith(b"HTTP/1.1 200 "), head
        body = b"4\r\nabcd\r\n0\r\n\r\n"  # a chunked body the guard must delimit to find the next head
        await stream.send_all(f"POST /healthz HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\n\r\n"
                              .encode() + body + f"GET /api/v1/config HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        head, _, left = await _response(stream, left)
        assert head.split(b" ")[1] in (b"200", b"405"), head
        head, config, left = await _response(stream, left)
        assert head.startswith(b"HTTP/1.1 200 ") and json.loads(config), head
        await stream.send_all(upgrade_request(port, extra=OFFER))  # the third request of the connection
        head, _, left = await _response(stream, left)
        assert head.startswith(b"HTTP/1.1 101 "), head
        assert b"sec-websocket-extensions" not in head.lower()  # the offer was stripped: no permessage-deflate
        await stream.send_all(text_frame(json.dumps({"type": "join", "data": {"channel_id": "room"}})))
        data = await _read_until(stream, left, b"join_ack")
        assert b"join_ack" in data
        await stream.send_all(frame_header(64 << 20) + b"x" * 4096)  # 64 MiB announced: refused at its header
        data = await _read_until(stream, data, b"\x88")
        with trio.fail_after(10):
            while chunk := await stream.receive_some(65536):
                data += chunk
        assert read_close_code(data[data.index(b"\x88"):]) == 1009
    assert await metric(port, 'callsd_http_refused_total{reason="message_too_big"}') == 1


async def test_a_smuggling_shaped_request_is_answered_400_and_the_connection_closed(start_server) -> None:
    info, _ = await start_server()
    port = info.http_port
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()
                              + b"POST /healthz HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked"
                              + b"\r\n\r\n0\r\n\r\n" + upgrade_request(port))
        data = b""
        with trio.fail_after(10):
            while chunk := await stream.receive_some(65536):
                data += chunk
    assert b"HTTP/1.1 400 " in data and b"HTTP/1.1 101 " not in data, data
    assert await metric(port, 'callsd_http_refused_total{reason="request_framing"}') == 1


def _with_upstream_keepalive(site: str) -> str:
    """deploy/proxy/nginx.conf with a pool of backend connections, as its comment explains."""
    pooled = site.replace("upstream callsd_nodes {\n", "upstream callsd_nodes {\n    keepalive 4;\n", 1)
    pooled = pooled.replace("''      close;", "''      \"\";", 1)
    assert "keepalive 4;" in pooled and 'close;' not in pooled.split("server {", 1)[0], pooled
    return pooled


def _nginx_side_ports(backend: int) -> set[int]:
    """The source ports of the connections established to ``backend`` (nginx's pooled or upgraded ones)."""
    out = subprocess.run(["ss", "-Htn", "state", "established", f"( sport = :{backend} )"], capture_output=True,
                         text=True, check=True, timeout=10).stdout
    return {int(line.split()[-1].rsplit(":", 1)[1]) for line in out.splitlines() if line.strip()}


async def test_nginx_with_upstream_keepalive_carries_a_websocket_over_a_reused_connection(start_server,
                                                                                          tmp_path) -> None:
    info, _ = await start_server()
    proxy = Nginx(tmp_path, [info.http_port], edit=_with_upstream_keepalive)
    try:
        await trio.to_thread.run_sync(proxy.start)
        pooled: set[int] = set()
        for _ in range(20):  # a plain request read to its end leaves its backend connection in nginx's pool
            status, _ = await http_request(proxy.port, "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1")
            assert status == 200
            pooled = _nginx_side_ports(info.http_port)
            if len(pooled) == 1:
                break
        assert len(pooled) == 1, pooled
        stream = await trio.open_tcp_stream("127.0.0.1", proxy.port)
        async with stream:
            await stream.send_all(upgrade_request(proxy.port, extra=OFFER))
            head, _, left = await _response(stream)
            assert head.startswith(b"HTTP/1.1 101 ") and b"sec-websocket-extensions" not in head.lower(), head
            assert _nginx_side_ports(info.http_port) == pooled  # the upgrade went over the reused connection
            await stream.send_all(text_frame(json.dumps({"type": "join", "data": {"channel_id": "room"}})))
            data = await _read_until(stream, left, b"join_ack")
            assert b"join_ack" in data
            await stream.send_all(frame_header(64 << 20) + b"x" * 4096)
            data = await _read_until(stream, data, b"\x88")
            with trio.fail_after(10):
                while chunk := await stream.receive_some(65536):
                    data += chunk
            assert read_close_code(data[data.index(b"\x88"):]) == 1009
        assert await metric(info.http_port, 'callsd_http_refused_total{reason="unexpected_upgrade"}') == 0
    finally:
        await trio.to_thread.run_sync(proxy.stop)


async def test_a_websocket_upgraded_on_a_later_request_still_has_a_join_deadline(start_server) -> None:
    info, _ = await start_server(http={"join_timeout": 0.5})
    port = info.http_port
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
        head, _, left = await _response(stream)
        assert head.startswith(b"HTTP/1.1 200 ")
        await trio.sleep(0.7)  # the first request lifted the connection's deadline: the connection is still open
        await stream.send_all(upgrade_request(port))
        head, _, data = await _response(stream, left)
        assert head.startswith(b"HTTP/1.1 101 "), head
        with trio.fail_after(10):  # the WebSocket never joins: closed at its own deadline
            while chunk := await stream.receive_some(65536):
                data += chunk
        assert read_close_code(data) == 1008


async def test_haproxy_as_deployed_carries_a_websocket_upgraded_after_a_request_on_one_connection(start_server,
                                                                                                  tmp_path) -> None:
    # HAProxy keeps a client's backend connection for that client's next request (even with `http-reuse never`),
    # so a client that reuses its connection for the upgrade puts the upgrade on a backend connection's second
    # request: the case the guard used to refuse (`unexpected_upgrade`).
    info, _ = await start_server()
    proxy = HAProxy(tmp_path, [("n1", info.http_port)])
    try:
        await trio.to_thread.run_sync(proxy.start)
        stream = await trio.open_tcp_stream("127.0.0.1", proxy.port)
        async with stream:
            await stream.send_all(f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{proxy.port}\r\n\r\n".encode())
            head, _, left = await _response(stream)
            assert head.startswith(b"HTTP/1.1 200 "), head
            await stream.send_all(upgrade_request(proxy.port, extra=OFFER))
            head, _, left = await _response(stream, left)
            assert head.startswith(b"HTTP/1.1 101 ") and b"sec-websocket-extensions" not in head.lower(), head
            await stream.send_all(text_frame(json.dumps({"type": "join", "data": {"channel_id": "room"}})))
            assert b"join_ack" in await _read_until(stream, left, b"join_ack")
        assert await metric(info.http_port, 'callsd_http_refused_total{reason="unexpected_upgrade"}') == 0
    finally:
        await trio.to_thread.run_sync(proxy.stop)
