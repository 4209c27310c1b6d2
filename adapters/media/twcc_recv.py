"""Transport-wide congestion control toward one publisher: note when each of its packets arrived, report it back.

A publisher whose sections accepted the transport-wide-cc header extension (``TWCC_URI``, every section since
issue 15) stamps a transport-wide sequence number on every RTP packet it sends and expects RTCP transport feedback
(PT 205 FMT 15) about them: that is what its send-side estimate (Chromium's GCC, which sets its encoder's target
and which simulcast layers it sends) runs on. Without it a browser's estimate rests on receiver reports alone and
stays near its start bitrate.

``attach`` gives the session's ``Peer`` a ``FeedbackSender`` (``peer.twcc_in``) holding the extension id and a
pure ``ArrivalRecorder`` (core/video/arrivals.py). Both receive paths feed it every RTP packet they decrypt, once:

* the Python path (``UdpEndpoint.handle_datagram``) calls ``on_packet(plain, now)``, which reads the number;
* the native step (``_engine.c``) reads the number in C and appends (seq, ssrc, now) to the sender's ``log``, an
  ``ArrivalLog`` in C (native/arrival_log.h) it creates on the first packet: no Python call per packet.
  ``drain()`` replays the log into the recorder through ``arrived``, in arrival order, before each report (and the
  step calls it when a log is full).

On both paths ``now`` is when the kernel received the datagram (SO_TIMESTAMPNS on the RTC socket, udp.py), on the
clock of ``time.monotonic``, not when a drain read it: a drain that runs late under CPU load or ``coalesce_ms``
would otherwise report the packets' wait in the socket as network queueing, which a browser's delay-based
estimate reads as overuse (docs/adr/0035, tests/media/test_twcc_kernel_arrival.py).

A report names, as its media SSRC, the SSRC of the last numbered packet: Chromium hands transport feedback to its
estimator only when that SSRC is one of its own streams' (libwebrtc's ``RTCPReceiver``), whatever the draft says
about a transport-wide report.

``feedback_loop`` sends each publisher, every ``INTERVAL`` (100 ms, as browsers do toward their own senders),
the reports of what arrived since the last round. It walks only the peers ``attach`` gave a sender (``FeedbackPeers``,
kept by the plane as it attaches), not every peer of the endpoint: at 200 calls x 8 that walk was 1,600 peers ten
times a second whether any of them negotiated the extension or not (the load tool negotiates none); and while no peer
has a sender, the loop sleeps until one does instead of waking ten times a second for nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Generic, Protocol, TypeVar

import trio
from callsd.core.video.arrivals import ArrivalRecorder
from callsd.core.wire import rtcp
from callsd.core.wire.extension_ids import TWCC_URI
from callsd.core.wire.transport_cc import build_transport_cc
from callsd.core.wire.transport_seq import read_transport_seq

from .paths import send_each
from .transport import ArrivalSink

__all__ = ["FeedbackSender", "FeedbackPeers", "ArrivalLog", "attach", "feedback_loop", "send_feedback", "INTERVAL"]

INTERVAL = 0.1


class FeedbackSender:
    """One publisher transport's arrivals (``ext_id``: the id it numbers packets under) and report counters."""

    __slots__ = ("ext_id", "sender_ssrc", "media_ssrc", "recorder", "_epoch", "sent", "log")

    def __init__(self, ext_id: int, sender_ssrc: int, epoch: float) -> None:
        self.ext_id = ext_id
        self.sender_ssrc = sender_ssrc
        self.media_ssrc = 0  # the SSRC of the last numbered packet: what reports name (module docstring)
        self.recorder = ArrivalRecorder()
        self._epoch = epoch
        self.sent = 0  # feedback packets sent
        self.log: ArrivalLog | None = None  # the native step's arrivals, not yet recorded (module docstring)

    def arrived(self, seq: int, ssrc: int, now: float) -> None:
        """Packet ``seq`` of stream ``ssrc`` arrived at ``now`` (``time.monotonic`` seconds)."""
        self.media_ssrc = ssrc
        self.recorder.record(seq, int((now - self._epoch) * 1_000_000))

    def drain(self) -> None:
        """Record what the native step logged since the last drain (a no-op on the Python path)."""
        if self.log is not None:
            for seq, ssrc, now in self.log.drain():
                self.arrived(seq, ssrc, now)

    def on_packet(self, plain: bytes, now: float) -> None:
        """A decrypted RTP packet from the publisher (the Python path): record its number, if it has one."""
        seq = read_transport_seq(plain, self.ext_id)
        if seq is not None:
            self.arrived(seq, int.from_bytes(plain[8:12], "big"), now)


class ArrivalLog(Protocol):
    """The native step's log of arrivals (``_engine.ArrivalLog``): drained once per round."""

    def drain(self) -> list[tuple[int, int, float]]: ...


class _Published(Protocol):
    @property
    def extensions(self) -> tuple[tuple[str, int], ...]: ...


class _Receiving(Protocol):
    twcc_in: ArrivalSink | None


def attach(peer: _Receiving | None, published: Iterable[_Published], sender_ssrc: int,
           clock: Callable[[], float] = time.monotonic) -> None:
    """Give ``peer`` a ``FeedbackSender`` for the transport-wide-cc id its sending sections accepted (the id is
    session-wide), or none; an unchanged id keeps the sender and its pending arrivals."""
    if peer is None:
        return
    ids = {i for p in published for uri, i in p.extensions if uri == TWCC_URI}
    ext_id = ids.pop() if len(ids) == 1 else 0
    current = peer.twcc_in
    if not ext_id:
        peer.twcc_in = None
    elif not isinstance(current, FeedbackSender) or current.ext_id != ext_id:
        peer.twcc_in = FeedbackSender(ext_id, sender_ssrc, clock())


class _FeedbackPeer(Protocol):
    twcc_in: ArrivalSink | None

    def send_rtcp(self, plain: bytes) -> bool: ...


class _EndpointPeer(_FeedbackPeer, Protocol):
    closed: bool  # the endpoint closed it


FeedbackPeer = TypeVar("FeedbackPeer", bound=_FeedbackPeer)
EndpointPeer = TypeVar("EndpointPeer", bound=_EndpointPeer)


def _walked(peer: _EndpointPeer) -> bool:
    """Whether a feedback round walks ``peer``: open, with a sender."""
    return isinstance(peer.twcc_in, FeedbackSender) and not peer.closed


class FeedbackPeers(Generic[EndpointPeer]):
    """The peers a feedback round walks: each peer ``note``d while it has a ``FeedbackSender``, until it closes or
    loses its sender (in the order they got one)."""

    def __init__(self) -> None:
        self._peers: dict[EndpointPeer, None] = {}
        self._some = trio.Event()  # set while there are peers (a new one once they are gone)

    def note(self, peer: EndpointPeer | None) -> None:
        """After ``attach``: keep ``peer`` if it has a sender now, drop it if not."""
        if peer is None:
            return
        if _walked(peer):
            self._peers[peer] = None
            self._some.set()
        elif peer in self._peers:
            self._forget([peer])

    def current(self) -> list[EndpointPeer]:
        """The open peers with a sender (the closed ones are forgotten here)."""
        gone = [peer for peer in self._peers if not _walked(peer)]
        if gone:
            self._forget(gone)
        return list(self._peers)

    def _forget(self, peers: list[EndpointPeer]) -> None:
        for peer in peers:
            del self._peers[peer]
        if not self._peers:  # the next ``wait_some`` waits for a new one
            self._some = trio.Event()

    async def wait_some(self) -> None:
        """Return once some peer has a sender (at once if one has)."""
        await self._some.wait()


def send_feedback(peers: Iterable[FeedbackPeer],
                  send: Callable[[list[tuple[FeedbackPeer, bytes]]], None] = send_each) -> int:
    """One round: each peer with a ``FeedbackSender`` gets the reports of what arrived since the last round. The
    number of RTCP packets sent. ``send``: takes the round's (peer, packet) pairs at once (the endpoint's
    ``send_rtcp_round``: one ``sendmmsg`` on the native path, docs/adr/0042); by default each packet goes through
    its peer's ``send_rtcp``."""
    packets: list[tuple[FeedbackPeer, bytes]] = []
    for peer in peers:
        sender = peer.twcc_in
        if not isinstance(sender, FeedbackSender):
            continue
        sender.drain()
        while (report := sender.recorder.feedback(sender.sender_ssrc, sender.media_ssrc)) is not None:
            packets.append((peer, rtcp.build_rtcp([build_transport_cc(report)])))
            sender.sent += 1
    send(packets)
    return len(packets)


async def feedback_loop(peers: FeedbackPeers[EndpointPeer], sent: Callable[[int], None],
                        send: Callable[[list[tuple[EndpointPeer, bytes]]], None] = send_each) -> None:
    """``send_feedback`` to ``peers`` every ``INTERVAL`` while there are any, until cancelled; ``sent`` hears how
    many reports each round sent (the plane's ``twcc_out`` counter); ``send`` as ``send_feedback``'s."""
    while True:
        await peers.wait_some()
        await trio.sleep(INTERVAL)
        sent(send_feedback(peers.current(), send))
