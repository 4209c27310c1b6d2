"""Signaling over a real WebSocket against a real server (media plane stubbed): every action and error path."""

from __future__ import annotations


async def test_join_two_users_see_each_other(start_server, connect):
    info, _ = await start_server()
    async with connect(info) as a, connect(info) as b:
        ack = await a.request("join", {"channel_id": "standup", "display_name": "alice"}, expect="join_ack")
        assert ack["session_id"] == a.session_id
        assert ack["channel_id"] == "standup"
        assert ack["ice_servers"] == []
        assert [p["user_id"] for p in ack["state"]["participants"]] == ["alice"]
        assert ack["state"]["host_id"] == a.session_id
        start = await a.expect("call_start")
        assert start["call_id"] == ack["call_id"]
        assert (await a.expect("user_joined"))["user_id"] == "alice"

        ack_b = await b.request("join", {"channel_id": "standup", "display_name": "bob"}, expect="join_ack")
        assert [p["user_id"] for p in ack_b["state"]["participants"]] == ["alice", "bob"]
        assert all(p["muted"] for p in ack_b["state"]["participants"])
        joined = await a.expect("user_joined")
        assert joined == {"channel_id": "standup", "session_id": b.session_id, "user_id": "bob"}
