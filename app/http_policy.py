"""Who may talk to the HTTP port: the ``Host`` rule (DNS rebinding) and the ``/metrics`` bearer token (pure).

DNS rebinding: a page on ``evil.example`` first resolves to the attacker's server, then (short TTL) to 127.0.0.1,
so the victim's browser sends requests to a callsd on loopback that it considers same-origin with the attacker's
page: ``Origin`` and ``Host`` both say ``evil.example`` and the Origin check passes (issue 8, item 3). The ``Host``
header is the one thing such a request cannot fake, so it is checked on every HTTP request and WebSocket upgrade:

- open mode (reachable from loopback only): loopback names (``localhost``, ``*.localhost``) and loopback
  addresses, plus the names in ``http.allowed_hosts`` (a reverse proxy's public name);
- token mode: the names in ``http.allowed_hosts`` plus loopback; an empty list allows any host (every action
  needs a token there; set the list to close the rebinding path to the page and ``/api/v1/config`` too).

``/healthz`` is exempt: probes (Kubernetes sends the pod IP as ``Host``) must reach it, and it tells nothing.
"""

from __future__ import annotations

import hmac
import ipaddress

__all__ = ["host_allowed", "host_name", "metrics_authorized", "HOST_EXEMPT_PATHS"]

HOST_EXEMPT_PATHS = frozenset({"/healthz"})


def host_name(header: str) -> str:
    """The name part of a ``Host`` header, lower case, without the port (``[::1]:8080`` → ``::1``)."""
    value = header.strip().lower()
    if value.startswith("["):
        return value[1:].partition("]")[0]
    name, _, _ = value.partition(":")
    return name.rstrip(".")


def _is_loopback(name: str) -> bool:
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def host_allowed(header: str | None, *, auth_mode: str, allowed_hosts: tuple[str, ...]) -> bool:
    """True when a request with this ``Host`` header may be served (see the module docstring).

    A request without ``Host`` (HTTP/1.0, not a browser) cannot be a rebinding attack and is allowed.
    """
    if header is None or not header.strip():
        return True
    name = host_name(header)
    if _is_loopback(name) or name in allowed_hosts:
        return True
    return auth_mode == "token" and not allowed_hosts


def metrics_authorized(authorization: str | None, token: str) -> bool:
    """``/metrics`` with ``metrics.token`` set needs ``Authorization: Bearer <token>`` (compared in constant time)."""
    if not token:
        return True
    scheme, _, given = (authorization or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())
