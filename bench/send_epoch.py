"""How often a loaded server's send-state epoch moves (native/send_state.h): every move makes every route read its
receiver's send state again on its next packet, so a rate above ~50/s (one per route's packet interval) means the
routes' cache does not hold.

    .venv/bin/python -m bench.send_epoch --calls 50 [--base-tree DIR] [--every 2]

Runs one capacity run (``bench.capacity_paths``, native path, the given calls x 8 x 2) and, from outside the server,
reads the epoch (a static of the extension, found by its symbol with ``nm`` and read from ``/proc/<pid>/mem``)
every ``--every`` seconds through the join wave and the steady window: one JSON line per sample, then the capacity
row. ``--base-tree DIR``: DIR/callsd is another checkout (its extension built in place) that the server and the
tool run instead of this one (as bench.joins's trees).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def find_server(since: float) -> tuple[int, str, int] | None:
    """The newest ``callsd serve`` with the extension mapped: (pid, the .so's path, its load base)."""
    pids = subprocess.run(["pgrep", "-f", "callsd.app.cli serve"], capture_output=True, text=True).stdout.split()
    for pid in reversed(pids):
        try:
            maps = Path(f"/proc/{pid}/maps").read_text()
            started = Path(f"/proc/{pid}").stat().st_mtime
        except OSError:
            continue
        lines = [line for line in maps.splitlines() if "_engine" in line]
        if lines and started >= since - 1:
            return int(pid), lines[0].split()[-1], min(int(line.split("-")[0], 16) for line in lines)
    return None


def epoch_address(so: str, base: int) -> int:
    symbols = subprocess.run(["nm", so], capture_output=True, text=True, check=True).stdout
    m = re.search(r"^([0-9a-f]+) \w send_state_epoch$", symbols, re.M)
    if m is None:
        raise SystemExit(f"{so} has no send_state_epoch symbol")
    return base + int(m.group(1), 16)


def read_epoch(pid: int, address: int) -> int | None:
    try:
        with open(f"/proc/{pid}/mem", "rb") as mem:
            mem.seek(address)
            return int.from_bytes(mem.read(8), "little")
    except OSError:
        return None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.send_epoch", description=__doc__.split("\n\n")[0])
    ap.add_argument("--calls", type=int, default=50)
    ap.add_argument("--steady", type=float, default=8.0)
    ap.add_argument("--every", type=float, default=2.0)
    ap.add_argument("--base-tree", default="", help="DIR whose callsd/ the server runs instead of this checkout")
    args = ap.parse_args(argv)
    env = dict(os.environ)
    if args.base_tree:
        env["PYTHONPATH"] = os.path.abspath(args.base_tree)
    out = Path(tempfile.mkdtemp(prefix="callsd-epoch-")) / "capacity.json"
    started = time.time()
    run = subprocess.Popen([sys.executable, "-m", "bench.capacity_paths", "--calls", str(args.calls), "--paths",
                            "native", "--steady", str(args.steady), "--join-timeout", "45", "--media-engine", "shared",
                            "--out", str(out), "--png", str(out.with_suffix(".png"))], cwd=ROOT, env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        found = None
        while found is None and run.poll() is None and time.time() - started < 120:
            found = find_server(started)
            time.sleep(0.2)
        if found is None:
            raise SystemExit("no callsd serve with the extension appeared")
        pid, so, base = found
        address = epoch_address(so, base)
        first = last = (time.monotonic(), read_epoch(pid, address))
        print(json.dumps({"pid": pid, "engine_so": so}), flush=True)
        while (value := read_epoch(pid, address)) is not None and first[1] is not None:
            now = time.monotonic()
            if last[1] is not None and now > last[0]:
                print(json.dumps({"seconds": round(now - first[0], 1), "epoch": value,
                                  "moves_per_s": round((value - last[1]) / (now - last[0]))}), flush=True)
            last = (now, value)
            time.sleep(args.every)
        run.wait(timeout=300)
    finally:
        if run.poll() is None:
            run.terminate()
            run.wait(timeout=30)
    print(json.dumps(json.loads(out.read_text())["rows"][0] if out.exists() else {}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
