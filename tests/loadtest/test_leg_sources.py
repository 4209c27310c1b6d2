"""A source goes on a leg through `Leg.add_source`, and every other way fails loudly (ADR 0030's session-7 and
session-8 addenda): `leg.sources.append(source)` used to leave the leg out of `MediaEngine.legs_with_sources`, so
the source was silently never sent. On every engine: each mutation of `Leg.sources` and its assignment raise, the
list is unchanged, and the source added the right way leaves on the next tick (the C tick still reads the list)."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterator

import pylibsrtp
import pytest
from callsd.peer import Identity, Leg, MediaEngine, Source
from callsd.peer._fastpeer import SrtpSession as NativeSession
from callsd.peer.engine import SourceList

PROFILE = pylibsrtp.Policy.SRTP_PROFILE_AEAD_AES_128_GCM
KEY = os.urandom(28)
T0 = 10**15

WRONG_WAYS: dict[str, Callable[[SourceList, Source], object]] = {
    "append": lambda sources, s: sources.append(s),
    "extend": lambda sources, s: sources.extend([s]),
    "insert": lambda sources, s: sources.insert(0, s),
    "+=": lambda sources, s: sources.__iadd__([s]),
    "[0:0] =": lambda sources, s: sources.__setitem__(slice(0, 0), [s]),
    "clear": lambda sources, s: sources.clear(),
    "pop": lambda sources, s: sources.pop(),
    "remove": lambda sources, s: sources.remove(s),
    "del [0]": lambda sources, s: sources.__delitem__(0),
}


@pytest.fixture
def sink() -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    yield sock
    sock.close()


def _leg(media: str, sink: socket.socket) -> tuple[MediaEngine, Leg, Source]:
    engine = MediaEngine(Identity(), media=media)
    leg = Leg(engine, user_number=0, call_index=0, ufrag="u", pwd="p")
    leg.sock.connect(sink.getsockname())
    leg.state = "connected"
    leg.tx = (NativeSession(int(PROFILE), KEY, True) if media != "python"
              else pylibsrtp.Session(pylibsrtp.Policy(key=KEY, ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND,
                                                      srtp_profile=PROFILE)))
    source = Source(kind="audio", ssrc=4242, user_number=0)
    source.configure("0", 111, {})
    source.enabled = True
    engine.add_source(source)
    return engine, leg, source


@pytest.mark.parametrize("media", ["python", "native", "shared"])
def test_only_add_source_puts_a_source_on_a_leg(media: str, sink: socket.socket) -> None:
    engine, leg, source = _leg(media, sink)
    first = Source(kind="audio", ssrc=4343, user_number=0)
    first.configure("1", 111, {})
    leg.add_source(first)
    for way, wrong in WRONG_WAYS.items():
        with pytest.raises(TypeError, match="Leg.add_source"):
            wrong(leg.sources, source)
        assert leg.sources == [first], way
    with pytest.raises(AttributeError):
        leg.sources = [source]  # type: ignore[misc,assignment]
    leg.add_source(source)
    leg.add_source(source)  # once
    assert leg.sources == [first, source]
    assert isinstance(leg.sources, list)
    engine.send_tick(1, T0)
    assert engine.tx_packets == 1  # `first` is not enabled; `source` left on the tick after it was added
    leg.close()
    if engine.port is not None:
        engine.port.close()
