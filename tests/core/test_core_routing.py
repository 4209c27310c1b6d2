"""Track routing: every participant receives every other participant's tracks, never its own."""

from __future__ import annotations

from typing import Any

from callsd.core import (
    JoinCall,
    LeaveCall,
    LeaveReason,
    Mute,
    Muted,
    ParticipantJoined,
    ParticipantLeft,
    PublishTrack,
    Rejected,
    RejectReason,
    Route,
    RouteAdded,
    RoutePaused,
    RouteRemoved,
    RouteResumed,
    TrackKind,
    Unmute,
    Unmuted,
    UnpublishTrack,
)

A, V = TrackKind.AUDIO, TrackKind.VIDEO


def join(sid: str, at: int = 0) -> JoinCall:
    return JoinCall(at=at, channel_id="ch", session_id=sid, user_id=f"u-{sid}", call_id="k")


def pub(sid: str, track: str, kind: TrackKind) -> PublishTrack:
    return PublishTrack(at=0, session_id=sid, track_id=track, kind=kind)


def added(track: str, kind: TrackKind, pub: str, rcv: str, paused: bool) -> RouteAdded:
    return RouteAdded(channel_id="ch", track_id=track, kind=kind, publisher_id=pub, receiver_id=rcv, paused=paused)


def removed(track: str, pub: str, rcv: str) -> RouteRemoved:
    return RouteRemoved(channel_id="ch", track_id=track, publisher_id=pub, receiver_id=rcv)


def test_publishing_routes_to_every_other_session_paused_while_muted(pb: Any) -> None:
    assert (pb.quiet >> join("a") >> join("b") >> join("c")).pb
    assert (
        pb
        >> pub("b", "b-mic", A)
        << added("b-mic", A, "b", "a", paused=True)
        << added("b-mic", A, "b", "c", paused=True)
        >> pub("b", "b-cam", V)
        << added("b-cam", V, "b", "a", paused=False)
        << added("b-cam", V, "b", "c", paused=False)
    )


def test_a_later_joiner_gets_every_existing_track_of_the_others(pb: Any) -> None:
    assert (pb.quiet >> join("a") >> join("b") >> pub("a", "a-mic", A) >> Unmute(at=0, session_id="a")).pb
    assert (pb.quiet >> pub("b", "b-cam", V) >> pub("a", "a-cam", V)).pb
    assert (
        pb
        >> join("c")
        << ParticipantJoined(channel_id="ch", session_id="c", user_id="u-c")
        << added("a-mic", A, "a", "c", paused=False)
        << added("a-cam", V, "a", "c", paused=False)
        << added("b-cam", V, "b", "c", paused=False)
    )


def test_mute_pauses_only_audio_routes_and_unmute_resumes_them(pb: Any) -> None:
    assert (pb.quiet >> join("a") >> join("b") >> join("c") >> pub("a", "mic", A) >> pub("a", "cam", V)).pb
    assert (
        pb
        >> Unmute(at=1, session_id="a")
        << Unmuted(channel_id="ch", session_id="a")
        << RouteResumed(channel_id="ch", track_id="mic", publisher_id="a", receiver_id="b")
        << RouteResumed(channel_id="ch", track_id="mic", publisher_id="a", receiver_id="c")
        >> Unmute(at=2, session_id="a")
        >> Mute(at=3, session_id="a")
        << Muted(channel_id="ch", session_id="a", by="a")
        << RoutePaused(channel_id="ch", track_id="mic", publisher_id="a", receiver_id="b")
        << RoutePaused(channel_id="ch", track_id="mic", publisher_id="a", receiver_id="c")
    )


def test_unpublish_and_leave_remove_routes_in_both_directions(pb: Any) -> None:
    assert (pb.quiet >> join("a") >> join("b") >> join("c") >> pub("a", "mic", A) >> pub("b", "cam", V)).pb
    assert (
        pb
        >> UnpublishTrack(at=1, session_id="a", track_id="mic")
        << removed("mic", "a", "b")
        << removed("mic", "a", "c")
        >> pub("c", "c-mic", A)
        << added("c-mic", A, "c", "a", paused=True)
        << added("c-mic", A, "c", "b", paused=True)
        >> LeaveCall(at=2, session_id="b")
        << removed("cam", "b", "a")
        << removed("cam", "b", "c")
        << removed("c-mic", "c", "b")
        << ParticipantLeft(channel_id="ch", session_id="b", reason=LeaveReason.LEFT)
    )
    assert pb.machine.routes() == [
        Route(channel_id="ch", track_id="c-mic", kind=A, publisher_id="c", receiver_id="a", paused=True)
    ]


def test_duplicate_and_unknown_tracks_are_rejected(pb: Any) -> None:
    assert (pb.quiet >> join("a") >> join("b") >> pub("a", "mic", A)).pb
    before = pb.machine.snapshot()
    assert (
        pb
        >> pub("a", "mic", V)
        << Rejected(session_id="a", command="PublishTrack", reason=RejectReason.DUPLICATE_TRACK)
        >> UnpublishTrack(at=0, session_id="a", track_id="nope")
        << Rejected(session_id="a", command="UnpublishTrack", reason=RejectReason.UNKNOWN_TRACK)
        >> UnpublishTrack(at=0, session_id="b", track_id="mic")
        << Rejected(session_id="b", command="UnpublishTrack", reason=RejectReason.UNKNOWN_TRACK)
    )
    assert pb.machine.snapshot() == before


def test_a_session_publishes_at_most_one_track_of_each_kind(pb: Any) -> None:
    """Issue 8 item 2: every track is routed to everyone, so a session may publish one microphone, one camera, one
    screen (and its audio); another of a kind it publishes is refused, and a source switch unpublishes first."""
    assert (pb.quiet >> join("a") >> join("b") >> pub("a", "mic", A) >> pub("a", "cam", V)
            >> pub("a", "screen", TrackKind.SCREEN_VIDEO) >> pub("a", "screen-audio", TrackKind.SCREEN_AUDIO)).pb
    before = pb.machine.snapshot()
    assert (
        pb
        >> pub("a", "mic2", A)
        << Rejected(session_id="a", command="PublishTrack", reason=RejectReason.TOO_MANY_TRACKS)
        >> pub("a", "cam2", V)
        << Rejected(session_id="a", command="PublishTrack", reason=RejectReason.TOO_MANY_TRACKS)
    )
    assert pb.machine.snapshot() == before
    assert (pb.quiet >> UnpublishTrack(at=0, session_id="a", track_id="mic")).pb
    assert pb >> pub("a", "mic2", A) << added("mic2", A, "a", "b", paused=True)


def test_a_lone_publisher_has_no_routes_until_someone_joins(pb: Any) -> None:
    assert (pb.quiet >> join("a") >> pub("a", "mic", A)).pb
    assert pb.machine.routes() == []
    assert pb >> join("b") << ParticipantJoined(channel_id="ch", session_id="b", user_id="u-b") << added(
        "mic", A, "a", "b", paused=True
    )
