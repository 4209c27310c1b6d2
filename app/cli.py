"""The ``callsd`` command line.

Each subcommand lives in its own module exposing ``add_arguments(parser)`` and ``run(args) -> int``; this table is
the only place that lists them, and modules are imported only when their subcommand runs, so ``callsd --help`` stays
fast and a subcommand's heavy dependencies (matplotlib for plots) never load for the others.
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
from collections.abc import Sequence

# name -> (module, one-line help). Keep sorted.
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "config": ("callsd.app.cmd_config", "validate a configuration file and print the effective configuration"),
    "loadtest": ("callsd.app.cmd_loadtest", "simulate WebRTC users against a server; plot the results"),
    "log": ("callsd.app.cmd_log", "event log stats, and retention: compact old records (archive or delete)"),
    "replay": ("callsd.app.cmd_replay", "rebuild call state from an event log and verify it"),
    "rtcd": ("callsd.app.cmd_rtcd", "run one media worker (the SFU's packet path) for a callsd serve"),
    "serve": ("callsd.app.cmd_serve", "run the server: web client, signaling, media plane, event log"),
    "token": ("callsd.app.cmd_token", "mint signed call tokens for token auth mode"),
}


def installed_version() -> str:
    """The installed distribution's version (what ``GET /version`` reports too); ``0+unknown`` from a bare tree."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("callsd")
    except PackageNotFoundError:
        return "0+unknown"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="callsd", description="Self-hosted group-calls server (signaling + SFU).")
    parser.add_argument("--version", action="version", version=f"callsd {installed_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(_module=module_name)
        # Arguments are added lazily in main() for the chosen command only.
    return parser


def exit_on_sigterm_as_pid1() -> None:
    """As a container's PID 1 (the image's entrypoint is ``callsd``), exit on SIGTERM until a command handles it.

    The kernel drops signals that PID 1 has no handler for, so a SIGTERM arriving while serve or rtcd start (seconds
    of imports) would be lost, and the runtime would wait out its stop timeout (5 h for rtcd) before SIGKILL. This
    handler does what the default action does elsewhere; the commands' own (the drain) replace it once installed.
    """
    if os.getpid() == 1:
        signal.signal(signal.SIGTERM, lambda signum, _frame: sys.exit(128 + signum))


def main(argv: Sequence[str] | None = None) -> int:
    exit_on_sigterm_as_pid1()
    args_list = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if args_list and args_list[0] in SUBCOMMANDS:
        name = args_list[0]
        module = importlib.import_module(SUBCOMMANDS[name][0])
        sub = argparse.ArgumentParser(prog=f"callsd {name}", description=SUBCOMMANDS[name][1])
        module.add_arguments(sub)
        args = sub.parse_args(args_list[1:])
        return int(module.run(args))
    args = parser.parse_args(args_list)
    if args.command is None:
        parser.print_help()
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
