"""The load process of a side-by-side run: one JSON line per second on stdout, then one result line.

    python -m bench.peers.drive janus  --url ws://10.X.Y.1:8188/ --rooms 20 --duration 30
    python -m bench.peers.drive callsd --url http://10.X.Y.1:PORT --rooms 20 --duration 30

Both drivers use the same simulated peers (``callsd.peer``'s MediaEngine, same media engine, same audio source),
the same shape (rooms x users, the first ``publishers`` of each room talking) and the same join pacing; only the
signaling differs (Janus's VideoRoom API, or callsd's protocol through the load tool's worker). Lines look like
``{"kind": "progress", "connected": .., "expected_legs": .., "failed": .., ...}`` and ``{"kind": "result", ...}``:
the bench (bench/peers/__main__.py) runs this inside the load tool's namespace, pinned to its own CPU, and reads
the lines to find the steady window.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
import time
from typing import Any

import trio

from .callsd_server import TOKEN_ENV

__all__ = ["main", "callsd_result"]


def _emit(kind: str, payload: dict[str, Any]) -> None:
    print(json.dumps({"kind": kind, **payload}), flush=True)


def callsd_result(doc: dict[str, Any], rooms: int, users: int) -> dict[str, Any]:
    """The worker's result document reduced to the fields the Janus driver reports (same meaning)."""
    expected = sum(c["expected"] for c in doc["calls"])
    lost = sum(c["lost"] for c in doc["calls"])
    rfc_expected = sum(c["rfc3550_expected"] for c in doc["calls"])
    rfc_lost = sum(c["rfc3550_lost"] for c in doc["calls"])
    return {
        "server": "callsd", "rooms": rooms, "users_per_room": users, "users": doc["users"],
        "failed": sum(c["failed"] for c in doc["calls"]), "errors": doc["errors"],
        "legs_expected": doc["users"], "legs_connected": sum(c["connected"] for c in doc["calls"]),
        "leg_failures": doc["failures_by_stage"], "delivery_expected": expected, "delivery_lost": lost,
        "loss": lost / expected if expected else 0.0,
        "rfc3550_loss": rfc_lost / rfc_expected if rfc_expected else 0.0,
        "counters": doc["counters"], "cpu_seconds": doc["cpu_seconds"],
    }


async def _callsd(args: argparse.Namespace) -> None:
    from callsd.app.loadtest.worker import WorkerSpec, run_worker

    ws_url = args.url.replace("http://", "ws://").rstrip("/") + "/api/v1/websocket"
    users = args.rooms * args.users
    spec = WorkerSpec(ws_url=ws_url, index=0, calls=list(range(args.rooms)), total_calls=args.rooms,
                      users_per_call=args.users, unmuted=args.publishers, screen_sharing=0, video=False,
                      video_bitrate=0, screen_bitrate=0, join_duration=users / args.join_rate,
                      duration=args.duration, t0=time.monotonic() + 0.2, run_id=secrets.token_hex(3),
                      delay_sample=args.delay_sample, join_timeout=args.join_timeout,
                      media_engine=args.media_engine, token_secret=os.environ.get(TOKEN_ENV, ""))
    cpu0 = time.process_time()

    def report(kind: str, payload: dict[str, Any]) -> None:
        if kind == "progress":
            _emit("progress", payload | {"expected_legs": users, "cpu_seconds": round(time.process_time() - cpu0, 3)})
        else:
            _emit("result", callsd_result(payload, args.rooms, args.users))

    await run_worker(spec, report)


async def _janus(args: argparse.Namespace) -> None:
    from .videoroom import DriverSpec, run_driver

    spec = DriverSpec(url=args.url, rooms=args.rooms, users=args.users, publishers=args.publishers,
                      duration=args.duration, join_rate=args.join_rate, join_timeout=args.join_timeout,
                      media_engine=args.media_engine, delay_sample=args.delay_sample)
    await run_driver(spec, _emit)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.peers.drive", description=__doc__.split("\n\n")[0])
    parser.add_argument("server", choices=("janus", "callsd"))
    parser.add_argument("--url", required=True, help="Janus: ws://host:8188/; callsd: http://host:port")
    parser.add_argument("--rooms", type=int, required=True)
    parser.add_argument("--users", type=int, default=8)
    parser.add_argument("--publishers", type=int, default=2)
    parser.add_argument("--duration", type=float, required=True, help="seconds from the first join to the end")
    parser.add_argument("--join-rate", type=float, default=50.0, help="users per second")
    parser.add_argument("--join-timeout", type=float, default=30.0)
    parser.add_argument("--media-engine", default="native", help="callsd.peer media engine (auto, native, python)")
    parser.add_argument("--delay-sample", type=int, default=4)
    args = parser.parse_args(argv)
    trio.run(_callsd if args.server == "callsd" else _janus, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
