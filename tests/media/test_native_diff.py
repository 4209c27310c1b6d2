"""Differential test: the native fast path against the Python path, which is the reference.

Hypothesis draws a small call (publishers with audio/video tracks, receivers with routes that each have their own
SSRC, numbering, payload-type map and extension remap, some paused, some not negotiated, some receivers not
connected) and a stream of events: valid RTP with every kind of header (CSRCs, one- and two-byte extensions,
malformed extension blocks, padding-only probes, unknown payload types), reordered, lost and duplicated packets,
replays, forged tags, garbage datagrams, RTP whose SSRC the server learns from the MID extension, SSRC changes,
mid-stream SRTP key changes, pauses and resumes, NACKs answered from the video cache, and drains of random batch
sizes. The same stream runs through a real ``MediaPlane`` + ``UdpEndpoint`` on loopback sockets once with
``fast_path="python"`` and once with ``"native"``; every datagram each client receives (SRTP bytes as sent), every
counter, every emitted event and the forwarding state of every track and route must be identical.
"""

from __future__ import annotations

import os

import pytest
from callsd.adapters.media.paths import native_available
from callsd.adapters.media.plane import MediaPlane, PlaneConfig
from hypothesis import HealthCheck, given, settings
from native_support import PUBLISHER_TWCC_EXT, RouteSpec, Scenario, TrackSpec, run, scenarios

EXAMPLES = 200 if os.environ.get("HYPOTHESIS_PROFILE") == "ci" else 40


def test_native_extension_is_built() -> None:
    """The suite never skips the native side: the extension must be importable where the tests run."""
    assert native_available() is None, native_available()


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                        HealthCheck.data_too_large])
@given(scenarios())
def test_native_path_matches_python_path(sc: Scenario) -> None:
    reference = run(sc, "python")
    native = run(sc, "native")
    for key in reference:
        assert native[key] == reference[key], key


def test_a_forwarded_call_really_forwards() -> None:
    """Guards the differential test against comparing two empty outputs: a plain call forwards every packet."""
    sc = Scenario(profile=b"SRTP_AEAD_AES_128_GCM", publishers=1, receivers=2, receivers_connected=(True, True),
                  tracks=(TrackSpec(publisher=0, media="audio", ssrc=0x1234, signalled=True, level_id=1),),
                  routes=(RouteSpec(track=0, receiver=0, ssrc=0xAA, ts_offset=5, last_seq=9, pt=109,
                                    remap=((1, 14),), paused=False, negotiated=True),
                          RouteSpec(track=0, receiver=1, ssrc=0xBB, ts_offset=7, last_seq=0xFFFF, pt=111,
                                    remap=((1, 15),), paused=False, negotiated=True)),
                  events=tuple(("rtp", 0, 1, 111, 0, bytes.fromhex("bede0001") + bytes([0x10, 0x05, 0, 0]), 0,
                                b"opus" * 10, False, 0x1234, "ok", 1) for _ in range(40)))
    reference = run(sc, "python")
    native = run(sc, "native")
    assert native == reference
    assert [len(x) for x in native["received"]] == [0, 40, 40, 0]
    assert native["transport"]["rtp_out"] == 80
    assert any("VoiceActivity" in e for e in native["events"])
    assert native["tracks"][0][8] == 30  # the voice score saturates


@pytest.mark.parametrize("fast_path", ["python", "native"])
def test_paths_are_selected_by_config(fast_path: str) -> None:
    plane = MediaPlane(PlaneConfig(ice_port_udp=0, fast_path=fast_path), lambda e: None)
    assert plane.endpoint.path.name == fast_path


def test_an_unknown_fast_path_is_refused() -> None:
    with pytest.raises(ValueError, match="fast_path"):
        MediaPlane(PlaneConfig(ice_port_udp=0, fast_path="turbo"), lambda e: None)


@settings(max_examples=max(EXAMPLES // 4, 10), deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(scenarios())
def test_with_transport_cc_receivers_the_native_path_still_matches(sc: Scenario) -> None:
    """Receivers with a transport-wide sequencer: the native step stamps through it and sends itself (ADR 0021).
    Publishers with a transport-cc feedback sender: the native step reads the same numbers (issue 15)."""
    reference = run(sc, "python", twcc=True)
    native = run(sc, "native", twcc=True)
    for key in reference:
        assert native[key] == reference[key], key


def test_a_publishers_numbered_packets_are_recorded_on_both_paths() -> None:
    """Guards the transport-cc part of the differential test against comparing nothing: numbered packets."""
    twcc = bytes.fromhex("bede0001") + bytes([PUBLISHER_TWCC_EXT << 4 | 1]) + b"\x00\x07\x00"
    sc = Scenario(profile=b"SRTP_AEAD_AES_128_GCM", publishers=1, receivers=1, receivers_connected=(True,),
                  tracks=(TrackSpec(publisher=0, media="audio", ssrc=0x1234, signalled=True, level_id=1),),
                  routes=(RouteSpec(track=0, receiver=0, ssrc=0xAA, ts_offset=5, last_seq=9, pt=109,
                                    remap=((1, 14),), paused=False, negotiated=True),),
                  events=(("rtp", 0, 1, 111, 0, twcc, 0, b"opus" * 10, False, 0x1234, "ok", 3),))
    reference = run(sc, "python", twcc=True)
    native = run(sc, "native", twcc=True)
    assert native == reference
    assert native["arrivals"] == [(1, 2, 0x1234, ((7, (True,)),))]  # the same number thrice: reported once
