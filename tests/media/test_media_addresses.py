"""What the RTC port advertises (adapters/media/addresses.py), STUN discovery against a real coturn, the ICE
outcome watch, the system check, and what ``callsd config check`` prints about them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from callsd.adapters.media.addresses import (
    HostMapping,
    HostOverride,
    interface_addresses,
    parse_host_override,
    plan_advertised,
)
from callsd.adapters.media.events import MediaStateChanged
from callsd.adapters.media.ice_outcome import IceOutcomeWatch
from callsd.adapters.media.stun_discovery import parse_stun_url, query_stun
from callsd.adapters.media.system_check import check_system
from callsd.app.config import ConfigError, load_config
from callsd.core.wire.negotiation import LocalTransport, Negotiator, OfferAnswered
from callsd.core.wire.sdp import parse_sdp
from hypothesis import given
from hypothesis import strategies as st
from turn_support import Coturn

NO_NAMES: Any = lambda name: []  # noqa: E731
IFACES = ["127.0.0.1", "10.0.0.5", "192.168.7.2", "::1", "fd00::5", "fe80::1"]


# --- parsing rtc.ice_host_override ---------------------------------------------------------------------------------

def test_override_forms() -> None:
    assert parse_host_override("") == HostOverride()
    assert parse_host_override(" 203.0.113.7 ") == HostOverride(ip="203.0.113.7")
    assert parse_host_override("calls.example.org") == HostOverride(hostname="calls.example.org")
    assert parse_host_override("203.0.113.7/10.0.0.5, 203.0.113.8/192.168.7.2") == HostOverride(mappings=(
        HostMapping(public="203.0.113.7", local="10.0.0.5"), HostMapping(public="203.0.113.8", local="192.168.7.2")))


@pytest.mark.parametrize(("text", "message"), [
    ("0.0.0.0", "cannot be advertised"),
    ("203.0.113.7/", "mapping 1 must be PUBLIC_IP/LOCAL_IP"),
    ("203.0.113.7/10.0.0.5,x/10.0.0.6", "mapping 2 must be PUBLIC_IP/LOCAL_IP"),
    ("0.0.0.0/10.0.0.5", "cannot be advertised"),
    ("1.2.3.4/10.0.0.5,5.6.7.8/10.0.0.5", "one mapping only"),
    ("bad host!", "must be an IP address, a host name or PUBLIC/LOCAL mappings"),
])
def test_bad_overrides_say_why(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_host_override(text)
    with pytest.raises(ConfigError, match=message):
        load_config(None, {"CALLSD_RTC_ICE_HOST_OVERRIDE": text})


# --- the plan ------------------------------------------------------------------------------------------------------

def test_a_wildcard_bind_advertises_every_usable_interface_never_the_wildcard() -> None:
    adv = plan_advertised(bind="0.0.0.0", port=8443, override=HostOverride(), interfaces=IFACES)
    assert adv.addresses == ("10.0.0.5", "192.168.7.2")
    assert adv.source == "interfaces" and "0.0.0.0" in adv.reason
    assert adv.describe().startswith("10.0.0.5:8443, 192.168.7.2:8443 (every interface address")
    v6 = plan_advertised(bind="::", port=8443, override=HostOverride(), interfaces=IFACES)
    assert v6.addresses == ("fd00::5",) and v6.describe().startswith("[fd00::5]:8443")


def test_dual_stack_advertises_both_families_ipv4_first_and_keeps_global_ipv6_with_stun() -> None:
    interfaces = ["127.0.0.1", "10.0.0.5", "::1", "2001:db8::5", "fe80::1"]
    adv = plan_advertised(bind="::", port=8443, override=HostOverride(), interfaces=interfaces, dual_stack=True)
    assert adv.addresses == ("10.0.0.5", "2001:db8::5") and "dual-stack" in adv.reason
    with_stun = plan_advertised(bind="::", port=8443, override=HostOverride(), interfaces=["10.0.0.5", "2600::5"],
                                dual_stack=True, discovered="198.51.100.3", discovered_via="STUN server s")
    assert with_stun.addresses == ("198.51.100.3", "2600::5")
    with pytest.raises(ConfigError, match="rtc.enable_ipv6: needs rtc.ice_address_udp"):
        load_config(None, {"CALLSD_RTC_ENABLE_IPV6": "true", "CALLSD_RTC_ICE_ADDRESS_UDP": "10.0.0.5"})


def test_a_wildcard_bind_on_a_loopback_only_host_warns() -> None:
    adv = plan_advertised(bind="0.0.0.0", port=8443, override=HostOverride(), interfaces=["127.0.0.1"])
    assert adv.addresses == ("127.0.0.1",) and adv.source == "loopback_only"
    assert "no non-loopback address" in adv.warnings[0]


def test_precedence_override_then_stun_then_bind() -> None:
    ip = plan_advertised(bind="0.0.0.0", port=8443, override=HostOverride(ip="203.0.113.7"), interfaces=IFACES,
                         discovered="198.51.100.3")
    assert (ip.addresses, ip.source) == (("203.0.113.7",), "override_ip")
    stun = plan_advertised(bind="0.0.0.0", port=8443, override=HostOverride(), interfaces=IFACES,
                           discovered="198.51.100.3", discovered_via="STUN server stun:s:3478")
    assert (stun.addresses, stun.source) == (("198.51.100.3",), "stun") and "stun:s:3478" in stun.reason
    bound = plan_advertised(bind="10.0.0.5", port=8443, port_override=443, override=HostOverride(), interfaces=IFACES)
    assert (bound.addresses, bound.port, bound.source) == (("10.0.0.5",), 443, "bind")


def test_a_host_name_is_resolved_and_falls_back_with_a_warning_when_it_does_not() -> None:
    named = plan_advertised(bind="0.0.0.0", port=8443, override=HostOverride(hostname="calls.example.org"),
                            interfaces=IFACES, resolve=lambda name: ["203.0.113.9", "2001:db8::9"])
    assert (named.addresses, named.source) == (("203.0.113.9",), "override_hostname")
    assert "calls.example.org resolves to 203.0.113.9" in named.reason
    lost = plan_advertised(bind="0.0.0.0", port=8443, override=HostOverride(hostname="calls.example.org"),
                           interfaces=IFACES, resolve=NO_NAMES)
    assert lost.addresses == ("10.0.0.5", "192.168.7.2") and "does not resolve" in lost.warnings[0]


def test_mappings_advertise_one_public_address_per_local_interface() -> None:
    override = parse_host_override("203.0.113.7/10.0.0.5,203.0.113.8/192.168.7.2,203.0.113.9/172.16.0.1")
    adv = plan_advertised(bind="0.0.0.0", port=8443, override=override, interfaces=IFACES)
    assert adv.addresses == ("203.0.113.7", "203.0.113.8") and adv.source == "override_mappings"
    assert "172.16.0.1 is not an address of this host" in adv.warnings[0]
    bound = plan_advertised(bind="192.168.7.2", port=8443, override=override, interfaces=IFACES)
    assert bound.addresses == ("203.0.113.8",)


def test_every_advertised_address_becomes_a_host_candidate() -> None:
    offer = (Path(__file__).resolve().parent / "data" / "offer_chromium.sdp").read_text()
    neg = Negotiator(transport=LocalTransport(ice_ufrag="srvu", ice_pwd="serverpassword0123456789",
                                              fingerprint="sha-256 " + ":".join(["AB"] * 32), host="10.0.0.5",
                                              extra_hosts=("192.168.7.2",), port=8443), session_id=1)
    result = neg.handle_offer(offer)
    assert isinstance(result, OfferAnswered)
    section = parse_sdp(result.answer).media[0]
    assert section.connection == "IN IP4 10.0.0.5"
    assert [(c.address, c.port, c.type, c.foundation) for c in section.candidates] == [
        ("10.0.0.5", 8443, "host", "1"), ("192.168.7.2", 8443, "host", "2")]
    assert section.candidates[0].priority > section.candidates[1].priority


def test_interface_addresses_lists_this_hosts_loopback() -> None:
    found = interface_addresses()
    assert "127.0.0.1" in found and "0.0.0.0" not in found


# --- STUN discovery -------------------------------------------------------------------------------------------------

def test_stun_urls() -> None:
    assert parse_stun_url("stun:stun.example.org") == ("stun.example.org", 3478)
    assert parse_stun_url("stun:198.51.100.20:3479") == ("198.51.100.20", 3479)
    assert parse_stun_url("stun:[2001:db8::1]:3478") == ("2001:db8::1", 3478)
    with pytest.raises(ValueError):
        parse_stun_url("turn:x:3478")


def test_stun_discovery_against_coturn_and_its_failure(tmp_path: Path) -> None:
    coturn = Coturn(tmp_path, secret="s").start()
    try:
        answer = query_stun(f"stun:127.0.0.1:{coturn.port}", bind="127.0.0.1", timeout=5)
        assert (answer.address, answer.error) == ("127.0.0.1", "")
    finally:
        coturn.stop()
    silent = query_stun(f"stun:127.0.0.1:{coturn.port}", bind="127.0.0.1", timeout=0.6)
    assert silent.address is None and "no answer from" in silent.error and "within 0.6 s" in silent.error


# --- the ICE outcome watch ------------------------------------------------------------------------------------------

class _Ice:
    def __init__(self) -> None:
        self.addresses: set[tuple[object, ...]] = set()


class _Peer:
    def __init__(self) -> None:
        self.ice = _Ice()
        self.connected = False


def test_no_check_within_the_timeout_is_reported_once_then_a_late_connection_too(
        caplog: pytest.LogCaptureFixture) -> None:
    events: list[MediaStateChanged] = []
    watch = IceOutcomeWatch(timeout=10, advertised=lambda: "10.2.0.10:8443", emit=events.append)
    peers = {"s1": _Peer(), "s2": _Peer()}
    watch.peer_added("s1", 0.0)
    watch.peer_added("s2", 0.0)
    peers["s2"].ice.addresses.add(("198.51.100.2", 4000))
    watch.check(9.9, peers.get)
    assert events == []
    watch.check(10.0, peers.get)
    watch.check(10.5, peers.get)
    assert [(e.session_id, e.state, e.reason) for e in events] == [("s1", "failed", "no_ice_check"),
                                                                    ("s2", "failed", "no_dtls")]
    assert ("no ICE check received within 10 s from session s1 — is the advertised address 10.2.0.10:8443 "
            "reachable from clients?") in caplog.text
    watch.connected("s2", ("198.51.100.2", 4000), 11.0)
    watch.closed("s2", "consent_expired")
    assert [(e.state, e.detail or e.reason) for e in events[2:]] == [("connected", "198.51.100.2:4000"),
                                                                      ("disconnected", "consent_expired")]
    assert watch.counters.as_dict() == {"ice_outcome_connected": 1, "ice_outcome_no_ice_check": 1,
                                        "ice_outcome_no_dtls": 1, "ice_outcome_disconnected": 1}


def test_media_state_events_cross_the_media_worker_link() -> None:
    from callsd.adapters.media.remote import decode_media_event, encode_media_event

    event = MediaStateChanged(session_id="s1", state="failed", reason="no_ice_check", detail="10.2.0.10:8443")
    assert decode_media_event(encode_media_event(event)) == event


# --- system check ---------------------------------------------------------------------------------------------------

def test_short_limits_give_the_exact_sysctl_lines(tmp_path: Path) -> None:
    for name, value in (("rmem_max", 212992), ("wmem_max", 16777216), ("optmem_max", 20480)):
        (tmp_path / name).write_text(f"{value}\n")
    report = check_system(rcvbuf=4194304, sndbuf=4194304, got=(212992, 4194304), proc=tmp_path)
    assert report.fixes == ("net.core.rmem_max = 4194304", "net.core.optmem_max = 16777216")
    text = "\n".join(report.lines())
    assert "sysctl -w net.core.rmem_max=4194304" in text and "/etc/sysctl.d/60-callsd.conf" in text
    assert check_system(rcvbuf=65536, sndbuf=65536, got=(65536, 65536), proc=tmp_path).ok


# --- config check ---------------------------------------------------------------------------------------------------

def _config_check(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CALLSD_")}
    return subprocess.run([sys.executable, "-m", "callsd.app.cli", "config", "check", *args], capture_output=True,
                          text=True, env={**clean, **env}, timeout=30)


def test_config_check_says_what_will_be_advertised_and_checks_the_system() -> None:
    wildcard = _config_check("--system", CALLSD_RTC_ICE_ADDRESS_UDP="0.0.0.0")
    assert wildcard.returncode == 0, wildcard.stderr
    line = next(x for x in wildcard.stdout.splitlines() if x.startswith("# rtc: advertises"))
    assert "0.0.0.0:" not in line and "every interface address" in line
    assert any(x.startswith("# system: net.core.rmem_max = ") for x in wildcard.stdout.splitlines())
    mapped = _config_check(CALLSD_RTC_ICE_ADDRESS_UDP="127.0.0.1",
                           CALLSD_RTC_ICE_HOST_OVERRIDE="203.0.113.7/127.0.0.1")
    assert "# rtc: advertises 203.0.113.7:8443 (rtc.ice_host_override mappings: 203.0.113.7 for 127.0.0.1)" in (
        mapped.stdout)
    failing = _config_check(CALLSD_RTC_ICE_ADDRESS_UDP="127.0.0.1", CALLSD_RTC_ICE_SERVERS="stun:127.0.0.1:9")
    assert "# rtc: warning: STUN discovery failed: " in failing.stdout
    assert "# rtc: advertises 127.0.0.1:8443 (rtc.ice_address_udp)" in failing.stdout


# --- any input parses or raises the one declared error --------------------------------------------------------------

_OVERRIDE_ALPHABET = "0123456789abcdef.:/, -x"


@given(st.text(alphabet=_OVERRIDE_ALPHABET, max_size=60) | st.text(max_size=40))
def test_any_override_text_parses_or_raises_value_error(text: str) -> None:
    try:
        override = parse_host_override(text)
    except ValueError:
        return
    assert sum(bool(x) for x in (override.ip, override.hostname, override.mappings)) <= 1
    plan = plan_advertised(bind="0.0.0.0", port=8443, override=override, interfaces=IFACES, resolve=NO_NAMES)
    assert plan.addresses and "0.0.0.0" not in plan.addresses


@given(st.text(max_size=60))
def test_any_stun_url_parses_or_raises_value_error(text: str) -> None:
    try:
        host, port = parse_stun_url(text)
    except ValueError:
        return
    assert host and 0 < port < 65536
