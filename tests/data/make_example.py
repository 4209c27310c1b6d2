"""Regenerate example.jsonl: ``.venv/bin/python tests/data/make_example.py``.

A realistic recorded session: three people in town-square (mutes, a screen share, a refused second share, a
raised hand lowered by the host, a reconnect, the host leaving, a reconnect timeout), and a second call in
dev-team still going at the end of the log.
"""

from __future__ import annotations

from pathlib import Path

from callsd.adapters.store import CallRecorder, JsonlStore
from callsd.core import (
    Configure,
    Disconnect,
    HostLowerHand,
    HostMute,
    JoinCall,
    LeaveCall,
    Mute,
    PublishTrack,
    RaiseHand,
    React,
    Reconnect,
    ScreenOff,
    ScreenOn,
    TimerFired,
    TrackKind,
    Unmute,
    UnpublishTrack,
    VideoOn,
)

T0 = 1_764_259_200_000  # 2025-11-27 16:00:00 UTC
A, V, S = TrackKind.AUDIO, TrackKind.VIDEO, TrackKind.SCREEN_VIDEO


def events() -> list:  # type: ignore[type-arg]
    t = T0
    out = []

    def at(step_ms: int) -> int:
        nonlocal t
        t += step_ms
        return t

    def join(sid: str, user: str, channel: str = "town-square", call: str = "call-7f3a") -> JoinCall:
        return JoinCall(at=at(1500), channel_id=channel, session_id=sid, user_id=user, call_id=call)

    out += [
        Configure(at=T0, max_participants=8, reconnect_window_ms=30_000, allow_screen_sharing=True),
        join("s-alice-1", "alice"),
        PublishTrack(at=at(300), session_id="s-alice-1", track_id="alice-mic", kind=A),
        join("s-bob-1", "bob"),
        PublishTrack(at=at(300), session_id="s-bob-1", track_id="bob-mic", kind=A),
        Unmute(at=at(2000), session_id="s-alice-1"),
        join("s-carol-1", "carol"),
        PublishTrack(at=at(300), session_id="s-carol-1", track_id="carol-mic", kind=A),
        PublishTrack(at=at(200), session_id="s-carol-1", track_id="carol-cam", kind=V),
        VideoOn(at=at(10), session_id="s-carol-1"),
        Unmute(at=at(4000), session_id="s-bob-1"),
        RaiseHand(at=at(6000), session_id="s-carol-1"),
        ScreenOn(at=at(3000), session_id="s-bob-1", stream_id="bob-screen-stream"),
        PublishTrack(at=at(400), session_id="s-bob-1", track_id="bob-screen", kind=S),
        ScreenOn(at=at(2000), session_id="s-carol-1", stream_id="carol-screen-stream"),
        HostLowerHand(at=at(9000), session_id="s-alice-1", target="s-carol-1"),
        Mute(at=at(30_000), session_id="s-bob-1"),
        React(at=at(1000), session_id="s-carol-1", emoji="+1"),
        join("s-dave-1", "dave", channel="dev-team", call="call-91c0"),
        Disconnect(at=at(5000), session_id="s-carol-1"),
        Reconnect(at=at(4000), session_id="s-carol-1"),
        join("s-erin-1", "erin", channel="dev-team", call="call-ignored"),
        PublishTrack(at=at(300), session_id="s-erin-1", track_id="erin-mic", kind=A),
        LeaveCall(at=at(60_000), session_id="s-alice-1"),
        Unmute(at=at(2000), session_id="s-carol-1"),
        HostMute(at=at(8000), session_id="s-bob-1", target="s-carol-1"),
        ScreenOff(at=at(20_000), session_id="s-bob-1"),
        UnpublishTrack(at=at(100), session_id="s-bob-1", track_id="bob-screen"),
        Disconnect(at=at(5000), session_id="s-carol-1"),
    ]
    deadline = t + 30_000
    out += [
        TimerFired(at=deadline + 3, key="reconnect:s-carol-1"),
        RaiseHand(at=deadline + 5000, session_id="s-erin-1"),
        LeaveCall(at=deadline + 9000, session_id="s-bob-1"),
        Unmute(at=deadline + 9500, session_id="s-dave-1"),
    ]
    return out


def main() -> None:
    path = Path(__file__).with_name("example.jsonl")
    path.unlink(missing_ok=True)
    with JsonlStore(path, fsync="never") as store:
        recorder = CallRecorder(store)
        for event in events():
            recorder.handle(event)


if __name__ == "__main__":
    main()
