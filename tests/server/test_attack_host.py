"""Issue 8, item 3: DNS rebinding. A page on evil.example that re-resolves to 127.0.0.1 sends ``Host: evil.example``
and a matching ``Origin``; before the ``Host`` check (app/http_policy.py) it got 101 and ``join_ack`` in open mode."""

from __future__ import annotations

import json

import trio
from attack_support import http_request, open_upgraded, text_frame
from callsd.app.http_policy import host_allowed, host_name


async def _upgrade_status(port: int, host: str, origin: str) -> tuple[int, bytes]:
    stream, data = await open_upgraded(port, host=host, extra=f"Origin: {origin}\r\n")
    try:
        if data.startswith(b"HTTP/1.1 101 "):
            await stream.send_all(text_frame(json.dumps({"type": "join", "data": {"channel_id": "room"}})))
        with trio.move_on_after(1):
            while b"join_ack" not in data and (chunk := await stream.receive_some(65536)):
                data += chunk
    finally:
        await stream.aclose()
    return int(data.split(b" ", 2)[1]), data


async def test_a_rebound_host_gets_neither_the_websocket_nor_the_pages_in_open_mode(start_server) -> None:
    info, _ = await start_server()
    port = info.http_port
    status, data = await _upgrade_status(port, "evil.example", "http://evil.example")
    assert status == 421 and b"join_ack" not in data
    for path in ("/", "/api/v1/config", "/api/v1/channels", "/metrics", "/static/app.js"):
        status, _ = await http_request(port, f"GET {path} HTTP/1.1\r\nHost: evil.example:{port}")
        assert status == 421, path
    status, _ = await http_request(port, "GET /healthz HTTP/1.1\r\nHost: evil.example")
    assert status == 200  # probes send whatever Host they like; /healthz tells nothing
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", "app.localhost", f"[::1]:{port}", "127.0.0.2"):
        status, _ = await http_request(port, f"GET /api/v1/config HTTP/1.1\r\nHost: {host}")
        assert status == 200, host
    status, data = await _upgrade_status(port, f"localhost:{port}", f"http://localhost:{port}")
    assert status == 101 and b"join_ack" in data


async def test_allowed_hosts_names_the_public_host_and_closes_token_mode_to_others(start_server) -> None:
    info, _ = await start_server(http={"allowed_hosts": "calls.example.org"})
    status, _ = await _upgrade_status(info.http_port, "calls.example.org", "https://calls.example.org")
    assert status == 101  # the proxy's public name (its origin matches the Host, as a browser sends it)
    status, _ = await _upgrade_status(info.http_port, "evil.example", "http://evil.example")
    assert status == 421
    token, _ = await start_server(auth={"mode": "token", "secret": "s" * 32})
    status, _ = await http_request(token.http_port, "GET /api/v1/config HTTP/1.1\r\nHost: any.example")
    assert status == 200  # token mode with no list: any host (every action needs a token)
    strict, _ = await start_server(auth={"mode": "token", "secret": "s" * 32},
                                   http={"allowed_hosts": "calls.example.org"})
    status, _ = await http_request(strict.http_port, "GET /api/v1/config HTTP/1.1\r\nHost: any.example")
    assert status == 421


def test_host_names_are_parsed_without_port_or_brackets() -> None:
    assert host_name("LocalHost:8080") == "localhost"
    assert host_name("[::1]:8080") == "::1"
    assert host_name("calls.example.org.") == "calls.example.org"
    assert host_allowed(None, auth_mode="open", allowed_hosts=())  # not a browser
    assert not host_allowed("127.0.0.1.evil.example", auth_mode="open", allowed_hosts=())
    assert not host_allowed("localhost.evil.example:80", auth_mode="open", allowed_hosts=())
