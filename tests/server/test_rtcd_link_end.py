"""serve's side of an rtcd host going away mid-request (adapters/media/rtcd_client.py, rtcd_hosts.py).

CI caught it under load: ``kill -9`` of a host while serve's ``GET /system`` health poll was waiting for its answer
made h11 raise ``RemoteProtocolError``, which the poll did not count as a failed request; it escaped into the link's
task group and cancelled the plane's pump before the plane could report its sessions closed. The plane stayed
"alive" with no link, the pages were never told, and calls moved onto it later were never answered. Two rules,
one test each: a broken answer is a failed request (``RtcdApiError``), and however a link ends, its plane is lost.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import pytest
import trio
from callsd.adapters.media import rtcd_hosts
from callsd.adapters.media.events import MediaStateChanged, SessionClosed
from callsd.adapters.media.router import PlaneRouter
from callsd.adapters.media.rtcd_client import RtcdApiError, RtcdEndpoint, system
from callsd.adapters.media.rtcd_hosts import RtcdHosts
from callsd.app.config import RtcConfig, StoreConfig
from callsd.app.rtcd_config import ApiConfig, RtcdConfig
from callsd.app.rtcd_service import RtcdControl, run_service
from rtcd_support import KEY


async def _cut_answers(nursery: trio.Nursery, answer: bytes) -> int:
    """A listener that reads a request head, writes ``answer`` (possibly a part of one) and drops the connection."""

    async def handle(stream: trio.SocketStream) -> None:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = await stream.receive_some(4096)
            if not chunk:
                return
            data += chunk
        if answer:
            await stream.send_all(answer)
        await stream.aclose()

    listeners = await nursery.start(partial(trio.serve_tcp, handle, 0, host="127.0.0.1"))
    return int(listeners[0].socket.getsockname()[1])


@pytest.mark.parametrize("answer", [b"", b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{\"cpu_lo",
                                    b"HTTP/1.1 200 OK\r\nContent-"], ids=["nothing", "half-a-body", "half-a-head"])
async def test_a_host_that_drops_the_connection_mid_answer_is_a_failed_request(nursery: trio.Nursery,
                                                                               answer: bytes) -> None:
    port = await _cut_answers(nursery, answer)
    endpoint = RtcdEndpoint(tls=False, name="127.0.0.1", port=port, address="127.0.0.1")
    with pytest.raises(RtcdApiError):
        await system(endpoint, "token")


async def test_a_link_ended_by_an_exception_reports_its_sessions_lost_and_takes_no_call(
        nursery: trio.Nursery, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The health poll fails with an error nobody expected (a stand-in for any bug in the link's task group): the
    link ends, its plane is reported lost (the call is told at once, ``media_worker_lost``), and a call opened
    afterwards is not placed on it."""
    config = RtcdConfig(api=ApiConfig(port=0, listen="127.0.0.1"), rtc=RtcConfig(ice_port_udp=0, ice_port_tcp=0),
                        store=StoreConfig(data_dir=str(tmp_path / "data")))
    info = await nursery.start(lambda task_status: run_service(config, version="test", control=RtcdControl(),
                                                               task_status=task_status))
    info.state.clients.register("serve-1", KEY)
    polls = 0
    real_system = rtcd_hosts.system

    async def failing_system(*args: Any, **kwargs: Any) -> dict[str, Any]:
        nonlocal polls
        polls += 1
        if polls >= 3:
            raise RuntimeError("a bug in the health poll")
        return await real_system(*args, **kwargs)

    monkeypatch.setattr(rtcd_hosts, "system", failing_system)
    events: list[Any] = []
    hosts = RtcdHosts(info.api_url.rstrip("/"), "serve-1", KEY, resolve_interval=30.0, poll_interval=0.1)
    router = PlaneRouter(RtcConfig(ice_port_udp=0, ice_port_tcp=0), events.append, hosts=hosts)
    await nursery.start(router.serve)
    router.open_session("s1", "c1")
    plane = router.planes[router.session_worker["s1"]]
    with trio.fail_after(20):
        while plane.alive:
            await trio.sleep(0.05)
    assert SessionClosed(session_id="s1", reason="media_worker_lost") in events
    assert MediaStateChanged(session_id="s1", state="disconnected", reason="media_worker_lost", detail="") in events
    router.open_session("s2", "c2")
    assert "s2" not in router.session_worker  # no live host: not placed on the dead link
