"""HTTP endpoints, connection hygiene (no leak on disconnect) and metrics, against a real server."""

from __future__ import annotations

import contextlib
import json
import os
import socket

import pytest
import trio
from trio_websocket import ConnectionClosed, open_websocket_url


def _socket_fds() -> int:
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}").startswith("socket:"):
                count += 1
        except OSError:
            pass
    return count


async def _upgrade(port: int) -> trio.SocketStream:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    await stream.send_all(
        b"GET /api/v1/websocket HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    data = b""
    with trio.fail_after(5):
        while b"hello" not in data:
            data += await stream.receive_some(4096)
    assert data.startswith(b"HTTP/1.1 101")
    return stream


async def _abrupt_websocket(port: int) -> None:
    stream = await _upgrade(port)
    stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    await stream.aclose()


async def _close_frame_then_idle(port: int) -> trio.SocketStream:
    stream = await _upgrade(port)
    await stream.send_all(b"\x88\x82\x00\x00\x00\x00\x03\xe8")  # a masked close frame, code 1000
    return stream


async def _flood_then_drop(port: int, *, reset: bool) -> None:
    """Send 90 pings without reading the pongs, then drop the connection (RST or FIN)."""
    stream = await _upgrade(port)
    ping = b'{"type":"ping"}'
    frame = bytes([0x81, 0x80 | len(ping)]) + b"\0\0\0\0" + ping
    await stream.send_all(frame * 90)
    if reset:
        stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    await stream.aclose()


async def test_connections_close_after_clients_disconnect(start_server, connect):
    # (Hypercorn's ping task sleeps a ping interval, idle_timeout/3, before it notices a close: keep it short here)
    info, _ = await start_server(http={"idle_timeout": 3})
    hub = info.hub
    baseline = _socket_fds()
    # server-initiated closes (replaced sessions, slow clients, shutdown) while clients are connected
    async with trio.open_nursery() as nursery:
        async def hold() -> None:
            async with open_websocket_url(f"ws://127.0.0.1:{info.http_port}/api/v1/websocket") as ws:
                with contextlib.suppress(ConnectionClosed):
                    while True:
                        await ws.get_message()
        for _ in range(5):
            nursery.start_soon(hold)
        with trio.fail_after(5):
            while hub.open_connections < 5:
                await trio.sleep(0.01)
        hub.close_all(4001, "test")
    for _round in range(3):
        async with trio.open_nursery() as nursery:
            for i in range(10):
                async def one(i: int = i) -> None:
                    async with connect(info) as c:
                        if i % 2:
                            await c.request("join", {"channel_id": f"leak{i % 3}"}, expect="join_ack")
                nursery.start_soon(one)
        # abrupt disconnects too: drop the TCP connection (RST) without a close handshake
        for _ in range(5):
            await _abrupt_websocket(info.http_port)
        # clients that flood and vanish: hypercorn's reader must not stay blocked on the app's full queue
        for i in range(6):
            await _flood_then_drop(info.http_port, reset=bool(i % 2))
        # a client that sends its close frame but keeps the TCP connection open without reading
        # (the server must close its side although the client's TCP stays open: only the 5 client ends remain)
        before = _socket_fds()
        half_closed = [await _close_frame_then_idle(info.http_port) for _ in range(5)]
        with trio.fail_after(5):
            while hub.open_connections or _socket_fds() > before + 5:
                await trio.sleep(0.05)
        for stream in half_closed:
            await stream.aclose()
    with trio.fail_after(5):
        while hub.open_connections or _socket_fds() > baseline:
            await trio.sleep(0.05)
    assert hub.open_connections == 0
    assert _socket_fds() <= baseline
    assert hub.counters.ws_connections_total == 83


async def test_http_endpoints(start_server, http_get):
    info, _ = await start_server()
    status, headers, body = await http_get(info.http_port, "/healthz")
    assert (status, body) == (200, b'{"status": "ok"}')
    status, _, body = await http_get(info.http_port, "/version")
    assert status == 200 and b'"protocol": 1' in body
    status, headers, body = await http_get(info.http_port, "/")
    assert status == 200 and headers["content-type"].startswith("text/html") and b"<html" in body.lower()
    status, _, body = await http_get(info.http_port, "/api/v1/config")
    assert status == 200 and b'"auth_mode": "open"' in body
    status, _, body = await http_get(info.http_port, "/api/v1/channels")
    assert (status, body) == (200, b'{"channels": []}')
    status, headers, body = await http_get(info.http_port, "/static/app.js")
    assert status == 200 and "javascript" in headers["content-type"] and len(body) > 100
    status, _, _ = await http_get(info.http_port, "/static/../config.py")
    assert status == 404
    status, _, _ = await http_get(info.http_port, "/nope")
    assert status == 404


def _self_signed(tmp_path) -> tuple[str, str]:
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return str(cert_path), str(key_path)


async def test_tls_when_cert_and_key_are_configured(start_server, tmp_path):
    import ssl

    from trio_websocket import open_websocket_url

    cert, key = _self_signed(tmp_path)
    info, _ = await start_server(http={"tls_cert": cert, "tls_key": key})
    assert info.url.startswith("https://127.0.0.1:")
    context = ssl.create_default_context(cafile=cert)
    context.check_hostname = False
    stream = await trio.open_ssl_over_tcp_stream("127.0.0.1", info.http_port, ssl_context=context,
                                                 https_compatible=True)
    async with stream:
        await stream.send_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        data = b""
        with trio.fail_after(5):
            while chunk := await stream.receive_some(65536):
                data += chunk
    assert data.startswith(b"HTTP/1.1 200") and data.endswith(b'{"status": "ok"}')
    async with open_websocket_url(f"wss://127.0.0.1:{info.http_port}/api/v1/websocket", ssl_context=context) as ws:
        with trio.fail_after(5):
            assert '"hello"' in await ws.get_message()


async def test_channels_api_in_token_mode(start_server, connect, http_get):
    import time

    from callsd.app.auth import create_token

    secret = "0123456789abcdef"
    info, _ = await start_server(auth={"mode": "token", "secret": secret})
    token = create_token(secret=secret, user_id="u", channels=["a", "b"], expires_at=int(time.time()) + 60)
    other = create_token(secret=secret, user_id="v", channels=["c"], expires_at=int(time.time()) + 60)
    async with connect(info, f"?token={token}") as x, connect(info, f"?token={other}") as y:
        await x.request("join", {"channel_id": "a"}, expect="join_ack")
        await y.request("join", {"channel_id": "c"}, expect="join_ack")
        status, _, body = await http_get(info.http_port, "/api/v1/channels")
        assert status == 401 and b"unauthorized" in body
        status, _, body = await http_get(info.http_port, "/api/v1/channels", {"Authorization": f"Bearer {token}"})
        assert status == 200
        assert json.loads(body) == {"channels": [{"channel_id": "a", "call_id": json.loads(body)["channels"][0]
                                                  ["call_id"], "participants": 1}]}
        status, _, body = await http_get(info.http_port, f"/api/v1/channels?token={other}")
        assert [c["channel_id"] for c in json.loads(body)["channels"]] == ["c"]


async def test_cross_origin_websockets_are_refused(start_server):
    from trio_websocket import ConnectionRejected

    info, _ = await start_server(http={"allowed_origins": "https://calls.example.org"})
    url = f"ws://127.0.0.1:{info.http_port}/api/v1/websocket"
    with pytest.raises(ConnectionRejected) as rejected:
        async with open_websocket_url(url, extra_headers=[(b"Origin", b"http://evil.example")]):
            pass
    assert rejected.value.status_code == 403
    for origin in (f"http://127.0.0.1:{info.http_port}", "https://calls.example.org"):
        async with open_websocket_url(url, extra_headers=[(b"Origin", origin.encode())]) as ws:
            with trio.fail_after(5):
                assert '"hello"' in await ws.get_message()
    assert info.hub.counters.ws_events["in", "origin_refused"] == 1


async def test_a_silent_peer_is_disconnected_while_a_live_idle_client_stays(start_server, connect):
    info, _ = await start_server(http={"idle_timeout": 2})
    async with connect(info) as live:
        await live.request("join", {"channel_id": "room"}, expect="join_ack")
        ghost = await _upgrade(info.http_port)  # completes the handshake, then never reads nor answers pings
        ghost_frame = b'{"type":"join","data":{"channel_id":"room"}}'
        await ghost.send_all(bytes([0x81, 0x80 | len(ghost_frame)]) + b"\0\0\0\0" + ghost_frame)
        with trio.fail_after(10):
            while len(info.hub.machine.sessions("room")) < 2:
                await trio.sleep(0.05)
        gone = await live.expect("user_disconnected", timeout=10)  # after ~2 s of silence
        assert gone["session_id"] != live.session_id
        await trio.sleep(2.5)  # the live client answered the pings (automatically) and is still connected
        assert await live.request("ping", expect="pong") == {}
        await ghost.aclose()
