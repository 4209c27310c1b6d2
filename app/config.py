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

import ipaddress
import json
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
]


class ConfigError(Exception):
    """One or more configuration values are invalid; ``problems`` lists one precise message per bad value."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("invalid configuration:\n" + "\n".join(f"  {p}" for p in self.problems))


@dataclass(frozen=True, slots=True, kw_only=True)
class IceServer:
    urls: tuple[str, ...]
    username: str = ""
    credential: str = ""

    def as_json(self) -> dict[str, Any]:
        """The RTCIceServer dict a browser takes."""
        out: dict[str, Any] = {"urls": list(self.urls)}
        if self.username:
            out["username"] = self.username
        if self.credential:
            out["credential"] = self.credential
        return out


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
        out: dict[str, dict[str, Any]] = {}
        for section in _SECTIONS:
            sec = getattr(self, section)
            values: dict[str, Any] = {}
            for key in SCHEMA[section]:
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

# --- validation -------------------------------------------------------------------------------------------------
# A check takes the raw value (from TOML, or a string from the environment) and returns the typed value or raises
# _Bad(message). Messages complete the sentence "<section>.<key>: ...".


class _Bad(Exception):
    pass


def _int(lo: int, hi: int, *, zero_ok: bool = False, what: str = "") -> Callable[[Any], int]:
    def check(raw: Any) -> int:
        if isinstance(raw, str):
            try:
                raw = int(raw.strip())
            except ValueError:
                raise _Bad(f"must be an integer, got {raw!r}") from None
        if isinstance(raw, bool) or not isinstance(raw, int):
            raise _Bad(f"must be an integer, got {raw!r}")
        if zero_ok and raw == 0:
            return 0
        if not lo <= raw <= hi:
            extra = " (or 0" + (f" for {what}" if what else "") + ")" if zero_ok else ""
            raise _Bad(f"must be between {lo} and {hi}{extra}, got {raw}")
        return raw

    return check


def _float(lo: float, hi: float) -> Callable[[Any], float]:
    def check(raw: Any) -> float:
        if isinstance(raw, str):
            try:
                raw = float(raw.strip())
            except ValueError:
                raise _Bad(f"must be a number, got {raw!r}") from None
        if isinstance(raw, bool) or not isinstance(raw, int | float):
            raise _Bad(f"must be a number, got {raw!r}")
        if not lo <= raw <= hi:
            raise _Bad(f"must be between {lo:g} and {hi:g}, got {raw:g}")
        return float(raw)

    return check


def _bool(raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, str) and raw.strip().lower() in {"true", "1", "yes", "on", "false", "0", "no", "off"}:
        return raw.strip().lower() in {"true", "1", "yes", "on"}
    raise _Bad(f"must be true or false, got {raw!r}")


def _str(raw: Any) -> str:
    if not isinstance(raw, str):
        raise _Bad(f"must be a string, got {raw!r}")
    return raw


def _choice(*choices: str) -> Callable[[Any], str]:
    def check(raw: Any) -> str:
        value = _str(raw).strip().lower()
        if value not in choices:
            raise _Bad(f"must be one of {', '.join(choices)}, got {raw!r}")
        return value

    return check


def _ip(raw: Any) -> str:
    value = _str(raw).strip()
    try:
        ipaddress.ip_address(value)
    except ValueError:
        raise _Bad(f"must be an IP address, got {raw!r}") from None
    return value


_HOSTNAME = re.compile(r"^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$")


def _host_or_empty(raw: Any) -> str:
    value = _str(raw).strip()
    if not value:
        return ""
    try:
        ipaddress.ip_address(value)
        return value
    except ValueError:
        pass
    if not _HOSTNAME.match(value):
        raise _Bad(f"must be an IP address or a hostname, got {raw!r}")
    return value


def _host_override(raw: Any) -> str:
    """An IP, a host name, or ``PUBLIC/LOCAL,...`` mappings (adapters/media/addresses.py reads them)."""
    from callsd.adapters.media.addresses import parse_host_override

    value = _str(raw).strip()
    try:
        parse_host_override(value)
    except ValueError as exc:
        raise _Bad(str(exc)) from None
    return value


def _file_or_empty(raw: Any) -> str:
    value = _str(raw).strip()
    if value and not Path(value).is_file():
        raise _Bad(f"file not found: {value!r}")
    return value


_ORIGIN = re.compile(r"^https?://[^/\s]+$")


def _origins(raw: Any) -> tuple[str, ...]:
    if isinstance(raw, str):
        raw = [o.strip() for o in raw.split(",") if o.strip()]
    if not isinstance(raw, list):
        raise _Bad(f"must be a list of origins like \"https://calls.example.org\", got {raw!r}")
    for i, origin in enumerate(raw):
        if not isinstance(origin, str) or not _ORIGIN.match(origin):
            raise _Bad(f"item {i}: must be an origin like \"https://calls.example.org\" (no path), got {origin!r}")
    return tuple(o.rstrip("/").lower() for o in raw)


def _hosts(raw: Any) -> tuple[str, ...]:
    if isinstance(raw, str):
        raw = [h.strip() for h in raw.split(",") if h.strip()]
    if not isinstance(raw, list):
        raise _Bad(f"must be a list of host names like \"calls.example.org\", got {raw!r}")
    hosts = []
    for i, host in enumerate(raw):
        if not isinstance(host, str) or not host.strip():
            raise _Bad(f"item {i}: must be a host name or an IP address, got {host!r}")
        try:
            hosts.append(_host_or_empty(host).lower().rstrip("."))
        except _Bad:
            raise _Bad(f"item {i}: must be a host name or an IP address (no scheme, no port), got {host!r}") from None
    return tuple(hosts)


def _listen_address_or_empty(raw: Any) -> str:
    value = _str(raw).strip()
    if not value:
        return ""
    host, sep, port = value.rpartition(":")
    bad = _Bad(f"must be IP:PORT like \"127.0.0.1:9090\" or \"[::1]:9090\" (port 0 = a free one), got {raw!r}")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise bad
    try:
        ipaddress.ip_address(host[1:-1] if host.startswith("[") and host.endswith("]") else host)
    except ValueError:
        raise bad from None
    return value


_HTTP_URL = re.compile(r"^https?://(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(:\d{1,5})?/?$")


def _http_url_or_empty(raw: Any) -> str:
    """``http://host:port`` or ``https://host:port`` (no path), as ``rtc.rtcd_url`` takes it; empty is off."""
    value = _str(raw).strip()
    if value and not _HTTP_URL.match(value):
        raise _Bad(f"must be http://HOST:PORT or https://HOST:PORT (no path), got {raw!r}")
    return value.rstrip("/")


_ICE_URL = re.compile(r"^(stun|stuns|turn|turns):[^\s]+$")


def _ice_url(url: Any, where: str) -> str:
    if not isinstance(url, str) or not _ICE_URL.match(url.strip()):
        raise _Bad(f"{where}: must be a stun:, stuns:, turn: or turns: URL, got {url!r}")
    return url.strip()


def _ice_servers(raw: Any) -> tuple[IceServer, ...]:
    if isinstance(raw, str):
        text = raw.strip()
        if text.startswith("["):
            try:
                raw = json.loads(text)
            except ValueError as exc:
                raise _Bad(f"is not valid JSON: {exc}") from None
        else:
            raw = [u.strip() for u in text.split(",") if u.strip()]
    if not isinstance(raw, list):
        raise _Bad(f"must be a list of URLs or {{urls, username, credential}} tables, got {raw!r}")
    servers: list[IceServer] = []
    for i, item in enumerate(raw):
        where = f"item {i}"
        if isinstance(item, str):
            servers.append(IceServer(urls=(_ice_url(item, where),)))
            continue
        if not isinstance(item, dict):
            raise _Bad(f"{where}: must be a URL or a table with urls, got {item!r}")
        unknown = set(item) - {"urls", "username", "credential"}
        if unknown:
            raise _Bad(f"{where}: unknown field(s) {', '.join(sorted(unknown))} (known: urls, username, credential)")
        urls = item.get("urls")
        if isinstance(urls, str):
            urls = [urls]
        if not isinstance(urls, list) or not urls:
            raise _Bad(f"{where}: urls must be a URL or a non-empty list of URLs, got {urls!r}")
        username = item.get("username", "")
        credential = item.get("credential", "")
        if not isinstance(username, str) or not isinstance(credential, str):
            raise _Bad(f"{where}: username and credential must be strings")
        servers.append(
            IceServer(
                urls=tuple(_ice_url(u, f"{where}.urls") for u in urls), username=username, credential=credential
            )
        )
    return tuple(servers)


SCHEMA: dict[str, dict[str, Callable[[Any], Any]]] = {
    "http": {
        "listen": _ip,
        "port": _int(1, 65535, zero_ok=True, what="an ephemeral port"),
        "tls_cert": _file_or_empty,
        "tls_key": _file_or_empty,
        "allowed_origins": _origins,
        "idle_timeout": _int(1, 3600),
        "allowed_hosts": _hosts,
        "join_timeout": _float(0.05, 3600),
        "max_connections": _int(1, 1_000_000, zero_ok=True, what="no limit"),
        "max_connections_per_address": _int(1, 1_000_000, zero_ok=True, what="no limit"),
    },
    "rtc": {
        "ice_address_udp": _ip,
        "ice_port_udp": _int(80, 49151, zero_ok=True, what="an ephemeral port"),
        "ice_host_override": _host_override,
        "ice_host_port_override": _int(1, 65535, zero_ok=True, what="none"),
        "ice_servers": _ice_servers,
        "turn_static_auth_secret": _str,
        "turn_credentials_expiration_minutes": _int(1, 10080),
        "udp_rcvbuf": _int(0, 1 << 30),
        "udp_sndbuf": _int(0, 1 << 30),
        "media_workers": _int(0, 64),
        "ice_max_addresses_per_session": _int(1, 256),
        "advertise_refresh_seconds": _int(10, 86400, zero_ok=True, what="never"),
        "ice_check_timeout": _int(2, 120),
        "ice_port_tcp": _int(80, 65535, zero_ok=True, what="off"),
        "enable_ipv6": _bool,
        "fast_path": _choice("auto", "native", "python"),
        "rtcd_url": lambda raw: _http_url_or_empty(raw),
        "rtcd_client_id": _str,
        "rtcd_auth_key": _str,
        "rtcd_resolve_interval": _float(0.5, 3600),
    },
    "calls": {
        "max_participants": _int(0, 10000),
        "allow_screen_sharing": _bool,
        "reconnect_window_seconds": _int(0, 86400),
        "enable_simulcast": _bool,
    },
    "store": {"data_dir": _str, "url": _str, "retention_days": _int(1, 36500, zero_ok=True, what="forever"),
              "retention_action": _choice("archive", "delete")},
    "auth": {"mode": _choice("open", "token"), "secret": _str},
    "log": {"level": _choice("debug", "info", "warning", "error"), "json": _bool},
    "shutdown": {"drain_timeout": _float(0, 86400)},
    "metrics": {"token": _str, "listen": _listen_address_or_empty},
    "cluster": {"enabled": _bool, "node_id": _str, "advertise": _str, "is_handler": _bool, "secret": _str,
                "lease_seconds": _float(1, 600), "idle_release_seconds": _float(1, 86400), "link_tls": _bool,
                "link_ca": _file_or_empty},
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
        except _Bad as exc:
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
    lines: list[str] = []
    for section, values in config.as_dict(mask_secrets=mask_secrets).items():
        lines.append(f"[{section}]")
        lines.extend(f"{key} = {_toml_value(value)}" for key, value in values.items())
        lines.append("")
    return "\n".join(lines)
