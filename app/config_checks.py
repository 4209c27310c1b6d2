"""The checks of configuration values: each takes the raw value (from TOML, or a string from the environment) and
returns the typed value or raises ``Bad(message)``; a message completes the sentence "<section>.<key>: ...".

app/config.py's ``SCHEMA`` (serve) and app/rtcd_config.py (rtcd) name a check per key; one set of checks means a
port, a host name or a file is judged the same way wherever it is configured.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any


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


class Bad(Exception):
    pass


def int_in(lo: int, hi: int, *, zero_ok: bool = False, what: str = "") -> Callable[[Any], int]:
    def check(raw: Any) -> int:
        if isinstance(raw, str):
            try:
                raw = int(raw.strip())
            except ValueError:
                raise Bad(f"must be an integer, got {raw!r}") from None
        if isinstance(raw, bool) or not isinstance(raw, int):
            raise Bad(f"must be an integer, got {raw!r}")
        if zero_ok and raw == 0:
            return 0
        if not lo <= raw <= hi:
            extra = " (or 0" + (f" for {what}" if what else "") + ")" if zero_ok else ""
            raise Bad(f"must be between {lo} and {hi}{extra}, got {raw}")
        return raw

    return check


def float_in(lo: float, hi: float) -> Callable[[Any], float]:
    def check(raw: Any) -> float:
        if isinstance(raw, str):
            try:
                raw = float(raw.strip())
            except ValueError:
                raise Bad(f"must be a number, got {raw!r}") from None
        if isinstance(raw, bool) or not isinstance(raw, int | float):
            raise Bad(f"must be a number, got {raw!r}")
        if not lo <= raw <= hi:
            raise Bad(f"must be between {lo:g} and {hi:g}, got {raw:g}")
        return float(raw)

    return check


def boolean(raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, str) and raw.strip().lower() in {"true", "1", "yes", "on", "false", "0", "no", "off"}:
        return raw.strip().lower() in {"true", "1", "yes", "on"}
    raise Bad(f"must be true or false, got {raw!r}")


def text(raw: Any) -> str:
    if not isinstance(raw, str):
        raise Bad(f"must be a string, got {raw!r}")
    return raw


def choice(*choices: str) -> Callable[[Any], str]:
    def check(raw: Any) -> str:
        value = text(raw).strip().lower()
        if value not in choices:
            raise Bad(f"must be one of {', '.join(choices)}, got {raw!r}")
        return value

    return check


def ip_address(raw: Any) -> str:
    value = text(raw).strip()
    try:
        ipaddress.ip_address(value)
    except ValueError:
        raise Bad(f"must be an IP address, got {raw!r}") from None
    return value


_HOSTNAME = re.compile(r"^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$")


def host_or_empty(raw: Any) -> str:
    value = text(raw).strip()
    if not value:
        return ""
    try:
        ipaddress.ip_address(value)
        return value
    except ValueError:
        pass
    if not _HOSTNAME.match(value):
        raise Bad(f"must be an IP address or a hostname, got {raw!r}")
    return value


def host_override(raw: Any) -> str:
    """An IP, a host name, or ``PUBLIC/LOCAL,...`` mappings (adapters/media/addresses.py reads them)."""
    from callsd.adapters.media.addresses import parse_host_override

    value = text(raw).strip()
    try:
        parse_host_override(value)
    except ValueError as exc:
        raise Bad(str(exc)) from None
    return value


def file_or_empty(raw: Any) -> str:
    value = text(raw).strip()
    if value and not Path(value).is_file():
        raise Bad(f"file not found: {value!r}")
    return value


_ORIGIN = re.compile(r"^https?://[^/\s]+$")


def origins(raw: Any) -> tuple[str, ...]:
    if isinstance(raw, str):
        raw = [o.strip() for o in raw.split(",") if o.strip()]
    if not isinstance(raw, list):
        raise Bad(f"must be a list of origins like \"https://calls.example.org\", got {raw!r}")
    for i, origin in enumerate(raw):
        if not isinstance(origin, str) or not _ORIGIN.match(origin):
            raise Bad(f"item {i}: must be an origin like \"https://calls.example.org\" (no path), got {origin!r}")
    return tuple(o.rstrip("/").lower() for o in raw)


def hosts(raw: Any) -> tuple[str, ...]:
    if isinstance(raw, str):
        raw = [h.strip() for h in raw.split(",") if h.strip()]
    if not isinstance(raw, list):
        raise Bad(f"must be a list of host names like \"calls.example.org\", got {raw!r}")
    hosts = []
    for i, host in enumerate(raw):
        if not isinstance(host, str) or not host.strip():
            raise Bad(f"item {i}: must be a host name or an IP address, got {host!r}")
        try:
            hosts.append(host_or_empty(host).lower().rstrip("."))
        except Bad:
            raise Bad(f"item {i}: must be a host name or an IP address (no scheme, no port), got {host!r}") from None
    return tuple(hosts)


def listen_address_or_empty(raw: Any) -> str:
    value = text(raw).strip()
    if not value:
        return ""
    host, sep, port = value.rpartition(":")
    bad = Bad(f"must be IP:PORT like \"127.0.0.1:9090\" or \"[::1]:9090\" (port 0 = a free one), got {raw!r}")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise bad
    try:
        ipaddress.ip_address(host[1:-1] if host.startswith("[") and host.endswith("]") else host)
    except ValueError:
        raise bad from None
    return value


_HTTP_URL = re.compile(r"^https?://(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(:\d{1,5})?/?$")


def http_url_or_empty(raw: Any) -> str:
    """``http://host:port`` or ``https://host:port`` (no path), as ``rtc.rtcd_url`` takes it; empty is off."""
    value = text(raw).strip()
    if value and not _HTTP_URL.match(value):
        raise Bad(f"must be http://HOST:PORT or https://HOST:PORT (no path), got {raw!r}")
    return value.rstrip("/")


_ICE_URL = re.compile(r"^(stun|stuns|turn|turns):[^\s]+$")


def ice_url(url: Any, where: str) -> str:
    if not isinstance(url, str) or not _ICE_URL.match(url.strip()):
        raise Bad(f"{where}: must be a stun:, stuns:, turn: or turns: URL, got {url!r}")
    return url.strip()


def ice_servers(raw: Any) -> tuple[IceServer, ...]:
    if isinstance(raw, str):
        text = raw.strip()
        if text.startswith("["):
            try:
                raw = json.loads(text)
            except ValueError as exc:
                raise Bad(f"is not valid JSON: {exc}") from None
        else:
            raw = [u.strip() for u in text.split(",") if u.strip()]
    if not isinstance(raw, list):
        raise Bad(f"must be a list of URLs or {{urls, username, credential}} tables, got {raw!r}")
    servers: list[IceServer] = []
    for i, item in enumerate(raw):
        where = f"item {i}"
        if isinstance(item, str):
            servers.append(IceServer(urls=(ice_url(item, where),)))
            continue
        if not isinstance(item, dict):
            raise Bad(f"{where}: must be a URL or a table with urls, got {item!r}")
        unknown = set(item) - {"urls", "username", "credential"}
        if unknown:
            raise Bad(f"{where}: unknown field(s) {', '.join(sorted(unknown))} (known: urls, username, credential)")
        urls = item.get("urls")
        if isinstance(urls, str):
            urls = [urls]
        if not isinstance(urls, list) or not urls:
            raise Bad(f"{where}: urls must be a URL or a non-empty list of URLs, got {urls!r}")
        username = item.get("username", "")
        credential = item.get("credential", "")
        if not isinstance(username, str) or not isinstance(credential, str):
            raise Bad(f"{where}: username and credential must be strings")
        servers.append(
            IceServer(
                urls=tuple(ice_url(u, f"{where}.urls") for u in urls), username=username, credential=credential
            )
        )
    return tuple(servers)


