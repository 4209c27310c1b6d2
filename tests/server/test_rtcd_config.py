"""The rtcd configuration (app/rtcd_config.py): defaults, environment, every problem at once, and
``callsd config check`` recognising an rtcd file; serve's ``rtc.rtcd_*`` keys."""

from __future__ import annotations

from pathlib import Path

import pytest
from callsd.app.cli import main
from callsd.app.config import ConfigError, load_config
from callsd.app.rtcd_config import load_rtcd_config


def test_defaults_match_the_reference_deployment() -> None:
    config = load_rtcd_config(None, {})
    assert (config.api.listen, config.api.port) == ("127.0.0.1", 8045)
    assert config.api.allow_self_registration is False and config.api.admin_secret_key == ""
    assert config.api.drain_timeout == 5 * 3600
    assert config.rtc.ice_port_udp == 8443


def test_environment_and_every_problem_at_once(tmp_path: Path) -> None:
    config = load_rtcd_config(None, {"CALLSD_API_PORT": "9045", "CALLSD_API_ALLOW_SELF_REGISTRATION": "yes",
                                     "CALLSD_RTC_ICE_PORT_UDP": "9443", "CALLSD_HTTP_PORT": "1"})
    assert (config.api.port, config.api.allow_self_registration, config.rtc.ice_port_udp) == (9045, True, 9443)
    bad = tmp_path / "rtcd.toml"
    bad.write_text('[api]\nport = 99999\nadmin_secret_key = "short"\ntls_cert = "/nope.pem"\n'
                   '[rtc]\nmedia_workers = 2\n[http]\nport = 1\n')
    with pytest.raises(ConfigError) as err:
        load_rtcd_config(bad, {})
    text = str(err.value)
    for needle in ("api.port", "api.admin_secret_key", "api.tls_cert", "rtc.media_workers: unknown key",
                   "http: unknown section"):
        assert needle in text, needle


def test_config_check_validates_an_rtcd_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = tmp_path / "rtcd.toml"
    good.write_text(f'[api]\nport = 8045\nadmin_secret_key = "{"s" * 40}"\n[rtc]\nice_port_udp = 8443\n')
    assert main(["config", "check", str(good)]) == 0
    out = capsys.readouterr().out
    assert "[api]" in out and 'admin_secret_key = "***"' in out and "s" * 40 not in out
    good.write_text('[api]\nport = 0x\n')
    assert main(["config", "check", str(good)]) == 2



def test_config_check_masks_the_turn_credentials_of_an_rtcd_file(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    good = tmp_path / "rtcd.toml"
    good.write_text('[api]\nport = 8045\n[rtc]\n'
                    'ice_servers = [{urls = ["turn:t.example.org:3478"], username = "u", credential = "turnpass"}]\n')
    assert main(["config", "check", str(good)]) == 0
    out = capsys.readouterr().out
    assert 'credential = "***"' in out and "turnpass" not in out  # as `callsd serve`'s check masks them
def test_serve_rtcd_keys() -> None:
    env = {"CALLSD_RTC_RTCD_URL": "http://rtcd.internal:8045", "CALLSD_RTC_RTCD_CLIENT_ID": "serve-1",
           "CALLSD_RTC_RTCD_AUTH_KEY": "k" * 40}
    rtc = load_config(None, env).rtc
    assert (rtc.rtcd_url, rtc.rtcd_resolve_interval) == ("http://rtcd.internal:8045", 10.0)
    with pytest.raises(ConfigError, match="rtc.rtcd_url: needs"):
        load_config(None, {**env, "CALLSD_RTC_RTCD_AUTH_KEY": "short"})
    with pytest.raises(ConfigError, match="must be http:"):
        load_config(None, {**env, "CALLSD_RTC_RTCD_URL": "rtcd.internal"})
