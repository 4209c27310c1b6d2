"""Issue 8, item 10: /metrics was open to whoever reached the HTTP port. ``metrics.token`` puts it behind a bearer
token; ``metrics.listen`` moves it to its own address (and off the HTTP port)."""

from __future__ import annotations

from attack_support import http_request

TOKEN = "m" * 24


async def test_metrics_token_is_required_when_set(start_server) -> None:
    info, _ = await start_server(metrics={"token": TOKEN})
    port = info.http_port
    for header in ("", "\r\nAuthorization: Bearer wrong-token-wrong-token", f"\r\nAuthorization: Basic {TOKEN}"):
        status, _ = await http_request(port, f"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1{header}")
        assert status == 401, header
    status, body = await http_request(port, f"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}")
    assert status == 200 and b"callsd_http_connections_open" in body


async def test_metrics_listen_serves_metrics_there_and_only_there(start_server) -> None:
    info, _ = await start_server(metrics={"listen": "127.0.0.1:0", "token": TOKEN})
    status, _ = await http_request(info.http_port, f"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                                   f"Authorization: Bearer {TOKEN}")
    assert status == 404
    assert info.metrics_url.startswith("http://127.0.0.1:") and info.metrics_url.endswith("/metrics")
    metrics_port = int(info.metrics_url.rsplit(":", 1)[1].split("/")[0])
    status, _ = await http_request(metrics_port, "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1")
    assert status == 401
    status, body = await http_request(metrics_port, f"GET /metrics HTTP/1.1\r\nHost: prometheus.internal\r\n"
                                                    f"Authorization: Bearer {TOKEN}")
    assert status == 200 and b"callsd_participants" in body
    for path in ("/", "/api/v1/config", "/api/v1/websocket", "/healthz"):
        status, _ = await http_request(metrics_port, f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1")
        assert status == 404, path
