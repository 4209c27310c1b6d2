"""Any client input either parses or raises the one declared error; over a live socket every frame gets at most
one answer and the server keeps serving (Hypothesis)."""

from __future__ import annotations

import json
import random

import trio
from callsd.adapters.signaling_protocol import CLIENT_ACTIONS, ClientMessage, SignalingError, parse_message
from hypothesis import given, settings
from hypothesis import strategies as st

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12,
)
messages = st.fixed_dictionaries(
    {"type": st.sampled_from(sorted(CLIENT_ACTIONS)) | st.text(max_size=12)},
    optional={"data": st.dictionaries(
        st.sampled_from(["channel_id", "session_id", "stream_id", "emoji", "type", "sdp", "candidate", "token",
                         "display_name"]) | st.text(max_size=8),
        json_values, max_size=4,
    ) | json_values},
)


@given(st.text(max_size=200) | st.binary(max_size=50) | messages.map(json.dumps))
@settings(max_examples=300, deadline=None)
def test_parse_either_returns_a_message_or_raises_signaling_error(frame):
    try:
        msg = parse_message(frame)
    except SignalingError as exc:
        assert exc.code in {"bad_message", "unknown_type"} and exc.message
    else:
        assert isinstance(msg, ClientMessage) and msg.type in CLIENT_ACTIONS and isinstance(msg.data, dict)


async def test_random_messages_over_a_live_socket_never_break_the_server(start_server, connect):
    rng = random.Random(20261127)
    keys = ["channel_id", "session_id", "stream_id", "emoji", "type", "sdp", "candidate", "token", "display_name"]
    values = [None, True, 0, -1, 1.5, "", "room", "x" * 200, [], {}, ["room"], {"candidate": "c"}, "offer"]
    frames = [
        json.dumps({"type": rng.choice(sorted(CLIENT_ACTIONS) + ["", "nope"]),
                    "data": {rng.choice(keys): rng.choice(values) for _ in range(rng.randrange(4))}})
        for _ in range(80)
    ]
    info, _ = await start_server(calls={"max_participants": 3})
    async with connect(info) as a, connect(info) as b:
        await b.request("join", {"channel_id": "room"}, expect="join_ack")
        for frame in frames:
            await a.ws.send_message(frame)
        await a.send("ping")
        with trio.fail_after(10):
            while (await a.recv())["type"] != "pong":
                pass
        assert all(m["type"] != "error" or m["data"]["code"] != "internal_error" for m in a.seen)
    async with connect(info) as c:
        assert await c.request("ping", expect="pong") == {}
