"""Which writes make every route read its cached send state again (native/send_state.h's epoch).

A join writes ~20 watched attributes on objects of its own (its Peer's ``_tx``, ``address`` and ``twcc``, its
Session's ``peer``, its OutRoutes' ``receiver``), first at construction, then as each becomes ready. None of those
can change a route's cached state (only a ready receiver's is cached), so they must not move the epoch: at 50
joins/s they would otherwise move it between any route's two packets, and the whole server would walk route ->
receiver -> peer again on every copy during a join wave. Writes that can change a cached state still move it (the
differential tests in test_native_diff.py hold the outcome either way, including a first sequencer negotiated while
a peer's routes send).
"""

from __future__ import annotations

from typing import Any

import pytest
from callsd.adapters.media.forwarder import InTrack, OutRoute
from callsd.adapters.media.native import _engine as native  # built: the suite never skips the native side
from callsd.adapters.media.route_record import SendStateOwner
from callsd.core.calls.events import TrackKind
from native_support import RouteSpec, Scenario, TrackSpec, run


def epoch() -> int:
    return int(native.send_state_epoch())


SESSION = native.SrtpSession(1, bytes(30), True)  # AES_CM_128_HMAC_SHA1_80: 16-byte key, 14-byte salt
OTHER = native.SrtpSession(1, bytes(range(30)), True)


class Owner(SendStateOwner):
    """Stands for a plane Session and a transport Peer: the watched names the step reads."""

    __slots__ = ("peer", "_tx", "address", "twcc", "other")
    peer: Any
    _tx: Any
    address: Any
    twcc: Any
    other: Any


def moved(write: Any) -> bool:
    before = epoch()
    write()
    return epoch() != before


def test_a_joins_writes_do_not_move_the_epoch() -> None:
    o = Owner()
    assert not moved(lambda: setattr(o, "twcc", None))  # construction: never set before
    assert not moved(lambda: setattr(o, "address", None))
    assert not moved(lambda: setattr(o, "_tx", None))
    assert not moved(lambda: setattr(o, "peer", None))
    assert not moved(lambda: setattr(o, "twcc", object()))  # negotiated before its transmit session is ready
    assert not moved(lambda: setattr(o, "address", ("127.0.0.1", 9)))  # None -> set: becoming ready
    assert not moved(lambda: setattr(o, "peer", o))
    assert not moved(lambda: setattr(o, "_tx", SESSION))
    assert not moved(lambda: setattr(o, "_tx", SESSION))  # the same object again
    assert not moved(lambda: setattr(o, "other", 1))  # not a watched name


def test_a_new_route_does_not_move_the_epoch() -> None:
    session = Owner()
    track = InTrack(track_id="t", session=session, kind=TrackKind.AUDIO, media="audio", mid="0", ssrc=1,
                    clock_rate=48000, codecs={111: ("opus", 48000, 2, "")}, ext={}, stream_id="s")
    before = epoch()
    OutRoute(track=track, receiver=Owner(), ssrc=2, mid="", paused=False, ts_offset=0)
    assert epoch() == before


def ready_owner() -> Owner:
    o = Owner()
    o.peer, o._tx, o.address, o.twcc = o, SESSION, ("127.0.0.1", 9), None
    return o


@pytest.mark.parametrize("name, value", [
    ("_tx", OTHER),  # a key change
    ("_tx", None),  # lost its only address
    ("address", ("127.0.0.1", 10)),  # moved
    ("address", None),
    ("peer", None),  # the session's peer gone
    ("twcc", object()),  # a first sequencer while it sends: copies must be stamped from now on
])
def test_a_change_to_a_ready_receiver_moves_the_epoch(name: str, value: Any) -> None:
    o = ready_owner()
    assert moved(lambda: setattr(o, name, value))


def test_a_deleted_attribute_and_a_replaced_route_receiver_move_the_epoch() -> None:
    o = ready_owner()
    assert moved(lambda: delattr(o, "address"))
    session = Owner()
    track = InTrack(track_id="t", session=session, kind=TrackKind.AUDIO, media="audio", mid="0", ssrc=1,
                    clock_rate=48000, codecs={111: ("opus", 48000, 2, "")}, ext={}, stream_id="s")
    route = OutRoute(track=track, receiver=Owner(), ssrc=2, mid="", paused=False, ts_offset=0)
    assert moved(lambda: setattr(route, "receiver", Owner()))


def test_a_first_sequencer_on_a_receiver_whose_routes_send_stamps_the_next_copy_on_both_paths() -> None:
    """The one write from None that can change a cached state: transport-cc negotiated after the routes toward a
    ready receiver cached "stamps nothing". Both paths must stamp from the next packet on."""
    rtp = ("rtp", 0, 1, 111, 0, bytes.fromhex("bede0001") + bytes([0x10, 0x05, 0, 0]), 0, b"opus" * 10, False,
           0x1234, "ok", 5)
    sc = Scenario(profile=b"SRTP_AEAD_AES_128_GCM", publishers=1, receivers=1, receivers_connected=(True,),
                  tracks=(TrackSpec(publisher=0, media="audio", ssrc=0x1234, signalled=True, level_id=1),),
                  routes=(RouteSpec(track=0, receiver=0, ssrc=0xAA, ts_offset=5, last_seq=9, pt=111,
                                    remap=((1, 1),), paused=False, negotiated=True),),
                  events=(rtp, ("drain", 256), ("send_state", 1, "sequencer"), rtp))
    reference = run(sc, "python")
    native = run(sc, "native")
    assert native == reference
    assert [len(x) for x in native["received"]] == [0, 10, 0]
    assert native["sequencers"][0][1] == 5  # stamped: the copies after the sequencer appeared
