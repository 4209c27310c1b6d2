"""Protocol 1.1 details an outside client relies on (docs/protocol.md, issue 9 section 6): error.action always names
the failing message's type, request ids are echoed on direct replies, a muted session is never speaking, the protocol
minor version. (Which reconnect window applies across a restart: tests/server/test_server_process.py.)"""

from __future__ import annotations

from typing import Any

import trio
import trio.testing
from callsd.adapters.media.events import SendSignal, SignalRejected, VoiceActivity
from callsd.adapters.signaling import HubSettings, NullMediaPlane, SignalingHub
from hub_support import MemoryRecorder, MemoryTransport, connected


class AnsweringPlane(NullMediaPlane):
    """Answers every offer (through the hub's ``emit``, as the real plane does) unless its SDP says ``refuse``."""

    def __init__(self) -> None:
        super().__init__()
        self.hub: SignalingHub | None = None

    def handle_signal(self, session_id: str, msg: dict[str, Any]) -> None:
        self.calls.append(("handle_signal", (session_id, msg)))
        assert self.hub is not None
        if msg.get("type") == "offer":
            if msg["sdp"] == "refuse":
                self.hub.emit(SignalRejected(session_id=session_id, action="sdp", reason="too_many_tracks: no"))
            else:
                self.hub.emit(SendSignal(session_id=session_id, msg={"type": "answer", "sdp": "v=0 answer"}))


def _hub(**settings: Any) -> tuple[SignalingHub, AnsweringPlane]:
    rec, plane = MemoryRecorder(), AnsweringPlane()
    hub = SignalingHub(rec, rec.machine, plane=plane, settings=HubSettings(**settings),
                       clock_ms=lambda: int(trio.current_time() * 1000))
    plane.hub = hub
    return hub, plane


async def _reply(socket: MemoryTransport, kind: str, data: dict[str, Any] | None = None, **top: Any) -> dict[str, Any]:
    """Send one message; return the next message the server sends that is not a broadcast."""
    seen = len(socket.sent)
    await socket.push(kind, data, **top)
    await trio.testing.wait_all_tasks_blocked()
    return next(m for m in socket.sent[seen:] if not m["type"].startswith(("user_", "call_start")))


async def test_hello_names_the_protocol_minor_version() -> None:
    hub, _ = _hub()
    async with trio.open_nursery() as nursery:
        await nursery.start(hub.run)
        a = await connected(hub, nursery)
        assert (a.sent[0]["data"]["protocol"], a.sent[0]["data"]["protocol_minor"]) == (1, 4)
        nursery.cancel_scope.cancel()


async def test_error_action_names_the_type_of_unknown_and_rate_limited_messages() -> None:
    hub, _ = _hub(rate=1.0, burst=2)
    async with trio.open_nursery() as nursery:
        await nursery.start(hub.run)
        a = await connected(hub, nursery)
        err = await _reply(a, "fly")
        assert (err["data"]["code"], err["data"]["action"]) == ("unknown_type", "fly")
        await _reply(a, "ping")
        err = await _reply(a, "get_state", id="r-9")  # the burst of 2 is spent: this one is dropped
        assert (err["data"]["code"], err["data"]["action"], err["id"]) == ("rate_limited", "get_state", "r-9")
        nursery.cancel_scope.cancel()


async def test_direct_replies_echo_the_request_id_and_broadcasts_do_not() -> None:
    hub, _ = _hub(rate=1e9, burst=10**9)
    async with trio.open_nursery() as nursery:
        await nursery.start(hub.run)
        a = await connected(hub, nursery)
        ack = await _reply(a, "join", {"channel_id": "c"}, id="join-1")
        assert (ack["type"], ack["id"]) == ("join_ack", "join-1")
        assert all("id" not in m for m in a.sent if m["type"] in ("user_joined", "call_start", "hello"))
        assert (await _reply(a, "ping", id=7)) == {"type": "pong", "data": {}, "id": 7}
        state = await _reply(a, "get_state", id=2.5)
        assert (state["type"], state["id"]) == ("call_state", 2.5)
        answer = await _reply(a, "sdp", {"type": "offer", "sdp": "v=0 offer"}, id="o-1")
        assert (answer["type"], answer["data"]["type"], answer["id"]) == ("signal", "answer", "o-1")
        refused = await _reply(a, "sdp", {"type": "offer", "sdp": "refuse"}, id="o-2")
        assert (refused["data"]["code"], refused["id"]) == ("sdp_rejected", "o-2")
        error = await _reply(a, "screen_off", id="x")  # refused by the core
        assert (error["type"], error["data"]["code"], error["id"]) == ("error", "not_sharing", "x")
        error = await _reply(a, "nope", id="u")
        assert (error["data"]["code"], error["id"]) == ("unknown_type", "u")
        error = await _reply(a, "ping", id="z" * 65)
        assert (error["data"]["code"], error["data"]["action"], "id" in error) == ("bad_message", "ping", False)
        assert (await _reply(a, "ping")) == {"type": "pong", "data": {}}  # no id sent: none echoed
        nursery.cancel_scope.cancel()


async def test_a_muted_session_is_never_speaking() -> None:
    hub, _ = _hub(rate=1e9, burst=10**9)
    async with trio.open_nursery() as nursery:
        await nursery.start(hub.run)
        a, b = await connected(hub, nursery), await connected(hub, nursery)
        await _reply(a, "join", {"channel_id": "c"})
        await _reply(b, "join", {"channel_id": "c"})
        sid = a.last("join_ack")["data"]["session_id"]

        async def voice(speaking: bool) -> list[str]:
            seen = len(b.sent)
            hub.emit(VoiceActivity(session_id=sid, speaking=speaking))
            await trio.testing.wait_all_tasks_blocked()
            return [m["type"] for m in b.sent[seen:]]

        assert await voice(True) == []  # sessions join muted: their audio level is ignored
        await a.push("unmute")
        await trio.testing.wait_all_tasks_blocked()
        assert await voice(True) == ["user_voice_on"]
        seen = len(b.sent)
        await a.push("mute")
        await trio.testing.wait_all_tasks_blocked()
        assert [m["type"] for m in b.sent[seen:]] == ["user_muted", "user_voice_off"]  # mute ends speaking
        assert await voice(True) == []  # still talking into a muted microphone: not speaking
        state = await _reply(b, "get_state")
        assert [p["speaking"] for p in state["data"]["participants"]] == [False, False]
        nursery.cancel_scope.cancel()


async def test_join_ack_tells_the_client_whether_it_may_publish_simulcast() -> None:
    """``join_ack.simulcast`` is ``calls.enable_simulcast``: the page publishes layers only when it is true."""
    for allowed in (True, False):
        hub, _ = _hub(rate=1e9, burst=10**9, simulcast=allowed)
        async with trio.open_nursery() as nursery:
            await nursery.start(hub.run)
            a = await connected(hub, nursery)
            ack = await _reply(a, "join", {"channel_id": "sim", "display_name": "Ada"})
            assert ack["type"] == "join_ack" and ack["data"]["simulcast"] is allowed
            nursery.cancel_scope.cancel()
