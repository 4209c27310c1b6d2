"""The hub and the media plane: SDP reaches the plane, plane events become core inputs, routes go back; metrics."""

from __future__ import annotations

import re
from typing import Any

import pytest
import trio
from callsd.adapters.media.events import SendSignal, SessionClosed, TrackPublished, VoiceActivity
from callsd.core.calls.events import TrackKind
from callsd.core.calls.outputs import RouteAdded, RouteRemoved, RouteResumed


class FakePlane:
    """Records the server's calls; the test drives ``emit`` as the real plane would."""

    def __init__(self, config: Any, emit: Any) -> None:
        self.emit = emit
        self.calls: list[tuple[str, Any]] = []
        self.simulcast: dict[str, bool] = {}
        self.counters = {"rtp_in": 7, "rtp_out": 12, "rtp_bytes_in": 700, "rtp_bytes_out": 1200}

    async def serve(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started(("127.0.0.1", 40000))
        await trio.sleep_forever()

    def open_session(self, session_id: str, channel_id: str, simulcast: bool = True) -> None:
        self.calls.append(("open", session_id))
        self.simulcast[session_id] = simulcast

    def close_session(self, session_id: str) -> None:
        self.calls.append(("close", session_id))

    def set_screen_stream(self, session_id: str, stream_id: str | None) -> None:
        self.calls.append(("screen", (session_id, stream_id)))

    def handle_signal(self, session_id: str, msg: dict[str, Any]) -> None:
        self.calls.append(("signal", (session_id, msg)))
        if msg.get("sdp") == "garbage":
            raise ValueError("no m-lines")
        if msg["type"] == "offer":
            self.emit(SendSignal(session_id=session_id, msg={"type": "answer", "sdp": "v=0 answer"}))

    def apply(self, outputs: list[Any]) -> None:
        self.calls.extend(("route", o) for o in outputs)

    def restore_routes(self, routes: Any) -> None:
        self.calls.extend(("restore", r) for r in routes)

    async def refresh_counters(self, timeout: float = 1.0) -> None:
        self.calls.append(("refresh_counters", None))

    def media_counters(self) -> dict[str, int]:
        return dict(self.counters)

    def routes(self) -> list[Any]:
        return [o for kind, o in self.calls if kind == "route"]


async def _wait_for(predicate: Any) -> None:
    with trio.fail_after(5):
        while not predicate():
            await trio.sleep(0.01)


@pytest.mark.parametrize("enabled", [True, False])
async def test_the_plane_opens_each_session_with_the_servers_simulcast_setting(start_server, connect,
                                                                                enabled: bool) -> None:
    """``calls.enable_simulcast`` goes to the media plane with every session it opens (a remote rtcd host shared by
    servers with different settings answers each session as its own server would), and to the client in
    ``join_ack``."""
    planes: list[FakePlane] = []

    def factory(config: Any, emit: Any) -> FakePlane:
        planes.append(FakePlane(config, emit))
        return planes[-1]

    info, _ = await start_server(media=True, plane_factory=factory, calls={"enable_simulcast": enabled})
    async with connect(info) as a:
        ack = await a.request("join", {"channel_id": "room"}, expect="join_ack")
        await _wait_for(lambda: a.session_id in planes[0].simulcast)
        assert planes[0].simulcast[a.session_id] is enabled and ack["simulcast"] is enabled


async def test_sdp_and_tracks_flow_between_signaling_core_and_plane(start_server, connect, http_get):
    planes: list[FakePlane] = []

    def factory(config: Any, emit: Any) -> FakePlane:
        planes.append(FakePlane(config, emit))
        return planes[-1]

    info, _ = await start_server(media=True, plane_factory=factory)
    plane = planes[0]
    assert info.rtc_address == ("127.0.0.1", 40000)
    async with connect(info) as a, connect(info) as b:
        await a.request("join", {"channel_id": "room"}, expect="join_ack")
        assert ("open", a.session_id) in plane.calls
        answer = await a.request("sdp", {"type": "offer", "sdp": "v=0 offer"}, expect="signal")
        assert answer == {"type": "answer", "sdp": "v=0 answer"}
        assert ("signal", (a.session_id, {"type": "offer", "sdp": "v=0 offer"})) in plane.calls
        await a.send("ice", {"candidate": {"candidate": "candidate:1 1 udp 1 127.0.0.1 5000 typ host",
                                           "sdpMid": "0", "sdpMLineIndex": 0}})
        await _wait_for(lambda: any(k == "signal" and m[1]["type"] == "candidate" for k, m in plane.calls))
        assert await a.error("sdp", {"type": "offer", "sdp": "garbage"}) == "sdp_rejected"

        plane.emit(TrackPublished(session_id=a.session_id, track_id="a-mic", kind=TrackKind.AUDIO))
        await b.request("join", {"channel_id": "room"}, expect="join_ack")
        await _wait_for(lambda: any(isinstance(r, RouteAdded) for r in plane.routes()))
        added = [r for r in plane.routes() if isinstance(r, RouteAdded)]
        assert [(r.track_id, r.publisher_id, r.receiver_id, r.paused) for r in added] == [
            ("a-mic", a.session_id, b.session_id, True)  # joined muted: the route starts paused
        ]
        await a.send("unmute")
        await _wait_for(lambda: any(isinstance(r, RouteResumed) for r in plane.routes()))

        plane.emit(VoiceActivity(session_id=a.session_id, speaking=True))
        assert await b.expect("user_voice_on") == {"channel_id": "room", "session_id": a.session_id}
        state = await b.request("get_state", expect="call_state")
        assert state["participants"][0]["speaking"] is True
        plane.emit(VoiceActivity(session_id=a.session_id, speaking=False))
        assert (await b.expect("user_voice_off"))["session_id"] == a.session_id

        await a.send("screen_on", {"stream_id": "screen-1"})
        await _wait_for(lambda: ("screen", (a.session_id, "screen-1")) in plane.calls)

        plane.emit(SessionClosed(session_id=a.session_id, reason="consent expired"))
        await _wait_for(lambda: any(isinstance(r, RouteRemoved) for r in plane.routes()))

        await b.send("leave")
        await b.expect("user_left")
        assert ("close", b.session_id) in plane.calls

    # /metrics after the call shows sessions, media and WebSocket events
    status, _, body = await http_get(info.http_port, "/metrics")
    assert status == 200
    text = body.decode()

    def value(name: str) -> float:
        match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
        assert match, name
        return float(match.group(1))

    assert value("callsd_rtc_sessions_total") == 2
    assert value("callsd_websocket_connections_total") == 2
    assert value("callsd_websocket_connections_open") == 0
    assert value('callsd_websocket_events_total{direction="in",type="join"}') == 2
    assert value('callsd_websocket_events_total{direction="in",type="sdp"}') == 2
    assert value('callsd_websocket_events_total{direction="out",type="join_ack"}') == 2
    assert value('callsd_websocket_events_total{direction="out",type="user_voice_on"}') == 2
    assert value('callsd_rtc_rtp_packets_total{direction="in",type="rtp"}') == 7
    assert value('callsd_rtc_rtp_bytes_total{direction="out",type="rtp"}') == 1200
    assert value('callsd_rtc_errors_total{type="sdp"}') == 1
    assert value('callsd_store_ops_total{op="append"}') >= 8
    assert value("callsd_calls") == 1 and value("callsd_participants") == 1  # a is still in (disconnected)
    assert value("callsd_process_cpu_seconds_total") > 0
    assert value("callsd_process_open_fds") > 0
    assert re.search(r'^callsd_info\{draining="false",version="[^"]+"\} 1\.0$', text, re.M)


async def test_grafana_dashboard_uses_only_exported_metrics(start_server, http_get):
    import json
    from pathlib import Path

    dashboard = json.loads((Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "callsd.json").read_text())
    used = {name for p in dashboard["panels"] for t in p["targets"] for name in re.findall(r"callsd_\w+", t["expr"])}
    info, _ = await start_server(media=True, plane_factory=FakePlane)
    _, _, body = await http_get(info.http_port, "/metrics")
    text = body.decode()
    exported = set(re.findall(r"^(callsd_\w+)", text, re.M))
    exported |= set(re.findall(r"^# TYPE (callsd_\w+) ", text, re.M))
    assert used and used <= exported, used - exported
