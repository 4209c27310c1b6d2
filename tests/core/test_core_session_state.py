"""Per-session state (mute, hand, camera, reactions), screen sharing and reconnects, as playbooks."""

from __future__ import annotations

from typing import Any

import pytest
from callsd.core import (
    CallEnded,
    CancelTimer,
    Configure,
    Disconnect,
    HandLowered,
    HandRaised,
    InputEvent,
    JoinCall,
    LeaveCall,
    LeaveReason,
    LocalProtocolError,
    LowerHand,
    Mute,
    Muted,
    ParticipantDisconnected,
    ParticipantLeft,
    ParticipantReconnected,
    PublishTrack,
    RaiseHand,
    React,
    Reacted,
    Reconnect,
    Rejected,
    RejectReason,
    ScreenOff,
    ScreenOn,
    ScreenStarted,
    ScreenStopped,
    StartTimer,
    TimerFired,
    TrackKind,
    Unmute,
    Unmuted,
    VideoOff,
    VideoOn,
    VideoStarted,
    VideoStopped,
    reconnect_key,
)


def join(sid: str, at: int = 0, channel: str = "ch") -> JoinCall:
    return JoinCall(at=at, channel_id=channel, session_id=sid, user_id=f"u-{sid}", call_id="k")


def test_mute_unmute_are_idempotent(pb: Any) -> None:
    assert (pb.quiet >> join("a")).pb
    assert (
        pb
        >> Mute(at=1, session_id="a")
        >> Unmute(at=2, session_id="a")
        << Unmuted(channel_id="ch", session_id="a")
        >> Unmute(at=3, session_id="a")
        >> Mute(at=4, session_id="a")
        << Muted(channel_id="ch", session_id="a", by="a")
    )


def test_raising_a_hand_records_when_and_lowering_clears_it(pb: Any) -> None:
    assert (pb.quiet >> join("a")).pb
    assert (
        pb
        >> RaiseHand(at=500, session_id="a")
        << HandRaised(channel_id="ch", session_id="a", raised_at=500)
        >> RaiseHand(at=900, session_id="a")
    )
    view = pb.machine.participant("a")
    assert view.hand_raised_at == 500
    assert (
        pb
        >> LowerHand(at=1000, session_id="a")
        << HandLowered(channel_id="ch", session_id="a", by="a")
        >> LowerHand(at=1001, session_id="a")
    )
    assert pb.machine.participant("a").hand_raised_at is None


def test_camera_on_off_and_reactions(pb: Any) -> None:
    assert (pb.quiet >> join("a")).pb
    assert (
        pb
        >> VideoOn(at=1, session_id="a")
        << VideoStarted(channel_id="ch", session_id="a")
        >> VideoOn(at=2, session_id="a")
        >> VideoOff(at=3, session_id="a")
        << VideoStopped(channel_id="ch", session_id="a")
        >> React(at=4, session_id="a", emoji="🎉")
        << Reacted(channel_id="ch", session_id="a", emoji="🎉")
    )
    before = pb.machine.snapshot()
    pb.machine.handle(React(at=5, session_id="a", emoji="👍"))
    assert pb.machine.snapshot() == before  # reactions are not state


def test_at_most_one_screen_sharer_per_call(pb: Any) -> None:
    assert (pb.quiet >> join("a") >> join("b") >> join("x", channel="other")).pb
    assert (
        pb
        >> ScreenOn(at=1, session_id="a", stream_id="st-a")
        << ScreenStarted(channel_id="ch", session_id="a", stream_id="st-a")
        >> ScreenOn(at=2, session_id="b", stream_id="st-b")
        << Rejected(session_id="b", command="ScreenOn", reason=RejectReason.SCREEN_ALREADY_SHARED)
        >> ScreenOn(at=2, session_id="a", stream_id="st-a2")
        << Rejected(session_id="a", command="ScreenOn", reason=RejectReason.SCREEN_ALREADY_SHARED)
        >> ScreenOn(at=2, session_id="x", stream_id="st-x")  # another call has its own share
        << ScreenStarted(channel_id="other", session_id="x", stream_id="st-x")
        >> ScreenOff(at=3, session_id="b")
        << Rejected(session_id="b", command="ScreenOff", reason=RejectReason.NOT_SHARING)
        >> ScreenOff(at=4, session_id="a")
        << ScreenStopped(channel_id="ch", session_id="a", by="a")
        >> ScreenOn(at=5, session_id="b", stream_id="st-b")
        << ScreenStarted(channel_id="ch", session_id="b", stream_id="st-b")
    )
    assert pb.machine.call("ch").screen_sharer == "b"
    assert pb.machine.call("ch").screen_stream_id == "st-b"


def test_screen_sharing_can_be_disabled(pb: Any) -> None:
    assert (pb.quiet >> join("a") >> Configure(at=0, allow_screen_sharing=False)).pb
    assert (
        pb
        >> ScreenOn(at=1, session_id="a", stream_id="s")
        << Rejected(session_id="a", command="ScreenOn", reason=RejectReason.SCREEN_SHARING_DISABLED)
    )


def test_the_sharer_leaving_ends_the_share(pb: Any) -> None:
    assert (pb.quiet >> join("a") >> join("b") >> ScreenOn(at=1, session_id="b", stream_id="s")).pb
    assert (
        pb
        >> LeaveCall(at=2, session_id="b")
        << ScreenStopped(channel_id="ch", session_id="b", by="b")
        << ParticipantLeft(channel_id="ch", session_id="b", reason=LeaveReason.LEFT)
    )
    assert pb.machine.call("ch").screen_sharer is None


def test_reconnect_within_the_window_keeps_the_session(pb: Any) -> None:
    assert (pb.quiet >> Configure(at=0, reconnect_window_ms=10_000) >> join("a") >> join("b")).pb
    assert (pb.quiet >> PublishTrack(at=0, session_id="b", track_id="cam", kind=TrackKind.VIDEO)).pb
    key = reconnect_key("b")
    assert (
        pb
        >> Disconnect(at=1000, session_id="b")
        << ParticipantDisconnected(channel_id="ch", session_id="b")
        << StartTimer(key=key, deadline=11_000)
    )
    view = pb.machine.participant("b")
    assert not view.connected
    assert pb.machine.timers() == {key: 11_000}
    assert len(pb.machine.routes()) == 1  # routes are kept (not paused) while disconnected
    assert (
        pb
        >> Reconnect(at=5000, session_id="b")
        << CancelTimer(key=key)
        << ParticipantReconnected(channel_id="ch", session_id="b")
        >> TimerFired(at=11_000, key=key)  # a stale timer that raced the reconnect does nothing
    )
    assert pb.machine.participant("b").connected
    assert pb.machine.timers() == {}


def test_the_timer_removes_a_session_that_did_not_come_back(pb: Any) -> None:
    assert (pb.quiet >> Configure(at=0, reconnect_window_ms=10_000) >> join("a", at=0)).pb
    key = reconnect_key("a")
    assert (pb.quiet >> Disconnect(at=1000, session_id="a")).pb
    before = pb.machine.snapshot()
    with pytest.raises(LocalProtocolError, match="early: the timer is due at 11000 ms"):
        pb.machine.handle(TimerFired(at=10_999, key=key))  # an adapter bug, said loudly; the timer stays armed
    assert pb.machine.snapshot() == before
    assert pb.machine.timers() == {key: 11_000}
    assert (
        pb
        >> TimerFired(at=11_000, key=key)
        << CancelTimer(key=key)
        << ParticipantLeft(channel_id="ch", session_id="a", reason=LeaveReason.TIMED_OUT)
        << CallEnded(channel_id="ch", call_id="k", at=11_000, duration_ms=11_000, participants=("a",))
        >> TimerFired(at=12_000, key=key)  # after the session is gone: ignored
    )


def test_a_disconnected_session_can_leave_but_not_act(pb: Any) -> None:
    assert (pb.quiet >> join("a") >> join("b") >> Disconnect(at=1, session_id="b")).pb
    before = pb.machine.snapshot()
    rejected = [
        Mute(at=2, session_id="b"), Unmute(at=2, session_id="b"), RaiseHand(at=2, session_id="b"),
        ScreenOn(at=2, session_id="b", stream_id="s"), Disconnect(at=2, session_id="b"),
        PublishTrack(at=2, session_id="b", track_id="t", kind=TrackKind.AUDIO),
    ]
    for event in rejected:
        assert pb.machine.handle(event) == [
            Rejected(session_id="b", command=type(event).__name__, reason=RejectReason.DISCONNECTED)
        ]
    assert pb.machine.handle(Reconnect(at=2, session_id="a")) == [
        Rejected(session_id="a", command="Reconnect", reason=RejectReason.NOT_DISCONNECTED)
    ]
    assert pb.machine.snapshot() == before
    assert (
        pb
        >> LeaveCall(at=3, session_id="b")
        << CancelTimer(key=reconnect_key("b"))
        << ParticipantLeft(channel_id="ch", session_id="b", reason=LeaveReason.LEFT)
    )
    assert pb.machine.timers() == {}


@pytest.mark.parametrize(
    "event",
    [
        Mute(at=0, session_id="ghost"), Unmute(at=0, session_id="ghost"), RaiseHand(at=0, session_id="ghost"),
        LowerHand(at=0, session_id="ghost"), VideoOn(at=0, session_id="ghost"), VideoOff(at=0, session_id="ghost"),
        ScreenOn(at=0, session_id="ghost", stream_id="s"), ScreenOff(at=0, session_id="ghost"),
        React(at=0, session_id="ghost", emoji="x"), Disconnect(at=0, session_id="ghost"),
        Reconnect(at=0, session_id="ghost"), LeaveCall(at=0, session_id="ghost"),
        PublishTrack(at=0, session_id="ghost", track_id="t", kind=TrackKind.AUDIO),
    ],
    ids=lambda e: type(e).__name__,
)
def test_a_session_not_in_a_call_gets_exactly_one_rejection(pb: Any, event: InputEvent) -> None:
    assert (pb.quiet >> join("a")).pb
    before = pb.machine.snapshot()
    assert pb.machine.handle(event) == [
        Rejected(session_id="ghost", command=type(event).__name__, reason=RejectReason.NOT_IN_CALL)
    ]
    assert pb.machine.snapshot() == before
