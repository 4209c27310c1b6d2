"""Chromium (callsd's real web page) across the namespaces: behind NAT, with UDP blocked (relayed through coturn
over TCP), and on an impaired link (loss, delay and jitter: impairment.py)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from net.harness import TURN_SECRET, Coturn, Net, collect, start_aiortc, start_chromium
from net.impairment import ImpairedLink
from net.netns import Host

pytestmark = pytest.mark.browser


def _summary(result: dict[str, Any]) -> str:
    return f"stats={result.get('stats')} states={result.get('media_states')} console={result.get('console')}"


@pytest.mark.parametrize("enable_ipv6", [False, True], ids=["ipv4", "dual-stack"])
def test_chromium_behind_nat_and_aiortc_behind_another_nat_hear_each_other(net: Net, callsd: Any,
                                                                          enable_ipv6: bool) -> None:
    server = callsd(net.server, ice_address_udp="0.0.0.0", enable_ipv6=enable_ipv6)
    browser = start_chromium(net.client1, net.server.address, user="chromium")
    peer = start_aiortc(net.client2, net.server.address, user="aiortc", want=10, hold=15, seconds=60)
    b, a = collect(browser), collect(peer)
    assert b["stats"]["audio_in"]["packetsReceived"] >= 100, (_summary(b), server.log())
    assert a["loud_frames"] >= 10, (a, _summary(b), server.log())
    pair = b["stats"]["pair"]
    assert pair["remote"]["address"] == net.server.address and pair["remote"]["protocol"] == "udp"


@contextmanager
def _firewall(net: Net, *rules: str) -> Iterator[Host]:
    """client1's router applies ``rules`` (nftables, forward chain) to what client1 sends, for one test."""
    router = net.topology.hosts["nat1"]
    body = "".join(f'        iifname "eth1" {rule}\n' for rule in rules)
    router.nft("table inet callsd_fw {\n    chain forward {\n        type filter hook forward priority 0;\n"
               f"{body}    }}\n}}\n")
    try:
        yield net.client1
    finally:
        router.run("nft", "delete", "table", "inet", "callsd_fw")


@pytest.fixture
def udp_blocked(net: Net) -> Iterator[Host]:
    """client1's router drops every UDP datagram from client1: a strict corporate firewall."""
    with _firewall(net, "meta l4proto udp drop") as host:
        yield host


@pytest.fixture
def udp_and_tcp_8443_blocked(net: Net) -> Iterator[Host]:
    """Same, and TCP to port 8443 too (ICE-TCP cannot help): only TURN over TCP 3478 gets through."""
    with _firewall(net, "meta l4proto udp drop", "tcp dport 8443 drop") as host:
        yield host


def test_with_udp_blocked_chromium_connects_over_ice_tcp(net: Net, callsd: Any, udp_blocked: Host) -> None:
    server = callsd(net.server, ice_address_udp="0.0.0.0")  # rtc.ice_port_tcp: the default, 8443
    server.wait_log("media: ICE-TCP on tcp 0.0.0.0:8443")
    browser = start_chromium(udp_blocked, net.server.address, user="chromium")
    peer = start_aiortc(net.client2, net.server.address, user="aiortc", want=10, hold=15, seconds=60)
    b, a = collect(browser), collect(peer)
    assert b["stats"]["audio_in"]["packetsReceived"] >= 100, (_summary(b), server.log())
    assert a["loud_frames"] >= 10, (a, _summary(b), server.log())
    remote = b["stats"]["pair"]["remote"]
    assert (remote["protocol"], remote["tcpType"], remote["port"]) == ("tcp", "passive", 8443)
    assert "connected from 198.51.100.2:" in server.log() and "over TCP" in server.log()


def test_with_udp_and_tcp_8443_blocked_chromium_is_relayed_by_turn_over_tcp(
        net: Net, callsd: Any, coturn: Coturn, udp_and_tcp_8443_blocked: Host) -> None:
    turn_tcp = f"turn:{coturn.host.address}:3478?transport=tcp"
    server = callsd(net.server, ice_address_udp="0.0.0.0", ice_servers=[turn_tcp],
                    turn_static_auth_secret=TURN_SECRET)
    browser = start_chromium(udp_and_tcp_8443_blocked, net.server.address, user="chromium", relay_only=True)
    peer = start_aiortc(net.client2, net.server.address, user="aiortc", want=10, hold=15, seconds=60)
    b, a = collect(browser), collect(peer)
    assert b["stats"]["audio_in"]["packetsReceived"] >= 100, (_summary(b), server.log())
    assert a["loud_frames"] >= 10, (a, _summary(b), server.log())
    local = b["stats"]["pair"]["local"]
    assert (local["type"], local["relayProtocol"]) == ("relay", "tcp")
    assert "connected from 198.51.100.20:" in server.log()  # media came from the TURN server's relay address


@pytest.fixture
def impaired_link(net: Net) -> Iterator[ImpairedLink]:
    """client1's link impaired like ``tc netem loss 2% delay 80ms 20ms`` in each direction (impairment.py: this
    kernel has no netem, so a userspace NFQUEUE delayer in client1's router holds and drops the real packets)."""
    link = ImpairedLink(net.topology.hosts["nat1"], delay=0.080, jitter=0.020, loss=0.02)
    try:
        yield link
    finally:
        if not link.stats:
            link.close()


def test_chromium_keeps_audio_on_a_lossy_delayed_jittery_link(net: Net, callsd: Any, impaired_link: ImpairedLink,
                                                             record_property: Any) -> None:
    server = callsd(net.server, ice_address_udp="0.0.0.0")
    browser = start_chromium(net.client1, net.server.address, user="chromium", want=250, hold=15, seconds=90)
    peer = start_aiortc(net.client2, net.server.address, user="aiortc", want=10, hold=35, seconds=90)
    b, a = collect(browser, 150), collect(peer, 150)
    link = impaired_link.close()
    audio, flow, rtt = b["stats"]["audio_in"], b["flow"], b["stats"]["pair"]["rtt"]
    record_property("chromium_inbound_audio", audio)
    record_property("chromium_inbound_flow", flow)
    record_property("impaired_link", link)
    print(f"\nimpaired link (2 % loss, 80 ± 20 ms each way): Chromium inbound audio packetsReceived="
          f"{audio['packetsReceived']} packetsLost={audio['packetsLost']} jitter={audio['jitter']} s "
          f"nack={audio['nackCount']} concealed={audio['concealedSamples']}/{audio['totalSamplesReceived']}; "
          f"flow {flow}; ICE pair RTT {rtt} s; delayer {link}")
    assert link["dropped"] > 0 and link["hold_s"]["min"] >= 0.06 and link["hold_s"]["mean"] >= 0.075, link
    assert rtt is not None and rtt >= 0.12, (rtt, _summary(b))  # two delayed legs: the impairment was real
    assert audio["packetsReceived"] >= 250, (_summary(b), server.log())
    assert 0 < audio["packetsLost"] < 0.08 * (audio["packetsReceived"] + audio["packetsLost"]), audio
    assert flow is not None and flow["seconds"] >= 10 and flow["packets_per_s"] >= 40, flow  # Opus: 50 packets/s
    assert flow["longest_stall_s"] <= 1.0, flow  # packets and decoded samples kept growing: no stall over 1 s
    assert a["loud_frames"] >= 10, (a, _summary(b))
