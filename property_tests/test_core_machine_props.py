"""The call core under random sequences of inputs (Hypothesis ``RuleBasedStateMachine``).

Every rule feeds one input to a live ``CallsMachine`` while this test plays the adapter: it keeps a forwarding
table, a membership table and a timer table built ONLY from the outputs, logs each input as an event-log record, and
feeds the decoded records to a second "replica" machine. After every step the invariants check that the outputs
told the adapters the truth and that the log reproduces the live machine.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from callsd.core import (
    CallEnded,
    CallsMachine,
    CancelTimer,
    Configure,
    Disconnect,
    GoingAway,
    HostEndCall,
    HostLowerHand,
    HostMute,
    HostMuteOthers,
    HostRemove,
    HostStopScreen,
    InputEvent,
    JoinCall,
    LeaveCall,
    LocalProtocolError,
    LowerHand,
    MakeHost,
    Mute,
    OutputEvent,
    ParticipantJoined,
    ParticipantLeft,
    PublishTrack,
    RaiseHand,
    React,
    Reconnect,
    Rejected,
    RejectReason,
    RouteAdded,
    RoutePaused,
    RouteRemoved,
    RouteResumed,
    ScreenOff,
    ScreenOn,
    StartTimer,
    TimerFired,
    TrackKind,
    Unmute,
    UnpublishTrack,
    VideoOff,
    VideoOn,
    checkpoint,
    decode_record,
    encode_record,
    make_record,
    outputs_digest,
    replay,
)
from hypothesis import event as note_event
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    multiple,
    precondition,
    rule,
)

TRACKS = st.sampled_from(["mic", "cam", "screen", "extra"])
KINDS = st.sampled_from([TrackKind.AUDIO, TrackKind.VIDEO, TrackKind.AUDIO, TrackKind.SCREEN_VIDEO,
                        TrackKind.SCREEN_AUDIO])


class CallsModel(RuleBasedStateMachine):
    sessions = Bundle("sessions")
    channels = Bundle("channels")

    def __init__(self) -> None:
        super().__init__()
        self.machine = CallsMachine()
        self.replica = CallsMachine()
        self.now = 0
        self.lines: list[str] = []
        self.checkpoints: list[tuple[int, str]] = [(0, json.dumps(checkpoint(self.machine, 0)))]
        self.next_id = 0
        self.known: list[str] = []
        self.channel_names: list[str] = []
        # The adapter's view, built from outputs only.
        self.routes: dict[tuple[str, str, str, str], bool] = {}
        self.members: dict[str, list[str]] = {}
        self.timers: dict[str, int] = {}

    # ------------------------------------------------------------------ plumbing

    def feed(self, event: InputEvent) -> list[OutputEvent]:
        before = self.machine.snapshot()
        outs = self.machine.handle(event)
        rejected = [o for o in outs if isinstance(o, Rejected)]
        if rejected:
            assert outs == rejected and len(outs) == 1, f"a rejection comes alone: {outs}"
            assert self.machine.snapshot() == before, "a rejected command changed the state"
        seq = len(self.lines) + 1
        line = encode_record(make_record(seq, event, outs))
        self.lines.append(line)
        record = decode_record(line, line=seq)
        assert record.event == event
        replica_outs = self.replica.handle(record.event)
        assert outputs_digest(replica_outs) == record.out, "replaying the record gave other outputs"
        if seq % 7 == 0:
            self.checkpoints.append((seq, json.dumps(checkpoint(self.machine, seq))))
        self.apply(outs)
        for name in sorted({type(o).__name__ for o in outs}):
            note_event(name if name != "Rejected" else f"Rejected:{rejected[0].reason.value}")
        return outs

    def apply(self, outs: list[OutputEvent]) -> None:
        for o in outs:
            if isinstance(o, RouteAdded):
                key = (o.channel_id, o.track_id, o.publisher_id, o.receiver_id)
                assert key not in self.routes, f"route added twice: {key}"
                self.routes[key] = o.paused
            elif isinstance(o, RouteRemoved | RoutePaused | RouteResumed):
                key = (o.channel_id, o.track_id, o.publisher_id, o.receiver_id)
                assert key in self.routes, f"{type(o).__name__} for an unknown route {key}"
                if isinstance(o, RouteRemoved):
                    del self.routes[key]
                else:
                    assert self.routes[key] != isinstance(o, RoutePaused), f"{type(o).__name__} changed nothing"
                    self.routes[key] = isinstance(o, RoutePaused)
            elif isinstance(o, ParticipantJoined):
                self.members.setdefault(o.channel_id, []).append(o.session_id)
            elif isinstance(o, ParticipantLeft):
                self.members[o.channel_id].remove(o.session_id)
            elif isinstance(o, CallEnded):
                assert self.members.pop(o.channel_id) == []
            elif isinstance(o, StartTimer):
                self.timers[o.key] = o.deadline
            elif isinstance(o, CancelTimer):
                assert self.timers.pop(o.key, None) is not None, f"cancelled a timer never started: {o.key}"

    def at(self) -> int:
        return self.now

    # ------------------------------------------------------------------ bundles

    @initialize(target=sessions)
    def first_sessions(self) -> Any:
        return multiple(self.new_id("s"), self.new_id("s"), self.new_id("s"))

    @initialize(target=channels)
    def first_channel(self) -> str:
        return self.new_id("ch")

    @initialize(
        plan=st.lists(st.tuples(st.lists(KINDS, max_size=3), st.booleans()), max_size=3),
    )
    def opening(self, plan: list[tuple[list[TrackKind], bool]]) -> None:
        """Most runs start inside a call with published tracks, some unmuted, so the rules have something to act on."""
        for s, (kinds, unmuted) in zip(self.known, plan, strict=False):
            self.feed(JoinCall(at=self.at(), channel_id="ch1", session_id=s, user_id=f"u-{s}", call_id="c-open"))
            for i, kind in enumerate(kinds):
                self.feed(PublishTrack(at=self.at(), session_id=s, track_id=f"{s}-t{i}", kind=kind))
            if unmuted:
                self.feed(Unmute(at=self.at(), session_id=s))

    def new_id(self, prefix: str) -> str:
        self.next_id += 1
        name = f"{prefix}{self.next_id}"
        (self.known if prefix == "s" else self.channel_names).append(name)
        return name

    @precondition(lambda self: len(self.known) < 8)
    @rule(target=sessions)
    def add_session(self) -> str:
        return self.new_id("s")

    @precondition(lambda self: len(self.channel_names) < 3)
    @rule(target=channels)
    def add_channel(self) -> str:
        return self.new_id("ch")

    def pick_host(self, data: Any) -> str:
        """Usually the host of some call, sometimes any session (to be refused with NOT_HOST)."""
        hosts = [c.host_id for c in self.machine.calls()]
        if hosts and data.draw(st.integers(0, 3), label="prefer_host"):
            return str(data.draw(st.sampled_from(hosts), label="host"))
        return self.pick(data)

    def pick(self, data: Any) -> str:
        """A session, usually one in a call (so commands get past the guards), sometimes any session."""
        in_call = [p.session_id for c in self.machine.calls() for p in c.participants]
        pool = in_call if in_call and data.draw(st.integers(0, 4), label="prefer_in_call") else self.known
        return str(data.draw(st.sampled_from(pool), label="session"))

    # ------------------------------------------------------------------ rules

    @rule(max_participants=st.integers(0, 4), window=st.integers(0, 60_000), allow=st.booleans())
    def configure(self, max_participants: int, window: int, allow: bool) -> None:
        self.feed(Configure(at=self.at(), max_participants=max_participants, reconnect_window_ms=window,
                            allow_screen_sharing=allow))

    @rule(s=sessions, ch=channels, ongoing_only=st.booleans())
    def join(self, s: str, ch: str, ongoing_only: bool) -> None:
        """``ongoing_only`` joins with no ``call_id``: the ongoing call of ``ch``, refused when there is none."""
        had_call = self.machine.call(ch) is not None
        call_id = None if ongoing_only else f"c{self.now}"
        outs = self.feed(JoinCall(at=self.at(), channel_id=ch, session_id=s, user_id=f"u-{s}", call_id=call_id))
        limit = self.machine.config.max_participants
        if not isinstance(outs[0], Rejected) and limit:
            assert len(self.machine.sessions(ch)) <= limit
        if ongoing_only and not had_call:
            assert isinstance(outs[0], Rejected), outs
            assert outs[0].reason in (RejectReason.NO_CALL, RejectReason.ALREADY_IN_CALL), outs

    @rule(data=st.data(), ch=channels)
    def join_free(self, data: Any, ch: str) -> None:
        """A session not in any call joins (the ``join`` rule also tries sessions that are)."""
        free = [s for s in self.known if self.machine.channel_of(s) is None]
        if free:
            s = data.draw(st.sampled_from(free), label="free_session")
            self.feed(JoinCall(at=self.at(), channel_id=ch, session_id=s, user_id=f"u-{s}", call_id=f"c{self.now}"))

    @rule(data=st.data())
    def leave(self, data: Any) -> None:
        s = self.pick(data)
        self.feed(LeaveCall(at=self.at(), session_id=s))

    @rule(data=st.data())
    def disconnect(self, data: Any) -> None:
        s = self.pick(data)
        self.feed(Disconnect(at=self.at(), session_id=s))

    @rule(data=st.data(), keep_ms=st.integers(0, 60_000))
    def going_away(self, data: Any, keep_ms: int) -> None:
        s = self.pick(data)
        self.feed(GoingAway(at=self.at(), session_id=s, keep_ms=keep_ms))

    @rule(data=st.data())
    def reconnect(self, data: Any) -> None:
        s = self.pick(data)
        self.feed(Reconnect(at=self.at(), session_id=s))

    @rule(ms=st.integers(0, 45_000))
    def tick(self, ms: int) -> None:
        """Advance time and fire every due timer, earliest first, as an adapter would."""
        self.now += ms
        for key, deadline in sorted(self.timers.items(), key=lambda kv: (kv[1], kv[0])):
            if deadline <= self.now and key in self.timers:
                self.feed(TimerFired(at=self.now, key=key))

    @rule(data=st.data())
    def stray_timer(self, data: Any) -> None:
        """A late or repeated fire never does harm; an early one (before the pending deadline) is refused loudly
        and changes nothing, the timer staying armed (StartTimer's contract)."""
        s = self.pick(data)
        key = f"reconnect:{s}"
        deadline = self.timers.get(key)
        if deadline is not None and self.now < deadline:
            before = self.machine.snapshot()
            with pytest.raises(LocalProtocolError, match="early"):
                self.machine.handle(TimerFired(at=self.now, key=key))
            assert self.machine.snapshot() == before
            assert self.machine.timers()[key] == deadline
        else:
            self.feed(TimerFired(at=self.at(), key=key))

    @rule(data=st.data(), on=st.booleans())
    def mute(self, data: Any, on: bool) -> None:
        s = self.pick(data)
        self.feed(Mute(at=self.at(), session_id=s) if on else Unmute(at=self.at(), session_id=s))

    @rule(data=st.data(), on=st.booleans())
    def screen(self, data: Any, on: bool) -> None:
        s = self.pick(data)
        self.feed(ScreenOn(at=self.at(), session_id=s, stream_id=f"st-{s}") if on
                  else ScreenOff(at=self.at(), session_id=s))

    @rule(data=st.data(), on=st.booleans())
    def hand(self, data: Any, on: bool) -> None:
        s = self.pick(data)
        self.feed(RaiseHand(at=self.at(), session_id=s) if on else LowerHand(at=self.at(), session_id=s))

    @rule(data=st.data(), on=st.booleans())
    def video(self, data: Any, on: bool) -> None:
        s = self.pick(data)
        self.feed(VideoOn(at=self.at(), session_id=s) if on else VideoOff(at=self.at(), session_id=s))

    @rule(data=st.data())
    def react(self, data: Any) -> None:
        s = self.pick(data)
        self.feed(React(at=self.at(), session_id=s, emoji="+1"))

    @rule(data=st.data(), action=st.sampled_from([MakeHost, HostMute, HostLowerHand, HostRemove]))
    def host_on_target(self, data: Any, action: type[Any]) -> None:
        s = self.pick_host(data)
        other = self.pick(data)
        self.feed(action(at=self.at(), session_id=s, target=other))

    @rule(data=st.data(), action=st.sampled_from([HostMuteOthers, HostStopScreen, HostEndCall]))
    def host_action(self, data: Any, action: type[Any]) -> None:
        s = self.pick_host(data)
        self.feed(action(at=self.at(), session_id=s))

    @rule(data=st.data(), track=TRACKS, kind=KINDS)
    def publish(self, data: Any, track: str, kind: TrackKind) -> None:
        s = self.pick(data)
        self.feed(PublishTrack(at=self.at(), session_id=s, track_id=f"{s}-{track}", kind=kind))

    @rule(data=st.data(), track=TRACKS)
    def unpublish(self, data: Any, track: str) -> None:
        s = self.pick(data)
        self.feed(UnpublishTrack(at=self.at(), session_id=s, track_id=f"{s}-{track}"))

    # ------------------------------------------------------------------ invariants

    @invariant()
    def one_host_and_one_sharer_at_most(self) -> None:
        for call in self.machine.calls():
            assert call.participants, "a call without participants must have ended"
            assert sum(p.host for p in call.participants) == 1
            assert call.host_id in {p.session_id for p in call.participants}
            assert sum(p.screen for p in call.participants) <= 1
            for p in call.participants:
                assert self.machine.channel_of(p.session_id) == call.channel_id

    @invariant()
    def the_census_counts_what_the_views_show(self) -> None:
        calls = self.machine.calls()
        assert self.machine.census() == (len(calls), sum(len(call.participants) for call in calls))

    @invariant()
    def ended_calls_have_no_host(self) -> None:
        for ch in self.members:
            assert self.machine.host(ch) is not None
        for ch in self.channel_names:
            if ch not in self.members:
                assert self.machine.host(ch) is None
                assert self.machine.sessions(ch) == ()

    @invariant()
    def outputs_told_the_adapters_the_truth(self) -> None:
        expected: dict[tuple[str, str, str, str], bool] = {}
        for call in self.machine.calls():
            for p in call.participants:
                for track_id, kind in p.tracks:
                    for r in call.participants:
                        if r.session_id != p.session_id:
                            paused = kind is TrackKind.AUDIO and p.muted
                            expected[(call.channel_id, track_id, p.session_id, r.session_id)] = paused
        assert self.routes == expected
        assert {(r.channel_id, r.track_id, r.publisher_id, r.receiver_id): r.paused
                for r in self.machine.routes()} == expected
        assert all(pub != rcv for (_c, _t, pub, rcv) in expected)
        assert {ch: tuple(m) for ch, m in self.members.items()} == {
            c.channel_id: self.machine.sessions(c.channel_id) for c in self.machine.calls()
        }
        assert self.timers == self.machine.timers()

    @invariant()
    def replica_fed_from_the_log_equals_live(self) -> None:
        assert self.replica.snapshot() == self.machine.snapshot()

    def teardown(self) -> None:
        records = [decode_record(line, line=i) for i, line in enumerate(self.lines, start=1)]
        full = replay(records)
        assert full.mismatches == []
        assert full.last_seq == len(records)
        assert full.machine.snapshot() == self.machine.snapshot()
        for seq, text in self.checkpoints:
            tail = replay(records, start=json.loads(text))
            assert tail.mismatches == []
            assert tail.machine.snapshot() == self.machine.snapshot(), f"checkpoint at {seq} + tail != full replay"
        restored = CallsMachine.restore(json.loads(json.dumps(self.machine.snapshot())))
        assert restored.snapshot() == self.machine.snapshot()


TestCallsModel = CallsModel.TestCase
