"""``callsd rtcd``: the media service. Two modes, one RPC (adapters/media/remote.py):

    callsd rtcd --config /etc/callsd/rtcd.toml     # standalone: HTTP/WebSocket API on [api] (8045), media on [rtc]
    callsd rtcd --listen unix:/run/callsd/rtcd-0.sock --rtc-address 0.0.0.0 --rtc-port 8444   # a media worker

Without ``--listen`` it is the networked, authenticated service of docs/rtcd.md (app/rtcd_service.py), configured
by an rtcd file (app/rtcd_config.py); the flags below override its ``[rtc]`` keys. With ``--listen`` it is one
media worker — a ``MediaPlane`` on its own RTC UDP port, driven over a stream by a server:
    callsd rtcd --listen tcp:127.0.0.1:7400 --config /etc/callsd.toml     # rtc keys from the file's [rtc]

``callsd serve`` with ``rtc.media_workers = N`` starts N of these itself (docs/adr/0007-media-workers.md); running
one by hand is for debugging. The worker accepts one connection from the server (``adapters/media/remote.py``
protocol), serves it, and exits when that connection closes: a worker never outlives its server. Loopback TCP only:
the RPC carries no authentication, so ``tcp:`` must name a loopback address.

Exit codes: 0 after the server closed the link, 2 for bad arguments or a port that cannot be bound.
"""

from __future__ import annotations

import argparse
import dataclasses
import ipaddress
import logging
import os
import socket
import sys
from functools import partial
from pathlib import Path
from typing import Any

import trio

from .config import ConfigError, RtcConfig, load_config

log = logging.getLogger("callsd.rtcd")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--listen", metavar="ADDR",
                        help="media worker mode: where the server connects (unix:/path/to.sock or tcp:127.0.0.1:PORT);"
                             " omit to run the standalone service (docs/rtcd.md)")
    parser.add_argument("--config", "-c", metavar="FILE", help="TOML configuration file: its [rtc] section is used")
    parser.add_argument("--rtc-address", metavar="IP", help="IP address the RTC UDP socket binds (rtc.ice_address_udp)")
    parser.add_argument("--rtc-port", type=int, metavar="PORT", help="RTC UDP port, 0 = a free port (rtc.ice_port_udp)")
    parser.add_argument("--ice-host-override", metavar="HOST", help="host advertised in the ICE candidate")
    parser.add_argument("--ice-host-port-override", type=int, metavar="PORT", help="port advertised in the candidate")
    parser.add_argument("--udp-rcvbuf", type=int, metavar="BYTES", help="SO_RCVBUF of the RTC socket")
    parser.add_argument("--udp-sndbuf", type=int, metavar="BYTES", help="SO_SNDBUF of the RTC socket")
    parser.add_argument("--ice-max-addresses", type=int, metavar="N",
                        help="distinct source addresses one ICE session may use (rtc.ice_max_addresses_per_session)")
    parser.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))


def rtc_config(args: argparse.Namespace, base: RtcConfig | None = None) -> RtcConfig:
    """The ``[rtc]`` section of ``--config`` (and ``CALLSD_RTC_*``), overridden by the flags given."""
    base = base or load_config(args.config, os.environ).rtc
    changes: dict[str, Any] = {}
    for flag, key in (("rtc_address", "ice_address_udp"), ("rtc_port", "ice_port_udp"),
                      ("ice_host_override", "ice_host_override"),
                      ("ice_host_port_override", "ice_host_port_override"),
                      ("udp_rcvbuf", "udp_rcvbuf"), ("udp_sndbuf", "udp_sndbuf"),
                      ("ice_max_addresses", "ice_max_addresses_per_session")):
        value = getattr(args, flag)
        if value is not None:
            changes[key] = value
    return dataclasses.replace(base, **changes)


async def open_listener(spec: str) -> trio.SocketListener:
    """A listener for ``unix:/path`` (a stale socket file is replaced) or ``tcp:127.0.0.1:PORT`` (loopback only)."""
    kind, _, rest = spec.partition(":")
    if kind == "unix" and rest:
        path = Path(rest)
        if path.is_socket():
            path.unlink()
        sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        await sock.bind(str(path))
        os.chmod(path, 0o600)
    elif kind == "tcp" and rest:
        host, _, port = rest.rpartition(":")
        host = host.strip("[]")
        if not ipaddress.ip_address(host).is_loopback:
            raise ValueError(f"--listen tcp: must be a loopback address (the RPC is not authenticated), got {host}")
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = trio.socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        await sock.bind((host, int(port)))
    else:
        raise ValueError(f"--listen must be unix:/path or tcp:127.0.0.1:PORT, got {spec!r}")
    sock.listen(1)
    return trio.SocketListener(sock)


async def run_worker(config: RtcConfig, listen: str, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
    """Bind the RTC port and the listener, serve one server connection, return when it closes."""
    from callsd.adapters.media.plane import MediaPlane
    from callsd.adapters.media.remote import EventPipe, serve_plane_rpc

    pipe = EventPipe()
    plane = MediaPlane(config, pipe.emit)
    async with trio.open_nursery() as nursery:
        address = await nursery.start(plane.serve)
        listener = await open_listener(listen)
        log.info("rtcd: media on udp %s:%s, waiting for the server on %s", address[0], address[1], listen)
        task_status.started(address)
        async with listener:
            stream = await listener.accept()
        async with stream:
            await serve_plane_rpc(stream, plane, pipe)
        log.info("rtcd: the server closed the link; exiting")
        nursery.cancel_scope.cancel()


def run_standalone(args: argparse.Namespace) -> int:
    """The networked service (app/rtcd_service.py); exit 0 after a drain or a stop, 2 for a bad configuration."""
    from .cmd_serve import setup_logging
    from .rtcd_config import load_rtcd_config
    from .rtcd_service import run_service
    from .server import VERSION

    try:
        config = load_rtcd_config(args.config, os.environ)
        config = dataclasses.replace(config, rtc=rtc_config(args, config.rtc))
    except ConfigError as exc:
        print(f"callsd rtcd: {exc}", file=sys.stderr)
        return 2
    setup_logging(args.log_level if args.log_level != "info" else config.log.level, config.log.json)
    try:
        trio.run(partial(run_service, config, version=VERSION, handle_signals=True))
    except BaseException as exc:
        leaf = exc
        while isinstance(leaf, BaseExceptionGroup) and len(leaf.exceptions) == 1:
            leaf = leaf.exceptions[0]
        if isinstance(leaf, OSError | ValueError):
            print(f"callsd rtcd: cannot start: {leaf} (api {config.api.listen}:{config.api.port}, rtc udp "
                  f"{config.rtc.ice_address_udp}:{config.rtc.ice_port_udp})", file=sys.stderr)
            return 2
        if isinstance(leaf, KeyboardInterrupt):
            return 130
        raise
    return 0


def run(args: argparse.Namespace) -> int:
    from .cmd_serve import setup_logging

    if args.listen is None:
        return run_standalone(args)
    setup_logging(args.log_level, False)
    try:
        whole = load_config(args.config, os.environ)
        config = rtc_config(args, whole.rtc)
    except ConfigError as exc:
        print(f"callsd rtcd: {exc}", file=sys.stderr)
        return 2
    try:
        trio.run(partial(run_worker, config, args.listen))
    except BaseException as exc:
        leaf = exc
        while isinstance(leaf, BaseExceptionGroup) and len(leaf.exceptions) == 1:
            leaf = leaf.exceptions[0]
        if isinstance(leaf, OSError | ValueError):
            print(f"callsd rtcd: cannot start: {leaf} (rtc udp {config.ice_address_udp}:{config.ice_port_udp}, "
                  f"listen {args.listen})", file=sys.stderr)
            return 2
        if isinstance(leaf, KeyboardInterrupt):
            return 130
        raise
    return 0
