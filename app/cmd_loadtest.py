"""``callsd loadtest``: simulated WebRTC users against a running callsd, and ``callsd loadtest plot``.

    callsd loadtest --url http://127.0.0.1:8080 --calls 10 --users-per-call 8 --unmuted 2 --screen-sharing 2 \\
        --duration 60 --join-duration 10 --processes 1 --output results.json
    callsd loadtest plot results.json -o report.png

Exit codes: 0 done (see the results for failures), 1 no simulated user got connected, 2 bad flags or the server is
unreachable (one line on stderr, no traceback), 3 the run is invalid (the server restarted, died or stopped
accepting connections during it: ``invalid_reasons`` in the results says which).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def _seconds(text: str) -> float:
    """``30``, ``30s``, ``2m`` or ``1h`` -> seconds."""
    units = {"s": 1, "m": 60, "h": 3600}
    raw = text.strip().lower()
    scale = 1
    if raw and raw[-1] in units:
        scale = units[raw[-1]]
        raw = raw[:-1]
    try:
        value = float(raw) * scale
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a duration like 30, 30s, 2m; got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, got {text!r}")
    return value


def _bitrate(text: str) -> int:
    """``500k``, ``1.5M`` or ``800000`` -> bits per second."""
    raw = text.strip().lower()
    scale = 1
    if raw.endswith("k"):
        scale, raw = 1000, raw[:-1]
    elif raw.endswith("m"):
        scale, raw = 1_000_000, raw[:-1]
    try:
        value = int(float(raw) * scale)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a bitrate like 500k or 1.5M, got {text!r}") from None
    if value < 8000:
        raise argparse.ArgumentTypeError(f"bitrate must be at least 8k, got {text!r}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.set_defaults(_parser=parser)
    parser.add_argument("--url", action="append", default=None,
                        help="the server's HTTP URL (or its ws:// WebSocket URL); default http://127.0.0.1:8080. "
                             "Repeat it to spread users round-robin over several nodes, as a load balancer would "
                             "(a cluster: one call's users land on different nodes); results count users per URL")
    parser.add_argument("--calls", type=_positive_int, default=1, help="number of calls (default %(default)s)")
    parser.add_argument("--users-per-call", type=_positive_int, default=2, help="users in each call")
    parser.add_argument("--unmuted", type=_non_negative_int, default=1,
                        help="unmuted users per call; they send Opus-sized audio at 50 packets/s")
    parser.add_argument("--screen-sharing", type=_non_negative_int, default=0,
                        help="number of calls in which one user shares a screen")
    parser.add_argument("--video", action="store_true", help="unmuted users also send camera video")
    parser.add_argument("--audio-slots", type=_non_negative_int, default=None,
                        help="ask for N pre-negotiated audio receive sections (joins then cost the others no "
                             "offer/answer round; docs/adr/0020-receive-slots.md); 0: one section per track. "
                             "Default: as many as the web client asks for (8), so the load is negotiated as real "
                             "users' is")
    parser.add_argument("--batch", action="store_true",
                        help="ask for batch frames (protocol 1.3: the events waiting for a client share one WebSocket "
                             "frame; docs/adr/0027-batch-frames.md), as the web client does")
    parser.add_argument("--video-bitrate", type=_bitrate, default=500_000, help="camera bitrate (default 500k)")
    parser.add_argument("--screen-bitrate", type=_bitrate, default=1_000_000,
                        help="screen-share bitrate (default 1M)")
    parser.add_argument("--screen-simulcast", action="store_true",
                        help="screen sharers publish three simulcast layers (1/4, 1/2 and all of --screen-bitrate);"
                             " the results report packets and bitrate per layer and what each receiver got")
    parser.add_argument("--duration", type=_seconds, default=30.0,
                        help="total run time from the first join, e.g. 60s or 5m (default 30s)")
    parser.add_argument("--join-duration", type=_seconds, default=5.0,
                        help="joins are spread evenly over this window (default 5s)")
    parser.add_argument("--processes", type=_positive_int, default=1,
                        help="load processes; calls are dealt among them (default 1)")
    parser.add_argument("--token-secret", default="",
                        help="the server's token secret (token mode); without it the tool joins in open mode")
    parser.add_argument("--output", "-o", default="", help="write the results JSON to this file")
    parser.add_argument("--delay-sample", type=_positive_int, default=1,
                        help="decrypt one received packet in N to measure one-way delay (default 1: all)")
    parser.add_argument("--join-timeout", type=_seconds, default=15.0,
                        help="a user not connected (signaling + ICE + DTLS) after this long has failed")
    parser.add_argument("--server-pid", type=_non_negative_int, default=0,
                        help="read the server's CPU and RSS from /proc/PID as well as /metrics")
    parser.add_argument("--media-engine", choices=("auto", "native", "shared", "python"), default="auto",
                        help="the simulated users' media engine: native (C: recvmmsg/sendmmsg, SRTP on libcrypto), shared (native "
                             "with one socket for all users, each on its own 127.x address: loopback servers only), "
                             "python, or auto (native when built; default)")
    parser.add_argument("--reconnect", action="store_true",
                        help="users whose WebSocket drops reconnect their session (with backoff, like the web client) "
                             "and renegotiate media")
    parser.add_argument("--quiet", "-q", action="store_true", help="no live display")
    sub = parser.add_subparsers(dest="action", metavar="{plot}")
    plot = sub.add_parser("plot", help="plot a results JSON to a PNG",
                          description="Plot CPU, packets/s and loss over time and the join latency histogram.")
    plot.set_defaults(_parser=plot)
    plot.add_argument("results", help="results JSON written by --output")
    plot.add_argument("-o", "--output", dest="png", default="report.png", help="PNG to write (default %(default)s)")


def _check(args: argparse.Namespace) -> None:
    parser: argparse.ArgumentParser = args._parser
    if args.unmuted > args.users_per_call:
        parser.error(f"--unmuted ({args.unmuted}) cannot exceed --users-per-call ({args.users_per_call})")
    if args.screen_sharing > args.calls:
        parser.error(f"--screen-sharing ({args.screen_sharing}) cannot exceed --calls ({args.calls})")
    if args.duration <= 0:
        parser.error("--duration must be more than 0")
    if args.join_duration >= args.duration:
        parser.error(f"--join-duration ({args.join_duration:g}s) must be shorter than --duration "
                     f"({args.duration:g}s)")
    if args.processes > args.calls:
        parser.error(f"--processes ({args.processes}) cannot exceed --calls ({args.calls}): a call lives in one "
                     "process")
    args.url = args.url or ["http://127.0.0.1:8080"]
    for url in args.url:
        if url.split("://", 1)[0] not in ("http", "https", "ws", "wss") or "://" not in url:
            parser.error(f"--url must be an http(s):// or ws(s):// URL, got {url!r}")


def _plot(args: argparse.Namespace) -> int:
    from .loadtest.plot import load_results, plot_results

    try:
        doc = load_results(args.results)
    except ValueError as exc:
        print(f"callsd loadtest plot: {exc}", file=sys.stderr)
        return 2
    plot_results(doc, args.png)
    print(f"wrote {args.png}")
    return 0


def run(args: argparse.Namespace) -> int:
    if args.action == "plot":  # add_arguments made the subparsers with dest="action": None without one
        return _plot(args)
    _check(args)
    from .loadtest.runner import WEB_CLIENT_AUDIO_SLOTS, LoadConfig, ServerUnreachable, print_summary
    from .loadtest.runner import run as run_load

    cfg = LoadConfig(
        url=args.url[0], urls=args.url, calls=args.calls, users_per_call=args.users_per_call, unmuted=args.unmuted,
        screen_sharing=args.screen_sharing, video=args.video, video_bitrate=args.video_bitrate,
        screen_bitrate=args.screen_bitrate, duration=args.duration, join_duration=args.join_duration,
        processes=args.processes, token_secret=args.token_secret, output=args.output,
        delay_sample=args.delay_sample, join_timeout=args.join_timeout, server_pid=args.server_pid,
        reconnect=args.reconnect, batch=args.batch, quiet=args.quiet or not sys.stderr.isatty(),
        audio_slots=WEB_CLIENT_AUDIO_SLOTS if args.audio_slots is None else args.audio_slots,
        screen_simulcast=args.screen_simulcast,
    )
    cfg.media_engine = args.media_engine
    try:
        doc: dict[str, Any] = run_load(cfg)
    except ServerUnreachable as exc:
        print(f"callsd loadtest: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("callsd loadtest: interrupted", file=sys.stderr)
        return 130
    print_summary(doc)
    if args.output:
        print(f"results written to {args.output}")
    if doc["users"]["connected"] == 0:
        return 1
    return 0 if doc["valid"] else 3
