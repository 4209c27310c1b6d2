"""``callsd serve [--config FILE]``: run the server (HTTP + WebSocket, media plane, event store).

With no file, the embedded defaults apply (``make run``): http://127.0.0.1:8080/, RTC on udp 127.0.0.1:8443, open
auth, SQLite event log in ./data. Environment variables ``CALLSD_<SECTION>_<KEY>`` override the file
(docs/config.md). SIGTERM drains (refuses new joins, waits up to ``shutdown.drain_timeout`` for calls to end); SIGINT
(Ctrl-C) stops promptly; a second SIGTERM or a SIGINT during a drain stops at once.

Exit codes: 0 after a clean stop, 1 when the event log failed while serving (restart to recover), 2 for an invalid
configuration, an unsafe setup, or an event log it cannot start from: corrupt, failing verification (unless
``--accept-broken-log``), or unwritable at start (a full disk); the one-line message says why.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys

import trio

from .config import Config, ConfigError, load_config


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", "-c", metavar="FILE", help="TOML configuration file (see docs/config.md)")
    parser.add_argument("--no-media", action="store_true", help="run signaling only, without the media plane")
    parser.add_argument("--accept-broken-log", action="store_true",
                        help="start even if the event log fails verification (chain breaks, output digests that "
                             "differ); each accepted record is logged as a warning")


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc = {"time": self.formatTime(record), "level": record.levelname.lower(), "logger": record.name,
               "message": record.getMessage()}
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(doc)


def setup_logging(level: str, as_json: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_JsonFormatter() if as_json else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


def run(args: argparse.Namespace) -> int:
    from callsd.adapters.media.router import WorkerStartError

    from .gc_tuning import apply_gc_tuning
    from .server import ServerFailed, ServerInfo, StartupError, serve

    try:
        config = load_config(args.config, os.environ)
    except ConfigError as exc:
        print(f"callsd serve: {exc}", file=sys.stderr)
        return 2
    setup_logging(config.log.level, config.log.json)

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            info: ServerInfo = await nursery.start(
                lambda task_status: serve(config, handle_signals=True, media=not args.no_media,
                                          accept_broken_log=args.accept_broken_log, task_status=task_status)
            )
            rtc = f"udp {info.rtc_address[0]}:{info.rtc_address[1]}" if info.rtc_address else "disabled"
            if info.rtc_address and config.rtc.ice_port_tcp:
                rtc += f" and ICE-TCP tcp {info.rtc_address[0]}:{_tcp_ports(config)}"
            if config.rtc.rtcd_url:
                rtc = f"rtcd hosts at {config.rtc.rtcd_url}"
            if info.rtc_advertised:
                rtc += f", advertised as {info.rtc_advertised}"
            print(f"callsd {info.url} is ready: open it in two browser windows to start a call "
                  f"(media: {rtc}; auth: {config.auth.mode}; events: {config.store.shown_url()})", flush=True)
            apply_gc_tuning(config.rtc)  # after start-up: what start-up built is frozen (app/gc_tuning.py)

    try:
        trio.run(main)
    except BaseException as exc:
        leaf = _single_leaf(exc)
        if isinstance(leaf, ServerFailed):
            print(f"callsd serve: {leaf}", file=sys.stderr)
            return 1
        if isinstance(leaf, StartupError):
            print(f"callsd serve: cannot start: {leaf}", file=sys.stderr)
            return 2
        if isinstance(leaf, WorkerStartError):  # the worker printed its own reason ("callsd rtcd: cannot start: ...")
            print(f"callsd serve: cannot start: {leaf} (its reason is on the line above)", file=sys.stderr)
            return 2
        if isinstance(leaf, OSError):  # a port in use, a data directory we may not write, ...
            print(f"callsd serve: cannot start: {leaf} (http {config.http.listen}:{config.http.port}, "
                  f"rtc udp {config.rtc.ice_address_udp}:{config.rtc.ice_port_udp}, rtc tcp {config.rtc.ice_port_tcp or 'off'}, "
                  f"data {config.store.data_dir})",
                  file=sys.stderr)
            return 2
        if isinstance(leaf, KeyboardInterrupt):
            return 130
        raise
    return 0


def _tcp_ports(config: Config) -> str:
    """The ICE-TCP port, or the range of the media workers' ports (worker i listens on ``ice_port_tcp + i``)."""
    first, workers = config.rtc.ice_port_tcp, config.rtc.media_workers
    return f"{first}-{first + workers - 1}" if workers > 1 else str(first)


def _single_leaf(exc: BaseException) -> BaseException:
    """Unwrap Trio's exception groups when they hold a single exception."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc
