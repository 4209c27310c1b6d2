"""Differential test for video on the native fast path (ADR 0024): simulcast layers, layer switches, publisher RTX
(per layer and for single-encoding tracks), NACKs answered from what each route sent, the NACK rounds and
transport-cc arrivals, through the Python path (the reference) and the native step: every datagram each client
receives, every counter and the whole simulcast state (layer tables, rate windows, each route's switcher and sent
packets) must be identical. tests/native_video_support.py draws the calls and streams."""

from __future__ import annotations

import dataclasses
import os
import struct

from callsd.adapters.media import twcc_send
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
    assert (_engine.TWCC_HISTORY, _engine.TWCC_FIRST, _engine.TWCC_COVER_MS) == (twcc_send.HISTORY, twcc_send.FIRST,
                                                                               twcc_send.COVER_MS)


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


def test_h264_layers_and_a_cameras_rtx_are_forwarded_alike() -> None:
    """H.264 in three layers (key frames as an FU-A start, a STAP-A with SPS and IDR, a lone IDR) switched down and up
    by REMBs, and a single-encoding camera whose RTX stream repairs it: both paths give the same bytes and state."""
    from native_video_support import RtxSpec

    sim = TrackSpec(publisher=0, media="video", ssrc=1, signalled=False, level_id=0, codec="h264")
    cam = TrackSpec(publisher=0, media="video", ssrc=0xCA, signalled=True, level_id=0, codec="vp8")
    routes = (RouteSpec(track=0, receiver=0, ssrc=0xB0, ts_offset=0, last_seq=0, pt=102, remap=((10, 0),),
                        paused=False, negotiated=True),
              RouteSpec(track=1, receiver=0, ssrc=0xB1, ts_offset=9, last_seq=7, pt=96, remap=(), paused=False,
                        negotiated=True))
    keys = (bytes([0x7C, 0x85]), bytes([0x78, 0, 2, 0x67, 1, 0, 2, 0x65, 2]), bytes([0x65]))
    size = (40, 300, 900)
    events: list[tuple[object, ...]] = []
    for layer in range(3):
        events.append(("layer", 0, layer, 1, bytes([0x41]) + bytes(size[layer]), "rid", 0, "ok", "media", 2))
    for round_ in range(3):
        for layer in range(3):
            events.append(("layer", 0, layer, 1, keys[layer] + bytes(size[layer]), "rid", 0, "ok", "media", 1))
        for _ in range(35):
            events += [("layer", 0, layer, 1, bytes([0x41]) + bytes(size[layer]), "rid", 0, "ok", "media", 1)
                       for layer in range(3)]
            events.append(("clock", 0.033))
        events.append(("remb", 0, (40_000, 5_000_000, 300_000)[round_]))
        events += [("layer", 0, layer, 1, bytes([0x41]) + bytes(size[layer]), "rid", 0, "ok", "media", 1)
                   for layer in range(3)]  # a decision on the new estimate (an upgrade then holds 3 s)
        events.append(("clock", 3.5))
    events += [("rtp", 1, 1, 96, 0, None, 0, bytes([0x10, 0x01]) + bytes(50), False, 0xCA, "ok", 5),
               ("rtx", 0, 2, "ok"), ("rtx", 0, 1, "probe"), ("rtx", 0, 1, "wrong_pt"), ("nack", 1, [1, 3])]
    base = Scenario(profile=b"SRTP_AES128_CM_SHA1_80", publishers=1, receivers=1, receivers_connected=(True,),
                    tracks=(sim, cam), routes=routes, events=tuple(events))
    vs = VideoScenario(base=base, simulcast=(SimulcastSpec(track=0, layers=3, ssrcs=(0x10, 0x20, 0x30),
                                                           rtx_ssrcs=None),),
                       rtx=(RtxSpec(track=1, ssrc=0xCB),), route_rtx=(False, True))
    reference = run_video(vs, "python")
    native = run_video(vs, "native")
    assert native == reference
    counters = native["plane"]
    assert counters["simulcast_switches"] >= 3, counters
    assert counters["rtx_in"] == 2 and counters["drop_padding"] >= 1, counters


def test_a_busy_receivers_send_history_grows_alike_on_both_paths() -> None:
    """More than the ring's first 256 slots sent within COVER_MS: the C stamp grows the sequencer's ring exactly when
    and as ``TransportSequencer.stamp`` does (ADR 0026's sizing, ADR 0024's mirror rule)."""
    from native_video_support import VideoRun

    base = _two_layer_call()
    frames = tuple(("layer", 0, 1, 1, bytes([0x90, 0xE0, 0x80, 0x06, 0x07, 0x20, 0x01]) + bytes(600), "rid", 0, "ok",
                    "media", 10) for _ in range(60))
    ticks = tuple(e for f in frames for e in (f, ("clock", 0.01)))
    events = base.base.events[:4] + ticks  # every layer seen, a key frame of each, then 600 packets in 0.6 s
    vs = VideoScenario(base=dataclasses.replace(base.base, events=events), simulcast=base.simulcast, rtx=(),
                       route_rtx=base.route_rtx)
    histories = {}
    for path in ("python", "native"):
        r = VideoRun(vs, path, True)
        try:
            r.play()
            histories[path] = r.outcome()
            assert r.sequencers and max(len(s._seq) for s in r.sequencers) > twcc_send.FIRST, path  # noqa: SLF001
        finally:
            r.close()
    assert histories["native"] == histories["python"]
