"""One Chromium participant for the namespace tests, run inside a client namespace with ``ip netns exec``.

    python browser_client.py --url http://198.51.100.10:8080 --channel net --token T [--relay-only] --seconds 60

It opens callsd's real web page (Debian's Chromium through Playwright, fake microphone), joins from the URL's
token, unmutes, waits until audio from the other participant is flowing in, keeps the call up ``--hold`` seconds,
and prints one JSON object: the inbound audio stats from ``getStats()`` (packetsReceived, packetsLost, jitter,
concealment), the selected candidate pair (types, protocols, addresses) and the page's console tail.

The page is plain http on a test address, so Chromium is told to treat that origin as secure (getUserMedia needs
it). ``--relay-only`` adds ``iceTransportPolicy: "relay"`` to the page's RTCPeerConnection configuration, nothing
else. Every wait is bounded.
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

RELAY_ONLY = """
(() => {
  const Native = window.RTCPeerConnection;
  window.RTCPeerConnection = class extends Native {
    constructor(config, ...rest) { super(Object.assign({}, config || {}, { iceTransportPolicy: "relay" }), ...rest); }
  };
})();
"""

STATS = """
async () => {
  const pc = window.callsd.pc;
  if (!pc) return null;
  const report = await pc.getStats();
  const out = { audio_in: null, audio_out_packets: 0, pair: null };
  let pairId = null;
  report.forEach((s) => {
    if (s.type === "inbound-rtp" && s.kind === "audio") {
      const a = out.audio_in || { packetsReceived: 0, packetsLost: 0, jitter: 0, concealedSamples: 0,
                                  totalSamplesReceived: 0, nackCount: 0 };
      a.packetsReceived += s.packetsReceived || 0; a.packetsLost += s.packetsLost || 0;
      a.jitter = Math.max(a.jitter, s.jitter || 0); a.concealedSamples += s.concealedSamples || 0;
      a.totalSamplesReceived += s.totalSamplesReceived || 0; a.nackCount += s.nackCount || 0;
      out.audio_in = a;
    }
    if (s.type === "outbound-rtp" && s.kind === "audio") out.audio_out_packets += s.packetsSent || 0;
    if (s.type === "transport" && s.selectedCandidatePairId) pairId = s.selectedCandidatePairId;
  });
  const pair = pairId ? report.get(pairId) : null;
  const cand = (id) => {
    const c = report.get(id);
    return c && { type: c.candidateType, protocol: c.protocol, relayProtocol: c.relayProtocol || null,
                  address: c.address || c.ip, port: c.port, tcpType: c.tcpType || null };
  };
  if (pair) out.pair = { local: cand(pair.localCandidateId), remote: cand(pair.remoteCandidateId),
                         rtt: pair.currentRoundTripTime ?? null };
  return out;
}
"""


class Flow:
    """The inbound audio once it flows (``want`` packets in): how fast it came, and its longest stall, i.e. the
    longest time packetsReceived or totalSamplesReceived went without growing, as samples every ~0.25 s see it
    (a healthy 50 packets/s flow shows about one sampling interval)."""

    def __init__(self) -> None:
        self.since: float | None = None
        self.first: dict[str, float] = {}
        self.last: dict[str, float] = {}
        self.grew_at: dict[str, float] = {}
        self.longest_stall = 0.0

    def sample(self, now: float, audio: dict[str, Any], *, want: int) -> None:
        counters = {k: float(audio.get(k, 0)) for k in ("packetsReceived", "totalSamplesReceived")}
        if self.since is None:
            if counters["packetsReceived"] < want:
                return
            self.since, self.first = now, counters
            self.last, self.grew_at = dict(counters), {k: now for k in counters}
            return
        for key, value in counters.items():
            self.longest_stall = max(self.longest_stall, now - self.grew_at[key])  # since it last grew
            if value > self.last[key]:
                self.last[key], self.grew_at[key] = value, now

    def summary(self) -> dict[str, float] | None:
        if self.since is None:
            return None
        seconds = max(self.grew_at.values()) - self.since
        rate = (self.last["packetsReceived"] - self.first["packetsReceived"]) / seconds if seconds > 0 else 0.0
        return {"seconds": round(seconds, 2), "packets_per_s": round(rate, 1),
                "longest_stall_s": round(self.longest_stall, 2)}


def unmute(who: Any, attempts: int = 3) -> None:
    """Click Unmute until the page shows the server's ``user_unmuted`` (the button's data-muted turns "false")."""
    button = who.tid("mute-button")
    for _ in range(attempts):
        if button.get_attribute("data-muted") == "false":
            return
        button.click()
        try:
            who.page.wait_for_function(
                "document.querySelector('[data-testid=mute-button]').dataset.muted === 'false'", timeout=10_000)
            return
        except Exception:
            continue
    raise AssertionError(f"the page stayed muted after {attempts} clicks:\n{who.debug()}")


def main(args: argparse.Namespace) -> dict[str, Any]:
    result: dict[str, Any] = {"session_id": "", "stats": None, "console": [], "media_states": []}
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=bs.CHROMIUM, headless=True,
            args=[*bs.CHROMIUM_ARGS, f"--unsafely-treat-insecure-origin-as-secure={args.url}"])
        try:
            who = bs.Participant(browser, args.url, "net")
            if args.relay_only:
                who.page.add_init_script(RELAY_ONLY)
            who.open_with_token(args.channel, args.token)
            who.wait_in_call()
            result["session_id"] = who.session_id
            unmute(who)
            deadline = time.monotonic() + args.seconds
            flow = Flow()
            while time.monotonic() < deadline:
                who.page.wait_for_timeout(250)
                stats = who.page.evaluate(STATS)
                result["stats"] = stats
                received = (stats or {}).get("audio_in") or {}
                flow.sample(time.monotonic(), received, want=args.want)
                if flow.since is not None and time.monotonic() - flow.since >= args.hold:
                    break
            result["flow"] = flow.summary()
            result["media_states"] = who.page.evaluate(
                "window.callsd.log.filter(m => m.type === 'user_media_state').map(m => m.data)")
            result["console"] = who.console[-15:]
            who.close()
        finally:
            browser.close()
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="the server's page, e.g. http://198.51.100.10:8080")
    parser.add_argument("--channel", default="net")
    parser.add_argument("--token", required=True)
    parser.add_argument("--relay-only", action="store_true")
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--want", type=int, default=100, help="inbound audio packets before holding")
    parser.add_argument("--hold", type=float, default=5, help="seconds to keep the call up once audio flows")
    sys.stdout.write(json.dumps(main(parser.parse_args())) + "\n")
