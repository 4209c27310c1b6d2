"""Call lifecycle, joins, leaves, host passing and limits, as playbooks (inputs >> expected outputs)."""

from __future__ import annotations

from typing import Any

import pytest
from callsd.core import (
    CallEnded,
    CallsMachine,
    CallStarted,
    ConfigChanged,
    Configure,
    HostChanged,
    InputEvent,
    JoinCall,
    LeaveCall,
    LeaveReason,
    LocalProtocolError,
    ParticipantJoined,
    ParticipantLeft,
    Rejected,
    RejectReason,
)


def join(sid: str, at: int = 0, channel: str = "ch", user: str | None = None, call: str = "call1") -> JoinCall:
    return JoinCall(at=at, channel_id=channel, session_id=sid, user_id=user or f"user-{sid}", call_id=call)


def test_first_join_starts_the_call_and_last_leave_ends_it(pb: Any) -> None:
    assert (
        pb
        >> join("a", at=1000)
        << CallStarted(channel_id="ch", call_id="call1", at=1000, host_id="a")
        << ParticipantJoined(channel_id="ch", session_id="a", user_id="user-a")
        >> join("b", at=2000, call="ignored")
        << ParticipantJoined(channel_id="ch", session_id="b", user_id="user-b")
        >> LeaveCall(at=3000, session_id="b")
        << ParticipantLeft(channel_id="ch", session_id="b", reason=LeaveReason.LEFT)
        >> LeaveCall(at=9000, session_id="a")
        << ParticipantLeft(channel_id="ch", session_id="a", reason=LeaveReason.LEFT)
        << CallEnded(channel_id="ch", call_id="call1", at=9000, duration_ms=8000, participants=("a", "b"))
    )
    assert pb.machine.calls() == ()
    assert pb.machine.host("ch") is None


def test_joining_the_ongoing_call_needs_no_call_id(pb: Any) -> None:
    """``call_id`` names a call this join starts; joining an ongoing call leaves it out, and a join that asks for
    the ongoing call of a channel with none is refused (``no_call``) instead of starting a call without an id."""
    assert (
        pb
        >> JoinCall(at=1, channel_id="ch", session_id="a", user_id="u-a")
        << Rejected(session_id="a", command="JoinCall", reason=RejectReason.NO_CALL)
        >> join("a", at=2)
        << CallStarted(channel_id="ch", call_id="call1", at=2, host_id="a")
        << ParticipantJoined(channel_id="ch", session_id="a", user_id="user-a")
        >> JoinCall(at=3, channel_id="ch", session_id="b", user_id="u-b")
        << ParticipantJoined(channel_id="ch", session_id="b", user_id="u-b")
    )
    assert pb.machine.call("ch").call_id == "call1"


def test_call_ended_lists_every_session_once_in_first_join_order(pb: Any) -> None:
    assert (
        pb.quiet
        >> join("a")
        >> join("b")
        >> LeaveCall(at=1, session_id="a")
        >> join("c")
        >> join("a", at=2)
        >> LeaveCall(at=3, session_id="b")
        >> LeaveCall(at=3, session_id="c")
    ).pb
    assert (
        pb
        >> LeaveCall(at=5, session_id="a")
        << ParticipantLeft(channel_id="ch", session_id="a", reason=LeaveReason.LEFT)
        << CallEnded(channel_id="ch", call_id="call1", at=5, duration_ms=5, participants=("a", "b", "c"))
    )


def test_sessions_join_muted_and_the_earliest_joined_is_host(pb: Any) -> None:
    assert (pb.quiet >> join("a") >> join("b") >> join("c")).pb
    m: CallsMachine = pb.machine
    assert m.sessions("ch") == ("a", "b", "c")
    assert m.host("ch") == "a"
    view = m.participant("b")
    assert view is not None and view.muted and not view.video and view.hand_raised_at is None
    assert view.connected and not view.host and not view.screen


def test_host_leaving_passes_the_role_to_the_earliest_joined_remaining(pb: Any) -> None:
    assert (pb.quiet >> join("a") >> join("b") >> join("c")).pb
    assert (
        pb
        >> LeaveCall(at=10, session_id="a")
        << ParticipantLeft(channel_id="ch", session_id="a", reason=LeaveReason.LEFT)
        << HostChanged(channel_id="ch", host_id="b")
        >> LeaveCall(at=11, session_id="c")
        << ParticipantLeft(channel_id="ch", session_id="c", reason=LeaveReason.LEFT)
    )
    assert pb.machine.host("ch") == "b"


def test_a_session_is_in_one_call_at_a_time(pb: Any) -> None:
    assert (pb.quiet >> join("a")).pb
    before = pb.machine.snapshot()
    assert (
        pb
        >> join("a", channel="other")
        << Rejected(session_id="a", command="JoinCall", reason=RejectReason.ALREADY_IN_CALL)
        >> join("a")
        << Rejected(session_id="a", command="JoinCall", reason=RejectReason.ALREADY_IN_CALL)
    )
    assert pb.machine.snapshot() == before


def test_a_user_may_have_several_sessions(pb: Any) -> None:
    assert (
        pb
        >> join("a1", user="alice")
        << CallStarted(channel_id="ch", call_id="call1", at=0, host_id="a1")
        << ParticipantJoined(channel_id="ch", session_id="a1", user_id="alice")
        >> join("a2", user="alice", channel="other", call="call2")
        << CallStarted(channel_id="other", call_id="call2", at=0, host_id="a2")
        << ParticipantJoined(channel_id="other", session_id="a2", user_id="alice")
    )


def test_calls_in_different_channels_are_independent(pb: Any) -> None:
    assert (pb.quiet >> join("a") >> join("x", channel="other", call="c2")).pb
    assert pb.machine.sessions("ch") == ("a",)
    assert pb.machine.sessions("other") == ("x",)
    assert [c.call_id for c in pb.machine.calls()] == ["call1", "c2"]


def test_a_join_past_the_limit_is_refused_and_changes_nothing(pb: Any) -> None:
    assert (
        pb
        >> Configure(at=0, max_participants=2)
        << ConfigChanged(max_participants=2, reconnect_window_ms=30_000, allow_screen_sharing=True)
    )
    assert (pb.quiet >> join("a") >> join("b")).pb
    before = pb.machine.snapshot()
    assert pb >> join("c") << Rejected(session_id="c", command="JoinCall", reason=RejectReason.CALL_FULL)
    assert pb.machine.snapshot() == before
    # Another channel has its own count; a leave frees a place.
    assert (pb.quiet >> join("c", channel="other") >> LeaveCall(at=1, session_id="a")).pb
    assert (
        pb
        >> join("d")
        << ParticipantJoined(channel_id="ch", session_id="d", user_id="user-d")
    )


def test_zero_means_unlimited(pb: Any) -> None:
    assert (pb.quiet >> Configure(at=0, max_participants=0)).pb
    for i in range(50):
        pb.machine.handle(join(f"s{i}"))
    assert len(pb.machine.sessions("ch")) == 50


@pytest.mark.parametrize("command", [LeaveCall(at=0, session_id="ghost")])
def test_commands_from_a_session_not_in_a_call_are_rejected(pb: Any, command: InputEvent) -> None:
    assert pb >> command << Rejected(session_id="ghost", command="LeaveCall", reason=RejectReason.NOT_IN_CALL)


def test_an_input_type_the_machine_does_not_know_raises() -> None:
    class Bogus(InputEvent):
        pass

    with pytest.raises(LocalProtocolError, match="Bogus"):
        CallsMachine().handle(Bogus(at=0))


def test_malformed_events_raise_when_built() -> None:
    with pytest.raises(LocalProtocolError):
        JoinCall(at=-1, channel_id="c", session_id="s", user_id="u", call_id="k")
    with pytest.raises(LocalProtocolError):
        JoinCall(at=0, channel_id="", session_id="s", user_id="u", call_id="k")


def test_every_input_type_has_a_transition_with_guards_as_data() -> None:
    from callsd.core import INPUT_TYPES, TRANSITIONS, Guard

    assert set(TRANSITIONS) == set(INPUT_TYPES.values())
    for cls, row in TRANSITIONS.items():
        assert all(isinstance(g, Guard) for g in row.guards)
        if row.guards:
            assert row.guards[0] is Guard.IN_CALL, cls.__name__
        if Guard.TARGET in row.guards:
            assert "target" in cls.__dataclass_fields__, cls.__name__


def test_a_new_reconnect_window_applies_to_later_disconnects_only(pb: Any) -> None:
    from callsd.core import Disconnect, StartTimer

    assert (pb.quiet >> join("a") >> join("b") >> Disconnect(at=100, session_id="a")).pb
    assert (
        pb
        >> Configure(at=200, reconnect_window_ms=5_000)
        << ConfigChanged(max_participants=0, reconnect_window_ms=5_000, allow_screen_sharing=True)
        >> Disconnect(at=300, session_id="b")
        << ParticipantDisconnectedFor("b")
        << StartTimer(key="reconnect:b", deadline=5_300)
    )
    assert pb.machine.timers() == {"reconnect:a": 30_100, "reconnect:b": 5_300}


def ParticipantDisconnectedFor(sid: str) -> Any:  # noqa: N802 - reads like the output it builds
    from callsd.core import ParticipantDisconnected

    return ParticipantDisconnected(channel_id="ch", session_id=sid)


def test_a_page_going_away_keeps_its_place_briefly_and_a_reload_resumes_it(pb: Any) -> None:
    from callsd.core import CancelTimer, GoingAway, ParticipantReconnected, Reconnect, StartTimer, TimerFired

    assert (pb.quiet >> join("a") >> join("b") >> join("c")).pb
    assert (
        pb
        >> GoingAway(at=1_000, session_id="b", keep_ms=3_000)  # a reload: back within 3 s
        << ParticipantDisconnectedFor("b")
        << StartTimer(key="reconnect:b", deadline=4_000)
        >> Reconnect(at=2_500, session_id="b")
        << CancelTimer(key="reconnect:b")
        << ParticipantReconnected(channel_id="ch", session_id="b")
        >> GoingAway(at=5_000, session_id="c", keep_ms=3_000)  # a closed tab: gone 3 s later
        << ParticipantDisconnectedFor("c")
        << StartTimer(key="reconnect:c", deadline=8_000)
        >> TimerFired(at=8_000, key="reconnect:c")
        << CancelTimer(key="reconnect:c")
        << ParticipantLeft(channel_id="ch", session_id="c", reason=LeaveReason.TIMED_OUT)
    )


def test_going_away_never_keeps_a_place_longer_than_the_reconnect_window(pb: Any) -> None:
    from callsd.core import GoingAway, StartTimer

    assert (pb.quiet >> Configure(at=0, reconnect_window_ms=2_000) >> join("a") >> join("b")).pb
    assert (
        pb
        >> GoingAway(at=100, session_id="a", keep_ms=60_000)
        << ParticipantDisconnectedFor("a")
        << StartTimer(key="reconnect:a", deadline=2_100)
    )
    with pytest.raises(LocalProtocolError):
        GoingAway(at=0, session_id="a", keep_ms=-1)
