"""The configuration of ``callsd rtcd`` as a standalone service (docs/rtcd.md): the same TOML file and
``CALLSD_<SECTION>_<KEY>`` scheme as ``callsd serve`` (app/config.py's checks and loader), with its own sections:

- ``[api]``: the HTTP/WebSocket API (``listen`` 127.0.0.1, ``port`` 8045, ``tls_cert``/``tls_key``,
  ``allow_self_registration`` false, ``admin_secret_key`` "" = admin API off, ``drain_timeout`` 5 h,
  ``bearer_ttl_seconds``, ``max_failures``/``failure_window_seconds`` of the brute-force limiter);
- ``[rtc]``: exactly serve's (media on UDP 8443 by default, host override, ICE servers ...);
- ``[store]``: ``data_dir`` holds the client credential database (``rtcd-clients.sqlite``);
- ``[log]``: serve's.

A file with an ``[api]`` section is an rtcd file: ``callsd config check`` recognises it (``is_rtcd_file``).
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import (
    SCHEMA,
    ConfigError,
    LogConfig,
    RtcConfig,
    StoreConfig,
    parse_sections,
    sections_as_dict,
    sections_toml,
)
from .config_checks import boolean, file_or_empty, float_in, int_in, ip_address, text

__all__ = ["ApiConfig", "RtcdConfig", "load_rtcd_config", "is_rtcd_file", "render_rtcd_toml"]

FIVE_HOURS = 5 * 3600.0  # the reference's Kubernetes termination grace period for rtcd


@dataclass(frozen=True, slots=True, kw_only=True)
class ApiConfig:
    listen: str = "127.0.0.1"
    port: int = 8045
    tls_cert: str = ""
    tls_key: str = ""
    allow_self_registration: bool = False
    admin_secret_key: str = ""
    drain_timeout: float = FIVE_HOURS
    bearer_ttl_seconds: int = 3600
    max_failures: int = 10  # failed authentications from one address per window, then 429
    failure_window_seconds: int = 60


@dataclass(frozen=True, slots=True, kw_only=True)
class RtcdConfig:
    api: ApiConfig = field(default_factory=ApiConfig)
    rtc: RtcConfig = field(default_factory=RtcConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    log: LogConfig = field(default_factory=LogConfig)

    def as_dict(self, *, mask_secrets: bool = True) -> dict[str, dict[str, Any]]:
        """The effective configuration as plain data, masked as serve's is (``sections_as_dict``)."""
        return sections_as_dict(self, RTCD_SCHEMA, mask_secrets=mask_secrets)


_SERVE_ONLY_RTC = ("media_workers", "rtcd_url", "rtcd_client_id", "rtcd_auth_key", "rtcd_resolve_interval",
                   "turn_static_auth_secret", "turn_credentials_expiration_minutes")

RTCD_SCHEMA: dict[str, dict[str, Callable[[Any], Any]]] = {
    "api": {
        "listen": ip_address,
        "port": int_in(1, 65535, zero_ok=True, what="an ephemeral port"),
        "tls_cert": file_or_empty,
        "tls_key": file_or_empty,
        "allow_self_registration": boolean,
        "admin_secret_key": text,
        "drain_timeout": float_in(0, 7 * 86400),
        "bearer_ttl_seconds": int_in(1, 30 * 86400),
        "max_failures": int_in(1, 10000),
        "failure_window_seconds": int_in(1, 86400),
    },
    "rtc": {k: v for k, v in SCHEMA["rtc"].items() if k not in _SERVE_ONLY_RTC},
    "store": {"data_dir": SCHEMA["store"]["data_dir"]},
    "log": dict(SCHEMA["log"]),
}
_CLASSES: dict[str, type[Any]] = {"api": ApiConfig, "rtc": RtcConfig, "store": StoreConfig, "log": LogConfig}


def load_rtcd_config(path: str | Path | None = None, env: Mapping[str, str] | None = None) -> RtcdConfig:
    """Like ``load_config``: every problem at once in ``ConfigError``, never a partly valid configuration."""
    built, problems = parse_sections(path, env, RTCD_SCHEMA)
    config = RtcdConfig(**{s: _CLASSES[s](**built[s]) for s in RTCD_SCHEMA})
    api = config.api
    if bool(api.tls_cert) != bool(api.tls_key):
        problems.append("api.tls_cert/api.tls_key: set both (to serve HTTPS) or neither")
    if api.admin_secret_key and len(api.admin_secret_key) < 32:
        problems.append("api.admin_secret_key: must be at least 32 characters when set (empty = admin API off)")
    if not config.store.data_dir:
        problems.append("store.data_dir: must not be empty (the client credentials live there)")
    if problems:
        raise ConfigError(problems)
    return config


def is_rtcd_file(path: str | Path) -> bool:
    """True when the TOML file has an ``[api]`` section (an rtcd configuration, not a serve one)."""
    try:
        with open(path, "rb") as f:
            return "api" in tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError):
        return False


def render_rtcd_toml(config: RtcdConfig, *, mask_secrets: bool = True) -> str:
    return sections_toml(config.as_dict(mask_secrets=mask_secrets))


__all__ += ["RTCD_SCHEMA", "ConfigError"]
