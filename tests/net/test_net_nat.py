"""Clients behind NAT (masquerading home routers) call a server with a public address, across namespaces."""

from __future__ import annotations

from typing import Any

from net.harness import Net, run_clients, summary


def _heard(result: dict[str, Any]) -> bool:
    return bool(result["loud_frames"] >= 50)


def test_two_clients_behind_nat_hear_each_other_through_a_public_server(net: Net, callsd: Any) -> None:
    server = callsd(net.server, ice_address_udp=net.server.address)
    results = run_clients([net.client1, net.client2], net.server.address)
    assert all(_heard(r) for r in results), summary(results) + "\n" + server.log()
    assert {r["ice_state"] for r in results} <= {"completed", "connected"}


def test_a_wildcard_bind_advertises_the_public_interface_and_works(net: Net, callsd: Any) -> None:
    server = callsd(net.server, ice_address_udp="0.0.0.0")
    log = server.wait_log("media: advertising")
    assert f"media: advertising {net.server.address}:8443 (every interface address" in log
    # only the listening sockets are on 0.0.0.0 (ICE-TCP logs its bind address); nothing advertises it
    assert not [line for line in log.splitlines() if "0.0.0.0:8443" in line and "ICE-TCP on tcp" not in line], log
    results = run_clients([net.client1, net.client2], net.server.address)
    assert all(_heard(r) for r in results), summary(results) + "\n" + server.log()
