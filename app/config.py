"""callsd configuration: a TOML file, then ``CALLSD_<SECTION>_<KEY>`` environment variables, validated once at start.

``load_config(path, env)`` returns a frozen ``Config`` or raises ``ConfigError`` listing *every* bad value with a
precise message (``rtc.ice_port_udp: must be between 80 and 49151, got 5``), so an operator fixes a file in one go.
Every key has an embedded default, so ``callsd serve`` with no file at all is the ``make run`` setup: loopback
HTTP on 8080, RTC on 8443, open auth, SQLite in ``./data``. docs/config.md is the reference for the keys;
``SCHEMA`` below is the single source of truth for names, types, defaults and checks.

Environment values are strings: integers and floats are parsed, booleans accept true/false/1/0/yes/no/on/off, and
``rtc.ice_servers`` takes JSON (``'[{"urls": "turn:h:3478", "username": "u", "credential": "c"}]'``) or a
comma-separated list of URLs.
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config_checks import (
    Bad,
    IceServer,
    boolean,
    choice,
    file_or_empty,
    float_in,
    host_override,
    hosts,
    http_url_or_empty,
    ice_servers,
    int_in,
    ip_address,
    listen_address_or_empty,
    origins,
    text,
)

__all__ = [
    "ConfigError",
    "Config",
    "HttpConfig",
    "RtcConfig",
    "CallsConfig",
    "StoreConfig",
    "AuthConfig",
    "LogConfig",
    "ShutdownConfig",
    "MetricsConfig",
    "IceServer",
    "load_config",
    "SECRET_KEYS",
    "render_toml",
    "sections_as_dict",
    "sections_toml",
]


class ConfigError(Exception):
    """One or more configuration values are invalid; ``problems`` lists one precise message per bad value."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("invalid configuration:\n" + "\n".join(f"  {p}" for p in self.problems))


@dataclass(frozen=True, slots=True, kw_only=True)
class HttpConfig:
    listen: str = "127.0.0.1"
    port: int = 8080
    tls_cert: str = ""
    tls_key: str = ""
    allowed_origins: tuple[str, ...] = ()
    idle_timeout: int = 45
    allowed_hosts: tuple[str, ...] = ()
    join_timeout: float = 10.0
    max_connections: int = 1000
    max_connections_per_address: int = 100
    signaling_socket: str = "direct"  # "direct": app/ws_direct.py (docs/adr/0027); "asgi": through hypercorn and Quart


@dataclass(frozen=True, slots=True, kw_only=True)
class RtcConfig:
    ice_address_udp: str = "127.0.0.1"
    ice_port_udp: int = 8443
    ice_host_override: str = ""
    ice_host_port_override: int = 0
    ice_servers: tuple[IceServer, ...] = ()
    turn_static_auth_secret: str = ""
    turn_credentials_expiration_minutes: int = 1440
    udp_rcvbuf: int = 4 * 1024 * 1024
    udp_sndbuf: int = 4 * 1024 * 1024
    media_workers: int = 0
    ice_max_addresses_per_session: int = 16
    # networking (docs/networking.md)
    advertise_refresh_seconds: int = 300
    ice_check_timeout: int = 10
    ice_port_tcp: int = 8443
    enable_ipv6: bool = False
    fast_path: str = "auto"
    # the media process's runtime (docs/adr/0029-egress-runtime.md): read wakeups, the cyclic GC
    coalesce_ms: float = 0.0
    gc_freeze: bool = True
    gc_gen0_threshold: int = 5_000  # (5000, 4, 100): short young collections, full ones as rare (ADR 0048)
    gc_gen1_threshold: int = 4  # generation-0 collections between two of generation 1 (CPython's default: 10)
    gc_gen2_threshold: int = 100  # generation-1 collections before a full one is considered (CPython's default: 10)
    # remote rtcd hosts (docs/rtcd.md): with rtcd_url set, serve runs no media plane of its own
    rtcd_url: str = ""
    rtcd_client_id: str = ""
    rtcd_auth_key: str = ""
    rtcd_resolve_interval: float = 10.0


@dataclass(frozen=True, slots=True, kw_only=True)
class CallsConfig:
    max_participants: int = 0
    allow_screen_sharing: bool = True
    reconnect_window_seconds: int = 30
    enable_simulcast: bool = True  # accept simulcast video, one layer per receiver (docs/video.md)


_URL_PASSWORD = re.compile(r"^([a-z]+://[^/:@]*):[^/@]*@")  # the password of a postgresql://user:pw@host URL


@dataclass(frozen=True, slots=True, kw_only=True)
class StoreConfig:
    data_dir: str = "data"
    url: str = ""
    retention_days: int = 0  # 0 keeps every record; N compacts records older than N days (docs/config.md)
    retention_action: str = "archive"  # or "delete"

    def effective_url(self) -> str:
        """``url`` if set, else ``sqlite:///<data_dir>/events.sqlite`` (absolute path)."""
        if self.url:
            return self.url
        return "sqlite:///" + str((Path(self.data_dir) / "events.sqlite").resolve()).lstrip("/")

    def shown_url(self) -> str:
        """``effective_url()`` with any password in it masked (``postgresql://user:***@host/db``): for logs and
        ``callsd config``. Better still, keep the password out of the URL (PGPASSWORD or ~/.pgpass, docs/config.md)."""
        return _URL_PASSWORD.sub(r"\1:***@", self.effective_url())


@dataclass(frozen=True, slots=True, kw_only=True)
class AuthConfig:
    mode: str = "open"
    secret: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class LogConfig:
    level: str = "info"
    json: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class ShutdownConfig:
    drain_timeout: float = 30.0


@dataclass(frozen=True, slots=True, kw_only=True)
class MetricsConfig:
    token: str = ""  # when set, /metrics needs "Authorization: Bearer <token>"
    listen: str = ""  # "IP:PORT": serve /metrics there only (not on the HTTP port)
    loop_holds: bool = True  # time the event loop's passes, task steps and GC runs (adapters/loop_holds.py)

    @property
    def address(self) -> tuple[str, int] | None:
        """``listen`` as (host, port), or None when /metrics stays on the HTTP port."""
        if not self.listen:
            return None
        host, _, port = self.listen.rpartition(":")
        return host.strip("[]"), int(port)


def _host_name() -> str:
    import socket

    return socket.gethostname()


@dataclass(frozen=True, slots=True, kw_only=True)
class ClusterConfig:
    """Several ``callsd serve`` nodes on one PostgreSQL log (docs/cluster.md, docs/adr/0017)."""

    enabled: bool = False
    node_id: str = field(default_factory=_host_name)  # unique per node: the lease owner's name
    advertise: str = ""  # "HOST:PORT" the other nodes reach this node's HTTP listener on (the relay link)
    is_handler: bool = True  # false: host no calls, relay every client to a handler (single-handler mode)
    secret: str = ""  # shared by all nodes: authenticates the relay link, derives the reconnect key
    lease_seconds: float = 5.0  # a dead owner's calls move after this long
    idle_release_seconds: float = 60.0  # a hosted channel with no call and no socket this long is given up
    link_tls: bool = False  # relay links over TLS (wss://advertise), the peer's certificate verified
    link_ca: str = ""  # CA bundle that signed the nodes' certificates ("": the system's trust store)


@dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    http: HttpConfig = field(default_factory=HttpConfig)
    rtc: RtcConfig = field(default_factory=RtcConfig)
    calls: CallsConfig = field(default_factory=CallsConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    auth: AuthConfig = field(default_factory=AuthConfig)
    log: LogConfig = field(default_factory=LogConfig)
    shutdown: ShutdownConfig = field(default_factory=ShutdownConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)

    def as_dict(self, *, mask_secrets: bool = True) -> dict[str, dict[str, Any]]:
        """The effective configuration as plain data (secrets shown as ``"***"`` when set and masked)."""
        return sections_as_dict(self, SCHEMA, mask_secrets=mask_secrets)


def sections_as_dict(config: Any, schema: Mapping[str, Mapping[str, Any]], *,
                     mask_secrets: bool) -> dict[str, dict[str, Any]]:
    """The keys of ``schema``, read off ``config``'s sections, as plain data: what ``config show`` and ``config
    check`` print for serve and for rtcd alike, so a secret is masked the same way in both (``"***"`` when set)."""
    out: dict[str, dict[str, Any]] = {}
    for section, keys in schema.items():
        sec = getattr(config, section)
        values: dict[str, Any] = {}
        for key in keys:
            value = getattr(sec, key)
            if key in ("allowed_origins", "allowed_hosts"):
                value = list(value)
            elif key == "ice_servers":
                value = [s.as_json() for s in value]
                if mask_secrets:
                    value = [{**s, "credential": "***"} if "credential" in s else s for s in value]
            elif mask_secrets and (section, key) == ("store", "url") and value:
                value = _URL_PASSWORD.sub(r"\1:***@", value)
            elif mask_secrets and f"{section}.{key}" in SECRET_KEYS and value:
                value = "***"
            values[key] = value
        out[section] = values
    return out


SECRET_KEYS = frozenset({"auth.secret", "rtc.turn_static_auth_secret", "metrics.token", "rtc.rtcd_auth_key",
                         "api.admin_secret_key", "cluster.secret"})

SCHEMA: dict[str, dict[str, Callable[[Any], Any]]] = {
    "http": {
        "listen": ip_address,
        "port": int_in(1, 65535, zero_ok=True, what="an ephemeral port"),
        "tls_cert": file_or_empty,
        "tls_key": file_or_empty,
        "allowed_origins": origins,
        "idle_timeout": int_in(1, 3600),
        "allowed_hosts": hosts,
        "join_timeout": float_in(0.05, 3600),
        "max_connections": int_in(1, 1_000_000, zero_ok=True, what="no limit"),
        "max_connections_per_address": int_in(1, 1_000_000, zero_ok=True, what="no limit"),
        "signaling_socket": choice("direct", "asgi"),
    },
    "rtc": {
        "ice_address_udp": ip_address,
        "ice_port_udp": int_in(80, 49151, zero_ok=True, what="an ephemeral port"),
        "ice_host_override": host_override,
        "ice_host_port_override": int_in(1, 65535, zero_ok=True, what="none"),
        "ice_servers": ice_servers,
        "turn_static_auth_secret": text,
        "turn_credentials_expiration_minutes": int_in(1, 10080),
        "udp_rcvbuf": int_in(0, 1 << 30),
        "udp_sndbuf": int_in(0, 1 << 30),
        "media_workers": int_in(0, 64),
        "ice_max_addresses_per_session": int_in(1, 256),
        "advertise_refresh_seconds": int_in(10, 86400, zero_ok=True, what="never"),
        "ice_check_timeout": int_in(2, 120),
        "ice_port_tcp": int_in(80, 65535, zero_ok=True, what="off"),
        "enable_ipv6": boolean,
        "fast_path": choice("auto", "native", "python"),
        "coalesce_ms": float_in(0, 20),
        "gc_freeze": boolean,
        "gc_gen0_threshold": int_in(100, 10_000_000),
        "gc_gen1_threshold": int_in(1, 1000),
        "gc_gen2_threshold": int_in(1, 1000),
        "rtcd_url": lambda raw: http_url_or_empty(raw),
        "rtcd_client_id": text,
        "rtcd_auth_key": text,
        "rtcd_resolve_interval": float_in(0.5, 3600),
    },
    "calls": {
        "max_participants": int_in(0, 10000),
        "allow_screen_sharing": boolean,
        "reconnect_window_seconds": int_in(0, 86400),
        "enable_simulcast": boolean,
    },
    "store": {"data_dir": text, "url": text, "retention_days": int_in(1, 36500, zero_ok=True, what="forever"),
              "retention_action": choice("archive", "delete")},
    "auth": {"mode": choice("open", "token"), "secret": text},
    "log": {"level": choice("debug", "info", "warning", "error"), "json": boolean},
    "shutdown": {"drain_timeout": float_in(0, 86400)},
    "metrics": {"token": text, "listen": listen_address_or_empty, "loop_holds": boolean},
    "cluster": {"enabled": boolean, "node_id": text, "advertise": text, "is_handler": boolean, "secret": text,
                "lease_seconds": float_in(1, 600), "idle_release_seconds": float_in(1, 86400), "link_tls": boolean,
                "link_ca": file_or_empty},
}
_SECTIONS = tuple(SCHEMA)
_CLASSES: dict[str, type[Any]] = {
    "http": HttpConfig,
    "rtc": RtcConfig,
    "calls": CallsConfig,
    "store": StoreConfig,
    "auth": AuthConfig,
    "log": LogConfig,
    "shutdown": ShutdownConfig,
    "metrics": MetricsConfig,
    "cluster": ClusterConfig,
}
_STORE_SCHEMES = ("sqlite://", "jsonl://", "postgresql://", "postgres://")


def _env_key(section: str, key: str) -> str:
    return f"CALLSD_{section.upper()}_{key.upper()}"


def load_config(path: str | Path | None = None, env: Mapping[str, str] | None = None) -> Config:
    """Read the TOML file at ``path`` (if any), overlay ``env`` (``CALLSD_<SECTION>_<KEY>``), validate everything.

    Raises ``ConfigError`` with every problem found (unknown sections/keys included); never returns a partly valid
    configuration.
    """
    built, problems = parse_sections(path, env, SCHEMA)
    config = Config(**{s: _CLASSES[s](**built[s]) for s in _SECTIONS})
    problems.extend(_cross_checks(config))
    if problems:
        raise ConfigError(problems)
    return config


def parse_sections(path: str | Path | None, env: Mapping[str, str] | None,
                   schema: Mapping[str, Mapping[str, Callable[[Any], Any]]]) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """The checked values of ``schema``'s sections from the TOML file and ``CALLSD_<SECTION>_<KEY>``, and every
    problem found; shared by ``load_config`` and the rtcd's configuration (app/rtcd_config.py)."""
    problems: list[str] = []
    raw: dict[str, Any] = {}
    if path is not None:
        try:
            with open(path, "rb") as f:
                raw = tomllib.load(f)
        except FileNotFoundError:
            raise ConfigError([f"{path}: file not found"]) from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError([f"{path}: not valid TOML: {exc}"]) from None
        except OSError as exc:
            raise ConfigError([f"{path}: cannot read: {exc.strerror}"]) from None
    sources: dict[tuple[str, str], tuple[Any, str]] = {}
    for section, values in raw.items():
        if section not in schema:
            problems.append(f"{section}: unknown section (known: {', '.join(tuple(schema))})")
            continue
        if not isinstance(values, dict):
            problems.append(f"{section}: must be a table ([{section}])")
            continue
        for key, value in values.items():
            if key not in schema[section]:
                problems.append(f"{section}.{key}: unknown key (known: {', '.join(schema[section])})")
                continue
            sources[(section, key)] = (value, "file")
    env = {} if env is None else env
    for name, value in env.items():
        if not name.startswith("CALLSD_"):
            continue
        matched = False
        for section, keys in schema.items():
            for key in keys:
                if name == _env_key(section, key):
                    sources[(section, key)] = (value, name)
                    matched = True
        if not matched and name.split("_")[1].lower() in schema:
            problems.append(f"{name}: unknown setting (expected CALLSD_<SECTION>_<KEY>, see docs/config.md)")
    built: dict[str, dict[str, Any]] = {s: {} for s in tuple(schema)}
    for (section, key), (value, origin) in sources.items():
        try:
            built[section][key] = schema[section][key](value)
        except Bad as exc:
            where = f"{section}.{key}" if origin == "file" else f"{section}.{key} (from {origin})"
            problems.append(f"{where}: {exc}")
    return built, problems


def _cross_checks(config: Config) -> list[str]:
    problems = []
    if bool(config.http.tls_cert) != bool(config.http.tls_key):
        problems.append("http.tls_cert/http.tls_key: set both (to serve HTTPS) or neither")
    if config.metrics.token and len(config.metrics.token) < 16:
        problems.append("metrics.token: must be at least 16 characters when set")
    if config.auth.mode == "token" and len(config.auth.secret) < 16:
        problems.append("auth.secret: token mode needs a secret of at least 16 characters")
    if config.store.url and not config.store.url.startswith(_STORE_SCHEMES) and not config.store.url.endswith(
        (".sqlite", ".db", ".jsonl")
    ):
        problems.append(
            f"store.url: must be sqlite:///PATH, jsonl:///PATH, postgresql://USER@HOST:PORT/DB or a .sqlite/.db/.jsonl "
            f"path, got {StoreConfig(url=config.store.url).shown_url()!r}"
        )
    workers, port = config.rtc.media_workers, config.rtc.ice_port_udp
    if workers > 1 and port and port + workers - 1 > 65535:
        problems.append(f"rtc.media_workers: {workers} workers need UDP ports {port}-{port + workers - 1}")
    if config.rtc.enable_ipv6 and config.rtc.ice_address_udp not in ("0.0.0.0", "::"):
        problems.append(f"rtc.enable_ipv6: needs rtc.ice_address_udp = \"0.0.0.0\" or \"::\" (one dual-stack socket), "
                        f"got {config.rtc.ice_address_udp!r}")
    rtc = config.rtc
    if rtc.rtcd_url and (not rtc.rtcd_client_id or len(rtc.rtcd_auth_key) < 32):
        problems.append("rtc.rtcd_url: needs rtc.rtcd_client_id and rtc.rtcd_auth_key (at least 32 characters)")
    if rtc.rtcd_url and rtc.media_workers:
        problems.append("rtc.rtcd_url: remote rtcd hosts and rtc.media_workers are exclusive; set one")
    if not config.store.url and not config.store.data_dir:
        problems.append("store.data_dir: must not be empty when store.url is not set")
    problems.extend(_cluster_checks(config))
    return problems


def _cluster_checks(config: Config) -> list[str]:
    """A cluster needs the shared log (leases live in PostgreSQL), a name, an address and a secret per node."""
    cluster = config.cluster
    if not cluster.enabled:
        return []
    problems = []
    if not config.store.url.startswith(("postgresql://", "postgres://")):
        problems.append("cluster.enabled: a cluster needs store.url = \"postgresql://USER@HOST:PORT/DB\" (the nodes "
                        f"share its log and leases), got {config.store.shown_url()!r}")
    if not cluster.node_id or len(cluster.node_id) > 128:
        problems.append("cluster.node_id: must be 1-128 characters (default: the host name)")
    host, _, port = cluster.advertise.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        problems.append(f"cluster.advertise: must be HOST:PORT of this node's HTTP listener as the other nodes reach "
                        f"it, got {cluster.advertise!r}")
    if len(cluster.secret) < 16:
        problems.append("cluster.secret: must be at least 16 characters, the same on every node")
    if cluster.link_tls and not config.http.tls_cert:
        problems.append("cluster.link_tls: the nodes must serve HTTPS for TLS relay links: set http.tls_cert and "
                        "http.tls_key (a certificate valid for the advertise address) on every node")
    return problems


# --- rendering ----------------------------------------------------------------------------------------------------


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"cannot render {value!r} as TOML")


def render_toml(config: Config, *, mask_secrets: bool = True) -> str:
    """The effective configuration as a TOML document (it loads back to the same config when unmasked)."""
    return sections_toml(config.as_dict(mask_secrets=mask_secrets))


def sections_toml(sections: Mapping[str, Mapping[str, Any]]) -> str:
    """``sections_as_dict``'s result as a TOML document, one table per section."""
    lines: list[str] = []
    for section, values in sections.items():
        lines.append(f"[{section}]")
        lines.extend(f"{key} = {_toml_value(value)}" for key, value in values.items())
        lines.append("")
    return "\n".join(lines)
