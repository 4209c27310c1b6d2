"""Token auth, the open-mode loopback rule and TURN REST credentials: unit level and over a real WebSocket."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

import pytest
from callsd.app.auth import (
    TokenError,
    check_open_mode_allowed,
    create_token,
    parse_ttl,
    turn_credentials,
    verify_token,
)
from callsd.app.server import StartupError, serve

SECRET = "s3cret-s3cret-s3cret"


def test_token_round_trip_and_refusals():
    now = 1_800_000_000
    token = create_token(secret=SECRET, user_id="alice", channels=["standup"], expires_at=now + 60)
    claims = verify_token(token, secret=SECRET, now=now, channel_id="standup")
    assert (claims.user_id, claims.channels) == ("alice", ("standup",))

    with pytest.raises(TokenError) as exc:
        verify_token(token, secret=SECRET, now=now + 61)
    assert exc.value.code == "token_expired" and "expired" in exc.value.message

    with pytest.raises(TokenError) as exc:
        verify_token(token, secret=SECRET, now=now, channel_id="other")
    assert exc.value.code == "channel_forbidden" and "'other'" in exc.value.message

    with pytest.raises(TokenError) as exc:
        verify_token(token, secret="another-secret-of-length", now=now)
    assert exc.value.code == "unauthorized" and "signature" in exc.value.message

    head, payload, sig = token.split(".")
    forged = json.loads(base64.urlsafe_b64decode(payload + "=="))
    forged["c"] = ["*"]
    forged_part = base64.urlsafe_b64encode(json.dumps(forged).encode()).rstrip(b"=").decode()
    with pytest.raises(TokenError) as exc:
        verify_token(f"{head}.{forged_part}.{sig}", secret=SECRET, now=now)
    assert exc.value.code == "unauthorized"

    for bad in (None, "", "v1.abc", "v2.a.b", "v1.!!.!!", 42):
        with pytest.raises(TokenError) as exc:
            verify_token(bad, secret=SECRET, now=now)
        assert exc.value.code == "unauthorized"

    wildcard = create_token(secret=SECRET, user_id="bob", channels=["*"], expires_at=now + 60)
    assert verify_token(wildcard, secret=SECRET, now=now, channel_id="anything").user_id == "bob"


def test_open_mode_only_on_loopback():
    assert check_open_mode_allowed("127.0.0.1") is None
    assert check_open_mode_allowed("::1") is None
    for address in ("0.0.0.0", "192.0.2.10", "::"):
        problem = check_open_mode_allowed(address)
        assert problem is not None and "loopback" in problem and "token" in problem


async def test_server_refuses_open_mode_on_non_loopback_bind(tmp_path):
    from callsd.app.config import load_config

    config = load_config(None, {"CALLSD_HTTP_LISTEN": "0.0.0.0", "CALLSD_HTTP_PORT": "0",
                                "CALLSD_STORE_DATA_DIR": str(tmp_path)})
    with pytest.raises(StartupError, match="loopback"):
        await serve(config, media=False)  # refuses before binding anything


def test_turn_rest_credentials():
    username, password = turn_credentials(secret="turnsecret", session_id="sess1", now=1000, ttl_seconds=600)
    assert username == "1600:sess1"
    expected = base64.b64encode(hmac.new(b"turnsecret", b"1600:sess1", hashlib.sha1).digest()).decode()
    assert password == expected


def test_parse_ttl():
    assert [parse_ttl(t) for t in ("90", "90s", "15m", "1h", "7d")] == [90, 90, 900, 3600, 604800]
    for bad in ("", "h", "-1h", "0", "1y"):
        with pytest.raises(ValueError):
            parse_ttl(bad)


async def test_token_mode_over_websocket(start_server, connect):
    info, _ = await start_server(auth={"mode": "token", "secret": SECRET})
    now = int(time.time())
    good = create_token(secret=SECRET, user_id="alice", channels=["standup"], expires_at=now + 600)
    expired = create_token(secret=SECRET, user_id="alice", channels=["standup"], expires_at=now - 5)
    tampered = good[:-3] + ("AAA" if not good.endswith("AAA") else "BBB")
    async with connect(info) as c:
        assert await c.error("join", {"channel_id": "standup"}) == "unauthorized"
        assert await c.error("join", {"channel_id": "standup", "token": expired}) == "token_expired"
        assert await c.error("join", {"channel_id": "standup", "token": tampered}) == "unauthorized"
        assert await c.error("join", {"channel_id": "other", "token": good}) == "channel_forbidden"
        ack = await c.request("join", {"channel_id": "standup", "token": good, "display_name": "mallory"},
                              expect="join_ack")
        assert ack["user_id"] == "alice"  # the token names the user, not the client
    async with connect(info, f"?token={good}") as c:
        ack = await c.request("join", {"channel_id": "standup"}, expect="join_ack")
        assert ack["user_id"] == "alice"


async def test_turn_credentials_in_join_ack(start_server, connect):
    servers = json.dumps(["stun:127.0.0.1:3478", {"urls": "turn:127.0.0.1:3478"}])
    info, _ = await start_server(rtc={"ice_servers": servers, "turn_static_auth_secret": "turnsecret",
                                      "turn_credentials_expiration_minutes": 10})
    async with connect(info) as c:
        before = int(time.time())
        ack = await c.request("join", {"channel_id": "room"}, expect="join_ack")
        stun, turn = ack["ice_servers"]
        assert stun == {"urls": ["stun:127.0.0.1:3478"]}
        expiry, session = turn["username"].split(":")
        assert session == c.session_id and before + 600 <= int(expiry) <= int(time.time()) + 600
        mac = hmac.new(b"turnsecret", turn["username"].encode(), hashlib.sha1).digest()
        assert turn["credential"] == base64.b64encode(mac).decode()
