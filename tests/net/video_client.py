"""Chromium participants of a screen-share call for the namespace video tests, run inside a client namespace.

    python video_client.py --url http://198.51.100.10:8080 --channel net --out DIR \
        --participant pub:TOKEN:publisher --participant r1:TOKEN:receiver [--seconds 120]

One Chromium, one page (callsd's real web page, token mode) per ``--participant``. A publisher clicks the screen
button once in the call; for a page that does not publish simulcast itself, an init script gives each video
transceiver two encodings when the page gives none (``q``: a quarter of the resolution, ``f``: full; the server
forwards one of them per receiver). The camera's inactive slot gets them too: the first offer must carry RIDs for
Chromium to offer the RID extension on a later section. The screen is captured at ``--screen`` (640x360), 15 fps. Every 0.5 s each page's ``getStats()`` is appended as one JSON line to
``DIR/<name>.jsonl`` (wall time, then for a receiver its inbound screen video: frame size, bytes, frames decoded,
freezes, NACKs, PLIs; for a publisher each encoding it sends), so the test can watch the call while it changes the
link. The script ends when ``DIR/stop`` appears or after ``--seconds``; every wait is bounded.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: browser_support
import browser_support as bs  # noqa: E402
from playwright.sync_api import sync_playwright  # noqa: E402

FORCE_SIMULCAST = """
(() => {
  const add = RTCPeerConnection.prototype.addTransceiver;
  const layers = (rids) => rids.map((rid, i) => Object.assign({ rid }, rids.length - 1 - i
    ? { scaleResolutionDownBy: 4, maxBitrate: 150000 } : { scaleResolutionDownBy: 1, maxBitrate: 1200000 }));
  RTCPeerConnection.prototype.addTransceiver = function (trackOrKind, init) {
    const kind = typeof trackOrKind === "string" ? trackOrKind : trackOrKind.kind;
    if (kind === "video" && !(init && init.sendEncodings)) {
      init = Object.assign({}, init, { sendEncodings: layers(["q", "f"]) });
      // a busy machine must not shrink the layers (frame size is how the test tells them apart)
      if (typeof trackOrKind !== "string" && !trackOrKind.contentHint) trackOrKind.contentHint = "detail";
    }
    return add.call(this, trackOrKind, init);
  };
  // a small screen at 15 fps (640x360 unless the page is told otherwise): a shared 2-CPU machine keeps up with it
  const display = navigator.mediaDevices.getDisplayMedia.bind(navigator.mediaDevices);
  const [width, height] = (new URLSearchParams(location.search).get("screen") || "640x360").split("x").map(Number);
  navigator.mediaDevices.getDisplayMedia = (options) =>
    display(Object.assign({}, options, { video: { width, height, frameRate: 15 } }));
})();
"""

RECEIVER_STATS = """
async () => {
  const pc = window.callsd && window.callsd.pc;
  if (!pc) return null;
  const report = await pc.getStats();
  let v = null;
  report.forEach((s) => {
    if (s.type === "inbound-rtp" && s.kind === "video" && (!v || (s.bytesReceived || 0) > (v.bytesReceived || 0)))
      v = s;
  });
  if (!v) return null;
  return { width: v.frameWidth || 0, height: v.frameHeight || 0, bytes: v.bytesReceived || 0,
           decoded: v.framesDecoded || 0, freezes: v.freezeCount || 0, freeze_s: v.totalFreezesDuration || 0,
           fps: v.framesPerSecond || 0, nack: v.nackCount || 0, lost: v.packetsLost || 0, pli: v.pliCount || 0,
           keyframes: v.keyFramesDecoded || 0 };
}
"""

PUBLISHER_STATS = """
async () => {
  const pc = window.callsd && window.callsd.pc;
  if (!pc) return null;
  const report = await pc.getStats();
  const out = {};
  report.forEach((s) => {
    if (s.type === "outbound-rtp" && s.kind === "video" && s.bytesSent)
      out[s.rid || "-"] = { width: s.frameWidth || 0, bytes: s.bytesSent, fps: s.framesPerSecond || 0,
                            limit: s.qualityLimitationReason || "", target: s.targetBitrate || 0 };
  });
  return out;
}
"""


def main(args: argparse.Namespace) -> None:
    out = Path(args.out)
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=bs.CHROMIUM, headless=True,
            args=[*bs.CHROMIUM_ARGS, f"--unsafely-treat-insecure-origin-as-secure={args.url}"])
        try:
            people: list[tuple[str, str, Any]] = []
            for spec in args.participant:
                name, token, role = spec.split(":", 2)
                who = bs.Participant(browser, args.url, name)
                if role == "publisher":
                    who.page.add_init_script(FORCE_SIMULCAST)
                who.open_with_token(args.channel, f"{token}&screen={args.screen}")
                people.append((name, role, who))
            files = {name: (out / f"{name}.jsonl").open("a") for name, _, _ in people}
            for name, role, who in people:
                who.wait_in_call()
                files[name].write(json.dumps({"t": time.time(), "session": who.session_id}) + "\n")
                if role == "publisher":
                    who.tid("screen-button").click()
            deadline = time.monotonic() + args.seconds
            while time.monotonic() < deadline and not (out / "stop").exists():
                for name, role, who in people:
                    stats = who.page.evaluate(PUBLISHER_STATS if role == "publisher" else RECEIVER_STATS)
                    files[name].write(json.dumps({"t": time.time(), "stats": stats}) + "\n")
                    files[name].flush()
                people[0][2].page.wait_for_timeout(500)
            for name, _, who in people:
                files[name].write(json.dumps({"t": time.time(), "console": who.console[-15:]}) + "\n")
                files[name].close()
                who.close()
        finally:
            browser.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--channel", default="net")
    parser.add_argument("--out", required=True, help="a folder for the samples (and the stop file)")
    parser.add_argument("--participant", action="append", required=True, help="name:token:publisher|receiver")
    parser.add_argument("--seconds", type=float, default=150)
    parser.add_argument("--screen", default="640x360", help="the publisher's screen capture size")
    main(parser.parse_args())
