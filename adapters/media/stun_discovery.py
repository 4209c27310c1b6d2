"""STUN public-address discovery: ask the configured STUN server which address this host's packets come from.

Behind a 1:1 NAT or a port forward the server's own interfaces carry only private addresses. When
``rtc.ice_host_override`` is empty and ``rtc.ice_servers`` lists a ``stun:`` URL, the server sends a Binding
request (RFC 5389) from its RTC bind address to that server and advertises the XOR-MAPPED-ADDRESS it gets back
(the IP only: the port is the RTC port, which a port forward must map one to one).

The query is a plain blocking socket with the RFC 5389 retransmission schedule (0, 0.5, 1.5, 3.5 s, ...) cut at
``timeout`` (5 s by default), so the same function serves ``callsd config check`` and, through
``trio.to_thread.run_sync``, the running server (``MediaPlane`` re-checks every ``rtc.advertise_refresh_seconds``).
A failure is a ``StunAnswer`` with ``error`` set, never an exception: the caller warns and falls back.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass

from aioice import stun

__all__ = ["StunAnswer", "first_stun_url", "query_stun", "parse_stun_url"]


@dataclass(frozen=True, slots=True, kw_only=True)
class StunAnswer:
    """The outcome of one discovery: ``address`` (the public IP) or ``error`` (why there is none)."""

    url: str
    address: str | None = None
    error: str = ""


def parse_stun_url(url: str) -> tuple[str, int]:
    """``stun:host[:port]`` -> (host, port); ValueError for another scheme or a malformed URL."""
    scheme, _, rest = url.partition(":")
    if scheme != "stun" or not rest:
        raise ValueError(f"not a stun: URL: {url!r}")
    rest = rest.split("?", 1)[0]
    if rest.startswith("["):
        host, _, tail = rest[1:].partition("]")
        port_text = tail.lstrip(":")
    else:
        host, _, port_text = rest.rpartition(":") if rest.count(":") == 1 else (rest, "", "")
    try:
        port = int(port_text) if port_text else 3478
    except ValueError:
        raise ValueError(f"bad port in {url!r}") from None
    if not host or not 0 < port < 65536:
        raise ValueError(f"bad stun: URL {url!r}")
    return host, port


def first_stun_url(urls: Iterable[str]) -> str | None:
    """The first plain ``stun:`` URL (``stuns:`` and TURN URLs are not used for discovery)."""
    return next((u for u in urls if u.startswith("stun:")), None)


def query_stun(url: str, *, bind: str = "0.0.0.0", timeout: float = 5.0) -> StunAnswer:
    """Send Binding requests to the STUN server at ``url`` from ``bind`` until one is answered or ``timeout``."""
    try:
        host, port = parse_stun_url(url)
        family = socket.AF_INET6 if ":" in bind else socket.AF_INET
        infos = socket.getaddrinfo(host, port, family, socket.SOCK_DGRAM)
    except (ValueError, OSError) as exc:
        return StunAnswer(url=url, error=f"cannot resolve {url}: {exc}")
    if not infos:
        return StunAnswer(url=url, error=f"{url} has no address")
    target = infos[0][4]
    request = stun.Message(message_method=stun.Method.BINDING, message_class=stun.Class.REQUEST)
    deadline = time.monotonic() + timeout
    interval = 0.5
    next_send = time.monotonic()
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        try:
            sock.bind((bind, 0))
        except OSError as exc:
            return StunAnswer(url=url, error=f"cannot bind {bind} to ask {url}: {exc.strerror}")
        while True:
            now = time.monotonic()
            if now >= deadline:
                return StunAnswer(url=url, error=f"no answer from {url} within {timeout:g} s")
            if now >= next_send:
                try:
                    sock.sendto(bytes(request), target)
                except OSError as exc:
                    return StunAnswer(url=url, error=f"cannot send to {url}: {exc.strerror}")
                next_send = now + interval
                interval *= 2
            sock.settimeout(max(0.01, min(next_send, deadline) - now))
            try:
                data = sock.recv(2048)
            except TimeoutError:
                continue
            except OSError as exc:
                return StunAnswer(url=url, error=f"{url}: {exc.strerror}")
            try:
                message = stun.parse_message(data)
            except Exception:
                continue
            if message.transaction_id != request.transaction_id or message.message_class != stun.Class.RESPONSE:
                continue
            mapped = message.attributes.get("XOR-MAPPED-ADDRESS") or message.attributes.get("MAPPED-ADDRESS")
            if not mapped:
                return StunAnswer(url=url, error=f"{url} answered without a mapped address")
            return StunAnswer(url=url, address=str(mapped[0]))
