"""The standalone rtcd's HTTP API (app/rtcd_api.py) on a real listener: what needs no auth, registration off and
on, Basic and Bearer, expired bearers, brute force → 429, the key never stored in clear, the /ws link refused
without a bearer, the metrics families, the OpenAPI document, and the drain state."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
import trio
from callsd.app.config import RtcConfig, StoreConfig
from callsd.app.rtcd_config import ApiConfig, RtcdConfig
from callsd.app.rtcd_service import RtcdControl, run_service
from rtcd_support import ADMIN, KEY, basic, http


async def _start(nursery: trio.Nursery, tmp_path: Path, **api: Any) -> tuple[int, Any, RtcdControl]:
    config = RtcdConfig(api=ApiConfig(port=0, **api), rtc=RtcConfig(ice_port_udp=0, ice_port_tcp=0),
                        store=StoreConfig(data_dir=str(tmp_path / "data")))
    control = RtcdControl()
    info = await nursery.start(lambda task_status: run_service(config, version="test", control=control,
                                                               task_status=task_status))
    return int(info.api_url.rsplit(":", 1)[1].rstrip("/")), info, control


async def test_open_endpoints_and_registration_off(nursery: trio.Nursery, tmp_path: Path) -> None:
    port, _, _ = await _start(nursery, tmp_path)
    status, _, body = await http(port, "GET", "/version")
    assert status == 200 and json.loads(body)["version"] == "test"
    assert (await http(port, "GET", "/healthz"))[0] == 200
    status, _, body = await http(port, "GET", "/openapi.json")
    assert status == 200 and "/login" in json.loads(body)["paths"]
    status, _, body = await http(port, "POST", "/register", json_body={"client_id": "a", "auth_key": KEY})
    assert status == 403 and b"registration is off" in body
    # with no admin key configured, a bearer does not open registration either
    status, _, _ = await http(port, "POST", "/register", auth=f"Bearer {ADMIN}",
                              json_body={"client_id": "a", "auth_key": KEY})
    assert status == 403


async def test_register_login_system_and_every_refusal(nursery: trio.Nursery, tmp_path: Path) -> None:
    port, info, _ = await _start(nursery, tmp_path, admin_secret_key=ADMIN, max_failures=50)
    payload = {"client_id": "serve-1", "auth_key": KEY}
    assert (await http(port, "POST", "/register", json_body=payload))[0] == 401  # admin on: no bearer, no entry
    assert (await http(port, "POST", "/register", auth="Bearer " + "x" * 46, json_body=payload))[0] == 401
    short = {"client_id": "serve-1", "auth_key": "k" * 31}
    assert (await http(port, "POST", "/register", auth=f"Bearer {ADMIN}", json_body=short))[0] == 400
    assert (await http(port, "POST", "/register", auth=f"Bearer {ADMIN}", json_body=payload))[0] == 201
    assert (await http(port, "POST", "/register", auth=f"Bearer {ADMIN}", json_body=payload))[0] == 409

    # the key is stored only as an Argon2id hash
    stored = b"".join(p.read_bytes() for p in (tmp_path / "data").iterdir())
    assert KEY.encode() not in stored and b"$argon2id$" in stored

    refusals = [None, basic("serve-1", "w" * 40), basic("nobody", KEY), "Bearer nonsense", f"Bearer {ADMIN}"]
    for auth in refusals:
        status, headers, body = await http(port, "POST", "/login", auth=auth)
        assert status == 401 and json.loads(body) == {"error": "unauthorized"}, auth
        assert (await http(port, "GET", "/system", auth=auth))[0] == 401
    status, _, body = await http(port, "POST", "/login", auth=basic("serve-1", KEY))
    assert status == 200
    login = json.loads(body)
    assert login["expires_at"] > time.time() + 3000
    for auth in (basic("serve-1", KEY), f"Bearer {login['bearer_token']}"):
        status, _, body = await http(port, "GET", "/system", auth=auth)
        assert status == 200
        assert json.loads(body) == {"cpu_load": json.loads(body)["cpu_load"], "sessions": 0, "calls": 0,
                                    "draining": False}
    # an expired bearer, and a bearer with a tampered expiry
    old, _ = info.state.tokens.issue("serve-1", time.time() - 7200)
    assert (await http(port, "GET", "/system", auth=f"Bearer {old}"))[0] == 401
    head, _, mac = login["bearer_token"].rpartition(".")
    forged = head.rsplit(".", 1)[0] + f".{int(time.time()) + 10**6}.{mac}"
    assert (await http(port, "GET", "/system", auth=f"Bearer {forged}"))[0] == 401

    status, _, body = await http(port, "GET", "/metrics", auth=f"Bearer {login['bearer_token']}")
    text = body.decode()
    for family in ("process_cpu_seconds_total", "process_open_fds", "process_max_fds",
                   "process_resident_memory_bytes", "process_virtual_memory_bytes", "rtc_conn_states_total",
                   "rtc_errors_total", "rtc_rtp_bytes_total", "rtc_rtp_packets_total", "rtc_sessions_total",
                   "ws_connections_total", "ws_messages_total"):
        assert f"callsd_rtcd_{family}" in text, family
    assert (await http(port, "GET", "/metrics"))[0] == 401

    # the control link needs a bearer: refused before the upgrade
    from trio_websocket import ConnectionRejected, open_websocket_url

    for headers in ([], [("Authorization", basic("serve-1", KEY))], [("Authorization", f"Bearer {old}")]):
        with pytest.raises(ConnectionRejected) as refused:
            async with open_websocket_url(f"ws://127.0.0.1:{port}/ws", extra_headers=headers):
                pass
        assert refused.value.status_code == 401

    # unregister: the token of a removed client stops working at once
    assert (await http(port, "POST", "/unregister", auth=basic("serve-1", "w" * 40)))[0] == 401
    status, _, _ = await http(port, "POST", "/unregister", auth=basic("serve-1", KEY))
    assert status == 200
    assert (await http(port, "GET", "/system", auth=f"Bearer {login['bearer_token']}"))[0] == 401


async def test_repeated_failures_from_one_address_get_429(nursery: trio.Nursery, tmp_path: Path) -> None:
    port, info, _ = await _start(nursery, tmp_path, admin_secret_key=ADMIN, max_failures=5)
    await http(port, "POST", "/register", auth=f"Bearer {ADMIN}", json_body={"client_id": "c", "auth_key": KEY})
    statuses = [(await http(port, "POST", "/login", auth=basic("c", "w" * 40)))[0] for _ in range(7)]
    assert statuses == [401] * 5 + [429] * 2
    # once limited, even the right key is not looked at from that address
    status, headers, _ = await http(port, "POST", "/login", auth=basic("c", KEY))
    assert status == 429 and int(headers["retry-after"]) > 0
    assert (await http(port, "GET", "/healthz"))[0] == 200  # what needs no auth still answers
    # memory stays bounded whatever the number of addresses
    limiter = info.state.limiter
    for n in range(limiter.max_addresses + 100):
        limiter.failed(f"10.0.{n // 256}.{n % 256}", time.monotonic())
    assert len(limiter) == limiter.max_addresses


async def test_drain_state_is_visible(nursery: trio.Nursery, tmp_path: Path) -> None:
    port, _, control = await _start(nursery, tmp_path, admin_secret_key=ADMIN, allow_self_registration=True)
    assert (await http(port, "POST", "/register", json_body={"client_id": "self", "auth_key": KEY}))[0] == 201
    control.drain()  # no session: the drain completes at once and the service returns
    with trio.fail_after(10):
        while True:
            try:
                await http(port, "GET", "/healthz")
            except (OSError, trio.BrokenResourceError):
                break
            await trio.sleep(0.05)


async def test_rtcd_dashboard_uses_only_exported_metrics(nursery: trio.Nursery, tmp_path: Path) -> None:
    """deploy/grafana/callsd-rtcd.json: every family it queries is exported by a real rtcd, or by serve's
    placement collector (the serve panels)."""
    import re

    from callsd.adapters.media.placement_metrics import PlacementCollector
    from callsd.adapters.media.router import PlaneRouter
    from callsd.adapters.media.rtcd_hosts import RtcdHosts
    from prometheus_client import CollectorRegistry, generate_latest

    port, info, _ = await _start(nursery, tmp_path, admin_secret_key=ADMIN)
    info.state.clients.register("c", KEY)
    _, _, body = await http(port, "GET", "/metrics", auth=basic("c", KEY))
    registry = CollectorRegistry()
    router = PlaneRouter(RtcConfig(), lambda event: None, hosts=RtcdHosts("http://rtcd.invalid:8045", "c", KEY))
    registry.register(PlacementCollector(router))
    text = body.decode() + generate_latest(registry).decode()
    exported = set(re.findall(r"^(callsd_\w+)", text, re.M)) | set(re.findall(r"^# TYPE (callsd_\w+) ", text, re.M))
    dashboard = json.loads((Path(__file__).resolve().parents[2] / "deploy/grafana/callsd-rtcd.json").read_text())
    used = {name for p in dashboard["panels"] for t in p["targets"] for name in re.findall(r"callsd_\w+", t["expr"])}
    assert len(used) > 10 and used <= exported, used - exported
