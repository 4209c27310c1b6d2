"""A screen-share call with one receiver behind a rate-limited link, for the video test and bench/video_layers.py.

Who runs where (namespaces of net/netns.py; callsd already serving on ``server``)::

    open host (behind its NAT):     Chromium: the publisher (simulcast screen share) and two receivers
    limited host (behind ``router``): Chromium: one receiver; ``router`` polices what it forwards to that host

The link limit is an nftables policer in the limited host's router (``limit rate over N bytes/second burst B bytes
drop`` on the forward path to the host): packets above the rate are lost, as on a policed access link (the
machines' kernel has no netem or tbf qdisc). ``run`` waits until the limited receiver decodes the full layer, then
follows ``schedule`` (seconds after that moment -> limit in bit/s, or None for no limit), and returns every
page's samples (video_client.py) with the times the limit changed.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from net.harness import HTTP_PORT, _token
from net.netns import Host

VIDEO_CLIENT = Path(__file__).with_name("video_client.py")
BURST_BYTES = 6000  # about 160 ms at 300 kbit/s: a policer's usual small bucket


@dataclass
class ShapedRun:
    """What ``run`` saw: samples per participant, ``(wall time, limit bit/s or 0)`` per change, the start."""

    samples: dict[str, list[dict[str, Any]]]
    changes: list[tuple[float, int]] = field(default_factory=list)
    start: float = 0.0


def set_limit(router: Host, bps: int | None) -> None:
    """Police what ``router`` forwards to its private side at ``bps`` (None: remove the policer)."""
    subprocess.run(router.exec_args("nft", "delete", "table", "inet", "callsd_shape"), capture_output=True)
    if bps is None:
        return
    router.nft("table inet callsd_shape {\n  chain forward {\n    type filter hook forward priority 0;\n"
               f'    oifname "eth1" meta l4proto udp limit rate over {bps // 8} bytes/second burst '
               f"{BURST_BYTES} bytes drop\n  }}\n}}\n")


def _read(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except ValueError:
            continue  # a line being written
    return rows


def _width(rows: list[dict[str, Any]]) -> int:
    stats = rows[-1].get("stats") if rows else None
    return int(stats["width"]) if stats else 0


def run(server: Host, open_host: Host, limited: Host, router: Host, schedule: list[tuple[float, int | None]], *,
        channel: str = "video", warmup_timeout: float = 90.0, progress: bool = True) -> ShapedRun:
    """Run the call (see the module docstring); raises AssertionError if the limited receiver never decodes."""
    url = f"http://{server.address}:{HTTP_PORT}"
    work = Path(tempfile.mkdtemp(prefix="callsd-video-"))
    work.chmod(0o777)

    def client(host: Host, *people: tuple[str, str]) -> subprocess.Popen[bytes]:
        args = [sys.executable, str(VIDEO_CLIENT), "--url", url, "--channel", channel, "--out", str(work)]
        for name, role in people:
            args += ["--participant", f"{name}:{_token(channel, name)}:{role}"]
        return host.popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    procs = [client(open_host, ("pub", "publisher"), ("r1", "receiver"), ("r2", "receiver")),
             client(limited, ("limited", "receiver"))]
    result = ShapedRun(samples={})
    failure = ""
    try:
        deadline = time.monotonic() + warmup_timeout
        best = 0
        while time.monotonic() < deadline:  # the full layer at the limited receiver, and steady for 3 s
            rows = _read(work / "limited.jsonl")
            widths = [int(r["stats"]["width"]) for r in rows if r.get("stats")]
            best = max(widths, default=0)
            if len(widths) >= 6 and best > 0 and all(w == best for w in widths[-6:]) \
                    and _width(_read(work / "r1.jsonl")) == best:
                break
            if any(proc.poll() is not None for proc in procs):
                failure = "a video client ended early"
                break
            time.sleep(0.5)
        else:
            failure = f"the limited receiver never settled on one layer ({best} px)"
        if failure:
            return result
        result.start = time.time()
        for at, bps in schedule:
            while time.time() < result.start + at:
                time.sleep(0.1)
            if bps is not None or at > 0:
                set_limit(router, bps)
                result.changes.append((time.time(), bps or 0))
            if progress:
                print(f"  t={at:5.1f} s: link limit {bps // 1000 if bps else 'none'} kbit/s; limited receiver at "
                      f"{_width(_read(work / 'limited.jsonl'))} px", file=sys.stderr)
    finally:
        set_limit(router, None)
        (work / "stop").touch()
        errors = []
        for proc in procs:
            try:
                errors.append(proc.communicate(timeout=30)[1].decode(errors="replace")[-2000:])
            except subprocess.TimeoutExpired:
                proc.kill()
        result.samples = {name: _read(work / f"{name}.jsonl") for name in ("pub", "r1", "r2", "limited")}
        shutil.rmtree(work, ignore_errors=True)
        if failure:
            consoles = {name: rows[-1].get("console") for name, rows in result.samples.items() if rows}
            last = {name: [r.get("stats") for r in rows[-3:-1]] for name, rows in result.samples.items()}
            raise AssertionError(f"{failure}; last stats {last}; consoles {consoles}; stderr {errors}")
    return result
