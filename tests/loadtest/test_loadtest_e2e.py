"""`callsd loadtest` against a real `callsd serve` started by the test (both as subprocesses, loopback only).

A short run (2 calls x 3 users in 2 load processes, one talker per call and one screen sharer) must finish with
every user connected,
every expected audio stream heard, zero loss, a results JSON and a plot PNG.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from net_support import free_port
from process_support import terminate
from serve_support import metric_sample

pytestmark = pytest.mark.slow


@pytest.fixture
def server(tmp_path: Path):  # type: ignore[no-untyped-def]
    http_port = free_port()
    env = dict(os.environ, CALLSD_HTTP_LISTEN="127.0.0.1", CALLSD_HTTP_PORT=str(http_port),
               CALLSD_RTC_ICE_ADDRESS_UDP="127.0.0.1", CALLSD_RTC_ICE_PORT_UDP="0", CALLSD_RTC_ICE_PORT_TCP="0",
               CALLSD_STORE_DATA_DIR=str(tmp_path / "data"), CALLSD_AUTH_MODE="open")
    log = open(tmp_path / "serve.log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([sys.executable, "-m", "callsd.app.cli", "serve"], env=env, stdout=log,
                            stderr=subprocess.STDOUT, cwd=tmp_path)
    url = f"http://127.0.0.1:{http_port}"
    try:
        deadline, healthy = time.monotonic() + 60, False  # a loaded 2-CPU machine may take 20 s to start it
        while not healthy and proc.poll() is None and time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(url + "/healthz", timeout=1):
                    healthy = True
            except OSError:
                time.sleep(0.1)
        if not healthy:
            log.close()
            pytest.fail("callsd serve did not become healthy:\n" + (tmp_path / "serve.log").read_text()[-3000:])
        yield url, proc.pid
    finally:
        terminate(proc)
        log.close()


def test_short_run_has_zero_loss_and_writes_results_and_plot(server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    url, _pid = server
    results = tmp_path / "results.json"
    run = subprocess.run(
        [sys.executable, "-m", "callsd.app.cli", "loadtest", "--url", url, "--calls", "2", "--users-per-call", "3",
         "--unmuted", "1", "--screen-sharing", "1", "--screen-bitrate", "300k", "--duration", "6",
         "--join-duration", "1", "--processes", "2", "--output", str(results), "--quiet"],
        capture_output=True, text=True, timeout=90, cwd=tmp_path,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    doc = json.loads(results.read_text())
    users = doc["users"]
    assert (users["total"], users["joined"], users["failed"], users["connected"]) == (6, 6, 0, 6), users
    assert users["errors"] == {} and users["worker_crashes"] == {}
    overall = doc["overall"]
    assert overall["audio_streams_expected"] == 4  # each of the 2 listeners per call hears the talker
    assert overall["audio_streams_received"] == 4
    assert overall["packets_received"] > 400
    assert overall["lost"] == 0 and overall["loss"] == 0.0
    assert overall["e2e_expected"] > 300 and overall["e2e_lost"] == 0
    assert overall["srtp_errors"] == 0
    assert doc["join_to_first_audio_ms"]["count"] == 4
    assert doc["join_phases_ms"]["sdp_answer"]["count"] == 6
    assert len(doc["calls"]) == 2 and all(c["loss"] == 0.0 for c in doc["calls"])
    # The sharer's screen reaches the two others of its call: video streams are counted too.
    assert doc["calls"][0]["streams"] == 2 + 2
    assert doc["server"]["metrics"] is True and doc["server"]["cpu_seconds"] >= 0
    assert len(doc["timeline"]) >= 4
    png = tmp_path / "report.png"
    plot = subprocess.run([sys.executable, "-m", "callsd.app.cli", "loadtest", "plot", str(results), "-o", str(png)],
                          capture_output=True, text=True, timeout=60)
    assert plot.returncode == 0, plot.stderr
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_ctrl_c_stops_the_run_with_one_line(server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import signal

    url, _pid = server
    proc = subprocess.Popen(
        [sys.executable, "-m", "callsd.app.cli", "loadtest", "--url", url, "--calls", "2", "--users-per-call", "2",
         "--duration", "60", "--join-duration", "1", "--quiet"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
        preexec_fn=lambda: (signal.signal(signal.SIGINT, signal.SIG_DFL), os.setpgrp()),  # a terminal's group
    )
    try:
        # Interrupt a run that is under way: every user's media is connected (the server counts it), not "3 s in".
        deadline = time.monotonic() + 60
        while metric_sample(url, 'callsd_rtc_conn_states_total{type="connected"}') < 4:
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the load test never connected its 4 users"
            time.sleep(0.1)
        os.killpg(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 130
    assert err.strip() == "callsd loadtest: interrupted"


def test_audio_slots_cost_one_round_per_joiner_and_every_talker_is_heard(server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """`--audio-slots` (docs/adr/0020-receive-slots.md): with 2 users per call asking for 4 slots, a 4-user call
    is heard by everyone without the server re-offering to those already in it: 1 SDP round per join (the joiner's
    offer carries its slots, protocol 1.4), against 1 + 2 + 3 re-offers plus firsts without slots."""
    url, _pid = server
    results = tmp_path / "results.json"
    run = subprocess.run(
        [sys.executable, "-m", "callsd.app.cli", "loadtest", "--url", url, "--calls", "2", "--users-per-call", "4",
         "--unmuted", "2", "--duration", "6", "--join-duration", "2", "--audio-slots", "4", "--output",
         str(results), "--quiet"],
        capture_output=True, text=True, timeout=90, cwd=tmp_path,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    doc = json.loads(results.read_text())
    users = doc["users"]
    assert (users["joined"], users["failed"], users["connected"]) == (8, 0, 8), users
    overall = doc["overall"]
    assert overall["audio_streams_expected"] == 2 * (2 * 3)  # per call: 2 talkers, each heard by the 3 others
    assert overall["audio_streams_received"] == overall["audio_streams_expected"]
    assert overall["lost"] == 0 and overall["srtp_errors"] == 0
    rounds = metric_sample(url, 'callsd_websocket_events_total{direction="in",type="sdp"}')
    assert rounds == 1 * 8, f"{rounds} SDP rounds for 8 joins"


def test_screen_simulcast_publishes_layers_and_reports_them_per_layer(server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """``--screen-simulcast``: the sharer of each call publishes three RID layers; the server receives all three
    and forwards one per receiver; the results say so per layer and per receiver."""
    url, _pid = server
    results = tmp_path / "results.json"
    run = subprocess.run(
        [sys.executable, "-m", "callsd.app.cli", "loadtest", "--url", url, "--calls", "1", "--users-per-call", "3",
         "--unmuted", "1", "--screen-sharing", "1", "--screen-simulcast", "--screen-bitrate", "400k",
         "--duration", "8", "--join-duration", "1", "--output", str(results)],
        capture_output=True, text=True, timeout=90, cwd=tmp_path,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    doc = json.loads(results.read_text())
    assert doc["users"]["joined"] == 3 and doc["users"]["errors"] == {}, doc["users"]
    layers = doc["server"]["simulcast_layers"]
    assert [row["rid"] for row in layers] == ["q", "h", "f"]
    assert all(row["packets_in"] > 20 for row in layers), layers  # every layer reaches the server
    kbps = [row["kbps_in"] for row in layers]
    assert kbps[0] < kbps[1] < kbps[2], layers
    out = sum(row["packets_out"] for row in layers)
    assert 0 < out < 2 * sum(row["packets_in"] for row in layers), layers  # one layer per receiver, not all
    rx = doc["simulcast_receivers"]
    assert rx["count"] == 2 and rx["packets_min"] > 20, rx  # both others got the screen
    assert doc["overall"]["lost"] == 0  # the layers stay out of the loss count; audio is whole
    assert "simulcast layer 2 (f)" in run.stdout
