"""A server behind a port forward (DNAT of udp 8443 and tcp 8080 on its router's public address 198.51.100.3):
without anything telling it its public address the call fails and the server says so, in its log and to the
users; with ``ice_host_override`` (an IP, a host name, PUBLIC/LOCAL mappings) or STUN discovery it works."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest
from net.harness import HTTP_PORT, RTC_PORT, Coturn, Net, run_clients, summary

PUBLIC = "198.51.100.3"  # nat2's public address: where clients reach the hidden server
PRIVATE = "10.2.0.10"  # the hidden server's own (only) address


def _media_states(result: dict[str, Any]) -> list[tuple[str, str, str]]:
    return [(d["session_id"], d["state"], d["reason"]) for kind, d in result["events"] if kind == "user_media_state"]


def _get(net: Net, path: str) -> str:
    """GET http://127.0.0.1:8080<path> from inside the hidden server's namespace."""
    code = (f"import urllib.request;print(urllib.request.urlopen('http://127.0.0.1:{HTTP_PORT}{path}', "
            "timeout=5).read().decode())")
    out = subprocess.run(net.hidden.exec_args(sys.executable, "-c", code), capture_output=True, text=True, timeout=20)
    assert out.returncode == 0, out.stderr
    return out.stdout


def _healthz(net: Net) -> dict[str, Any]:
    return json.loads(_get(net, "/healthz"))  # type: ignore[no-any-return]


def test_without_override_the_call_fails_and_the_server_says_why(net: Net, callsd: Any) -> None:
    server = callsd(net.hidden, ice_address_udp="0.0.0.0", ice_check_timeout=3)
    server.wait_log(f"media: advertising {PRIVATE}:{RTC_PORT} (every interface address")
    assert _healthz(net)["rtc"]["advertised"]["addresses"] == [PRIVATE]
    results = run_clients([net.client1, net.client2], PUBLIC, seconds=8)
    assert all(r["loud_frames"] == 0 for r in results)  # nobody hears anything: the candidate is unreachable
    log = server.wait_log("no ICE check received within 3 s from session")
    for r in results:
        assert (f"no ICE check received within 3 s from session {r['session_id']} — is the advertised address "
                f"{PRIVATE}:{RTC_PORT} reachable from clients?") in log
    # ... and the users are told, about themselves and about each other
    sessions = {r["session_id"] for r in results}
    told = {(sid, state, reason) for sid, state, reason in _media_states(results[0]) + _media_states(results[1])}
    assert {(sid, "failed", "no_ice_check") for sid in sessions} <= told
    # ... and counted
    metrics = _get(net, "/metrics")
    assert 'callsd_rtc_ice_outcomes_total{outcome="no_ice_check"} 2.0' in metrics
    assert 'callsd_rtc_ice_outcomes_total{outcome="connected"} 0.0' in metrics


@pytest.mark.parametrize("override", [PUBLIC, "calls.test", f"{PUBLIC}/{PRIVATE}"],
                         ids=["ip", "hostname", "mapping"])
def test_with_ice_host_override_it_works(net: Net, callsd: Any, override: str) -> None:
    net.topology.hosts_file(net.hidden, {"calls.test": PUBLIC})
    server = callsd(net.hidden, ice_address_udp="0.0.0.0", ice_host_override=override)
    server.wait_log(f"media: advertising {PUBLIC}:{RTC_PORT} (rtc.ice_host_override")
    results = run_clients([net.client1, net.client2], PUBLIC)
    assert all(r["loud_frames"] >= 50 for r in results), summary(results) + "\n" + server.log()
    assert all(("connected" in {s for _, s, _ in _media_states(r)}) for r in results)
    assert "connected from 198.51.100." in server.log()  # the client's address after its own NAT


def test_with_stun_discovery_it_works_without_override(net: Net, callsd: Any, coturn: Coturn) -> None:
    server = callsd(net.hidden, ice_address_udp="0.0.0.0", ice_servers=[coturn.stun_url])
    server.wait_log(f"media: advertising {PUBLIC}:{RTC_PORT} (public address discovered through STUN server "
                    f"{coturn.stun_url})")
    advertised = _healthz(net)["rtc"]["advertised"]
    assert (advertised["addresses"], advertised["source"]) == ([PUBLIC], "stun")
    results = run_clients([net.client1, net.client2], PUBLIC)
    assert all(r["loud_frames"] >= 50 for r in results), summary(results) + "\n" + server.log()
    check = subprocess.run(net.hidden.exec_args(sys.executable, "-m", "callsd.app.cli", "config", "check"),
                           capture_output=True, text=True, timeout=30,
                           env={"CALLSD_RTC_ICE_ADDRESS_UDP": "0.0.0.0",
                                "CALLSD_RTC_ICE_SERVERS": coturn.stun_url, "PATH": "/usr/bin:/bin"})
    assert f"# rtc: advertises {PUBLIC}:{RTC_PORT} (public address discovered through STUN server" in check.stdout


def test_stun_discovery_failure_warns_and_falls_back(net: Net, callsd: Any) -> None:
    server = callsd(net.hidden, ice_address_udp="0.0.0.0", ice_servers=["stun:198.51.100.99:3478"])
    log = server.wait_log("STUN discovery failed")
    assert "no answer from stun:198.51.100.99:3478 within 5 s" in log
    assert f"media: advertising {PRIVATE}:{RTC_PORT} (every interface address" in log


def test_a_host_name_override_is_re_resolved_and_the_change_logged(net: Net, callsd: Any) -> None:
    net.topology.hosts_file(net.hidden, {"calls.test": "198.51.100.77"})  # a stale DNS record at start
    server = callsd(net.hidden, ice_address_udp="0.0.0.0", ice_host_override="calls.test",
                    advertise_refresh_seconds=10)
    assert f"advertised as 198.51.100.77:{RTC_PORT} (rtc.ice_host_override calls.test resolves to" in (
        server.ready_line)
    net.topology.hosts_file(net.hidden, {"calls.test": PUBLIC})  # the record is fixed (same file, same inode)
    server.wait_log(f"media: the advertised address changed: now {PUBLIC}:{RTC_PORT}", timeout=30)
    assert _healthz(net)["rtc"]["advertised"]["addresses"] == [PUBLIC]
    results = run_clients([net.client1, net.client2], PUBLIC)
    assert all(r["loud_frames"] >= 50 for r in results), summary(results) + "\n" + server.log()
