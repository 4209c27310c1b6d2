"""A Chromium publisher's own send-side estimate runs on the server's transport-cc feedback (twcc_recv.py).

Chromium publishes its fake camera (640x360) to the server alone, twice in one test: once as the server runs,
once with the feedback round silenced. Its ``availableOutgoingBitrate`` (getStats, the nominated candidate pair:
the estimate its encoder and its simulcast layers follow) starts at Chromium's start bitrate; with feedback it
must rise well above it within a few seconds, without it it must not.
"""

from __future__ import annotations

import shutil
from typing import Any

import pytest
import trio
from callsd.adapters.media import twcc_recv

from .conftest import CallHarness, wait_until
from .test_media_chromium import CHROMIUM, ChromiumClient

pytestmark = [pytest.mark.browser, pytest.mark.slow]

PUBLISH_JS = """
async () => {
  const pc = new RTCPeerConnection({iceServers: []});
  window.pc = pc;
  window.remote = [];
  const stream = await navigator.mediaDevices.getUserMedia({audio: true, video: {width: 640, height: 360}});
  for (const t of stream.getTracks()) pc.addTrack(t, stream);
  await pc.setLocalDescription(await pc.createOffer());
  return pc.localDescription.sdp;
}
"""

ESTIMATE_JS = """
async () => {
  let best = null;
  (await window.pc.getStats()).forEach((r) => {
    if (r.type === 'candidate-pair' && r.nominated && r.availableOutgoingBitrate !== undefined) {
      best = r.availableOutgoingBitrate;
    }
  });
  return best;
}
"""

SECONDS = 8.0
# Chromium starts its send-side estimate at 300 kbit/s; with feedback it can rise before the first getStats read,
# so the rise is measured from that known start, not from the first sample.
CHROMIUM_START_BPS = 300_000


class Publisher(ChromiumClient):
    """Chromium publishing a 640x360 camera; ``estimate()`` reads its send-side estimate."""

    page_js = PUBLISH_JS

    async def estimate(self) -> float | None:
        async def go() -> Any:
            return await self.page.evaluate(ESTIMATE_JS)

        value = await self.call(go)
        return None if value is None else float(value)


async def estimates_over(seconds: float) -> tuple[list[float], str]:
    """Publish for ``seconds`` after the first estimate; the estimates read every 0.5 s and diagnostics."""
    h = CallHarness()
    browser = Publisher()
    series: list[float] = []
    async with h.running([browser], timeout=90):
        await h.join("P", browser)  # type: ignore[arg-type]
        await wait_until(lambda: "P" in h.connected, timeout=30, what="publisher connected", diag=h.diagnostics)
        deadline: float | None = None
        while deadline is None or trio.current_time() < deadline:
            value = await browser.estimate()
            if value is not None:
                series.append(value)
                if deadline is None:
                    deadline = trio.current_time() + seconds
            await trio.sleep(0.5)
        sender = h.plane.endpoint.peer("P")
        feedback = sender.twcc_in if sender is not None else None
        sent = feedback.sent if isinstance(feedback, twcc_recv.FeedbackSender) else -1
        # the plane's counter (/metrics callsd_rtc_bandwidth_feedback_total{type="twcc_out"}) counts the same
        # reports: P is the only publisher, and no round runs between the two reads
        assert h.plane.counters["twcc_out"] == max(sent, 0), (h.plane.counters["twcc_out"], sent)
        return series, f"feedback packets sent: {sent}; {h.diagnostics()}"


async def test_chromium_publishers_estimate_rises_on_the_servers_transport_cc_feedback(
        monkeypatch: pytest.MonkeyPatch) -> None:
    if shutil.which(CHROMIUM) is None:
        pytest.fail("Debian's chromium is not installed: run scripts/system-deps.sh (make test does)", pytrace=False)
    with_feedback, diag = await estimates_over(SECONDS)
    print("with feedback:", [round(x / 1000) for x in with_feedback], "kbit/s")
    monkeypatch.setattr(twcc_recv, "send_feedback", lambda peers, send=None: 0)
    without, diag_off = await estimates_over(SECONDS)
    print("without feedback:", [round(x / 1000) for x in without], "kbit/s")
    assert "feedback packets sent: 0" not in diag, diag
    assert max(with_feedback) >= 2 * CHROMIUM_START_BPS, (with_feedback, diag)
    assert max(with_feedback) >= 1.5 * max(without), (with_feedback, without, diag_off)
