"""The server is the authority on channel and display names (adapters/signaling_names.py, docs/protocol.md)."""

from __future__ import annotations

import pytest
from callsd.adapters.signaling_names import check_channel_id, clean_display_name
from callsd.adapters.signaling_protocol import SignalingError


@pytest.mark.parametrize("name", ["standup", "a", "Team_1.retro-2", "x" * 64])
def test_channel_names_that_follow_the_rule_pass(name: str) -> None:
    assert check_channel_id(name, "join") == name


@pytest.mark.parametrize("name", ["my channel!", "my%20channel", "a<x>", "x" * 65, "café", "a/b", ""])
def test_other_channel_names_are_refused_in_plain_words(name: str) -> None:
    with pytest.raises(SignalingError) as exc:
        check_channel_id(name, "join")
    assert exc.value.code == "invalid_channel" and "letters" in exc.value.message


@pytest.mark.parametrize(("raw", "shown"), [
    ("\u202eevil\u202c", "evil"),
    ("  Ada \t Lovelace\n", "Ada Lovelace"),
    ("\u2067Bob\u2069\u200f", "Bob"),
    ("a\u0000b\u200bc", "abc"),
    ("Zoë 👩\u200d💻", "Zoë 👩\u200d💻"),
])
def test_display_names_lose_invisible_and_direction_characters(raw: str, shown: str) -> None:
    assert clean_display_name(raw, "join") == shown


@pytest.mark.parametrize("raw", ["   ", "\u202e\u202c", "x" * 65, "x" * 300])
def test_empty_or_long_display_names_are_refused(raw: str) -> None:
    with pytest.raises(SignalingError) as exc:
        clean_display_name(raw, "join")
    assert exc.value.code == "invalid_name"


async def test_join_applies_both_rules(start_server, connect) -> None:  # type: ignore[no-untyped-def]
    info, _ = await start_server()
    async with connect(info) as a:
        err = await a.request("join", {"channel_id": "my channel!<x>", "display_name": "Ada"}, expect="error")
        assert (err["code"], err["action"]) == ("invalid_channel", "join")
        err = await a.request("join", {"channel_id": "ok", "display_name": "   "}, expect="error")
        assert err["code"] == "invalid_name"
        err = await a.request("join", {"channel_id": "ok", "display_name": "x" * 300}, expect="error")
        assert err["code"] == "invalid_name"
        ack = await a.request("join", {"channel_id": "ok", "display_name": "\u202eevil\u202c"}, expect="join_ack")
        assert ack["user_id"] == "evil"
