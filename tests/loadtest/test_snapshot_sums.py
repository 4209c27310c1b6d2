"""`MediaEngine.snapshot` sums in one pass what the streams' properties and `MediaEngine.delivery` define: random
stream states (started or not, sampled or not, several streams of one sender at one user, senders the engine does
not know) give the same figures both ways. And the send tick visits exactly the registered legs with sources.
"""

from __future__ import annotations

import pytest
from callsd.peer import Identity, Leg, MediaEngine, Source
from callsd.peer.stats import StreamStats
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

T0 = 10**15
STOPPED = T0 + 7 * 10**9

stream_state = st.fixed_dictionaries({
    "started": st.booleans(),
    "base_seq": st.integers(0, 0xFFFF),
    "max_seq": st.integers(0, 0xFFFF),
    "cycles": st.sampled_from([0, 0x10000, 0x20000]),
    "received": st.integers(0, 5000),
    "sender": st.integers(-1, 5),
    "first_counter": st.integers(0, 4000),
    "last_counter": st.integers(0, 4000),
    "first_index": st.integers(0, 4000),
    "last_index": st.integers(0, 4000),
})


@pytest.fixture(scope="module")
def engine_and_legs() -> tuple[MediaEngine, list[Leg]]:
    engine = MediaEngine(Identity(), media="python")
    legs = [Leg(engine, user_number=n % 3, call_index=0, ufrag="u", pwd="p") for n in range(4)]
    for n in range(4):  # senders 0-3 known (4 and 5 are not), each started at its own time
        source = Source(kind="audio", ssrc=9000 + n, user_number=n)
        source.source_id = n
        source.started_ns = T0 + n * 10**9
        source.counter = 100 * n
        engine.add_source(source)
    return engine, legs


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(states=st.lists(st.lists(stream_state, max_size=5), min_size=4, max_size=4))
def test_snapshot_sums_what_the_properties_and_delivery_define(
        engine_and_legs: tuple[MediaEngine, list[Leg]], states: list[list[dict[str, int]]]) -> None:
    engine, legs = engine_and_legs
    engine.stopped_ns = STOPPED
    for leg, streams in zip(legs, states, strict=True):
        leg.streams = {}
        for i, fields in enumerate(streams):
            stats = StreamStats("audio", 48000)
            for name, value in fields.items():
                setattr(stats, name, value)
            leg.streams[i] = stats
    snap = engine.snapshot(legs)
    every = [s for leg in legs for s in leg.streams.values()]
    assert snap["expected"] == sum(s.expected for s in every)
    assert snap["received"] == sum(s.received for s in every)
    assert snap["lost"] == sum(s.lost for s in every)
    assert snap["e2e_expected"] == sum(s.e2e_expected for s in every)
    assert snap["e2e_lost"] == sum(s.e2e_lost for s in every)
    assert (snap["delivery_expected"], snap["delivery_lost"]) == engine.delivery(legs)


def test_the_send_tick_visits_the_registered_legs_with_sources() -> None:
    engine = MediaEngine(Identity(), media="python")
    listener = Leg(engine, user_number=0, call_index=0, ufrag="u", pwd="p")
    talker = Leg(engine, user_number=1, call_index=0, ufrag="u", pwd="p")
    assert engine.legs_with_sources == {}
    source = Source(kind="audio", ssrc=1, user_number=1)
    talker.add_source(source)
    talker.add_source(source)  # once
    assert talker.sources == [source]
    assert list(engine.legs_with_sources.values()) == [talker]
    talker.close()
    listener.close()
    assert engine.legs_with_sources == {} and engine.legs == {}
