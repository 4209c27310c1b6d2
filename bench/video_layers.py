"""A receiver's bitrate, estimate and simulcast layer over time while its link limit changes (docs/video.md).

    python -m bench.video_layers [--seconds 50] [--out bench/results/video-layers.png]

A real run on loopback: Chromium publishes two RID layers (160 and 320 px, as in
tests/media/test_media_simulcast_chromium.py), an aiortc peer receives through the media plane, and the receiver's
link is a token-bucket policer inside the receiver (packets over the limit are lost, as on a policed link): no
limit, then 120 kbit/s from 1/4 to 3/5 of the run, then no limit again. The server's per-receiver estimate comes
from the receiver's REMB and its reports' loss (adapters/media/estimates.py); the layer follows it. Samples every
0.5 s go to a CSV next to the PNG. Needs Chromium and the test extras (aiortc, playwright, matplotlib).
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path
from typing import Any

import trio

LIMIT_BPS = 120_000


class Policer:
    """Wraps an aiortc receiver's ``_handle_rtp_packet``: a token bucket of ``limit[0]`` bit/s (None: no limit)."""

    def __init__(self, receiver: Any, limit: list[int | None]) -> None:
        self.handle = receiver._handle_rtp_packet
        self.limit = limit
        self.tokens = 0.0
        self.last = time.monotonic()
        self.dropped = 0

    async def __call__(self, packet: Any, arrival_time_ms: int) -> None:
        rate = self.limit[0]
        now = time.monotonic()
        if rate is not None:
            self.tokens = min(self.tokens + rate * (now - self.last), rate * 0.5)  # 500 ms of burst
            bits = 8 * (len(packet.payload) + 40)
            if self.tokens < bits:
                self.last = now
                self.dropped += 1
                return
            self.tokens -= bits
        self.last = now
        await self.handle(packet, arrival_time_ms=arrival_time_ms)


async def run(seconds: float, out: Path) -> None:
    from callsd.adapters.media.plane import MediaPlane, PlaneConfig
    from callsd.core.calls import events as ev

    from tests.media.conftest import CallHarness, wait_until
    from tests.media.test_media_simulcast_chromium import SimulcastChromium, SizingClient

    h = CallHarness()
    h.plane = MediaPlane(PlaneConfig(ice_port_udp=0, report_interval=0.5, enable_simulcast=True), h._emit)
    browser = SimulcastChromium()
    peer = SizingClient("s")
    limit: list[int | None] = [None]
    rows: list[tuple[float, int, int, str, int, int, int]] = []
    async with trio.open_nursery() as nursery:
        await nursery.start(h.plane.serve)
        nursery.start_soon(h.pump)
        try:
            await h.join("W", browser)  # type: ignore[arg-type]
            await h.join("S", peer)
            h.core(ev.Unmute(at=h.now(), session_id="S"))
            await wait_until(lambda: "W_0" in h.plane.simulcast.tracks, timeout=30, what="simulcast track")
            st = h.plane.simulcast.tracks["W_0"]
            await wait_until(lambda: len(st.ssrcs) == 2 and len(peer.widths) > 10, timeout=40, what="both layers")

            async def police() -> None:
                for t in peer.pc.getTransceivers():
                    if t.receiver.track is not None and t.receiver.track.id == "W_0":
                        t.receiver._handle_rtp_packet = Policer(t.receiver, limit)

            await peer.call(police)
            route = st.track.routes["S"]
            start = time.monotonic()
            last_octets = route.octets
            last_frames = len(peer.widths)
            print(f"sampling {seconds:.0f} s: limit {LIMIT_BPS // 1000} kbit/s from {seconds / 4:.0f} s "
                  f"to {seconds * 3 / 5:.0f} s", file=sys.stderr)
            while (t := time.monotonic() - start) < seconds:
                limit[0] = LIMIT_BPS if seconds / 4 <= t < seconds * 3 / 5 else None
                await trio.sleep(0.5)
                rs = st.routes.get("S")
                layer = st.rids[rs.switcher.current] if rs is not None and rs.switcher.current is not None else "-"
                rate = int((route.octets - last_octets) * 8 / 0.5)
                last_octets = route.octets
                estimate = h.plane.estimates.estimate("S") or 0
                fps = int((len(peer.widths) - last_frames) / 0.5)
                last_frames = len(peer.widths)
                rows.append((round(t, 2), limit[0] or 0, estimate, layer, rate, peer.widths[-1] if peer.widths else 0,
                             fps))
                print(f"\r{t:5.1f} s  limit {(limit[0] or 0) // 1000:4d}  estimate {estimate // 1000:5d}  "
                      f"layer {layer}  {rate // 1000:4d} kbit/s  {rows[-1][5]} px {fps} fps", end="", file=sys.stderr)
            print(file=sys.stderr)
        finally:
            h.stop()
            await peer.close()
            await browser.close()
            nursery.cancel_scope.cancel()
    write(rows, out)


def write(rows: list[tuple[float, int, int, str, int, int, int]], out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.with_suffix(".csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["t_s", "limit_bps", "estimate_bps", "layer", "sent_bps", "width_px", "decoded_fps"])
        w.writerows(rows)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [r[0] for r in rows]
    fig, (top, bottom, fps) = plt.subplots(3, 1, sharex=True, figsize=(9, 6.5), height_ratios=(3, 1, 1))
    top.step(t, [r[1] / 1000 if r[1] else float("nan") for r in rows], where="post", label="link limit", color="k")
    top.plot(t, [r[2] / 1000 for r in rows], label="server's estimate", color="tab:orange")
    top.plot(t, [r[4] / 1000 for r in rows], label="bitrate the SFU sent the receiver", color="tab:blue")
    top.set_ylabel("kbit/s")
    top.set_yscale("log")
    top.legend(loc="upper right")
    top.set_title("One receiver of a simulcast camera (Chromium publisher, aiortc receiver, loopback)")
    used = {r[3] for r in rows if r[3] != "-"}  # lowest layer at the bottom: ordered by the rate sent on each
    layers = sorted(used, key=lambda x: sum(r[4] for r in rows if r[3] == x) / sum(1 for r in rows if r[3] == x))
    bottom.step(t, [layers.index(r[3]) if r[3] in layers else float("nan") for r in rows], where="post")
    bottom.set_yticks(range(len(layers)), layers)
    bottom.set_ylabel("layer")
    fps.plot(t, [r[6] for r in rows], color="tab:green")
    fps.set_ylabel("decoded fps")
    fps.set_xlabel("seconds")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    print(f"wrote {out} and {out.with_suffix('.csv')}", file=sys.stderr)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=50.0)
    ap.add_argument("--out", type=Path, default=Path("bench/results/video-layers.png"))
    ap.add_argument("--replot", action="store_true", help="redraw the PNG from the CSV of an earlier run")
    args = ap.parse_args()
    if args.replot:
        with args.out.with_suffix(".csv").open() as fh:
            rows = [(float(r[0]), int(r[1]), int(r[2]), r[3], int(r[4]), int(r[5]), int(r[6]))
                    for r in list(csv.reader(fh))[1:]]
        write(rows, args.out)
        return
    import aioice.ice

    aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"]  # loopback only, as the tests do
    trio.run(run, args.seconds, args.out)


if __name__ == "__main__":
    main()
