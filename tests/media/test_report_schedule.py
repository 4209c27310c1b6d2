"""The RTCP round spread over the reporting interval (issue 13, docs/adr/0042).

The server used to send every session's reports in one burst a second; now each session owns one tick of the
interval. What a client observes: its reports still arrive once per interval, and the server's reports as a whole
arrive spread over the interval instead of all at one instant.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import pytest
import trio
import trio.testing
from callsd.adapters.media import plane_rtcp
from callsd.adapters.media.forwarder import ForwarderCounters
from callsd.adapters.media.plane import MediaPlane, PlaneConfig
from callsd.adapters.media.report_schedule import REPORT_SLOTS, ReportSchedule
from callsd.core.wire import rtcp
from hypothesis import given, settings
from hypothesis import strategies as st


class RecordingPeer:
    """A connected client as the plane's reporting round sees it: records when each RTCP packet left."""

    def __init__(self, session_id: str) -> None:
        self.session_id = session_id
        self.sent_at: list[float] = []
        self.packets: list[bytes] = []

    def send_rtcp(self, plain: bytes) -> bool:
        try:
            self.sent_at.append(trio.current_time())
        except RuntimeError:  # a round called outside trio (the synchronous tests)
            self.sent_at.append(0.0)
        self.packets.append(plain)
        return True


def test_slots_stay_balanced_and_every_member_is_due_once_per_interval() -> None:
    schedule: ReportSchedule[str] = ReportSchedule(10)
    for i in range(803):
        schedule.add(f"s{i}", f"s{i}")
    served: list[str] = []
    sizes = []
    for _ in range(10):
        due = schedule.due()
        sizes.append(len(due))
        served += due
    assert sorted(served) == sorted(f"s{i}" for i in range(803))
    assert max(sizes) - min(sizes) <= 1 and max(sizes) == 81


def test_a_schedule_needs_a_slot() -> None:
    with pytest.raises(ValueError, match="at least one slot"):
        ReportSchedule(0)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(st.tuples(st.just("add"), st.integers(0, 30)),
                          st.tuples(st.just("remove"), st.integers(0, 30)),
                          st.tuples(st.just("tick"), st.just(0))), max_size=200),
       st.integers(1, 12))
def test_a_member_present_for_a_whole_interval_is_due_exactly_once_in_it(ops: list[tuple[str, int]],
                                                                          slots: int) -> None:
    """Joins and leaves between ticks: whoever stays through ``slots`` consecutive ticks is served once in them."""
    schedule: ReportSchedule[tuple[int, int]] = ReportSchedule(slots)
    present: dict[int, tuple[int, int]] = {}  # key -> (key, how many times it was added): a re-join is a new member
    ticks: list[tuple[frozenset[tuple[int, int]], list[tuple[int, int]]]] = []  # (present at the tick, served)
    for n, (op, key) in enumerate(ops):
        if op == "add" and key not in present:
            present[key] = (key, n)
            schedule.add(str(key), present[key])
        elif op == "remove" and key in present:
            schedule.remove(str(key))
            del present[key]
        elif op == "tick":
            ticks.append((frozenset(present.values()), schedule.due()))
    for members, served in ticks:
        assert len(served) == len(set(served)) and set(served) <= members
    for start in range(len(ticks) - slots + 1):
        window = ticks[start : start + slots]
        stayed = frozenset.intersection(*(members for members, _ in window))
        served = [m for _, due in window for m in due]
        for member in stayed:
            assert served.count(member) == 1, (member, start)
    assert len(schedule) == len(present)


def _plane_with_peers(count: int) -> tuple[MediaPlane, list[RecordingPeer]]:
    plane = MediaPlane(PlaneConfig(ice_port_udp=0, fast_path="python"), lambda e: None)
    peers = []
    for i in range(count):
        sid = f"s{i}"
        plane.open_session(sid, "ch")
        peer = RecordingPeer(sid)
        plane.sessions[sid].peer = peer  # type: ignore[assignment]
        peers.append(peer)
    return plane, peers


def test_many_sessions_report_once_per_interval_spread_across_it() -> None:
    """200 sessions, 3 s of the plane's report ticks on a virtual clock: every session's reports arrive one per
    second; no instant carries more than a slot's share, and the server's reports cover every tick."""
    plane, peers = _plane_with_peers(200)

    async def run() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(plane._report_ticks)  # noqa: SLF001 - the loop under test, on a virtual clock
            await trio.sleep(3.05)
            nursery.cancel_scope.cancel()

    trio.run(run, clock=trio.testing.MockClock(autojump_threshold=0))
    by_instant: dict[float, int] = defaultdict(int)
    for peer in peers:
        assert len(peer.sent_at) == 3, peer.session_id  # an empty RR each second: nothing to report yet
        gaps = [b - a for a, b in zip(peer.sent_at, peer.sent_at[1:], strict=False)]
        assert gaps == [pytest.approx(1.0)] * 2
        for at in peer.sent_at:
            by_instant[round(at, 6)] += 1
        assert all(isinstance(p, rtcp.ReceiverReport) for raw in peer.packets for p in rtcp.parse_rtcp(raw))
    assert len(by_instant) == 3 * REPORT_SLOTS
    assert max(by_instant.values()) == 200 // REPORT_SLOTS
    assert plane.forwarder.counters.rtcp_out == 600


def test_a_session_that_joins_late_or_leaves_keeps_the_rule() -> None:
    """A session opened mid-interval gets its first report within one interval; a closed one gets none after."""
    plane, peers = _plane_with_peers(20)

    async def run() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(plane._report_ticks)  # noqa: SLF001
            await trio.sleep(1.03)
            plane.open_session("late", "ch")
            late = RecordingPeer("late")
            plane.sessions["late"].peer = late  # type: ignore[assignment]
            peers.append(late)
            plane.close_session("s0")
            closed_at = trio.current_time()
            await trio.sleep(2.0)
            nursery.cancel_scope.cancel()
            assert late.sent_at and late.sent_at[0] - 1.03 <= 1.0 and len(late.sent_at) == 2
            assert all(at < closed_at for at in peers[0].sent_at)

    trio.run(run, clock=trio.testing.MockClock(autojump_threshold=0))


def test_the_whole_round_and_the_ticks_send_the_same_reports() -> None:
    """``send_reports`` (all at once) and ``slots`` ticks reach the same sessions with the same packets."""
    plane, peers = _plane_with_peers(37)
    plane.send_reports()
    for _ in range(REPORT_SLOTS):
        plane.send_due_reports()
    for peer in peers:
        assert len(peer.packets) == 2 and peer.packets[0] == peer.packets[1]


def test_the_round_counts_what_it_hands_over() -> None:
    counters = ForwarderCounters()
    sent: list[tuple[object, bytes]] = []
    plane, _ = _plane_with_peers(5)
    plane_rtcp.send_reports(plane.sessions.values(), counters, send=sent.extend)
    assert counters.rtcp_out == 5 == len(sent)


def test_a_loop_held_longer_than_an_interval_restarts_the_grid_instead_of_a_burst() -> None:
    """The loop is held for 2.5 s during one tick (the virtual clock jumps): the missed ticks are not all sent
    at once afterwards; each session again gets one report per interval."""
    plane, peers = _plane_with_peers(30)
    clock = trio.testing.MockClock(autojump_threshold=0)
    held = [False]

    def hold_once() -> None:
        if not held[0]:
            held[0] = True
            clock.jump(2.5)

    original = plane.endpoint.send_rtcp_round

    def send_round(packets: list[tuple[Any, bytes]]) -> None:
        original(packets)
        hold_once()

    plane.endpoint.send_rtcp_round = send_round  # type: ignore[method-assign]

    async def run() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(plane._report_ticks)  # noqa: SLF001
            await trio.sleep(5.0)
            nursery.cancel_scope.cancel()

    trio.run(run, clock=clock)
    assert held[0]
    for peer in peers:
        times = sorted(peer.sent_at)
        assert all(b - a >= 1.0 - 1e-6 for a, b in zip(times, times[1:], strict=False)), (peer.session_id, times)
