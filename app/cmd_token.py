"""``callsd token create --user U --channel C [--channel C2 ...] --ttl 1h [--secret S]``: mint a call token.

The secret defaults to ``$CALLSD_AUTH_SECRET`` (the server's ``auth.secret``); ``--channel '*'`` allows any channel.
Prints the token on stdout. Exit codes: 0 ok, 2 bad arguments (no secret, bad TTL).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from .auth import create_token, parse_ttl


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    create = sub.add_parser("create", help="mint a token for a user and channels")
    create.add_argument("--user", required=True, help="user id the token names")
    create.add_argument("--channel", action="append", required=True, help="allowed channel (repeat; '*' = any)")
    create.add_argument("--ttl", default="1h", help="validity, e.g. 90s, 15m, 1h, 7d (default 1h)")
    create.add_argument("--secret", help="signing secret (default: $CALLSD_AUTH_SECRET)")


def run(args: argparse.Namespace) -> int:
    secret = args.secret or os.environ.get("CALLSD_AUTH_SECRET", "")
    if not secret:
        print("callsd token create: no secret: pass --secret or set CALLSD_AUTH_SECRET", file=sys.stderr)
        return 2
    try:
        ttl = parse_ttl(args.ttl)
        token = create_token(secret=secret, user_id=args.user, channels=args.channel,
                             expires_at=int(time.time()) + ttl)
    except ValueError as exc:
        print(f"callsd token create: {exc}", file=sys.stderr)
        return 2
    print(token)
    return 0
