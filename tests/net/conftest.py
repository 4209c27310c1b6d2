"""Fixtures for the networking tests: one namespace topology per test module, ``callsd serve`` and aiortc clients
run inside it with ``ip netns exec``.

The topology (docs/networking.md draws it; every address exists only inside the test's namespaces)::

    public segment 198.51.100.0/24 (a bridge in the "switch" namespace)
      .10 server        callsd with a public address
      .20 stun          coturn (STUN/TURN) on 3478
      .2  nat1 -> client1 10.1.0.10   (masquerade: a home router)
      .4  nat3 -> client2 10.3.0.10   (masquerade)
      .3  nat2 -> hidden  10.2.0.10   (masquerade + port forward of udp 8443 and tcp 8080: a server behind DNAT)
    and IPv6 on the same segment (2001:db8::/64): the server also has 2001:db8::10, client6 has 2001:db8::30 only

Ports are fixed (8080, 8443, 3478) because each namespace has its own port space; names are unique per run.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from net.harness import HTTP_PORT, RTC_PORT, CallsdProcess, Coturn, Net
from net.netns import Host, Topology


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if Path(str(item.fspath)).parent == Path(__file__).parent:
            item.add_marker(pytest.mark.net)


@pytest.fixture(scope="module")
def net() -> Iterator[Net]:
    """The topology above; deleted (with everything still running in it) when the module's tests are done."""
    topo = Topology()
    try:
        server = topo.public_host("server", 10)
        topo.add_ipv6(server, "2001:db8::10")
        client6 = topo.ipv6_host("client6", "2001:db8::30")
        stun = topo.public_host("stun", 20)
        client1 = topo.private_host("client1", router="nat1", subnet=1, public_octet=2)
        client2 = topo.private_host("client2", router="nat3", subnet=3, public_octet=4)
        hidden = topo.private_host("hidden", router="nat2", subnet=2, public_octet=3,
                                   forwards=(("udp", RTC_PORT), ("tcp", HTTP_PORT)))
        yield Net(topology=topo, server=server, stun=stun, client1=client1, client2=client2, hidden=hidden,
                  nat2=topo.hosts["nat2"], client6=client6)
    finally:
        topo.close()


@pytest.fixture
def callsd(tmp_path: Path) -> Iterator[Any]:
    """``server = callsd(host, ice_address_udp="0.0.0.0", ...)`` starts ``callsd serve`` in ``host``."""
    started: list[CallsdProcess] = []

    def start(host: Host, http_listen: str = "0.0.0.0", **rtc: Any) -> CallsdProcess:
        work = tmp_path / f"callsd-{host.short}-{len(started)}"
        work.mkdir()
        server = CallsdProcess(host, work, rtc, http_listen=http_listen)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="module")
def coturn(net: Net, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Coturn]:
    server = Coturn(net.stun, tmp_path_factory.mktemp("coturn"))
    yield server
    server.stop()
