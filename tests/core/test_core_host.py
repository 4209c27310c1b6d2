"""Host controls: make host, mute one or all, stop a share, lower a hand, remove, end the call."""

from __future__ import annotations

from typing import Any

import pytest
from callsd.core import (
    CallEnded,
    CancelTimer,
    Disconnect,
    HandLowered,
    HostChanged,
    HostEndCall,
    HostLowerHand,
    HostMute,
    HostMuteOthers,
    HostRemove,
    HostStopScreen,
    InputEvent,
    JoinCall,
    LeaveCall,
    LeaveReason,
    MakeHost,
    Muted,
    ParticipantLeft,
    PublishTrack,
    RaiseHand,
    Rejected,
    RejectReason,
    RoutePaused,
    RouteRemoved,
    ScreenOn,
    ScreenStopped,
    TrackKind,
    Unmute,
    reconnect_key,
)


def join(sid: str, channel: str = "ch") -> JoinCall:
    return JoinCall(at=0, channel_id=channel, session_id=sid, user_id=f"u-{sid}", call_id=f"k-{channel}")


@pytest.fixture
def abc(pb: Any) -> Any:
    assert (pb.quiet >> join("a") >> join("b") >> join("c")).pb
    return pb


def test_make_host_hands_the_role_over(abc: Any) -> None:
    assert (
        abc
        >> MakeHost(at=1, session_id="a", target="c")
        << HostChanged(channel_id="ch", host_id="c")
        >> MakeHost(at=2, session_id="a", target="b")
        << Rejected(session_id="a", command="MakeHost", reason=RejectReason.NOT_HOST)
        >> MakeHost(at=3, session_id="c", target="c")
    )
    assert abc.machine.host("ch") == "c"
    # The explicit host leaving passes the role by join order again.
    assert (
        abc
        >> LeaveCall(at=4, session_id="c")
        << ParticipantLeft(channel_id="ch", session_id="c", reason=LeaveReason.LEFT)
        << HostChanged(channel_id="ch", host_id="a")
    )


def test_host_mute_and_mute_others(abc: Any) -> None:
    for sid in "abc":
        assert (abc.quiet >> Unmute(at=1, session_id=sid)).pb
    assert (abc.quiet >> PublishTrack(at=1, session_id="c", track_id="mic", kind=TrackKind.AUDIO)).pb
    assert (
        abc
        >> HostMute(at=2, session_id="a", target="c")
        << Muted(channel_id="ch", session_id="c", by="a")
        << RoutePaused(channel_id="ch", track_id="mic", publisher_id="c", receiver_id="a")
        << RoutePaused(channel_id="ch", track_id="mic", publisher_id="c", receiver_id="b")
        >> HostMuteOthers(at=3, session_id="a")
        << Muted(channel_id="ch", session_id="b", by="a")
    )
    assert not abc.machine.participant("a").muted


def test_host_stops_a_share_and_lowers_a_hand(abc: Any) -> None:
    assert (
        abc
        >> HostStopScreen(at=1, session_id="a")
        << Rejected(session_id="a", command="HostStopScreen", reason=RejectReason.NOT_SHARING)
    )
    assert (abc.quiet >> ScreenOn(at=1, session_id="b", stream_id="s") >> RaiseHand(at=2, session_id="c")).pb
    assert (
        abc
        >> HostStopScreen(at=3, session_id="a")
        << ScreenStopped(channel_id="ch", session_id="b", by="a")
        >> HostLowerHand(at=4, session_id="a", target="c")
        << HandLowered(channel_id="ch", session_id="c", by="a")
        >> HostLowerHand(at=5, session_id="a", target="c")
    )


def test_host_remove_takes_the_target_out(abc: Any) -> None:
    assert (abc.quiet >> PublishTrack(at=1, session_id="b", track_id="cam", kind=TrackKind.VIDEO)).pb
    assert (
        abc
        >> HostRemove(at=2, session_id="a", target="b")
        << RouteRemoved(channel_id="ch", track_id="cam", publisher_id="b", receiver_id="a")
        << RouteRemoved(channel_id="ch", track_id="cam", publisher_id="b", receiver_id="c")
        << ParticipantLeft(channel_id="ch", session_id="b", reason=LeaveReason.REMOVED)
    )
    assert abc.machine.sessions("ch") == ("a", "c")
    assert abc.machine.channel_of("b") is None


def test_host_end_call_removes_everyone_then_ends_it(abc: Any) -> None:
    assert (abc.quiet >> Disconnect(at=5, session_id="c")).pb
    assert (
        abc
        >> HostEndCall(at=100, session_id="a")
        << ParticipantLeft(channel_id="ch", session_id="a", reason=LeaveReason.CALL_ENDED)
        << ParticipantLeft(channel_id="ch", session_id="b", reason=LeaveReason.CALL_ENDED)
        << CancelTimer(key=reconnect_key("c"))
        << ParticipantLeft(channel_id="ch", session_id="c", reason=LeaveReason.CALL_ENDED)
        << CallEnded(channel_id="ch", call_id="k-ch", at=100, duration_ms=100, participants=("a", "b", "c"))
    )
    assert abc.machine.calls() == ()
    assert abc.machine.timers() == {}


@pytest.mark.parametrize(
    "event",
    [
        MakeHost(at=1, session_id="b", target="c"), HostMute(at=1, session_id="b", target="c"),
        HostMuteOthers(at=1, session_id="b"), HostStopScreen(at=1, session_id="b"),
        HostLowerHand(at=1, session_id="b", target="c"), HostRemove(at=1, session_id="b", target="c"),
        HostEndCall(at=1, session_id="b"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_non_hosts_are_refused_and_nothing_changes(abc: Any, event: InputEvent) -> None:
    before = abc.machine.snapshot()
    assert abc.machine.handle(event) == [
        Rejected(session_id="b", command=type(event).__name__, reason=RejectReason.NOT_HOST)
    ]
    assert abc.machine.snapshot() == before


@pytest.mark.parametrize("target", ["ghost", "x"])
def test_targets_must_be_in_the_hosts_call(abc: Any, target: str) -> None:
    assert (abc.quiet >> join("x", channel="other")).pb
    before = abc.machine.snapshot()
    for event in [MakeHost(at=1, session_id="a", target=target), HostRemove(at=1, session_id="a", target=target)]:
        assert abc.machine.handle(event) == [
            Rejected(session_id="a", command=type(event).__name__, reason=RejectReason.UNKNOWN_TARGET)
        ]
    assert abc.machine.snapshot() == before
