"""``callsd config check [FILE]``: validate a configuration and print the effective one, secrets masked.

Environment variables (``CALLSD_<SECTION>_<KEY>``) are applied as ``callsd serve`` would. Exit codes: 0 valid,
2 invalid (one line per problem on stderr).
"""

from __future__ import annotations

import argparse
import os
import sys

from .auth import check_open_mode_allowed
from .config import ConfigError, load_config, render_toml


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    check = sub.add_parser("check", help="validate FILE and print the effective configuration")
    check.add_argument("file", nargs="?", help="TOML file (omit to check the defaults + environment)")


def run(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.file, os.environ)
    except ConfigError as exc:
        print(f"{args.file or 'configuration'}: {exc}", file=sys.stderr)
        return 2
    if config.auth.mode == "open":
        problem = check_open_mode_allowed(config.http.listen)
        if problem is not None:
            print(f"{args.file or 'configuration'}: invalid configuration:\n  {problem}", file=sys.stderr)
            return 2
    sys.stdout.write(render_toml(config, mask_secrets=True))
    return 0
