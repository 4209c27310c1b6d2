"""The web client's simulcast screen share through the real server, with Chromium on every side (issue 15).

Each test runs tests/video/simulcast_call.py inside a network namespace of its own (its own loopback, so the
nftables rule that makes one receiver's link lossy touches nothing outside the test): a page shares its screen (fake
capture), two pages watch it. Asserted: the page offers RID layers because ``join_ack.simulcast`` allows it, the
server receives several layers and forwards one per receiver (``/metrics``), both receivers keep decoding; with 5 %
random loss on one receiver's link, NACK/RTX repair it (``nackCount`` and ``retransmittedPacketsReceived`` from
getStats) and key-frame requests stay rare.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from net.netns import Host, Topology

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SCRIPT = Path(__file__).with_name("simulcast_call.py")
SECONDS = 20  # of screen share measured, after both receivers show it


@pytest.fixture(scope="module")
def box() -> Iterator[Host]:
    topo = Topology()
    try:
        yield topo.isolated_host("sim")
    finally:
        topo.close()


def _run(box: Host, work: Path, loss_percent: int, *extra: str) -> dict[str, Any]:
    proc = box.popen([sys.executable, str(SCRIPT), "--work", str(work), "--loss-percent", str(loss_percent),
                      "--seconds", str(SECONDS), *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        out, err = proc.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
    if proc.returncode != 0 or not out.strip():
        raise AssertionError(f"simulcast_call.py failed ({proc.returncode}): {err.decode(errors='replace')[-4000:]}")
    (work / "result.json").write_bytes(out)  # kept with the test's temp folder, for a look at the figures
    return json.loads(out.decode().strip().splitlines()[-1])  # type: ignore[no-any-return]


def _grew(samples: list[dict[str, Any]], key: str) -> int:
    return int(samples[-1][key] or 0) - int(samples[0][key] or 0)


def test_the_page_publishes_its_screen_as_simulcast_and_each_receiver_gets_one_layer(box: Host,
                                                                                      tmp_path: Path) -> None:
    r = _run(box, tmp_path, 0, "--camera")
    why = json.dumps({k: v for k, v in r.items() if k != "samples"}, indent=1)[:6000]
    assert r["join_ack_simulcast"] is True
    assert "a=simulcast:send q;f" in r["offer_rids"] and "a=rid:q send" in r["offer_rids"], why
    # the screen still sends two layers after the answers, the camera three (app/static/media.js CAMERA_LAYERS)
    assert {tuple(t["rids"]) for t in r["sending"]} == {("q", "h", "f"), ("q", "f")}, why
    m = r["metrics"]
    layers_in = {layer: m.get(f"callsd_rtc_simulcast_packets_total_directionin_layer{layer}", 0) for layer in "01"}
    assert all(n > 50 for n in layers_in.values()), why  # the server receives both layers
    out = sum(m.get(f"callsd_rtc_simulcast_packets_total_directionout_layer{layer}", 0) for layer in "012")
    assert out > 100, why
    # one layer per receiver: it forwards fewer packets than two receivers x every layer it received
    assert out < 2 * sum(layers_in.values()), why
    for name in ("rx1", "rx2"):
        samples = r["samples"][name]
        assert _grew(samples, "framesDecoded") >= SECONDS * 2, (name, samples[-1], why)  # a screen at >= 2 fps
        assert samples[-1]["frameWidth"] > 0


def test_five_percent_loss_on_one_receivers_link_is_repaired_without_key_frames(box: Host, tmp_path: Path) -> None:
    r = _run(box, tmp_path, 5)
    why = json.dumps({k: v for k, v in r.items() if k != "samples"}, indent=1)[:6000]
    lossy, clean = r["samples"]["rx2"], r["samples"]["rx1"]
    assert r["dropped"] >= 5, why  # the rule did drop packets on the way to the lossy receiver (a screen is ~12 pps)
    assert _grew(lossy, "framesDecoded") >= SECONDS * 2, (lossy[-1], why)  # video keeps decoding
    assert _grew(clean, "framesDecoded") >= SECONDS * 2, (clean[-1], why)
    assert _grew(lossy, "nackCount") > 0, (lossy[-1], why)
    # the repairs came as RTX (the receiver's RTX SSRC and payload type: Chromium counts only those) during the
    # loss. Chromium counts the server's bandwidth probes (RTX padding) there too (a clean receiver's count grows
    # by 8-16 in 20 s), so the server's rtx_out, which counts NACK answers only, is what says they were repairs
    assert _grew(lossy, "retransmittedPacketsReceived") > 0, (lossy[-1], why)
    assert r["metrics"]["callsd_rtc_repair_total_typertx_out"] > 0, why
    # Key-frame requests stay rare: NACK/RTX repairs what was lost. Bound: at most one PLI/FIR per 4 s of loss
    # (each costs a full key frame to every receiver of the layer); without repair it is one per lost frame.
    requests = _grew(lossy, "pliCount") + _grew(lossy, "firCount")
    assert requests <= SECONDS / 4, (lossy[-1], why)


def test_h264_simulcast_from_the_page_reaches_both_viewers(box: Host, tmp_path: Path) -> None:
    """The same share with the page preferring H.264 (setCodecPreferences): the layers are H.264 and are switched
    on its key frames (IDR, in single NAL units, STAP-A or FU-A) as VP8's are."""
    r = _run(box, tmp_path, 0, "--codec", "h264")
    why = json.dumps({k: v for k, v in r.items() if k != "samples"}, indent=1)[:6000]
    assert {t["codec"] for t in r["publisher"]} == {"video/H264"}, why
    assert len(r["publisher"]) == 2, why  # two encodings
    for name in ("rx1", "rx2"):
        samples = r["samples"][name]
        assert samples[-1]["codec"] == "video/H264", why
        assert _grew(samples, "framesDecoded") >= SECONDS * 2, (name, samples[-1], why)
