"""A real simulcast screen share through ``callsd serve``, run inside a network namespace of its own.

    ip netns exec NS python tests/video/simulcast_call.py --work DIR [--loss-percent 5] [--seconds 20]

Three pages of callsd's web client in Debian's Chromium (fake capture): one shares its screen (the page publishes
simulcast because ``join_ack.simulcast`` says the server allows it), two receive it; with ``--camera`` the
presenter turns its camera on too (also simulcast). With ``--loss-percent P`` the
second receiver's link loses P % of what the server sends it: an nftables rule in this namespace drops UDP towards
that page's port at random (``numgen random mod 100 < P``), on the loopback interface only this namespace has, so
nothing outside the test is touched. After ``--seconds`` of the share the script prints one JSON object: the
publisher's offer (its RID lines), each receiver's inbound video stats from ``getStats()`` (sampled every second),
the publisher's outbound stats, and the server's ``/metrics`` simulcast and RTX counters. Every wait is bounded.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: browser_support
import browser_support as bs  # noqa: E402
from playwright.sync_api import sync_playwright  # noqa: E402

INBOUND_VIDEO = """
async () => {
  const pc = window.callsd.pc;
  if (!pc) return null;
  const report = await pc.getStats();
  let best = null;
  let pairId = null;
  const screen = [...document.querySelectorAll("[data-testid=remote-screen]")]
    .map((v) => v.srcObject && v.srcObject.getVideoTracks()[0]).find((t) => t);
  report.forEach((s) => {
    // the screen share's inbound stream (the page shows it as remote-screen)
    if (s.type === "inbound-rtp" && s.kind === "video" && screen && s.trackIdentifier === screen.id) {
      best = { framesDecoded: s.framesDecoded || 0, packetsReceived: s.packetsReceived || 0,
               packetsLost: s.packetsLost || 0, nackCount: s.nackCount || 0, pliCount: s.pliCount || 0,
               firCount: s.firCount || 0, retransmittedPacketsReceived: s.retransmittedPacketsReceived ?? null,
               frameWidth: s.frameWidth || 0, frameHeight: s.frameHeight || 0, freezeCount: s.freezeCount ?? null,
               totalFreezesDuration: s.totalFreezesDuration ?? null, bytesReceived: s.bytesReceived || 0,
               codec: (report.get(s.codecId) || {}).mimeType || null };
    }
    if (s.type === "transport" && s.selectedCandidatePairId) pairId = s.selectedCandidatePairId;
  });
  const pair = pairId ? report.get(pairId) : null;
  const local = pair ? report.get(pair.localCandidateId) : null;
  return { video: best, localPort: local ? local.port : null };
}
"""

OUTBOUND_VIDEO = """
async () => {
  const pc = window.callsd.pc;
  const out = [];
  const report = await pc.getStats();
  report.forEach((s) => {
    if (s.type === "outbound-rtp" && s.kind === "video") {
      out.push({ rid: s.rid ?? null, codec: (report.get(s.codecId) || {}).mimeType || null, packetsSent: s.packetsSent || 0, frameWidth: s.frameWidth || 0,
                 framesEncoded: s.framesEncoded || 0, nackCount: s.nackCount || 0, pliCount: s.pliCount || 0,
                 retransmittedPacketsSent: s.retransmittedPacketsSent || 0,
                 qualityLimitationReason: s.qualityLimitationReason || null, active: s.active ?? null });
    }
  });
  return out;
}
"""

# --codec h264: every video transceiver the page makes prefers H.264 (setCodecPreferences), so the server, which
# takes the first codec it supports in the browser's order, negotiates H.264 for the camera and the screen
PREFER_H264 = """
(() => {
  const add = RTCPeerConnection.prototype.addTransceiver;
  RTCPeerConnection.prototype.addTransceiver = function (what, init) {
    const tr = add.call(this, what, init);
    const kind = typeof what === "string" ? what : what.kind;
    if (kind === "video") {
      const codecs = RTCRtpReceiver.getCapabilities("video").codecs;
      tr.setCodecPreferences([...codecs.filter((c) => /h264/i.test(c.mimeType)),
                              ...codecs.filter((c) => /rtx|red|ulpfec/i.test(c.mimeType))]);
    }
    return tr;
  };
})();
"""

METRIC_LINE = re.compile(r'^(callsd_rtc_simulcast_\w+|callsd_rtc_repair_total)(?:\{([^}]*)\})? ([0-9.e+]+)$')


def metrics(url: str) -> dict[str, float]:
    """The server's simulcast counters and the forwarder's RTX/NACK/PLI counters, by a flat name."""
    with urllib.request.urlopen(url + "/metrics", timeout=10) as r:
        text = r.read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        m = METRIC_LINE.match(line)
        if m:
            labels = dict(kv.split("=", 1) for kv in m.group(2).split(",")) if m.group(2) else {}
            name = m.group(1) + "".join(f"_{k}{v.strip(chr(34))}" for k, v in sorted(labels.items()))
            out[name] = float(m.group(3))
    return out


def drop_towards(port: int, percent: int) -> None:
    """This namespace drops ``percent`` % of the UDP datagrams sent to ``port`` (one page's media socket)."""
    rules = ("table inet callsd_loss {\n  chain input {\n    type filter hook input priority 0;\n"
             f"    udp dport {port} numgen random mod 100 < {percent} counter drop\n  }}\n}}\n")
    subprocess.run(["nft", "-f", "-"], input=rules, text=True, check=True, timeout=20)


def dropped() -> int:
    text = subprocess.run(["nft", "list", "table", "inet", "callsd_loss"], capture_output=True, text=True,
                          timeout=20).stdout
    m = re.search(r"counter packets (\d+)", text)
    return int(m.group(1)) if m else 0


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", required=True)
    ap.add_argument("--loss-percent", type=int, default=0)
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--camera", action="store_true", help="the presenter turns its camera on too")
    ap.add_argument("--codec", choices=("default", "h264"), default="default")
    args = ap.parse_args()
    work = Path(args.work)
    result: dict[str, Any] = {"samples": {"rx1": [], "rx2": []}}
    with bs.CallsdProcess(work, max_participants=3) as server, sync_playwright() as pw:
        browser = bs.launch_chromium(pw)
        people = bs.People(browser, server.url, init_script=PREFER_H264 if args.codec == "h264" else None)
        try:
            pub, rx1, rx2 = people("Presenter"), people("Viewer One"), people("Viewer Two")
            for p in (pub, rx1, rx2):
                p.join("simulcast")
            for p in (pub, rx1, rx2):
                p.wait_participants(3)
                p.wait_media_connected()
            result["join_ack_simulcast"] = pub.page.evaluate("window.callsd.simulcast")
            pub.tid("screen-button").click()
            pub.page.wait_for_function(
                "window.callsd.pc.getTransceivers().some(t => t.sender.track && t.sender.track.kind === 'video'"
                " && t.currentDirection === 'sendonly')", timeout=bs.WAIT_MS)
            result["offer_rids"] = [ln for ln in pub.page.evaluate("window.callsd.pc.localDescription.sdp")
                                    .splitlines() if ln.startswith(("a=rid:", "a=simulcast:"))]
            for p in (rx1, rx2):
                p.page.wait_for_function(
                    "[...document.querySelectorAll('[data-testid=remote-screen]')].some(v => v.videoWidth > 0)",
                    timeout=bs.WAIT_MS)
            if args.loss_percent:
                port = rx2.page.evaluate(INBOUND_VIDEO)["localPort"]
                drop_towards(int(port), args.loss_percent)
                result["lossy_port"] = port
            result["start"] = {"rx1": rx1.page.evaluate(INBOUND_VIDEO)["video"],
                               "rx2": rx2.page.evaluate(INBOUND_VIDEO)["video"]}
            deadline = time.monotonic() + args.seconds
            while time.monotonic() < deadline:
                pub.page.wait_for_timeout(1000)
                for name, p in (("rx1", rx1), ("rx2", rx2)):
                    result["samples"][name].append(p.page.evaluate(INBOUND_VIDEO)["video"])
            result["publisher"] = pub.page.evaluate(OUTBOUND_VIDEO)
            result["metrics"] = metrics(server.url)
            result["dropped"] = dropped() if args.loss_percent else 0
            # after the measurement (a camera takes bitrate from the share): what each video sender sends
            if args.camera:
                pub.tid("camera-button").click()
                pub.page.wait_for_function(
                    "window.callsd.pc.getTransceivers().filter(t => t.sender.track && t.sender.track.kind === 'video'"
                    " && t.currentDirection === 'sendonly').length === 2", timeout=bs.WAIT_MS)
            result["sending"] = pub.page.evaluate(
                "window.callsd.pc.getTransceivers().filter(t => t.sender.track && t.currentDirection === 'sendonly'"
                " && t.sender.track.kind === 'video').map(t => ({mid: t.mid, label: t.sender.track.label,"
                " rids: t.sender.getParameters().encodings.map(e => e.rid || null)}))")
        except Exception:
            debug = "\n".join(p.debug() for p in people.made) + "\n" + server.log()[-3000:]
            if people.made:
                debug += "\n" + str(people.made[0].page.evaluate(
                    "async () => (window.callsd.pc.remoteDescription.sdp + '\\n=====\\n' +"
                    " (await window.callsd.pc.createOffer()).sdp)"))
            (work / "debug.txt").write_text(debug)
            print(debug, file=sys.stderr)
            raise
        finally:
            result["console"] = [line for p in people.made for line in p.console[-5:]]
            people.close()
            browser.close()
        result["server_log_tail"] = server.log()[-1500:]
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
