"""Where the load tool's media legs bind: the local address that routes to the server.

Against a loopback server nothing changes (127.0.0.1, as every loopback test relies on); against a server on
another machine or network namespace, the legs must not bind 127.0.0.1, from which the server is unreachable.
tests/loadtest/test_peers_janus.py exercises the non-loopback case for real (the tool in a namespace of its own).
"""

from __future__ import annotations

import socket

from callsd.app.loadtest.worker import local_address_toward


def test_a_loopback_server_keeps_legs_on_127_0_0_1() -> None:
    assert local_address_toward("ws://127.0.0.1:8080/api/v1/websocket") == "127.0.0.1"
    assert local_address_toward("ws://127.0.0.3:9/") == "127.0.0.1"
    assert local_address_toward("ws://localhost:8080/") == "127.0.0.1"


def test_the_bound_address_can_reach_the_server() -> None:
    """Whatever address is chosen, a UDP socket bound to it can send to the server's address."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as server:
        server.bind(("127.0.0.1", 0))
        host, port = server.getsockname()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as leg:
            leg.bind((local_address_toward(f"ws://{host}:{port}/"), 0))
            leg.connect((host, port))
            leg.send(b"ping")
            server.settimeout(5)
            assert server.recv(16) == b"ping"
