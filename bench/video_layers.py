"""A receiver's bitrate and simulcast layer over time while its link limit changes (docs/video.md).

    python -m bench.video_layers [--limit 120000] [--screen 640x360] [--out bench/results/video-layers.png] [--replot]

A real run in network namespaces (as root; tests/net/shaped_call.py): ``callsd serve`` on a "public" host,
Chromium publishing a simulcast screen share (the web page's two encodings: half and full resolution) with two receivers
behind one NAT, and one Chromium receiver behind another NAT whose router shapes what it forwards to it to
``--limit`` bit/s (a 300 ms drop-tail queue in userspace, tests/net/nfqueue_delay.py: no netem in this kernel). No limit for 5 s, the limit for 30 s, then no limit for 30 s. Every 0.5 s each page's getStats goes into a CSV next to the PNG: the limited receiver's received
bitrate, frame width (which layer), frames decoded per second and freezes, and an unlimited receiver's for
comparison. Needs root, Chromium and the test extras (playwright, matplotlib).
"""

from __future__ import annotations

import argparse
import csv
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SCHEDULE_S = ((0.0, False), (5.0, True), (35.0, False), (65.0, False))
Row = tuple[float, int, str, int, int, float, int, int]  # t, limit, who, kbit/s, width, fps, freezes, freeze ms


def rows_of(run: Any) -> list[Row]:
    """Per sample of each receiver: time since the schedule started, the limit in force, its received kbit/s,
    frame width, decoded frames per second and its freeze count and total freeze time."""
    out: list[Row] = []
    for who in ("limited", "r1"):
        prev: dict[str, Any] | None = None
        for sample in run.samples[who]:
            stats, t = sample.get("stats"), sample["t"]
            if not stats or t < run.start - 5:
                prev = None if not stats else {**stats, "t": t}
                continue
            limit = 0
            for at, bps in run.changes:
                if at <= t:
                    limit = bps
            if prev is not None and t > prev["t"]:
                dt = t - prev["t"]
                out.append((round(t - run.start, 2), limit, who, int((stats["bytes"] - prev["bytes"]) * 8 / dt / 1000),
                            stats["width"], round((stats["decoded"] - prev["decoded"]) / dt, 1), stats["freezes"],
                            int(stats["freeze_s"] * 1000)))
            prev = {**stats, "t": t}
    return out


def measure(limit: int, screen: str) -> tuple[list[Row], list[tuple[float, str]], list[str]]:
    sys.path.insert(0, str(ROOT / "tests"))
    from net import shaped_call
    from net.harness import CallsdProcess
    from net.netns import Topology

    topo = Topology()
    try:
        server_host = topo.public_host("server", 10)
        open_host = topo.private_host("client2", router="nat3", subnet=3, public_octet=4)
        limited = topo.private_host("client1", router="nat1", subnet=1, public_octet=2)
        with tempfile.TemporaryDirectory(prefix="callsd-bench-video-") as work:
            server = CallsdProcess(server_host, Path(work), {"ice_address_udp": "0.0.0.0"})
            try:
                print(f"sampling {SCHEDULE_S[-1][0]:.0f} s: {limit // 1000} kbit/s from {SCHEDULE_S[1][0]:.0f} s "
                      f"to {SCHEDULE_S[2][0]:.0f} s", file=sys.stderr)
                run = shaped_call.run(server_host, open_host, limited, topo.hosts["nat1"], limit, list(SCHEDULE_S),
                                      screen=screen)
            finally:
                server.stop()
                server_log = server.log_path.read_text(errors="replace").splitlines()
    finally:
        topo.close()
    return rows_of(run), switches_of(run, server_log), log_lines(run, server_log)


def switches_of(run: Any, server_log: list[str]) -> list[tuple[float, str]]:
    """(seconds since the schedule started, layer) of each switch the server made for the limited receiver."""
    import datetime

    sessions = {row["session"]: name for name, rows in run.samples.items() for row in rows if "session" in row}
    limited = next((sid for sid, name in sessions.items() if name == "limited"), None)
    out = []
    for line in server_log:
        if limited and f"simulcast: {limited} switched to " in line:
            at = datetime.datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()
            out.append((round(at - run.start, 2), line.split(" switched to ")[1].split()[0]))
    return out


def log_lines(run: Any, server_log: list[str]) -> list[str]:
    """The server's layer and probe decisions, with the schedule, by time (written next to the PNG)."""
    import datetime

    def stamp(t: float) -> str:
        return datetime.datetime.fromtimestamp(t).strftime("%H:%M:%S,%f")[:-3]

    sessions = {row["session"]: name for name, rows in run.samples.items() for row in rows if "session" in row}
    lines = [f"{stamp(run.start)} schedule starts; receivers {sessions}"]
    lines += [f"{stamp(at)} link limit {bps // 1000 if bps else 'none'} kbit/s" for at, bps in run.changes]
    lines.append(f"{stamp(run.start + SCHEDULE_S[-1][0])} shaper: {run.shaper}")
    for line in server_log:
        if "simulcast:" in line or "estimate:" in line or "probing:" in line:
            for sid, name in sessions.items():
                line = line.replace(sid, name)
            lines.append(line[11:])
    return sorted(lines)


def write(rows: list[Row], switches: list[tuple[float, str]], out: Path, log: list[str] | None = None) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    if log is not None:  # the server's layer and probe decisions next to the samples
        out.with_suffix(".log").write_text("\n".join(log) + "\n")
    with out.with_suffix(".csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["t_s", "limit_bps", "receiver", "received_kbps", "width_px", "decoded_fps", "freezes",
                    "freeze_ms"])
        w.writerows(rows)
    with out.with_name(out.stem + "-switches.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["t_s", "layer"])
        w.writerows(switches)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    limited = [r for r in rows if r[2] == "limited"]
    other = [r for r in rows if r[2] == "r1"]
    t = [r[0] for r in limited]
    fig, (top, layer, fps) = plt.subplots(3, 1, sharex=True, figsize=(9, 6.5), height_ratios=(3, 1, 1))
    top.step(t, [r[1] / 1000 if r[1] else float("nan") for r in limited], where="post", label="link limit",
             color="k")
    top.plot(t, [r[3] for r in limited], label="received by the limited receiver", color="tab:blue")
    top.plot([r[0] for r in other], [r[3] for r in other], label="received by an unlimited receiver",
             color="tab:gray", alpha=0.6)
    top.set_ylabel("kbit/s")
    top.legend(loc="upper right", fontsize="small")
    top.set_title("Simulcast screen share: one receiver behind a shaped link (Chromium, namespaces)")
    widths = sorted({r[4] for r in rows if r[4]})
    layer.step(t, [r[4] for r in limited], where="post", color="tab:blue")
    layer.step([r[0] for r in other], [r[4] for r in other], where="post", color="tab:gray", alpha=0.6)
    if switches and len(widths) >= 2:  # the server's switches for the limited receiver ("q" is the low layer)
        st = [t for t, _ in switches]
        sy = [widths[0] if name == "q" else widths[-1] for _, name in switches]
        layer.step([*st, t[-1]], [*sy, sy[-1]], where="post", color="tab:orange", linestyle="--",
                   label="layer the server switched it to")
        layer.legend(loc="center right", fontsize="small")
    layer.set_yticks(widths, [f"{w} px" for w in widths])
    layer.set_ylabel("frame width")
    fps.plot(t, [r[5] for r in limited], color="tab:green", label="decoded fps")
    freezes = [r for r in limited if r[6] > 0]
    seen = 0
    for r in freezes:
        if r[6] > seen:
            fps.axvline(r[0], color="tab:red", alpha=0.5)
            seen = r[6]
    fps.set_ylabel("decoded fps")
    fps.set_xlabel("seconds (red: a freeze counted by the receiver)")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    print(f"wrote {out} and {out.with_suffix('.csv')}", file=sys.stderr)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--limit", type=int, default=120_000, help="the link limit in bit/s")
    ap.add_argument("--out", type=Path, default=Path("bench/results/video-layers.png"))
    ap.add_argument("--screen", default="640x360", help="the publisher's screen capture size (WxH)")
    ap.add_argument("--replot", action="store_true", help="redraw the PNG from the CSV of an earlier run")
    args = ap.parse_args()
    if args.replot:
        with args.out.with_suffix(".csv").open() as fh:
            rows: list[Row] = [(float(r[0]), int(r[1]), r[2], int(r[3]), int(r[4]), float(r[5]), int(r[6]), int(r[7]))
                               for r in list(csv.reader(fh))[1:]]
        with args.out.with_name(args.out.stem + "-switches.csv").open() as fh:
            switches = [(float(r[0]), r[1]) for r in list(csv.reader(fh))[1:]]
        write(rows, switches, args.out)
        return
    rows, switches, log = measure(args.limit, args.screen)
    write(rows, switches, args.out, log)


if __name__ == "__main__":
    main()
