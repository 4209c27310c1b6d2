"""``callsd config check [FILE]``: validate a configuration and print the effective one, secrets masked.

Environment variables (``CALLSD_<SECTION>_<KEY>``) are applied as ``callsd serve`` would. Exit codes: 0 valid,
2 invalid (one line per problem on stderr).
"""

from __future__ import annotations

import argparse
import os
import sys

from .auth import check_open_mode_allowed
from .config import Config, ConfigError, load_config, render_toml


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    check = sub.add_parser("check", help="validate FILE and print the effective configuration")
    check.add_argument("file", nargs="?", help="TOML file (omit to check the defaults + environment)")
    check.add_argument("--rtcd", action="store_true",
                       help="check it as a callsd rtcd file (implied when the file has an [api] section)")
    check.add_argument("--system", action="store_true",
                       help="also check this machine: socket buffer limits (the sysctl lines to apply when short)")


def run(args: argparse.Namespace) -> int:
    from .rtcd_config import is_rtcd_file

    if args.rtcd or (args.file and is_rtcd_file(args.file)):
        return _check_rtcd(args)
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
    sys.stdout.write(_advertised_comment(config))
    if args.system:
        from callsd.adapters.media.system_check import check_system

        report = check_system(rcvbuf=config.rtc.udp_rcvbuf, sndbuf=config.rtc.udp_sndbuf)
        sys.stdout.write("".join(f"# system: {line}\n" for line in report.lines()))
    return 0


def _advertised_comment(config: Config) -> str:
    """What the RTC port will advertise and why, as TOML comments (asks the STUN server when discovery applies)."""
    from callsd.adapters.media.advertiser import plan_for

    port = config.rtc.ice_port_udp
    advertised, _ = plan_for(config.rtc, port)
    lines = [f"# rtc: advertises {advertised.describe()}"]
    if not port and not config.rtc.ice_host_port_override:
        lines[0] += " (port 0: the port picked at start)"
    lines += [f"# rtc: warning: {w}" for w in advertised.warnings]
    return "\n".join(lines) + "\n"


def _check_rtcd(args: argparse.Namespace) -> int:
    """``callsd config check`` of an rtcd file (app/rtcd_config.py): same exit codes and masking."""
    from .rtcd_config import load_rtcd_config, render_rtcd_toml

    try:
        config = load_rtcd_config(args.file, os.environ)
    except ConfigError as exc:
        print(f"{args.file or 'configuration'}: {exc}", file=sys.stderr)
        return 2
    sys.stdout.write("# callsd rtcd configuration\n" + render_rtcd_toml(config, mask_secrets=True))
    return 0
