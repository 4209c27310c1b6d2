"""The relay link over TLS (`cluster.link_tls`): nodes serving HTTPS with a certificate for their advertise address
open `wss://` links to a call's owner and verify its certificate against `cluster.link_ca`; a relayed client's call
works as over a plain link. A node configured for TLS links without serving HTTPS is refused at start."""

from __future__ import annotations

import os
import ssl
import subprocess
import sys
from contextlib import AsyncExitStack
from pathlib import Path

import pytest
import trio
from cluster_support import GOOD_ENV, cluster_node, node_metric, peer
from nginx_support import self_signed

pytestmark = pytest.mark.slow


async def test_a_relayed_call_over_tls_links(pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cert, key = self_signed(tmp_path)  # for 127.0.0.1, the nodes' advertise address
    tls = {"CALLSD_HTTP_TLS_CERT": str(cert), "CALLSD_HTTP_TLS_KEY": str(key), "CALLSD_CLUSTER_LINK_TLS": "true",
           "CALLSD_CLUSTER_LINK_CA": str(cert)}
    n1, n2 = (cluster_node(tmp_path, pg_url, name, **tls) for name in ("n1", "n2"))
    for node in (n1, n2):
        node.url = node.url.replace("http://", "https://")
    # the test's own clients (the readiness poll, the WebSocket peers) trust the certificate; the nodes do through
    # cluster.link_ca, set before this
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    context = ssl.create_default_context(cafile=str(cert))
    try:
        for node in (n1, n2):
            await trio.to_thread.run_sync(node.start)
        async with AsyncExitStack() as stack:
            alice = await stack.enter_async_context(peer(n1))
            bob = await stack.enter_async_context(peer(n2))  # relayed to n1 over wss://
            ack = await alice.join("room", "alice")
            assert (await bob.join("room", "bob"))["call_id"] == ack["call_id"]
            await bob.send("raise_hand")
            await alice.expect("user_raised_hand", session_id=bob.session_id)
            assert node_metric(n1.url, "callsd_cluster_relayed_in_total", context) == 1
            assert node_metric(n2.url, "callsd_cluster_relayed_out_total", context) == 1
    finally:
        for node in (n1, n2):
            await trio.to_thread.run_sync(node.stop)
    logs = (tmp_path / "n2" / "serve.log").read_text()
    assert "relay link to" not in logs, logs  # no failed link attempt


def test_link_tls_needs_the_nodes_to_serve_https() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLSD_")}
    bad = subprocess.run([sys.executable, "-m", "callsd.app.cli", "config", "check"],
                         env={**env, **GOOD_ENV, "CALLSD_CLUSTER_LINK_TLS": "true"}, capture_output=True, text=True,
                         timeout=60)
    assert bad.returncode == 2 and "cluster.link_tls: the nodes must serve HTTPS" in bad.stderr, bad.stderr
