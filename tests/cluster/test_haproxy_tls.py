"""deploy/proxy/haproxy.cfg with its TLS line switched on, as docs/deployment.md ("TLS") tells an operator: HAProxy
terminates TLS and passes plain HTTP and the signaling WebSocket to serve. The nginx file's TLS is exercised by
test_cluster_nginx.py; this is the same for HAProxy, whose TLS `bind` line ships commented out (it needs a
certificate), so the other cluster tests run it on plain HTTP only.

What a user observes: the page's config over https, and a join over wss:// answered with its join_ack, through the
deployed file's own `bind ... ssl crt ... alpn http/1.1` options (only the address and the certificate replaced).
"""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import trio
from haproxy_support import HAProxy
from serve_support import ServeProcess
from trio_websocket import open_websocket_url


async def test_haproxy_terminates_tls_in_front_of_serve_for_the_page_and_the_websocket(tmp_path: Path) -> None:
    node = ServeProcess(tmp_path / "serve")
    (tmp_path / "serve").mkdir()
    proxy = HAProxy(tmp_path, [("n1", node.port)], tls=True)
    try:
        await trio.to_thread.run_sync(node.start)
        await trio.to_thread.run_sync(proxy.start)

        def page_config() -> dict[str, object]:
            with urllib.request.urlopen(proxy.tls_url + "/api/v1/config", timeout=5,
                                        context=proxy.tls_context()) as resp:
                loaded: dict[str, object] = json.loads(resp.read())
                return loaded

        config = await trio.to_thread.run_sync(page_config)
        assert isinstance(config["protocol"], int) and config["protocol"] >= 1
        url = proxy.tls_url.replace("https", "wss") + "/api/v1/websocket"
        async with open_websocket_url(url, ssl_context=proxy.tls_context()) as ws:
            hello = json.loads(await ws.get_message())
            assert hello["type"] == "hello", hello
            await ws.send_message(json.dumps({"type": "join", "data": {"channel_id": "tls", "display_name": "h"}}))
            with trio.fail_after(20):
                while (msg := json.loads(await ws.get_message()))["type"] != "join_ack":
                    pass
        assert msg["data"]["channel_id"] == "tls" and msg["data"]["call_id"]
    finally:
        await trio.to_thread.run_sync(proxy.stop)
        await trio.to_thread.run_sync(node.stop)
