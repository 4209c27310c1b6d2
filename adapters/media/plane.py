"""The media plane: SDP negotiation, the forwarding table and RTCP termination around the UDP endpoint.

Public API (what the server calls; every method is synchronous except ``serve``)
-------------------------------------------------------------------------------
    plane = MediaPlane(config, emit)          # config: app Config.rtc (RtcConfig) or a PlaneConfig
    await nursery.start(plane.serve)          # binds the RTC port; task_status.started((host, port))
    plane.open_session(session_id, channel_id)
    plane.handle_signal(session_id, msg)      # {"type": "offer"|"answer", "sdp": str} | {"type": "candidate", ...}
                                              # raises SdpRejected (the server answers error "sdp_rejected")
    plane.set_screen_stream(session_id, stream_id | None)
    plane.apply(outputs)                      # core outputs; RouteAdded/Removed/Paused/Resumed are used
    plane.close_session(session_id)
    plane.restore_routes(machine.routes(channel_id))   # after re-opening a reconnecting session (idempotent)
    plane.counters                            # dict-like view of plain ints (forwarder + negotiation)
    plane.endpoint.counters                   # the transport's counters

``emit(event)`` receives ``adapters.media.events``: ``SendSignal`` (answers and server offers), ``TrackPublished``,
``TrackUnpublished``, ``SessionConnected``, ``SessionClosed``, ``VoiceActivity``.

Theory of operation
-------------------
SDP is read, written and negotiated by the pure core: one ``core.negotiation.Negotiator`` per session (policy,
glare rule, section layout: see its module comment and docs/adr/0004-sdp-negotiation.md). The plane turns the
negotiator's results into effects: it sends answers and offers (``SendSignal``), registers the session's peer on
the endpoint with the client's ICE credentials, fingerprint and the DTLS role, keeps one ``InTrack`` per section the
client publishes on (track id ``<session id>_<mid>``, kind from the m-line, screen kinds when the section's msid
stream is the session's screen stream) and emits ``TrackPublished``/``TrackUnpublished`` as that set changes.

The server only sends on sections it creates, one per routed track (``RouteAdded``), each with its own SSRC: after
every route change the plane hands the receiver's negotiator the whole outgoing set (``make_offer``), which offers
what changed unless an offer is already outstanding (it offers after the answer). Audio receive slots
(plane_slots.py) are sections too: offered by the server, or the client's own, named in its first offer's
``slot_mids`` and answered ``sendonly`` (then no server offer follows: a join is one round). A removed route's
section turns ``inactive`` for good. A route carries packets only once the receiver's answer accepted its section (the
negotiator's ``sending``: payload type and extension ids in the receiver's numbering are bound then), and a new
video route asks the publisher for a keyframe. The server is the impolite side of perfect negotiation
(docs/protocol.md): a client offer that crosses the server's outstanding offer is ignored and counted
(``glare_ignored``); the client rolls back, answers, and offers again.

RTCP is terminated here (``core.rtcp`` parses and builds): receivers' PLI/FIR become one PLI per second per track to
the publisher, NACKs are answered from the track's cache (or passed on to the publisher), and every second each
session gets an SR per stream the server sends it and an RR about the streams it publishes (rtcp_term.py).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

import trio
from callsd.core.calls.events import TrackKind
from callsd.core.calls.outputs import OutputEvent, RouteAdded, RoutePaused, RouteRemoved, RouteResumed
from callsd.core.calls.state import Route
from callsd.core.wire.negotiation import (
    ABS_SEND_TIME_URI,
    AUDIO_LEVEL_URI,
    MID_URI,
    TOFFSET_URI,
    TWCC_URI,
    VIDEO_ORIENTATION_URI,
    AnswerRejected,
    LocalTransport,
    NegotiationState,
    Negotiator,
    OfferIgnored,
    OfferRejected,
    OutgoingTrack,
    PublishedTrack,
    SdpRejectReason,
)
from callsd.core.wire.rtp import read_mid

from . import plane_rtcp, plane_slots, retransmit, twcc_recv, twcc_send
from .advertiser import rtc_bind
from .estimates import ReceiverEstimates
from .events import (
    MediaEvent,
    SendSignal,
    SessionClosed,
    SessionConnected,
    TrackPublished,
    TrackUnpublished,
    VoiceActivity,
)
from .forwarder import Forwarder, InTrack, OutRoute
from .ice_outcome import IceOutcomeWatch
from .paths import make_path
from .plane_network import PlaneNetwork
from .plane_session import PlaneConfig, PlaneCounters, PlaneSettings, SdpRejected, Session
from .probing import ProbeSender
from .random_pool import POOL
from .report_schedule import ReportSchedule
from .simulcast_fwd import SimulcastForwarder
from .transport import Peer, TransportConfig, UdpEndpoint

__all__ = ["MediaPlane", "PlaneConfig", "SdpRejected"]

log = logging.getLogger("callsd.media.plane")

# Extensions forwarded from a publisher's packets to receivers (renumbered); every other element, MID included, is
# blanked: receivers demultiplex by the signalled SSRC.
FORWARDED_EXT = {
    "audio": (AUDIO_LEVEL_URI,),
    "video": (ABS_SEND_TIME_URI, TOFFSET_URI, VIDEO_ORIENTATION_URI),
}


def _now() -> float:
    """Trio's clock (the endpoint's and the watch's time base); 0 outside Trio (unit tests of bookkeeping)."""
    try:
        return trio.current_time()
    except RuntimeError:
        return 0.0


_SOURCES = {TrackKind.AUDIO: "microphone", TrackKind.VIDEO: "camera", TrackKind.SCREEN_VIDEO: "screen",
            TrackKind.SCREEN_AUDIO: "screen"}


def _track_info(mid: str, t: InTrack) -> dict[str, str | None]:
    """One entry of a server offer's ``tracks`` (docs/protocol.md): who publishes the section's media, and what."""
    return {"mid": mid, "session_id": t.session.session_id, "kind": t.media, "source": _SOURCES[t.kind]}


class MediaPlane:
    """See the module docstring."""

    def __init__(self, config: PlaneSettings, emit: Callable[[MediaEvent], None], *,
                 report_interval: float = 1.0) -> None:
        self.config = config
        self._emit = emit
        self.sessions: dict[str, Session] = {}
        self.tracks: dict[str, InTrack] = {}
        self.negotiation = PlaneCounters()
        self.forwarder = Forwarder(send_pli=plane_rtcp.send_pli, on_voice=self._on_voice)
        self.estimates = ReceiverEstimates()  # per receiving session, from its REMB and reports (ADR 0019)
        self.simulcast = SimulcastForwarder(self.forwarder, plane_rtcp.send_layer_pli, self.estimates.estimate,
                                            send_nack=plane_rtcp.send_layer_nack, proven=self.estimates.proven)
        self.rtcp_in = plane_rtcp.RtcpAnswers(self.forwarder, self.simulcast, self.estimates)
        self.probes = ProbeSender(self.sessions.values, self.simulcast.wanted_bps, self.estimates.proven,
                                  any_wanted=lambda: bool(self.simulcast.tracks))
        self.twcc_out = 0  # transport-cc reports sent to publishers (twcc_recv.feedback_loop)
        self.feedback_peers: twcc_recv.FeedbackPeers[Peer] = twcc_recv.FeedbackPeers()  # the peers it walks

        self.endpoint = UdpEndpoint(
            TransportConfig(host=rtc_bind(config), port=config.ice_port_udp,
                            rcvbuf=config.udp_rcvbuf,
                            sndbuf=config.udp_sndbuf,
                            max_addresses_per_session=config.ice_max_addresses_per_session,
                            coalesce=config.coalesce_ms / 1000.0),
            self,
            path=make_path(config.fast_path, self.forwarder, self.simulcast),
        )
        self.address: tuple[str, int] | None = None
        self.network = PlaneNetwork(config)
        self.advertiser = self.network.advertiser  # what /healthz reports (advertiser.advertised_by)
        self.ice_watch = IceOutcomeWatch(timeout=float(config.ice_check_timeout),
                                         advertised=self.network.advertised_text, emit=emit)
        self._report_interval = report_interval
        self.reports: ReportSchedule[Session] = ReportSchedule()  # each session's tick of the interval (ADR 0042)

    # -- serving ------------------------------------------------------------------------------------------------
    async def serve(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Run the endpoint and the periodic RTCP task until cancelled; reports the bound ``(host, port)``."""
        async with trio.open_nursery() as nursery:
            self.address = await nursery.start(self.endpoint.serve)
            await self.network.start(nursery, self.endpoint)
            nursery.start_soon(self._periodic)
            nursery.start_soon(self._report_ticks)
            nursery.start_soon(self.probes.run)
            nursery.start_soon(twcc_recv.feedback_loop, self.feedback_peers, self._feedback_sent,
                               self.endpoint.send_rtcp_round)
            task_status.started(self.address)

    def _feedback_sent(self, reports: int) -> None:
        self.twcc_out += reports

    async def refresh_counters(self, timeout: float = 1.0) -> None:
        """The counters are read in place (``counters``): nothing to fetch (media workers fetch theirs)."""

    @property
    def counters(self) -> dict[str, int]:
        out = self.forwarder.counters.as_dict()
        out.update(self.ice_watch.counters.as_dict())
        out.update(self.network.counters())
        out.update(self.estimates.counters())
        out.update(self.probes.counters())
        out.update(self.simulcast.counters())
        out["twcc_out"] = self.twcc_out
        out.update({n: getattr(self.negotiation, n) for n in PlaneCounters.__slots__})
        return out

    def media_counters(self) -> dict[str, int]:
        """The plane's counters and its endpoint's in one dict, as /metrics and a media worker's report read them."""
        return {**self.counters, **self.endpoint.counters.snapshot(), "drop_socket_full": self.endpoint.socket_drops()}

    def _transport(self, ufrag: str, pwd: str) -> LocalTransport:
        hosts, port = self.network.candidate()
        return LocalTransport(ice_ufrag=ufrag, ice_pwd=pwd, fingerprint=self.endpoint.fingerprint, host=hosts[0],
                              extra_hosts=hosts[1:], port=port, tcp_port=self.network.tcp_port)

    def _refresh(self, s: Session) -> Negotiator:
        """The session's negotiator, describing the endpoint as it is now (the port is known once serving)."""
        t = s.neg.transport
        if ((t.host, *t.extra_hosts), t.port) != self.network.candidate() or t.tcp_port != self.network.tcp_port:
            s.neg.transport = self._transport(s.ufrag, s.pwd)
        return s.neg

    # -- sessions -----------------------------------------------------------------------------------------------
    def open_session(self, session_id: str, channel_id: str, simulcast: bool = True) -> None:
        """Register a session with no routes; its client's first offer is expected next. Re-opening replaces the
        old one. A re-opened session (the server's reconnect path: a new page takes over the session) gets the routes
        the core still has towards it through ``restore_routes``, the one way routes come back. ``simulcast`` is the
        owning server's ``calls.enable_simulcast``: whether this session's offers may carry layers (a remote rtcd
        host learns it per session, since servers with different settings may share it).
        """
        if session_id in self.sessions:
            self.close_session(session_id)
        self.sessions[session_id] = Session(session_id, channel_id,
                                            self._transport(POOL.token_hex(4), POOL.token_hex(16)),
                                            simulcast)
        self.reports.add(session_id, self.sessions[session_id])

    def close_session(self, session_id: str) -> None:
        """Forget a session: its peer, its tracks (their routes to others are torn down and re-offered), its routes.

        Emits no ``TrackUnpublished``: the server tells the core the session left, which removes its tracks.
        """
        s = self.sessions.pop(session_id, None)
        if s is None:
            return
        s.closed = True
        self.reports.remove(session_id)
        self.estimates.forget(session_id)
        self.endpoint.remove_peer(session_id)
        self.ice_watch.forget(session_id)
        s.peer = None
        touched: set[Session] = set()
        for t in list(s.published.values()):
            self._drop_track(t, touched)
        s.published.clear()
        for r in list(s.routes_in.values()):
            self._drop_route(r)
        for other in touched:
            self._negotiate(other)

    def set_screen_stream(self, session_id: str, stream_id: str | None) -> None:
        s = self.sessions.get(session_id)
        if s is not None:
            s.screen_stream = stream_id

    # -- signaling ----------------------------------------------------------------------------------------------
    def handle_signal(self, session_id: str, msg: dict[str, Any]) -> None:
        """Apply one signaling message of the client. Emits ``SendSignal`` (answer, re-offer) and track events.

        Raises ``SdpRejected`` for an unknown session or an unusable SDP.
        """
        s = self.sessions.get(session_id)
        if s is None:
            raise SdpRejected("unknown session")
        kind = msg.get("type")
        if kind == "candidate":
            return  # ICE-lite: the client's address is learned from its checks
        sdp = msg.get("sdp")
        if not isinstance(sdp, str):
            raise SdpRejected("missing sdp")
        if kind == "offer":
            try:
                mids = plane_slots.slot_mids(msg.get("slot_mids"))
            except ValueError as exc:
                raise self._rejected(SdpRejectReason.BAD_RECEIVE_SLOTS, str(exc)) from exc
            plane_slots.enable(s, len(mids) or plane_slots.requested_slots(msg.get("audio_slots")))
            self._on_offer(s, sdp, plane_slots.receive_on(s, mids))
        elif kind == "answer":
            self._on_answer(s, sdp)
        else:
            raise SdpRejected(f"unknown signal type {kind!r}")

    def _rejected(self, reason: SdpRejectReason | str, detail: str) -> SdpRejected:
        self.negotiation.sdp_rejected += 1
        return SdpRejected(f"{reason}: {detail}")

    def _on_offer(self, s: Session, text: str, receive_on: dict[str, OutgoingTrack]) -> None:
        self.negotiation.offers_in += 1
        result = self._refresh(s).handle_offer(text, receive_on)
        if isinstance(result, OfferIgnored):
            self.negotiation.glare_ignored += 1  # impolite: the client rolls back and answers our offer
            return
        if isinstance(result, OfferRejected):
            raise self._rejected(result.reason, result.detail)
        remote = result.remote
        key = (remote.ice_ufrag, remote.ice_pwd, remote.fingerprint)
        if key != s.remote:
            try:
                s.peer = None
                self.endpoint.add_peer(s.session_id, s.ufrag, s.pwd, *key,
                                       "passive" if remote.dtls_role == "server" else "active")
                self.ice_watch.peer_added(s.session_id, _now())
            except ValueError as exc:
                raise self._rejected("bad_transport", str(exc)) from exc
            s.remote = key
        answer: dict[str, Any] = {"type": "answer", "sdp": result.answer}
        if receive_on:  # the answer put slots on the client's own sections: whose audio each carries already
            answer["tracks"] = [_track_info(mid, t) for mid, key in plane_slots.busy_slots(s)
                                if (t := self.tracks.get(key))]
        self._emit(SendSignal(session_id=s.session_id, msg=answer))
        self.negotiation.answers_out += 1
        plane_slots.refuse(s, result.refused)
        self._after_negotiation(s)

    def _on_answer(self, s: Session, text: str) -> None:
        self.negotiation.answers_in += 1
        result = s.neg.handle_answer(text)
        if isinstance(result, AnswerRejected):
            # a bad answer rolls the offer back; what it offered is offered again with the next change
            raise self._rejected(result.reason, result.detail)
        plane_slots.refuse(s, result.refused)
        self._after_negotiation(s)

    def _after_negotiation(self, s: Session) -> None:
        """Bring tracks and routes in line with what ``s.neg`` has agreed, then offer what is still missing."""
        touched: set[Session] = set()
        self._sync_published(s, touched)
        self._sync_sending(s)
        for other in touched:
            self._negotiate(other)
        self._negotiate(s)

    def _sync_published(self, s: Session, touched: set[Session]) -> None:
        """Emit ``TrackUnpublished``/``TrackPublished`` for the sections the client stopped/started sending on.

        After the media path died (``on_closed``) nothing is published again until an offer re-registers the peer.
        """
        current = {p.mid: p for p in s.neg.published}
        for p in current.values():
            s.mid_ext_id = p.extension_id(MID_URI) or s.mid_ext_id
        twcc_recv.attach(s.peer, current.values(), s.rtcp_ssrc)
        self.feedback_peers.note(s.peer)
        for mid, t in list(s.published.items()):
            section = current.get(mid)
            if section is None:
                del s.published[mid]
                self._emit(TrackUnpublished(session_id=s.session_id, track_id=t.track_id))
                self._drop_track(t, touched)
            elif section.ssrcs and section.ssrcs[0] != t.ssrc:  # same section, new SSRC (a replaced sender): re-key
                if t.ssrc is not None and s.inbound.get(t.ssrc) is t:
                    del s.inbound[t.ssrc]
                t.ssrc = section.ssrcs[0]
                s.inbound[t.ssrc] = t
                retransmit.register_rtx(s.inbound_rtx, t, section.rtx_ssrc, section.rtx_payload_type)
        if s.remote is None:
            return
        for mid, p in current.items():
            if mid not in s.published:
                t = s.published[mid] = self._new_track(s, p)
                s.codecs[mid] = p.codec
                self.tracks[t.track_id] = t
                self.negotiation.tracks += 1
                self._emit(TrackPublished(session_id=s.session_id, track_id=t.track_id, kind=t.kind))

    def _new_track(self, s: Session, p: PublishedTrack) -> InTrack:
        stream = p.stream_id if p.stream_id and p.stream_id != "-" else s.session_id
        screen = s.screen_stream is not None and stream == s.screen_stream
        if p.kind == "audio":
            kind = TrackKind.SCREEN_AUDIO if screen else TrackKind.AUDIO
        else:
            kind = TrackKind.SCREEN_VIDEO if screen else TrackKind.VIDEO
        c = p.codec
        t = InTrack(track_id=f"{s.session_id}_{p.mid}", session=s, kind=kind, media=p.kind, mid=p.mid,
                    ssrc=p.ssrcs[0] if p.ssrcs else None, clock_rate=c.clock_rate,
                    codecs={c.payload_type: (c.name.lower(), c.clock_rate, c.channels or 1, c.fmtp or "")},
                    ext=dict(p.extensions), stream_id=stream)
        if t.ssrc is not None:
            s.inbound[t.ssrc] = t
        retransmit.register_rtx(s.inbound_rtx, t, p.rtx_ssrc, p.rtx_payload_type)
        self.simulcast.add_track(t, p.rids, p.rtx_payload_type)
        if t.track_id in self.simulcast.tracks:  # something may be wanted now: an idle probe task looks again
            self.probes.wake()
        return t

    def _sync_sending(self, s: Session, only: OutRoute | None = None) -> None:
        """Mark the routes the client accepted (bind their PT and extension ids) as negotiated, the others not;
        ``only``: just that route (a route put on a slot: the others did not change)."""
        sending = plane_slots.sending(s, only)
        if only is None:  # a whole answer: the transport-wide-cc id it accepted on every section it receives, or 0
            twcc_ids = {dict(st.extensions).get(TWCC_URI, 0) for st in sending.values()}
            s.twcc_ext_id = twcc_ids.pop() if len(twcc_ids) == 1 else 0
            twcc_send.attach(s.peer, s.twcc_ext_id)
        for r in s.routes_in.values() if only is None else (only,):
            st = sending.get(plane_slots.slot_key(s, r.track.track_id))
            accepted = st is not None and st.ssrc == r.ssrc
            if st is not None and accepted:
                t = r.track
                ext = dict(st.extensions)
                r.set_mapping({next(iter(t.codecs)): st.payload_type},
                              {t.ext[u]: ext[u] for u in FORWARDED_EXT[t.media] if t.ext.get(u) and ext.get(u)})
                r.rtx_pt = st.rtx_payload_type if st.rtx_ssrc is not None and st.rtx_ssrc == r.rtx_ssrc else None
            if accepted != r.negotiated:
                r.negotiated = accepted
                r.track.relive()
                if accepted and r.track.media == "video":
                    self.forwarder.request_keyframe(r.track)

    def _outgoing(self, s: Session) -> list[OutgoingTrack]:
        out = plane_slots.slot_tracks(s)
        slots = s.audio_slots
        for r in s.routes_in.values():
            t = r.track
            codec = t.session.codecs.get(t.mid)
            if codec is None or t.track_id in s.refused or (slots is not None and slots.slot_of(t.track_id)):
                continue
            out.append(OutgoingTrack(track_id=t.track_id, stream_id=t.stream_id, kind=t.media, ssrc=r.ssrc,
                                     codec=codec, rtx_ssrc=r.rtx_ssrc, cname=f"callsd-{t.session.session_id}"))
        return out

    def _announce_slot(self, s: Session, slot_id: str, track: InTrack | None) -> None:
        """Tell the client whose audio a slot carries now (``track``), or that it carries nobody's (None); a slot
        not offered yet is named by the offer that adds it."""
        mid = s.neg.mid_of(slot_id)
        if mid is not None and not s.closed:
            entry = _track_info(mid, track) if track is not None else {"mid": mid, "session_id": None}
            self._emit(SendSignal(session_id=s.session_id, msg={"type": "slots", "tracks": [entry]}))

    def _negotiate(self, s: Session) -> None:
        """Offer the session its current outgoing set if that changed; after the answer if an offer is out."""
        if s.closed or s.neg.state is NegotiationState.NEW:
            return  # the first client offer comes first: its answer is followed by our offer
        made = self._refresh(s).make_offer(self._outgoing(s))
        if made is not None:
            self.negotiation.offers_out += 1
            on_slot = {slot.slot_id: slot.track_id for slot in s.audio_slots or () if slot.track_id is not None}
            tracks = [_track_info(mid, t) for mid, key in made.sections
                      if (t := self.tracks.get(on_slot.get(key, key)))]
            self._emit(SendSignal(session_id=s.session_id, msg={"type": "offer", "sdp": made.offer, "tracks": tracks}))

    # -- routing (core outputs) ---------------------------------------------------------------------------------
    def apply(self, outputs: Iterable[OutputEvent]) -> None:
        """Apply the core's routing outputs; other outputs are ignored. Re-offers each touched receiver once."""
        touched: dict[str, Session] = {}
        for o in outputs:
            if isinstance(o, RouteAdded):
                t = self.tracks.get(o.track_id)
                s = self.sessions.get(o.receiver_id)
                if t is None or s is None or t.ended or o.receiver_id in t.routes:
                    self.negotiation.unknown_route += 1
                    continue
                self._add_route(t, s, o.paused)
                touched[s.session_id] = s
            elif isinstance(o, RouteRemoved):
                t = self.tracks.get(o.track_id)
                r = t.routes.get(o.receiver_id) if t is not None else None
                if r is None:
                    self.negotiation.unknown_route += 1
                    continue
                self._drop_route(r)
                touched[r.receiver.session_id] = r.receiver
            elif isinstance(o, (RoutePaused, RouteResumed)):
                t = self.tracks.get(o.track_id)
                r = t.routes.get(o.receiver_id) if t is not None else None
                if r is None:
                    self.negotiation.unknown_route += 1
                    continue
                paused = isinstance(o, RoutePaused)
                if r.paused != paused:
                    r.paused = paused
                    r.resync = True
                    t.relive()  # type: ignore[union-attr]
                    if not paused and r.track.media == "video":
                        self.forwarder.request_keyframe(r.track)
        for s in touched.values():
            self._negotiate(s)

    def _add_route(self, t: InTrack, s: Session, paused: bool) -> OutRoute:
        """A route of ``t`` to ``s`` with its own SSRC (an audio slot's, when ``s`` has slots) and random initial
        numbering; a route on a fresh slot that the client already accepted carries packets at once, any other is
        offered by ``_negotiate``."""
        on_slot = plane_slots.place(s, t.track_id) if t.media == "audio" else None
        ssrc = on_slot[0] if on_slot is not None else plane_slots.draw_ssrc(s)
        r = OutRoute(track=t, receiver=s, ssrc=ssrc, mid="", paused=paused, ts_offset=POOL.randbits(32))
        r.last_seq = POOL.randbits(15)
        if t.media == "video":  # offered with RTX; used if the receiver accepts it (_sync_sending)
            r.rtx_ssrc, r.rtx_seq = plane_slots.draw_ssrc(s, {ssrc}), POOL.randbits(15)
        t.routes[s.session_id] = r
        s.routes_in[t.track_id] = r
        s.out_by_ssrc[ssrc] = r
        s.refused.discard(t.track_id)
        self.negotiation.routes += 1
        if on_slot is not None:
            self._sync_sending(s, r)
            self._announce_slot(s, on_slot[1], t)
        return r

    def _drop_route(self, r: OutRoute) -> None:
        if r.removed:
            return
        r.removed = True
        t, s = r.track, r.receiver
        if t.routes.get(s.session_id) is r:
            del t.routes[s.session_id]
        t.relive()
        if s.routes_in.get(t.track_id) is r:
            del s.routes_in[t.track_id]
        s.out_by_ssrc.pop(r.ssrc, None)
        freed = s.audio_slots.release(t.track_id) if s.audio_slots is not None else None
        if freed is not None:
            self._announce_slot(s, freed.slot_id, None)
        self.simulcast.forget_route(r)
        self.negotiation.routes -= 1

    def _drop_track(self, t: InTrack, touched: set[Session]) -> None:
        t.ended = True
        for r in list(t.routes.values()):
            self._drop_route(r)
            touched.add(r.receiver)
        if t.ssrc is not None and t.session.inbound.get(t.ssrc) is t:
            del t.session.inbound[t.ssrc]
        retransmit.register_rtx(t.session.inbound_rtx, t, None, None)
        self.simulcast.forget_track(t)
        if self.tracks.get(t.track_id) is t:
            del self.tracks[t.track_id]
            self.negotiation.tracks -= 1

    # -- transport callbacks ------------------------------------------------------------------------------------
    def on_connected(self, peer: Peer) -> None:
        s = self.sessions.get(peer.session_id)
        if s is None:
            return
        s.peer = peer
        peer.data = s
        twcc_send.attach(peer, s.twcc_ext_id)
        twcc_recv.attach(peer, s.neg.published, s.rtcp_ssrc)
        self.feedback_peers.note(peer)
        self._emit(SessionConnected(session_id=s.session_id))
        self.ice_watch.connected(s.session_id, self.network.client_address(peer.address), _now())
        for r in s.routes_in.values():
            if r.negotiated:
                self.forwarder.request_keyframe(r.track)

    def on_closed(self, peer: Peer, reason: str) -> None:
        """The media path died. The session's published tracks end here (the server unpublishes them in the core
        on ``SessionClosed``); its routes as a receiver stay, so an ICE restart (a new client offer with new ICE
        credentials) resumes them, and re-publishes the tracks its sections still send."""
        s = self.sessions.get(peer.session_id)
        if s is None or (s.peer is not None and s.peer is not peer):
            return
        s.peer = None
        s.remote = None  # the next client offer re-registers the peer
        self.ice_watch.closed(s.session_id, reason)
        touched: set[Session] = set()
        for t in list(s.published.values()):
            self._drop_track(t, touched)
        s.published.clear()
        for other in touched:
            self._negotiate(other)
        self._emit(SessionClosed(session_id=peer.session_id, reason=reason))

    def restore_routes(self, routes: Iterable[Route | RouteAdded]) -> None:
        """Add the routes (core ``Route``s or ``RouteAdded``s) the plane does not have yet, e.g. after a
        reconnecting session was re-opened: ``plane.restore_routes(machine.routes(channel_id))``. Idempotent."""
        touched: dict[str, Session] = {}
        for o in routes:
            t = self.tracks.get(o.track_id)
            s = self.sessions.get(o.receiver_id)
            if t is None or s is None or t.ended or o.receiver_id in t.routes or t.session is s:
                continue
            self._add_route(t, s, o.paused)
            touched[s.session_id] = s
        for s in touched.values():
            self._negotiate(s)

    def on_rtp(self, peer: Peer, plain: bytes) -> None:
        s = peer.data
        if s is None or s.closed:
            return
        if (self.forwarder.on_rtp(s.inbound, plain) is None and len(plain) >= 12 and plain[0] >> 6 == 2
                and not retransmit.unwrap_publisher_rtx(self.forwarder, s.inbound, s.inbound_rtx, plain)
                and not self.simulcast.on_rtp(s.published, plain)):
            self._learn_ssrc(s, plain)

    def _learn_ssrc(self, s: Session, plain: bytes) -> None:
        """A publisher that did not signal its SSRC: bind it through the MID extension, then forward."""
        if not s.mid_ext_id:
            return
        mid = read_mid(plain, s.mid_ext_id)
        t = s.published.get(mid) if mid is not None else None
        if t is not None and t.ssrc is None and plain[1] & 0x7F in t.codecs:  # not from an RTX padding probe
            t.ssrc = int.from_bytes(plain[8:12], "big")
            s.inbound[t.ssrc] = t
            self.forwarder.counters.drop_unknown_ssrc -= 1
            self.forwarder.on_rtp(s.inbound, plain)

    def on_rtcp(self, peer: Peer, plain: bytes) -> None:
        s = self.sessions.get(peer.session_id)
        if s is not None:
            self.rtcp_in.handle(s, plain)

    def _on_voice(self, s: Session, speaking: bool) -> None:
        if not s.closed:
            self._emit(VoiceActivity(session_id=s.session_id, speaking=speaking))

    # -- periodic RTCP ------------------------------------------------------------------------------------------
    async def _periodic(self) -> None:
        while True:
            await trio.sleep(self._report_interval / 4)
            self.forwarder.tick(list(self.tracks.values()))
            retransmit.nack_round(self.forwarder, list(self.tracks.values()), plane_rtcp.send_nack)
            self.simulcast.nack_round()
            self.ice_watch.check(trio.current_time(), self.endpoint.peer)

    async def _report_ticks(self) -> None:
        """Every interval / slots, the reports of the sessions whose slot it is (ADR 0042). Deadlines on a grid: a
        late tick does not push the next ones, so each session keeps one report per interval; a loop held for more
        than a whole interval starts a new grid rather than catching up with a burst."""
        step = self._report_interval / self.reports.slots
        deadline = trio.current_time()
        while True:
            deadline += step
            if trio.current_time() - deadline > self._report_interval:
                deadline = trio.current_time()
            await trio.sleep_until(deadline)
            self.send_due_reports()

    def send_due_reports(self) -> None:
        """One tick of the reporting interval: the reports of the sessions whose slot comes next."""
        self._send(self.reports.due())

    def send_reports(self) -> None:
        """One whole round of RTCP at once (tests): an SR per stream each session receives, an RR about the
        streams it publishes."""
        self._send(self.sessions.values())

    def _send(self, sessions: Iterable[Session]) -> None:
        # a route's own SR clock only exists for simulcast tracks: with none, no call per route to learn it
        own_clock = self.simulcast.sr_timestamp if self.simulcast.tracks else None
        plane_rtcp.send_reports(sessions, self.forwarder.counters, own_clock, self.endpoint.send_rtcp_round)
