"""A screen-share call with one receiver behind a rate-limited link, for the video test and bench/video_layers.py.

Who runs where (namespaces of net/netns.py; callsd already serving on ``server``)::

    open host (behind its NAT):     Chromium: the publisher (simulcast screen share) and two receivers
    limited host (behind ``router``): Chromium: one receiver; ``router`` polices what it forwards to that host

The link limit is a shaper in the limited host's router: while it is on, what the router forwards to the host
queues in nfqueue_delay.py's rate mode, a link of ``bps`` bit/s with a 300 ms drop-tail queue (in userspace, so the
test needs no qdisc and the shaper reports what it queued and dropped; netem is not in this kernel, and tbf was
missing from the one these tests were written on; the kernel's policers, nftables ``limit`` and xtables
``hashlimit``, keep at least a second of the rate in their byte buckets, so they let a short probe at three times
the rate through whole and say nothing). ``run``
waits until the limited receiver decodes the publisher's widest layer, then follows ``schedule`` (seconds after
that moment -> limit on or off), and returns every page's samples (video_client.py), the times the limit
changed and the shaper's counts.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
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
SHAPER = Path(__file__).with_name("nfqueue_delay.py")
IPTABLES = "/usr/sbin/iptables"


@dataclass
class ShapedRun:
    """What ``run`` saw: samples per participant, ``(wall time, limit bit/s or 0)`` per change, the start."""

    samples: dict[str, list[dict[str, Any]]]
    changes: list[tuple[float, int]] = field(default_factory=list)
    start: float = 0.0
    shaper: dict[str, Any] = field(default_factory=dict)


class LinkShaper:
    """The limited host's downlink as a link of ``bps`` bit/s while ``on``: its router queues what it forwards to
    the host (``-o eth1``) in nfqueue_delay.py's rate mode, a drop-tail queue of ``queue_ms``. ``close()`` returns
    what the shaper did (packets seen, dropped, queueing delays)."""

    def __init__(self, router: Host, bps: int, *, queue_ms: float = 300.0, queue: int = 3) -> None:
        self.router, self.bps, self.queue = router, bps, queue
        self.active = False
        self.proc = router.popen([sys.executable, str(SHAPER), "--queue", str(queue), "--rate-bps", str(bps),
                                  "--queue-ms", str(queue_ms), "--delay", "0", "--jitter", "0", "--seconds", "900"],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert self.proc.stdout is not None
        if self.proc.stdout.readline().strip() != b"ready":
            self.proc.wait(10)
            raise AssertionError(f"the shaper did not start: {self.proc.stderr.read().decode() if self.proc.stderr else ''}")

    def _rule(self, op: str) -> None:
        self.router.run(IPTABLES, op, "FORWARD", "-o", "eth1", "-j", "NFQUEUE", "--queue-num", str(self.queue))

    def set(self, on: bool) -> None:
        if on != self.active:
            self._rule("-A" if on else "-D")
            self.active = on

    def close(self) -> dict[str, Any]:
        self.set(False)
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
        out, err = self.proc.communicate(timeout=15)
        lines = out.decode().strip().splitlines()
        if self.proc.returncode != 0 or not lines:
            raise AssertionError(f"the shaper failed ({self.proc.returncode}): {err.decode(errors='replace')}")
        return json.loads(lines[-1])  # type: ignore[no-any-return]


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


def full_width(publisher: list[dict[str, Any]]) -> int:
    """The frame width of the publisher's widest encoding once at least two are sending (0 before)."""
    stats = publisher[-1].get("stats") if publisher else None
    widths = [int(e["width"]) for e in (stats or {}).values() if e.get("width")]
    return max(widths) if len(widths) >= 2 else 0


def _width(rows: list[dict[str, Any]]) -> int:
    stats = rows[-1].get("stats") if rows else None
    return int(stats["width"]) if stats else 0


def run(server: Host, open_host: Host, limited: Host, router: Host, bps: int, schedule: list[tuple[float, bool]], *,
        channel: str = "video", warmup_timeout: float = 90.0, progress: bool = True,
        screen: str = "640x360") -> ShapedRun:
    """Run the call (see the module docstring); raises AssertionError if the limited receiver never decodes."""
    url = f"http://{server.address}:{HTTP_PORT}"
    work = Path(tempfile.mkdtemp(prefix="callsd-video-"))
    work.chmod(0o777)

    def client(host: Host, *people: tuple[str, str]) -> subprocess.Popen[bytes]:
        args = [sys.executable, str(VIDEO_CLIENT), "--url", url, "--channel", channel, "--out", str(work),
                "--screen", screen]
        for name, role in people:
            args += ["--participant", f"{name}:{_token(channel, name)}:{role}"]
        return host.popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    shaper = LinkShaper(router, bps)
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
            best = full_width(_read(work / "pub.jsonl"))
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
        for at, on in schedule:
            while time.time() < result.start + at:
                time.sleep(0.1)
            shaper.set(on)
            if not result.changes or result.changes[-1][1] != (bps if on else 0):
                result.changes.append((time.time(), bps if on else 0))
            if progress:
                print(f"  t={at:5.1f} s: link {bps // 1000 if on else 'unlimited'} kbit/s; limited receiver at "
                      f"{_width(_read(work / 'limited.jsonl'))} px", file=sys.stderr)
    finally:
        result.shaper = shaper.close()
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


@dataclass(frozen=True, slots=True)
class Seen:
    """One receiver sample, relative to the schedule's start: its frame width, received bit/s since the previous
    sample, the longest freeze that ended since then (seconds: the growth of totalFreezesDuration over the
    growth of freezeCount, a lower bound when several ended) and the frames it decoded since then."""

    t: float
    width: int
    bps: float
    freeze_s: float
    frames: int


def seen(run: ShapedRun, who: str) -> list[Seen]:
    out: list[Seen] = []
    prev: dict[str, Any] | None = None
    for row in run.samples.get(who, []):
        stats = row.get("stats")
        if not stats:
            continue
        if prev is not None and row["t"] > prev["t"]:
            dt = row["t"] - prev["t"]
            freezes = stats["freezes"] - prev["freezes"]
            longest = (stats["freeze_s"] - prev["freeze_s"]) / freezes if freezes > 0 else 0.0
            out.append(Seen(t=row["t"] - run.start, width=int(stats["width"]),
                            bps=(stats["bytes"] - prev["bytes"]) * 8 / dt, freeze_s=longest,
                            frames=int(stats["decoded"] - prev["decoded"])))
        prev = {**stats, "t": row["t"]}
    return out


def layer_widths(run: ShapedRun) -> tuple[int, int]:
    """The publisher's narrowest and widest encodings (frame widths)."""
    widths = [int(e["width"]) for row in run.samples.get("pub", []) for e in (row.get("stats") or {}).values()
              if e.get("width")]
    return min(widths, default=0), max(widths, default=0)
