"""The HTTP/WebSocket attacks of issue 8 against a `callsd serve` process, with figures (docs/security.md).

    python -m bench.attack_http [--rounds 3] [--frame-mb 48] [--idle 500] [--pythonpath DIR]

1. Huge frames: a `callsd loadtest` call (2 users, one talker) runs throughout; then ``--rounds`` rounds of 10
   concurrent connections each send one ``--frame-mb`` MB WebSocket text frame without joining, then one 256 MB
   frame. Printed: server RSS at baseline (call up), peak during (VmHWM), after; whether the server is alive; the
   call's end-to-end loss.
2. Idle sockets: ``--idle`` upgraded WebSockets that never join, from one address; printed: how many were answered,
   the server's open fds and RSS after 1 s and after ``http.join_timeout`` + 2 s.

``--pythonpath DIR`` runs another checkout's callsd (DIR holds a ``callsd`` link to that checkout), which is how
the "before" figures were taken. The raw-socket helpers are the tests' (tests/attack_support.py).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
import attack_support as attack  # noqa: E402 - the tests' helpers, shared on purpose


async def _start(workdir: Path, env_extra: dict[str, str]) -> attack.ServerProcess:
    env = dict(os.environ, CALLSD_HTTP_PORT="0", CALLSD_RTC_ICE_PORT_UDP="0", CALLSD_RTC_ICE_PORT_TCP="0", CALLSD_HTTP_LISTEN="127.0.0.1",
               CALLSD_RTC_ICE_ADDRESS_UDP="127.0.0.1", CALLSD_STORE_DATA_DIR=str(workdir / "data"), **env_extra)
    log = workdir / "serve.log"
    with open(log, "w") as errors:
        proc = subprocess.Popen([sys.executable, "-m", "callsd.app.cli", "serve"], cwd=workdir, env=env,
                                stdout=subprocess.PIPE, stderr=errors, text=True)
    line = await trio.to_thread.run_sync(proc.stdout.readline)  # type: ignore[union-attr]
    match = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
    if not match:
        raise SystemExit(f"callsd serve did not start: {line!r}\n{log.read_text()[-2000:]}")
    return attack.ServerProcess(proc, int(match.group(1)), log)


def _stop(server: attack.ServerProcess) -> None:
    if server.alive:
        server.proc.terminate()
        server.proc.wait(15)


async def huge_frames(workdir: Path, rounds: int, frame_mb: int) -> None:
    server = await _start(workdir, {"CALLSD_HTTP_IDLE_TIMEOUT": "3"})  # a ping every second
    output = workdir / "call.json"
    call = attack.loadtest(f"http://127.0.0.1:{server.port}", output, duration=20 + 15 * rounds, cwd=workdir)
    try:
        with trio.fail_after(30):
            while await attack.metric(server.port, "callsd_participants") < 2:
                await trio.sleep(0.1)
        baseline = server.rss_mb()
        server.reset_peak()
        started = time.monotonic()
        for round_number in range(rounds):
            async with trio.open_nursery() as nursery:
                for _ in range(10):
                    nursery.start_soon(_quietly, attack.send_big_frame(server.port, frame_mb << 20))
            rss = f"{server.rss_mb():.0f} MB" if server.alive else "-"
            print(f"  round {round_number + 1}: {time.monotonic() - started:5.1f} s, alive {server.alive}, RSS {rss}")
            if not server.alive:
                break
        peak = server.peak_rss_mb() if server.alive else float("nan")
        if server.alive:
            await _quietly(attack.send_big_frame(server.port, 256 << 20))
            print(f"  one 256 MB frame: alive {server.alive}, RSS {server.rss_mb():.0f} MB")
        after = server.rss_mb() if server.alive else float("nan")
        await trio.to_thread.run_sync(lambda: call.communicate(timeout=180))
        overall = json.loads(output.read_text())["overall"] if output.is_file() else {}
        print(f"huge frames: RSS baseline {baseline:.0f} MB, peak {peak:.0f} MB, after {after:.0f} MB; "
              f"server alive: {server.alive}; the call lost {overall.get('e2e_lost', '?')} of "
              f"{overall.get('e2e_expected', '?')} packets")
    finally:
        if call.poll() is None:
            call.kill()
        _stop(server)


async def _quietly(sending: object) -> None:
    with contextlib.suppress(OSError, trio.BrokenResourceError, trio.ClosedResourceError, trio.TooSlowError):
        await sending  # type: ignore[misc]


async def idle_sockets(workdir: Path, count: int) -> None:
    server = await _start(workdir, {})
    try:
        def fds() -> int:
            return len(os.listdir(f"/proc/{server.proc.pid}/fd"))

        before_fds, before_rss = fds(), server.rss_mb()
        held, answered = [], 0
        for _ in range(count):
            stream, head = await attack.open_upgraded(server.port)
            held.append(stream)
            answered += head.startswith(b"HTTP/1.1 101 ")
        await trio.sleep(1)
        soon_fds, soon_rss = fds(), server.rss_mb()
        await trio.sleep(12)  # the default join_timeout (10 s) and a margin: this is a measurement, not a test
        late_fds, late_rss = fds(), server.rss_mb()
        print(f"idle sockets: {answered}/{count} upgraded; server fds {before_fds} -> {soon_fds} (1 s) -> "
              f"{late_fds} (13 s); RSS {before_rss:.0f} -> {soon_rss:.0f} -> {late_rss:.0f} MB")
        for stream in held:
            await stream.aclose()
    finally:
        _stop(server)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--frame-mb", type=int, default=48)
    parser.add_argument("--idle", type=int, default=500)
    parser.add_argument("--pythonpath", default="", help="run the callsd found here (another checkout)")
    args = parser.parse_args()
    if args.pythonpath:
        os.environ["PYTHONPATH"] = args.pythonpath
    with tempfile.TemporaryDirectory(prefix="callsd-attack-") as tmp:
        for name in ("frames", "idle"):
            (Path(tmp) / name).mkdir()
        trio.run(huge_frames, Path(tmp) / "frames", args.rounds, args.frame_mb)
        trio.run(idle_sockets, Path(tmp) / "idle", args.idle)


if __name__ == "__main__":
    main()
