"""Configuration: TOML + environment, precise validation messages, `callsd config check` and `callsd token`."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
from callsd.app.auth import verify_token
from callsd.app.config import ConfigError, load_config, render_toml


def _problems(text: str = "", env: dict[str, str] | None = None, tmp_path=None) -> list[str]:
    path = None
    if text:
        path = tmp_path / "c.toml"
        path.write_text(text)
    with pytest.raises(ConfigError) as exc:
        load_config(path, env or {})
    return exc.value.problems


def test_defaults_are_the_make_run_setup():
    c = load_config(None, {})
    assert (c.http.listen, c.http.port, c.rtc.ice_port_udp, c.auth.mode) == ("127.0.0.1", 8080, 8443, "open")
    assert c.store.effective_url().startswith("sqlite:///") and c.store.effective_url().endswith("events.sqlite")
    assert c.calls.max_participants == 0 and c.calls.allow_screen_sharing and c.shutdown.drain_timeout == 30
    assert c.calls.enable_simulcast is True  # simulcast screen and camera, on unless turned off (docs/video.md)


def test_file_and_environment(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text(
        '[http]\nport = 9000\n[rtc]\nice_port_udp = 10000\nice_host_override = "calls.example.org"\n'
        'ice_servers = ["stun:stun.example.org:3478", {urls = ["turn:t.example.org:3478"], username = "u", '
        'credential = "c"}]\n[calls]\nmax_participants = 8\n[auth]\nmode = "token"\nsecret = "0123456789abcdef"\n'
    )
    c = load_config(path, {"CALLSD_HTTP_PORT": "9100", "CALLSD_CALLS_ALLOW_SCREEN_SHARING": "false",
                           "CALLSD_SHUTDOWN_DRAIN_TIMEOUT": "2.5", "CALLSD_CALLS_ENABLE_SIMULCAST": "false",
                           "UNRELATED": "x"})
    assert c.http.port == 9100 and c.rtc.ice_port_udp == 10000 and c.calls.max_participants == 8
    assert c.calls.allow_screen_sharing is False and c.shutdown.drain_timeout == 2.5
    assert c.calls.enable_simulcast is False
    assert c.rtc.ice_host_override == "calls.example.org"
    assert [s.as_json() for s in c.rtc.ice_servers] == [
        {"urls": ["stun:stun.example.org:3478"]},
        {"urls": ["turn:t.example.org:3478"], "username": "u", "credential": "c"},
    ]
    env = load_config(None, {"CALLSD_RTC_ICE_SERVERS": "stun:a.example:3478, turn:b.example:3478"})
    assert [s.urls for s in env.rtc.ice_servers] == [("stun:a.example:3478",), ("turn:b.example:3478",)]
    # rendering round-trips (unmasked)
    again = tmp_path / "again.toml"
    again.write_text(render_toml(c, mask_secrets=False))
    assert load_config(again, {"CALLSD_HTTP_PORT": "9100"}) == c


def test_precise_messages(tmp_path):
    problems = _problems(
        '[rtc]\nice_port_udp = 5\nice_address_udp = "nope"\nice_host_override = "bad host!"\n'
        'ice_servers = ["http://x"]\n[calls]\nmax_participants = -1\nallow_screen_sharing = "maybe"\n'
        '[auth]\nmode = "magic"\n[log]\nlevel = "loud"\n[http]\nprot = 1\ntls_cert = "/nonexistent.pem"\n[bogus]\n'
        "x = 1\n",
        tmp_path=tmp_path,
    )
    text = "\n".join(problems)
    assert "rtc.ice_port_udp: must be between 80 and 49151 (or 0 for an ephemeral port), got 5" in problems
    assert "rtc.ice_address_udp: must be an IP address, got 'nope'" in problems
    assert "rtc.ice_host_override: must be an IP address, a host name or PUBLIC/LOCAL mappings, got 'bad host!'" in problems
    assert "rtc.ice_servers: item 0: must be a stun:, stuns:, turn: or turns: URL, got 'http://x'" in problems
    assert "calls.max_participants: must be between 0 and 10000, got -1" in problems
    assert "calls.allow_screen_sharing: must be true or false, got 'maybe'" in problems
    assert "auth.mode: must be one of open, token, got 'magic'" in problems
    assert "log.level: must be one of debug, info, warning, error, got 'loud'" in problems
    # the known keys are listed (a prefix, so that adding a key does not break this test)
    assert any(p.startswith("http.prot: unknown key (known: listen, port, tls_cert, tls_key, ") for p in problems)
    assert "http.tls_cert: file not found: '/nonexistent.pem'" in problems
    assert "bogus: unknown section" in text
    env_problems = _problems(env={"CALLSD_HTTP_PORT": "eighty", "CALLSD_RTC_ICE_PORT_UDP": "70000"})
    assert "http.port (from CALLSD_HTTP_PORT): must be an integer, got 'eighty'" in env_problems
    assert any(p.startswith("rtc.ice_port_udp (from CALLSD_RTC_ICE_PORT_UDP): must be between 80") for p in env_problems)
    assert "auth.secret: token mode needs a secret of at least 16 characters" in _problems(
        env={"CALLSD_AUTH_MODE": "token"})
    assert any(p.startswith("http.allowed_origins (from CALLSD_HTTP_ALLOWED_ORIGINS): item 0: must be an origin")
               for p in _problems(env={"CALLSD_HTTP_ALLOWED_ORIGINS": "https://x.example/path"}))
    assert load_config(None, {"CALLSD_HTTP_ALLOWED_ORIGINS": "https://A.example, http://b.example:8080"}
                       ).http.allowed_origins == ("https://a.example", "http://b.example:8080")
    assert "not valid TOML" in _problems("not toml [", tmp_path=tmp_path)[0]


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "callsd.app.cli", *args], capture_output=True, text=True,
                          timeout=60, env=env)


def test_config_check_cli(tmp_path):
    good = tmp_path / "good.toml"
    good.write_text('[auth]\nmode = "token"\nsecret = "0123456789abcdef0123"\n[rtc]\n'
                    'turn_static_auth_secret = "turnsecret"\n')
    result = _cli("config", "check", str(good))
    assert result.returncode == 0, result.stderr
    assert 'secret = "***"' in result.stdout and "0123456789abcdef0123" not in result.stdout
    assert 'turn_static_auth_secret = "***"' in result.stdout and "turnsecret" not in result.stdout
    assert "[http]" in result.stdout and "port = 8080" in result.stdout
    bad = tmp_path / "bad.toml"
    bad.write_text("[rtc]\nice_port_udp = 5\n")
    result = _cli("config", "check", str(bad))
    assert result.returncode == 2
    assert "rtc.ice_port_udp: must be between 80 and 49151" in result.stderr
    unsafe = tmp_path / "unsafe.toml"
    unsafe.write_text('[http]\nlisten = "0.0.0.0"\n')
    result = _cli("config", "check", str(unsafe))
    assert result.returncode == 2 and "loopback" in result.stderr


def test_token_create_cli():
    result = _cli("token", "create", "--user", "alice", "--channel", "standup", "--channel", "retro", "--ttl", "1h",
                  "--secret", "0123456789abcdef")
    assert result.returncode == 0, result.stderr
    claims = verify_token(result.stdout.strip(), secret="0123456789abcdef", now=time.time(), channel_id="retro")
    assert claims.user_id == "alice" and claims.channels == ("standup", "retro")
    assert time.time() + 3500 < claims.expires_at <= time.time() + 3600
    result = _cli("token", "create", "--user", "alice", "--channel", "c", "--ttl", "soon", "--secret", "x" * 16)
    assert result.returncode == 2 and "bad TTL" in result.stderr
    result = _cli("token", "create", "--user", "alice", "--channel", "c", env={"PATH": "/usr/bin"})
    assert result.returncode == 2 and "secret" in result.stderr


def test_json_logging(capsys):
    import json
    import logging

    from callsd.app.cmd_serve import setup_logging

    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        setup_logging("warning", True)
        logging.getLogger("callsd.test").info("not shown")
        logging.getLogger("callsd.test").warning("disk %s", "full")
        lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
        assert [(d["level"], d["logger"], d["message"]) for d in lines] == [("warning", "callsd.test", "disk full")]
    finally:
        root.handlers[:], root.level = saved[0], saved[1]
