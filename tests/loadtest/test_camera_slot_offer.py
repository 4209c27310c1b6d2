"""The load tool's first offer carries the camera's inactive video section, as the web client's does in Chromium.

Why: the web client (app/static/media.js) negotiates its camera's transceiver up front, inactive, and Chromium
offers its whole video codec list there; a load tool without that section made every join cheaper for the server
than a browser's (the first-offer piece ~0.49 ms against ~0.68-0.71 ms, docs/performance.md, session 9). The unit
tests pin the section to the recorded Chromium offer; the end-to-end test runs `callsd loadtest` against a real
`callsd serve`, whose answer to every join keeps the section (video, accepted, inactive) and whose re-offers leave
it so, with every talker heard on both media engines.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from callsd.app.loadtest.sdp import (
    LocalTrack,
    build_answer,
    build_offer,
    camera_slot_kept,
    camera_slot_mid,
    parse_sdp,
    slot_mids,
)
from serve_support import ServeProcess, metric_sample

CHROMIUM_OFFER = Path(__file__).resolve().parents[1] / "media" / "data" / "offer_chromium_slots.sdp"
FP = "sha-256 " + ":".join(["AB"] * 32)
_TRANSPORT = ("a=ice-", "a=fingerprint:", "a=setup:", "a=candidate:", "a=end-of-candidates")


def _offer(tracks: list[LocalTrack], slots: int = 8) -> str:
    return build_offer(session_id=1, tracks=tracks, ufrag="abcd", pwd="p" * 24, fingerprint=FP, cname="lt0",
                       candidate=("127.0.0.1", 9), receive_slots=slots)


def _section(sdp: str, mid: str) -> list[str]:
    """The lines of the m-section ``mid`` of ``sdp`` without its transport lines (ICE, DTLS, candidates)."""
    for chunk in sdp.split("\nm=")[1:]:
        lines = [line.strip() for line in ("m=" + chunk).splitlines() if line.strip()]
        if f"a=mid:{mid}" in lines:
            return [line for line in lines if not line.startswith(_TRANSPORT)]
    raise AssertionError(f"no m-section with mid {mid}")


def _mic() -> LocalTrack:
    return LocalTrack(kind="audio", ssrc=1111, stream_id="lt0", track_id="lt0-a")


def test_the_camera_section_is_chromiums_when_the_user_has_no_camera() -> None:
    tracks = [_mic()]
    offer = _offer(tracks)
    # The web client's order: the microphone, the camera's slot, then the receive slots.
    assert [m.mid for m in parse_sdp(offer).media] == [str(n) for n in range(10)]
    assert (tracks[0].mid, camera_slot_mid(tracks), slot_mids(tracks, 8)) == ("0", "1", [str(n) for n in range(2, 10)])
    assert _section(offer, "1") == _section(CHROMIUM_OFFER.read_text(), "1")  # line for line, in Chromium's order
    video = parse_sdp(offer).media[1]
    assert (video.kind, video.direction, len(video.formats), video.msid, video.ssrcs) == ("video", "inactive", 23, "", [])


def test_a_user_with_a_camera_keeps_its_sendonly_section_and_a_screen_comes_after_the_camera_slot() -> None:
    camera = LocalTrack(kind="video", ssrc=2222, stream_id="lt0", track_id="lt0-v", camera=True)
    tracks = [_mic(), camera]
    media = parse_sdp(_offer(tracks, slots=2)).media
    assert [(m.kind, m.direction, len(m.formats)) for m in media] == [
        ("audio", "sendrecv", 1), ("video", "sendonly", 1), ("audio", "recvonly", 1), ("audio", "recvonly", 1)]
    assert camera_slot_mid(tracks) == "" and slot_mids(tracks, 2) == ["2", "3"]
    screen = LocalTrack(kind="video", ssrc=3333, stream_id="lt0-screen", track_id="lt0-s")
    tracks = [_mic(), screen]
    media = parse_sdp(_offer(tracks, slots=1)).media
    assert [(m.mid, m.direction) for m in media] == [("0", "sendrecv"), ("1", "inactive"), ("2", "sendonly"),
                                                     ("3", "recvonly")]
    assert screen.mid == "2"


def test_the_answer_keeps_the_camera_section_inactive_whatever_the_offer_says() -> None:
    tracks = [_mic()]
    _offer(tracks, slots=0)
    server = parse_sdp(_offer([LocalTrack(kind="audio", ssrc=9, stream_id="s", track_id="t")], slots=0)
                       .replace("a=inactive", "a=sendonly"))  # an offer that would send on the camera's section
    answer = parse_sdp(build_answer(server, session_id=1, version=3, tracks=tracks, ufrag="abcd", pwd="p" * 24,
                                    fingerprint=FP, cname="lt0", camera_slot=camera_slot_mid(tracks)))
    assert [(m.mid, m.direction) for m in answer.media] == [("0", "sendrecv"), ("1", "inactive")]
    assert camera_slot_kept(answer, "1") and not camera_slot_kept(answer, "") and not camera_slot_kept(server, "1")


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServeProcess]:
    serve = ServeProcess(tmp_path)
    try:
        serve.start()
        yield serve
    finally:
        serve.stop()


@pytest.mark.slow
@pytest.mark.parametrize("media", ["python", "native"])
def test_every_join_is_answered_with_the_camera_section_and_every_talker_is_heard(
        server: ServeProcess, tmp_path: Path, media: str) -> None:
    """2 calls of 4 with 3 talkers and 1 receive slot each: the talkers beyond a user's slot are heard through server
    re-offers, so both the answers to the joiners' offers and the server's re-offers meet the camera section."""
    url = server.url
    results = tmp_path / "results.json"
    run = subprocess.run(
        [sys.executable, "-m", "callsd.app.cli", "loadtest", "--url", url, "--calls", "2", "--users-per-call", "4",
         "--unmuted", "3", "--duration", "5", "--join-duration", "1.5", "--audio-slots", "1", "--media-engine",
         media, "--output", str(results), "--quiet"],
        capture_output=True, text=True, timeout=90, cwd=tmp_path,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    doc = json.loads(results.read_text())
    users = doc["users"]
    assert (users["joined"], users["failed"], users["connected"], users["reconnects"]) == (8, 0, 8, 0), users
    assert users["errors"] == {}, users  # no "camera_slot_not_kept": every server re-offer left the section alone
    assert users["camera_slot_answers"] == 8  # the server answered every join's section: video, accepted, inactive
    overall = doc["overall"]
    assert overall["audio_streams_expected"] == 2 * (3 * 3)  # per call: 3 talkers, each heard by the 3 others
    assert overall["audio_streams_received"] == overall["audio_streams_expected"]
    assert overall["lost"] == 0 and overall["srtp_errors"] == 0
    rounds = metric_sample(url, 'callsd_websocket_events_total{direction="in",type="sdp"}')
    assert rounds > 8, f"{rounds} SDP messages from 8 joins: no server re-offer was answered"


