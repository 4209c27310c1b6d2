"""The media plane's RTCP: what it answers to the RTCP a session sends, and what it sends on its own.

Split from plane.py (one job: RTCP in and out, no negotiation or routing):

- ``RtcpAnswers.handle(session, plain)``: a session's compound RTCP (already unprotected). Sender reports mark the
  published stream's SR time (for its receivers' reports); NACKs are answered from the packet cache (RTX where
  negotiated), and what the cache lacks is asked of the publisher; PLI/FIR become a throttled key-frame request to
  the publisher (of the receiver's simulcast layer); every packet also feeds that receiver's bandwidth estimate.
- ``send_nack``, ``send_pli``, ``send_layer_pli``: the requests the forwarder, the retransmission round and the
  simulcast forwarder send towards publishers.
- ``send_reports(sessions, counters)``: the periodic round, an SR per stream each session receives and an RR about
  the streams it publishes (rtcp_term.py), handed to the endpoint as one batch (one ``sendmmsg`` on the native
  path). The plane calls it every tick for the sessions whose slot it is (report_schedule.py, docs/adr/0042).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from callsd.core.wire import rtcp

from . import rtcp_term
from .estimates import ReceiverEstimates
from .forwarder import Forwarder, ForwarderCounters, InTrack, OutRoute
from .paths import send_each
from .simulcast_fwd import SimulcastForwarder
from .twcc_send import TransportSequencer

if TYPE_CHECKING:
    from .plane_session import Session
    from .transport import Peer

__all__ = ["RtcpAnswers", "send_nack", "send_pli", "send_layer_pli", "send_layer_nack", "send_reports"]


class RtcpAnswers:
    """Acts on the RTCP sessions send (module docstring)."""

    def __init__(self, forwarder: Forwarder, simulcast: SimulcastForwarder, estimates: ReceiverEstimates) -> None:
        self.forwarder = forwarder
        self.simulcast = simulcast
        self.estimates = estimates

    def handle(self, s: Session, plain: bytes) -> None:
        c = self.forwarder.counters
        c.rtcp_in += 1
        try:
            packets = rtcp.parse_rtcp(plain)
        except rtcp.RtcpError:
            c.rtcp_malformed += 1
            return
        twcc = s.peer.twcc if s.peer is not None else None
        self.estimates.on_rtcp(s.session_id, packets, s.out_by_ssrc,
                               twcc if isinstance(twcc, TransportSequencer) else None)
        self.simulcast.estimate_changed(s.session_id)  # its layer choices are made again on the next packet
        for p in packets:
            if isinstance(p, rtcp.SenderReport):
                t = s.inbound.get(p.ssrc)
                if t is not None:
                    t.sr_ntp_mid = (p.ntp_timestamp >> 16) & 0xFFFFFFFF
                    t.sr_rx = time.monotonic()
            elif isinstance(p, rtcp.Nack):
                r = s.out_by_ssrc.get(p.media_ssrc)
                if r is not None and self.simulcast.is_simulcast(r):
                    self.simulcast.answer_nack(r, list(p.lost))
                elif r is not None:
                    missing = self.forwarder.answer_nack(r, list(p.lost))
                    pub = r.track.session.peer
                    if missing and pub is not None and r.track.ssrc is not None:
                        c.nack_forwarded += 1
                        pub.send_rtcp(rtcp.build_nack(sender_ssrc=r.track.session.rtcp_ssrc,
                                                      media_ssrc=r.track.ssrc, lost=missing))
            elif isinstance(p, rtcp.Pli | rtcp.Fir):
                targets = [p.media_ssrc] if isinstance(p, rtcp.Pli) else [ssrc for ssrc, _ in p.entries]
                for media in targets:
                    r = s.out_by_ssrc.get(media)
                    if r is not None:
                        c.pli_in += 1
                        if self.simulcast.is_simulcast(r):
                            self.simulcast.request_keyframe(r)
                        else:
                            self.forwarder.request_keyframe(r.track)


def send_nack(t: InTrack, lost: list[int]) -> bool:
    """Ask ``t``'s publisher for the ``lost`` sequence numbers; False when it cannot be reached yet."""
    peer = t.session.peer
    if peer is None or t.ssrc is None:
        return False
    peer.send_rtcp(rtcp.build_nack(sender_ssrc=t.session.rtcp_ssrc, media_ssrc=t.ssrc, lost=lost))
    return True


def send_layer_pli(s: Session, ssrc: int) -> None:
    """A key frame of one simulcast layer (``ssrc``) of a stream ``s`` publishes."""
    if s.peer is not None:
        s.peer.send_rtcp(rtcp.build_pli(sender_ssrc=s.rtcp_ssrc, media_ssrc=ssrc))


def send_layer_nack(s: Session, ssrc: int, lost: list[int]) -> None:
    """Ask the publisher ``s`` again for packets ``lost`` of one simulcast layer (``ssrc``)."""
    if s.peer is not None:
        s.peer.send_rtcp(rtcp.build_nack(sender_ssrc=s.rtcp_ssrc, media_ssrc=ssrc, lost=lost))


def send_pli(t: InTrack) -> None:
    """A key frame of ``t`` (the forwarder throttles how often it asks)."""
    peer = t.session.peer
    if peer is not None and t.ssrc is not None:
        peer.send_rtcp(rtcp.build_pli(sender_ssrc=t.session.rtcp_ssrc, media_ssrc=t.ssrc))


def send_reports(sessions: Iterable[Session], counters: ForwarderCounters,
                 sr_timestamp: Callable[[OutRoute, float], int | None] | None = None,
                 send: Callable[[list[tuple[Peer, bytes]]], None] = send_each) -> None:
    """One round of RTCP for ``sessions``: an SR per stream each session receives, an RR about the streams it
    publishes. ``sr_timestamp``: a route's own RTP clock where the track's is not its (simulcast routes).
    ``send``: takes the round's (peer, compound packet) pairs at once (the endpoint's ``send_rtcp_round``: one
    ``sendmmsg`` on the native path); by default each packet goes through its peer's ``send_rtcp``."""
    now = time.monotonic()
    ntp = rtcp_term.ntp_now(time.time())
    packets: list[tuple[Peer, bytes]] = []
    for s in sessions:
        peer = s.peer
        if peer is None:
            continue
        for chunk in rtcp_term.session_reports(s.rtcp_ssrc, s.routes_in.values(), s.inbound.values(), now, ntp,
                                               sr_timestamp):
            packets.append((peer, chunk))
    counters.rtcp_out += len(packets)
    send(packets)
