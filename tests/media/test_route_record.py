"""A route's and a track's per-packet state (route_record.py, track_record.py): the C records and their twins.

``OutRoute`` subclasses ``_engine.RouteRecord`` when the extension is built (the native step then updates the
numbering and counters in place) and ``RouteRecordTwin`` when it is not; ``InTrack`` likewise ``TrackRecord`` or
``TrackRecordTwin``, and ``TransportSequencer`` ``SequencerRecord`` or ``SequencerTwin``. A twin must behave as its
record does:
the same fields and defaults, and the same forwarding when the Python path runs on it. The last test proves the
second by running the native differential harness's random calls (tests/native_support.py) on the Python path twice,
once here on the C record and once in a child process where the extension cannot be imported, and requiring
identical outcomes: every datagram, counter, event and route field.
"""

from __future__ import annotations

import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from callsd.adapters.media.forwarder import InTrack, OutRoute
from callsd.adapters.media.native._engine import RouteRecord as NativeRouteRecord
from callsd.adapters.media.native._engine import TrackRecord as NativeTrackRecord
from callsd.adapters.media.route_record import ROUTE_RECORD_FIELDS, RouteRecord, RouteRecordTwin
from callsd.adapters.media.track_record import TRACK_RECORD_FIELDS, TrackRecord, TrackRecordTwin
from callsd.core.calls.events import TrackKind
from native_support import run

TESTS = Path(__file__).resolve().parents[1]


def test_out_route_is_the_native_record_where_the_extension_is_built() -> None:
    assert OutRoute.__mro__[1] is NativeRouteRecord is RouteRecord  # type: ignore[comparison-overlap]
    assert issubclass(OutRoute, NativeRouteRecord)
    assert not set(ROUTE_RECORD_FIELDS) & set(OutRoute.__slots__), "a slot would shadow the record's field"


def test_in_track_is_the_native_record_where_the_extension_is_built() -> None:
    assert InTrack.__mro__[1] is NativeTrackRecord is TrackRecord  # type: ignore[comparison-overlap]
    assert not set(TRACK_RECORD_FIELDS) & set(InTrack.__slots__), "a slot would shadow the record's field"


@pytest.mark.parametrize("record_type", [NativeTrackRecord, TrackRecordTwin])
def test_track_record_fields_default_to_zero_and_round_trip(record_type: type) -> None:
    record = record_type()
    assert {name: getattr(record, name) for name in TRACK_RECORD_FIELDS} == dict.fromkeys(TRACK_RECORD_FIELDS, 0)
    values = {name: 2**40 + i for i, name in enumerate(TRACK_RECORD_FIELDS)} | {"last_rx": 1234.5, "started": True,
                                                                              "speaking": True}
    for name, value in values.items():
        setattr(record, name, value)
    assert {name: getattr(record, name) for name in TRACK_RECORD_FIELDS} == values


@pytest.mark.parametrize("record_type", [NativeRouteRecord, RouteRecordTwin])
def test_record_fields_default_to_zero_and_round_trip(record_type: type) -> None:
    record = record_type()
    assert {name: getattr(record, name) for name in ROUTE_RECORD_FIELDS} == dict.fromkeys(ROUTE_RECORD_FIELDS, 0)
    assert record.resync is False
    values = {"packets": 2**40, "octets": 2**62, "ts_offset": 0xFFFFFFFF, "ssrc": 0xFFFFFFFF, "seq_offset": 0xFFFF,
              "last_seq": 0xFFFF, "resync": True}
    for name, value in values.items():
        setattr(record, name, value)
    assert {name: getattr(record, name) for name in ROUTE_RECORD_FIELDS} == values
    assert type(record.resync) is bool


def test_native_record_refuses_what_its_fields_cannot_hold() -> None:
    record = NativeRouteRecord()
    with pytest.raises(OverflowError):
        record.seq_offset = -(2**63) - 1
    with pytest.raises(OverflowError):
        record.packets = 2**63
    with pytest.raises(TypeError):
        record.resync = 1  # type: ignore[assignment]
    with pytest.raises(TypeError):
        record.ssrc = "1"  # type: ignore[assignment]


def test_a_route_counts_and_numbers_through_the_record() -> None:
    track = InTrack(track_id="t", session=None, kind=TrackKind.AUDIO, media="audio", mid="0", ssrc=1,
                    clock_rate=48000, codecs={111: ("opus", 48000, 2, "")}, ext={}, stream_id="s")
    route = OutRoute(track=track, receiver=None, ssrc=0xABCD, mid="", paused=False, ts_offset=7)
    assert (route.resync, route.seq_offset, route.last_seq, route.packets, route.octets) == (True, 0, 0, 0, 0)
    assert (route.ssrc, route.ts_offset) == (0xABCD, 7)
    route.packets += 1
    assert NativeRouteRecord.packets.__get__(route) == 1  # type: ignore[attr-defined]  # the C field itself


_CHILD = textwrap.dedent("""
    import pickle, sys
    sys.modules["callsd.adapters.media.native._engine"] = None  # the extension is not built
    sys.path.insert(0, sys.argv[1])
    from callsd.adapters.media.forwarder import InTrack, OutRoute
    from callsd.adapters.media.route_record import RouteRecordTwin
    from callsd.adapters.media.track_record import TrackRecordTwin
    from callsd.adapters.media.twcc_send import SequencerTwin, TransportSequencer
    assert issubclass(OutRoute, RouteRecordTwin), OutRoute.__mro__
    assert issubclass(InTrack, TrackRecordTwin), InTrack.__mro__
    assert issubclass(TransportSequencer, SequencerTwin), TransportSequencer.__mro__
    from hypothesis import HealthCheck, given, settings
    from native_support import run, scenarios
    results = []

    @settings(max_examples=int(sys.argv[2]), derandomize=True, database=None, deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(scenarios())
    def collect(sc):
        results.append((sc, run(sc, "python"), run(sc, "python", twcc=True)))

    collect()
    sys.stdout.buffer.write(pickle.dumps(results))
""")


def test_python_path_on_the_twin_matches_python_path_on_the_record() -> None:
    child = subprocess.run([sys.executable, "-c", _CHILD, str(TESTS), "12"], capture_output=True, timeout=300,
                           check=False)
    assert child.returncode == 0, child.stderr.decode()[-3000:]
    results = pickle.loads(child.stdout)  # noqa: S301 - our own child's output
    assert len(results) == 12
    routed = 0
    for scenario, on_twin, on_twin_twcc in results:
        on_record = run(scenario, "python")
        for key in on_twin:
            assert on_record[key] == on_twin[key], key
        assert run(scenario, "python", twcc=True) == on_twin_twcc
        routed += sum(packets for _, _, _, packets, _ in on_record["routes"])
    assert routed > 0, "the scenarios forwarded nothing: the comparison would be empty"
