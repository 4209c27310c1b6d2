"""Pre-negotiated audio receive slots (core/wire/receive_slots.py, adapters/media/plane_slots.py, ADR 0020).

The table alone (place, release, refresh), then the media plane without sockets: clients are the fakes of
test_media_plane.py (a browser-like offer, an answer that accepts every section), routes come as core outputs, and
a property test drives any sequence of joins, leaves, mutes and unmutes through it, answering every offer, and
checks after each step that slots and routes agree and that every unpaused route delivers its publisher's packets.
"""

from __future__ import annotations

import struct
from typing import Any

import pytest
from callsd.adapters.media import plane_slots
from callsd.adapters.media.events import SendSignal
from callsd.adapters.media.plane_session import SdpRejected
from callsd.core.calls.events import TrackKind
from callsd.core.calls.outputs import RouteAdded, RoutePaused, RouteRemoved, RouteResumed
from callsd.core.errors import LocalProtocolError
from callsd.core.wire.receive_slots import ReceiveSlots, SlotState
from callsd.core.wire.sdp import parse_sdp
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from .test_media_plane import FakePeer, Rig, answer_to, offer, rtp

# --- the table --------------------------------------------------------------------------------------------------


def test_place_release_refresh() -> None:
    table = ReceiveSlots(kind="audio", batch=2)
    assert table.needed() == 2
    table.refresh([10, 11])
    a = table.place("a")
    assert a is not None and a.ssrc == 10 and a.state is SlotState.BUSY
    assert table.place("a") == a  # idempotent
    b = table.place("b")
    assert b is not None and b.ssrc == 11
    assert table.place("c") is None  # full: the adapter refreshes and offers
    freed = table.release("a")
    assert freed is not None and freed.track_id == "a"
    assert table.place("c") is None  # a's slot is spent: its SSRC is not reused
    assert table.needed() == 1
    table.refresh([12])  # the spent slot comes back with a fresh SSRC, same slot id
    c = table.place("c")
    assert c is not None and (c.slot_id, c.ssrc) == (a.slot_id, 12)
    assert table.release("nobody") is None
    assert table.needed() == 2
    table.refresh([13, 14])  # nothing spent: the table grows by a batch
    assert len(table) == 4 and len({s.slot_id for s in table}) == 4


def test_refresh_refuses_a_wrong_number_of_ssrcs_or_duplicates() -> None:
    table = ReceiveSlots(kind="audio", batch=2)
    with pytest.raises(LocalProtocolError):
        table.refresh([1])
    with pytest.raises(LocalProtocolError):
        table.refresh([1, 1])
    with pytest.raises(LocalProtocolError):
        ReceiveSlots(kind="audio", batch=0)


# --- the plane --------------------------------------------------------------------------------------------------


def _first_offer(ssrc: int, slots: int, in_offer: bool, ufrag: str) -> dict[str, Any]:
    """A client's first ``sdp`` offer: its microphone, and ``slots`` receive slots asked for by number (the server
    offers them) or, ``in_offer``, as ``recvonly`` sections of its own named by ``slot_mids`` (protocol 1.4)."""
    mids = [str(n + 1) for n in range(slots)] if in_offer else []
    sections = [("audio", "0", "sendrecv", ssrc)] + [("audio", mid, "recvonly", 0) for mid in mids]
    msg: dict[str, Any] = {"type": "offer", "sdp": offer(*sections, ufrag=ufrag)}
    if slots:
        msg["audio_slots"] = slots
    if mids:
        msg["slot_mids"] = mids
    return msg


def _join(rig: Rig, sid: str, ssrc: int, slots: int, in_offer: bool = False) -> FakePeer:
    rig.plane.open_session(sid, "chan")
    rig.plane.handle_signal(sid, _first_offer(ssrc, slots, in_offer, f"u{sid}"))
    peer = FakePeer(sid)
    rig.peers[sid] = peer
    rig.plane.on_connected(peer)  # type: ignore[arg-type]
    return peer


def _route(track: str, pub: str, rcv: str) -> RouteAdded:
    return RouteAdded(channel_id="chan", track_id=track, kind=TrackKind.AUDIO, publisher_id=pub, receiver_id=rcv,
                      paused=False)


def _signals(rig: Rig, kind: str, since: int = 0) -> list[SendSignal]:
    return [e for e in rig.events[since:] if isinstance(e, SendSignal) and e.msg["type"] == kind]


def _call(rig: Rig, sids: list[str], slots: int) -> None:
    """Everyone in ``sids`` joins in turn; the core's routes to and from each joiner; every offer answered."""
    for n, sid in enumerate(sids):
        _join(rig, sid, 1000 + n, slots)
        rig.plane.apply([_route(f"{sid}_0", sid, other) for other in sids[:n]]
                        + [_route(f"{other}_0", other, sid) for other in sids[:n]])
        _answer_all(rig)


def _answer_all(rig: Rig) -> None:
    for _ in range(20):
        pending = [s for s in rig.plane.sessions.values() if s.offer_pending]
        if not pending:
            return
        for s in pending:
            rig.accept(s.session_id)
    raise AssertionError("offers kept coming")


def test_a_join_into_a_call_with_slots_offers_nothing_to_those_already_in_it() -> None:
    rig = Rig()
    _call(rig, ["A", "B", "C"], slots=4)
    mark = len(rig.events)
    _join(rig, "D", 1003, 4)
    rig.plane.apply([_route("D_0", "D", o) for o in "ABC"] + [_route(f"{o}_0", o, "D") for o in "ABC"])
    offers = _signals(rig, "offer", mark)
    assert [o.session_id for o in offers] == ["D"]  # the joiner's own: its slots
    told = _signals(rig, "slots", mark)
    # D learns whose audio is on its slots from that offer or, for routes placed after it, from `slots` signals
    owners = [t["session_id"] for o in offers for t in o.msg["tracks"]]
    owners += [t["session_id"] for m in told if m.session_id == "D" for t in m.msg["tracks"]]
    assert sorted(owners) == ["A", "B", "C"]
    told = [m for m in told if m.session_id != "D"]
    assert sorted(m.session_id for m in told) == ["A", "B", "C"]
    assert all(m.msg["tracks"][0]["session_id"] == "D" for m in told)
    rig.accept("D")
    # D's audio reaches A on the SSRC of the slot A was told about, before any new round with A
    route = rig.plane.tracks["D_0"].routes["A"]
    a_sdp = parse_sdp(rig.signals("A", "offer")[-1])
    mid = next(m.msg["tracks"][0]["mid"] for m in told if m.session_id == "A")
    section = next(m for m in a_sdp.media if m.mid == mid)
    assert route.ssrc in section.ssrc_list()
    rig.plane.on_rtp(rig.peers["D"], rtp(7, 700, 1003))  # type: ignore[arg-type]
    assert struct.unpack_from("!I", rig.peers["A"].rtp[-1], 8)[0] == route.ssrc


def test_without_slots_every_join_re_offers_to_everyone() -> None:
    rig = Rig()
    _call(rig, ["A", "B", "C"], slots=0)
    mark = len(rig.events)
    _join(rig, "D", 1003, 0)
    rig.plane.apply([_route("D_0", "D", o) for o in "ABC"] + [_route(f"{o}_0", o, "D") for o in "ABC"])
    assert sorted(o.session_id for o in _signals(rig, "offer", mark)) == ["A", "B", "C", "D"]
    assert not _signals(rig, "slots", mark)


def test_a_leave_frees_the_slot_and_a_later_join_refreshes_its_ssrc_in_one_offer() -> None:
    rig = Rig()
    _call(rig, ["A", "B", "C"], slots=2)  # A: slots for B and C, both busy
    old = rig.plane.tracks["C_0"].routes["A"].ssrc
    mark = len(rig.events)
    rig.plane.close_session("C")
    assert not _signals(rig, "offer", mark)  # leaving costs no round either
    freed = [m for m in _signals(rig, "slots", mark) if m.session_id == "A"]
    assert freed and freed[0].msg["tracks"][0]["session_id"] is None
    mark = len(rig.events)
    _join(rig, "D", 1003, 2)
    rig.plane.apply([_route("D_0", "D", o) for o in "AB"] + [_route(f"{o}_0", o, "D") for o in "AB"])
    a_offers = [o for o in _signals(rig, "offer", mark) if o.session_id == "A"]
    assert len(a_offers) == 1  # no fresh slot: one offer, C's old slot with a fresh SSRC
    new = rig.plane.tracks["D_0"].routes["A"].ssrc
    assert new != old
    sections = parse_sdp(a_offers[0].msg["sdp"]).media
    assert any(new in m.ssrc_list() for m in sections) and not any(old in m.ssrc_list() for m in sections)
    _answer_all(rig)
    assert rig.plane.tracks["D_0"].routes["A"].negotiated


# --- slots in the client's first offer (protocol 1.4) ------------------------------------------------------------


def test_slots_in_the_first_offer_make_one_round_per_join() -> None:
    """Every client puts 4 recvonly sections in its first offer: the server answers them sendonly with the slots'
    SSRCs and makes no offer at all, the answer names whose audio is already on them, and audio flows at once."""
    rig = Rig()
    mark = len(rig.events)
    for n, sid in enumerate("ABCD"):
        # as the server does it: the joiner's session and the routes towards it come before its first offer
        rig.plane.open_session(sid, "chan")
        before = "ABCD"[:n]
        rig.plane.apply([_route(f"{o}_0", o, sid) for o in before])
        rig.plane.handle_signal(sid, _first_offer(1000 + n, 4, True, f"u{sid}"))
        rig.peers[sid] = FakePeer(sid)
        rig.plane.on_connected(rig.peers[sid])  # type: ignore[arg-type]
        rig.plane.apply([_route(f"{sid}_0", sid, o) for o in before])
    assert not _signals(rig, "offer", mark)  # one round per join: the joiner's own offer
    assert len(_signals(rig, "answer", mark)) == 4
    for sid in "ABCD":
        s = rig.plane.sessions[sid]
        assert not s.offer_pending
        assert all(r.negotiated for r in s.routes_in.values()) and len(s.routes_in) == 3
    # D's answer: its slot sections send the slots' SSRCs, and `tracks` names A, B and C on them
    d_answer = _signals(rig, "answer", mark)[-1]
    sections = {m.mid: m for m in parse_sdp(d_answer.msg["sdp"]).media}
    told = {t["mid"]: t["session_id"] for t in d_answer.msg["tracks"]}
    assert sorted(told.values()) == ["A", "B", "C"]
    for mid, owner in told.items():
        assert sections[mid].direction is not None and sections[mid].direction.value == "sendonly"
        assert rig.plane.tracks[f"{owner}_0"].routes["D"].ssrc in sections[mid].ssrc_list()
    # A learnt of B, C and D by `slots` signals on the mids of its own offer
    a_told = [t for m in _signals(rig, "slots", mark) if m.session_id == "A" for t in m.msg["tracks"]]
    assert sorted(t["session_id"] for t in a_told) == ["B", "C", "D"]
    assert {t["mid"] for t in a_told} <= {"1", "2", "3", "4"}
    rig.plane.on_rtp(rig.peers["D"], rtp(7, 700, 1003))  # type: ignore[arg-type]
    assert struct.unpack_from("!I", rig.peers["A"].rtp[-1], 8)[0] == rig.plane.tracks["D_0"].routes["A"].ssrc
    # a route put on a slot looks its entry up in the answer's `sending`: the same entry its section gives
    for sid in "ABCD":
        neg = rig.plane.sessions[sid].neg
        entries = neg.sending
        assert len(entries) == 4  # every slot section sends, whoever it carries
        assert all(neg.sending_track(entry.track_id) is entry for entry in entries)
        for entry in entries:
            neg._sending = (None, ())  # noqa: SLF001 - forget the answer's entries: the section-by-section answer
            assert neg.sending_track(entry.track_id) == entry
        assert neg.sending_track("nobody") is None


def test_when_the_offered_slots_run_out_the_server_offers_as_before() -> None:
    rig = Rig()
    _call(rig, ["A"], slots=0)
    _join(rig, "B", 1001, 1, in_offer=True)
    rig.plane.apply([_route("A_0", "A", "B"), _route("B_0", "B", "A")])
    _answer_all(rig)
    mark = len(rig.events)
    _join(rig, "C", 1002, 0)
    rig.plane.apply([_route("C_0", "C", o) for o in "AB"] + [_route(f"{o}_0", o, "C") for o in "AB"])
    b_offers = [o for o in _signals(rig, "offer", mark) if o.session_id == "B"]
    assert len(b_offers) == 1  # B's one slot is busy: a batch of one more, offered by the server
    _answer_all(rig)
    assert rig.plane.tracks["C_0"].routes["B"].negotiated
    mids = {m.mid for m in parse_sdp(b_offers[0].msg["sdp"]).media}
    assert {"0", "1"} <= mids and len(mids) == 3


@pytest.mark.parametrize(("sections", "mids", "why"), [
    ([("audio", "1", "recvonly", 0)], ["1", "9"], "no m-section has mid '9'"),
    ([("video", "1", "recvonly", 0)], ["1"], "not a bundled recvonly audio section"),
    ([("audio", "1", "sendrecv", 7)], ["1"], "not a bundled recvonly audio section"),
    ([], ["0"], "not a bundled recvonly audio section"),  # the client's own microphone
    ([], "1", "slot_mids must list"),
    ([], [1], "slot_mids must list"),
    ([], ["1", "1"], "slot_mids must list"),
    ([], [str(n) for n in range(40)], "slot_mids must list"),
])
def test_slot_mids_that_do_not_name_new_recvonly_audio_sections_are_refused(
        sections: list[tuple[str, str, str, int]], mids: object, why: str) -> None:
    """A refusal names the reason; the session is left as it was (its next, correct offer works) and the call
    keeps going for everyone else."""
    rig = Rig()
    _call(rig, ["A", "B"], slots=2)
    rig.plane.open_session("C", "chan")
    bad = {"type": "offer", "sdp": offer(("audio", "0", "sendrecv", 1002), *sections, ufrag="uC"),
           "audio_slots": 2, "slot_mids": mids}
    with pytest.raises(SdpRejected, match=f"bad_receive_slots: .*{why}"):
        rig.plane.handle_signal("C", bad)
    assert rig.plane.sessions["C"].neg.state.value == "new"
    rig.plane.handle_signal("C", _first_offer(1002, 2, True, "uC"))
    peer = FakePeer("C")
    rig.peers["C"] = peer
    rig.plane.on_connected(peer)  # type: ignore[arg-type]
    rig.plane.apply([_route("C_0", "C", o) for o in "AB"] + [_route(f"{o}_0", o, "C") for o in "AB"])
    _answer_all(rig)
    for sid in "ABC":
        assert all(r.negotiated for r in rig.plane.sessions[sid].routes_in.values())
    rig.plane.on_rtp(rig.peers["A"], rtp(9, 900, 1000))  # type: ignore[arg-type]
    assert struct.unpack_from("!I", peer.rtp[-1], 8)[0] == rig.plane.tracks["A_0"].routes["C"].ssrc


def test_an_offer_with_forty_recvonly_sections_is_refused_before_it_is_parsed() -> None:
    rig = Rig()
    rig.plane.open_session("A", "chan")
    mids = [str(n + 1) for n in range(40)]
    msg = {"type": "offer", "sdp": offer(("audio", "0", "sendrecv", 1000),
                                         *[("audio", mid, "recvonly", 0) for mid in mids], ufrag="uA"),
           "audio_slots": 8, "slot_mids": mids[:8]}
    with pytest.raises(SdpRejected, match="too_many_sections"):
        rig.plane.handle_signal("A", msg)


def test_slot_mids_on_a_later_offer_change_nothing() -> None:
    """Slots bind to the client's sections in its first answered offer only; a re-offer that repeats them (or
    names other sections) keeps what was agreed and makes no round of its own."""
    rig = Rig()
    _call(rig, ["A"], slots=0)
    _join(rig, "B", 1001, 2, in_offer=True)
    rig.plane.apply([_route("A_0", "A", "B"), _route("B_0", "B", "A")])
    _answer_all(rig)
    mark = len(rig.events)
    again = _first_offer(1001, 2, True, "uB")
    rig.plane.handle_signal("B", again)
    assert not _signals(rig, "offer", mark) and len(_signals(rig, "answer", mark)) == 1
    assert "tracks" not in _signals(rig, "answer", mark)[0].msg
    assert rig.plane.tracks["A_0"].routes["B"].negotiated


def test_a_client_that_rejects_its_own_slot_sections_later_gets_sections_per_track_and_no_loop() -> None:
    """A re-offer with its slot sections at port 0: those slots retire, the tracks they carried move to server
    sections of their own (one offer), and audio flows on them."""
    rig = Rig()
    _call(rig, ["A"], slots=0)
    _join(rig, "B", 1001, 2, in_offer=True)
    rig.plane.apply([_route("A_0", "A", "B"), _route("B_0", "B", "A")])
    _answer_all(rig)
    assert rig.plane.tracks["A_0"].routes["B"].negotiated
    blocks = _first_offer(1001, 2, True, "uB")["sdp"].split("m=audio 9 ")
    reoffer = "m=audio 9 ".join(blocks[:2]) + "".join(f"m=audio 0 {b}" for b in blocks[2:])
    mark = len(rig.events)
    rig.plane.handle_signal("B", {"type": "offer", "sdp": reoffer})
    table = rig.plane.sessions["B"].audio_slots
    assert table is not None and all(slot.state.value == "retired" for slot in table)
    b_offers = [o for o in _signals(rig, "offer", mark) if o.session_id == "B"]
    assert len(b_offers) == 1 and [t["session_id"] for t in b_offers[0].msg["tracks"]] == ["A"]
    answer = answer_to(b_offers[0].msg["sdp"]).split("\r\n")  # (the rejected sections have no codecs to echo)
    rig.plane.handle_signal("B", {"type": "answer", "sdp": "\r\n".join(ln for ln in answer if " /0" not in ln)})
    route = rig.plane.tracks["A_0"].routes["B"]
    assert route.negotiated
    rig.plane.on_rtp(rig.peers["A"], rtp(5, 500, 1000))  # type: ignore[arg-type]
    assert struct.unpack_from("!I", rig.peers["B"].rtp[-1], 8)[0] == route.ssrc


# --- the property -----------------------------------------------------------------------------------------------


class SlotMachine(RuleBasedStateMachine):
    """Joins (with or without slots), leaves, mutes and unmutes in one call; every offer is answered at once."""

    def __init__(self) -> None:
        super().__init__()
        self.rig = Rig()
        self.members: list[str] = []
        self.muted: set[str] = set()
        self.joined = 0
        self.seq = 0

    @precondition(lambda self: len(self.members) < 7)
    @rule(slots=st.sampled_from([0, 1, 2, 4]), in_offer=st.booleans())
    def join(self, slots: int, in_offer: bool) -> None:
        sid = f"S{self.joined}"
        self.joined += 1
        _join(self.rig, sid, 5000 + self.joined, slots, in_offer)
        outputs = [_route(f"{sid}_0", sid, o) for o in self.members]
        outputs += [RouteAdded(channel_id="chan", track_id=f"{o}_0", kind=TrackKind.AUDIO, publisher_id=o,
                               receiver_id=sid, paused=o in self.muted) for o in self.members]
        self.rig.plane.apply(outputs)
        self.members.append(sid)
        _answer_all(self.rig)

    @precondition(lambda self: bool(self.members))
    @rule(data=st.data())
    def leave(self, data: st.DataObject) -> None:
        sid = data.draw(st.sampled_from(self.members))
        self.members.remove(sid)
        self.muted.discard(sid)
        self.rig.plane.apply([RouteRemoved(channel_id="chan", track_id=f"{sid}_0", publisher_id=sid,
                                           receiver_id=o) for o in self.members])
        self.rig.plane.close_session(sid)
        _answer_all(self.rig)

    @precondition(lambda self: bool(self.members))
    @rule(data=st.data(), slots=st.sampled_from([0, 2, 8]), in_offer=st.booleans())
    def reconnect(self, data: st.DataObject, slots: int, in_offer: bool) -> None:
        """A new page takes the session over: a fresh media session gets the routes towards it back before its
        first offer (the server's reconnect path), then publishes again and is routed to the others."""
        sid = data.draw(st.sampled_from(self.members))
        others = [o for o in self.members if o != sid]
        self.rig.plane.apply([RouteRemoved(channel_id="chan", track_id=f"{sid}_0", publisher_id=sid,
                                           receiver_id=o) for o in others])
        self.rig.plane.open_session(sid, "chan")
        self.rig.plane.restore_routes([RouteAdded(channel_id="chan", track_id=f"{o}_0", kind=TrackKind.AUDIO,
                                                  publisher_id=o, receiver_id=sid, paused=o in self.muted)
                                       for o in others])
        self.joined += 1
        self.rig.plane.handle_signal(sid, _first_offer(5000 + self.joined, slots, in_offer, f"r{self.joined}"))
        peer = FakePeer(sid)
        self.rig.peers[sid] = peer
        self.rig.plane.on_connected(peer)  # type: ignore[arg-type]
        self.rig.plane.apply([RouteAdded(channel_id="chan", track_id=f"{sid}_0", kind=TrackKind.AUDIO,
                                         publisher_id=sid, receiver_id=o, paused=sid in self.muted) for o in others])
        _answer_all(self.rig)

    @precondition(lambda self: bool(self.members))
    @rule(data=st.data())
    def toggle_mute(self, data: st.DataObject) -> None:
        sid = data.draw(st.sampled_from(self.members))
        cls = RouteResumed if sid in self.muted else RoutePaused
        self.muted.symmetric_difference_update({sid})
        self.rig.plane.apply([cls(channel_id="chan", track_id=f"{sid}_0", publisher_id=sid, receiver_id=o)
                              for o in self.members if o != sid])

    @invariant()
    def slots_and_routes_agree(self) -> None:
        for s in self.rig.plane.sessions.values():
            ssrcs = [r.ssrc for r in s.routes_in.values()]
            assert len(ssrcs) == len(set(ssrcs))
            if s.audio_slots is None:
                continue
            slots = list(s.audio_slots)
            assert len({x.slot_id for x in slots}) == len(slots)
            assert len({x.ssrc for x in slots}) == len(slots)
            busy = {x.track_id: x for x in slots if x.track_id is not None}
            assert set(busy) == set(s.routes_in)  # every route on exactly one slot, every busy slot routed
            for track_id, r in s.routes_in.items():
                assert r.ssrc == busy[track_id].ssrc

    @invariant()
    def the_remembered_slot_tracks_are_the_slots_as_they_are(self) -> None:
        """``slot_tracks`` keeps its answer while the table's ``offered_version`` stays; it must always be what
        the slots would give now (the version moves with every change of the offered ids and SSRCs)."""
        for s in self.rig.plane.sessions.values():
            if s.audio_slots is None:
                continue
            now = [(x.slot_id, x.ssrc) for x in s.audio_slots if x.state is not SlotState.RETIRED]
            assert [(t.track_id, t.ssrc) for t in plane_slots.slot_tracks(s)] == now

    @invariant()
    def every_unpaused_route_delivers(self) -> None:
        self.seq += 1
        for sid in self.members:
            t = self.rig.plane.tracks.get(f"{sid}_0")
            assert t is not None
            counts = {o: len(self.rig.peers[o].rtp) for o in self.members}
            self.rig.plane.on_rtp(self.rig.peers[sid], rtp(self.seq, self.seq * 960, t.ssrc or 0))  # type: ignore[arg-type]
            for o in self.members:
                if o == sid:
                    continue
                route = t.routes[o]
                assert route.negotiated
                got = self.rig.peers[o].rtp[counts[o]:]
                if sid in self.muted:
                    assert not got
                else:
                    assert len(got) == 1 and struct.unpack_from("!I", got[0], 8)[0] == route.ssrc


TestSlotMachine = SlotMachine.TestCase
TestSlotMachine.settings = settings(max_examples=40, stateful_step_count=20, deadline=None)


def _rejecting_answer(server_offer: str) -> str:
    """A client that accepts its own section and rejects (port 0) every section the server added (mid ``s<n>``)."""
    blocks = answer_to(server_offer).split("\r\nm=")
    for n, block in enumerate(blocks):
        if n and "\r\na=mid:s" in block:
            kind = block.split(" ", 1)[0]
            mid = next(line for line in block.split("\r\n") if line.startswith("a=mid:"))
            blocks[n] = f"{kind} 0 UDP/TLS/RTP/SAVPF 0\r\n{mid}"
    return "\r\nm=".join(blocks) + ("" if blocks[-1].endswith("\r\n") else "\r\n")


def test_a_client_that_rejects_its_slots_is_not_offered_them_again() -> None:
    rig = Rig()
    _join(rig, "A", 1000, 2)
    first = rig.signals("A", "offer")[-1]
    rig.plane.handle_signal("A", {"type": "answer", "sdp": _rejecting_answer(first)})
    slots = rig.plane.sessions["A"].audio_slots
    assert slots is not None and all(s.state.value == "retired" for s in slots)
    mark = len(rig.events)
    _join(rig, "B", 1001, 0)
    rig.plane.apply([_route("B_0", "B", "A"), _route("A_0", "A", "B")])
    for _ in range(5):  # A keeps rejecting whatever it is offered: the offers stop
        if not rig.plane.sessions["A"].offer_pending:
            break
        rig.plane.handle_signal("A", {"type": "answer", "sdp": _rejecting_answer(rig.signals("A", "offer")[-1])})
    assert not rig.plane.sessions["A"].offer_pending
    assert len([o for o in _signals(rig, "offer", mark) if o.session_id == "A"]) <= 1  # B's audio on its own section


def test_the_slots_of_a_joiners_offer_share_the_bundles_payload_type_and_extension_ids() -> None:
    """A joiner's first offer has eight slot sections alike (negotiation.py computes the first and gives the others
    what it got): each must carry the joiner's own Opus payload type and the bundle's one id per extension URI."""
    rig = Rig()
    _join(rig, "A", 1000, 8)
    a_offer = parse_sdp(rig.signals("A", "offer")[-1])
    own = parse_sdp(offer(("audio", "0", "sendrecv", 1000), ufrag="uA")).media[0]
    slots = [m for m in a_offer.media if m.mid != own.mid]
    assert len(slots) == 8
    assert {tuple((c.payload_type, c.name) for c in m.codecs) for m in slots} == {((own.codecs[0].payload_type, "opus"),)}
    ids = {(e.uri, e.id) for m in a_offer.media for e in m.extmaps}
    assert len({uri for uri, _ in ids}) == len(ids)  # one id per URI across the bundle
    assert len({m.extmaps for m in slots}) == 1
