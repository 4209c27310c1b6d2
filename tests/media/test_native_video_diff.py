"""Differential test for video on the native fast path (ADR 0024): simulcast layers, layer switches, publisher RTX
(per layer and for single-encoding tracks), NACKs answered from what each route sent, the NACK rounds and
transport-cc arrivals, through the Python path (the reference) and the native step: every datagram each client
receives, every counter and the whole simulcast state (layer tables, rate windows, each route's switcher and sent
packets) must be identical. tests/native_video_support.py draws the calls and streams."""

from __future__ import annotations

import os
import struct

from callsd.adapters.media.native import _engine
from callsd.adapters.media.simulcast_fwd import DECIDE_INTERVAL_S, RATE_WINDOW_S, ROUTE_CACHE
from hypothesis import HealthCheck, given, settings
from native_support import RouteSpec, Scenario, TrackSpec
from native_video_support import SimulcastSpec, VideoScenario, run_video, video_scenarios

EXAMPLES = 150 if os.environ.get("HYPOTHESIS_PROFILE") == "ci" else 30
_SETTINGS = settings(max_examples=EXAMPLES, deadline=None,
                     suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                            HealthCheck.filter_too_much])


def test_the_c_step_uses_the_python_constants() -> None:
    assert (_engine.ROUTE_CACHE, _engine.RATE_WINDOW_S, _engine.DECIDE_INTERVAL_S) == (
        ROUTE_CACHE, RATE_WINDOW_S, DECIDE_INTERVAL_S)


@_SETTINGS
@given(video_scenarios())
def test_native_video_matches_python(vs: VideoScenario) -> None:
    reference = run_video(vs, "python")
    native = run_video(vs, "native")
    for key in reference:
        assert native[key] == reference[key], key


@settings(max_examples=max(EXAMPLES // 3, 10), deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much])
@given(video_scenarios())
def test_native_video_with_transport_cc_matches_python(vs: VideoScenario) -> None:
    reference = run_video(vs, "python", twcc=True)
    native = run_video(vs, "native", twcc=True)
    for key in reference:
        assert native[key] == reference[key], key


def _two_layer_call() -> VideoScenario:
    """One VP8 simulcast publisher (q, h with RTX), one receiver on it: key frames on both layers, a REMB that moves
    the receiver down, more frames, a NACK."""
    track = TrackSpec(publisher=0, media="video", ssrc=1, signalled=False, level_id=0, codec="vp8")
    route = RouteSpec(track=0, receiver=0, ssrc=0xBB, ts_offset=5, last_seq=9, pt=100, remap=(), paused=False,
                      negotiated=True)
    size = (60, 600)  # bytes of payload per layer: ~20 and ~150 kbit/s at 30 packets a second

    def key(layer: int) -> bytes:
        return bytes([0x90, 0xE0, 0x80, 0x05, 0x07, 0x20, 0x00]) + bytes(size[layer])

    def delta(layer: int) -> bytes:
        return bytes([0x90, 0xE0, 0x80, 0x06, 0x07, 0x20, 0x01]) + bytes(size[layer])

    events: list[tuple[object, ...]] = []
    for layer in (0, 1):  # every layer seen, then a key frame of each, then a window of frames
        events.append(("layer", 0, layer, 1, delta(layer), "rid", 0, "ok", "media", 2))
    for layer in (0, 1):
        events.append(("layer", 0, layer, 1, key(layer), "rid", 0, "ok", "media", 1))
    for _ in range(40):
        events += [("layer", 0, layer, 1, delta(layer), "rid", 0, "ok", "media", 1) for layer in (0, 1)]
        events.append(("clock", 0.033))
    events += [("remb", 0, 60_000), ("layer", 0, 1, 1, delta(1), "rid", 0, "ok", "media", 3),
               ("layer", 0, 0, 1, key(0), "rid", 0, "ok", "media", 1),
               ("layer", 0, 0, 1, delta(0), "rid", 0, "ok", "media", 5),
               ("layer", 0, 1, 1, delta(1), "rid", 0, "ok", "rtx", 1),
               ("nack", 0, [1, 2]), ("round",)]
    base = Scenario(profile=b"SRTP_AEAD_AES_128_GCM", publishers=1, receivers=1, receivers_connected=(True,),
                    tracks=(track,), routes=(route,), events=tuple(events))
    return VideoScenario(base=base, simulcast=(SimulcastSpec(track=0, layers=2, ssrcs=(0x10, 0x20),
                                                             rtx_ssrcs=(0x11, 0x21)),),
                         rtx=(), route_rtx=(True,))


def test_a_simulcast_call_is_forwarded_and_switched_in_c() -> None:
    """Guards the differential test against comparing two runs where nothing happens, and shows the step really
    forwards the layers itself: both paths switch the receiver up, then down on the REMB, with seamless numbering."""
    vs = _two_layer_call()
    reference = run_video(vs, "python")
    native = run_video(vs, "native")
    assert native == reference
    counters = native["plane"]
    assert counters["simulcast_switches"] == 2, counters
    assert counters["simulcast_rtp_out_l1"] >= 40 and counters["simulcast_rtp_out_l0"] >= 6
    rtp = [p for p in native["received"][1] if len(p) > 60]
    assert len(rtp) >= 46
    assert counters["rtx_in"] == 1 and counters["nack_answered"] + counters["nack_forwarded"] >= 1


def test_only_a_layers_first_packet_takes_the_python_path() -> None:
    """The native step hands Python a layer's packet only until its SSRC is learnt from the RID."""
    from native_video_support import VideoRun

    vs = _two_layer_call()
    r = VideoRun(vs, "native")
    seen: list[int] = []
    handler = r.endpoint.handler
    on_rtp = handler.on_rtp

    def counting(peer: object, plain: bytes) -> None:
        seen.append(struct.unpack_from("!I", plain, 8)[0])
        on_rtp(peer, plain)  # type: ignore[arg-type]

    handler.on_rtp = counting  # type: ignore[method-assign]
    try:
        r.play()
    finally:
        r.close()
    assert sorted(seen) == [0x10, 0x20, 0x21], [hex(s) for s in seen]
