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
A session starts with the client's offer. The plane answers it (ICE-lite, its own ufrag/pwd, the endpoint's
fingerprint, one host candidate, ``setup:passive`` unless the client is passive), registers the session's peer on
the endpoint and emits ``TrackPublished`` for every section the client sends on (kind from the m-line, screen kinds
when the section's msid stream is the session's screen stream). The client only ever *sends* on the sections it
created; the server only sends on sections it creates itself, one per forwarded track, with its own SSRC. When the
core routes a track to a receiver (``RouteAdded``) the plane adds a section to that receiver's list and re-offers;
a removed route turns its section ``inactive`` (sections are never recycled). A route carries packets only once
the receiver's answer accepted its section, and a new video route asks the publisher for a keyframe.

Negotiation per session is a two-state machine, ``stable`` or ``have-local-offer``: route changes while an offer
is outstanding mark the session dirty and are offered after the answer. The server is the *impolite* side of
perfect negotiation (docs/protocol.md): a client offer that arrives while the server's offer is outstanding is
ignored, the client rolls back, answers, and offers again.

RTCP is terminated here: receivers' PLI/FIR become one PLI per second per track to the publisher, NACKs are answered
from the track's cache (or passed on to the publisher), and every second each session gets an SR per stream the
server sends it and an RR about the streams it publishes.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import trio
from callsd.core.events import TrackKind
from callsd.core.outputs import RouteAdded, RoutePaused, RouteRemoved, RouteResumed

from . import rtcp_term as rtcp
from .events import (
    MediaEvent,
    SendSignal,
    SessionClosed,
    SessionConnected,
    TrackPublished,
    TrackUnpublished,
    VoiceActivity,
)
from .forwarder import URI_AUDIO_LEVEL, URI_MID, Forwarder, InTrack, OutRoute, parse_ext
from .sdp_glue import Codec, MLine, SdpError, ServerSection, parse_sdp, render_sdp
from .transport import Peer, TransportConfig, UdpEndpoint

__all__ = ["MediaPlane", "PlaneConfig", "SdpRejected"]

log = logging.getLogger("callsd.media.plane")

URI_ABS_SEND_TIME = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"
URI_TOFFSET = "urn:ietf:params:rtp-hdrext:toffset"
URI_VIDEO_ORIENTATION = "urn:3gpp:video-orientation"
# Extensions the server accepts from publishers, and those it forwards (MID is rewritten by dropping it: receivers
# demultiplex by the signalled SSRC).
ACCEPTED_EXT = {URI_MID, URI_AUDIO_LEVEL, URI_ABS_SEND_TIME, URI_TOFFSET, URI_VIDEO_ORIENTATION}
FORWARDED_EXT = {
    "audio": (URI_AUDIO_LEVEL,),
    "video": (URI_ABS_SEND_TIME, URI_TOFFSET, URI_VIDEO_ORIENTATION),
}
VIDEO_FB = ["nack", "nack pli", "ccm fir"]
VIDEO_CODECS = ("vp8", "h264")
AUDIO_CODECS = ("opus",)


class SdpRejected(Exception):
    """The client's SDP cannot be used; ``reason`` says why (the server answers ``sdp_rejected``)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True, kw_only=True)
class PlaneConfig:
    ice_address_udp: str = "127.0.0.1"
    ice_port_udp: int = 8443
    ice_host_override: str = ""
    ice_host_port_override: int = 0
    udp_rcvbuf: int = 4 * 1024 * 1024
    udp_sndbuf: int = 4 * 1024 * 1024
    report_interval: float = 1.0


class Section:
    """One m-section of a session, as the server sees it."""

    __slots__ = ("mid", "kind", "origin", "direction", "codecs", "extmap", "rejected", "proto", "fmts", "route",
                 "track", "offered")

    def __init__(self, *, mid: str, kind: str, origin: str) -> None:
        self.mid = mid
        self.kind = kind
        self.origin = origin  # "client" (the client sends on it) | "server" (one forwarded track)
        self.direction = "inactive"  # the client's direction, for client sections
        self.codecs: list[Codec] = []
        self.extmap: dict[int, str] = {}
        self.rejected = False
        self.proto = "UDP/TLS/RTP/SAVPF"
        self.fmts: list[str] = []
        self.route: OutRoute | None = None  # server sections: the route it carries, None once removed
        self.track: InTrack | None = None  # client sections: the published track
        self.offered = origin == "client"  # known to the client (in an offer or answer already)

    def server_view(self, session: Session) -> ServerSection:
        if self.rejected:
            return ServerSection(kind=self.kind, mid=self.mid, direction="rejected", codecs=[], extmap={},
                                 proto=self.proto, fmts=self.fmts)
        if self.origin == "client":
            sending = self.direction in ("sendonly", "sendrecv")
            return ServerSection(kind=self.kind, mid=self.mid, direction="recvonly" if sending else "inactive",
                                 codecs=self.codecs, extmap=self.extmap)
        r = self.route
        if r is None:
            return ServerSection(kind=self.kind, mid=self.mid, direction="inactive", codecs=self.codecs,
                                 extmap=self.extmap)
        t = r.track
        return ServerSection(kind=self.kind, mid=self.mid, direction="sendonly", codecs=self.codecs,
                             extmap=self.extmap, ssrc=r.ssrc, msid_stream=t.stream_id, msid_track=t.track_id,
                             cname=f"callsd-{t.session.session_id}")


class Session:
    __slots__ = ("session_id", "channel_id", "ufrag", "pwd", "peer", "remote", "sections", "ext_ids", "pts",
                 "inbound", "routes_in", "out_by_ssrc", "screen_stream", "version", "offer_pending", "dirty",
                 "started", "rtcp_ssrc", "next_mid", "closed", "ice_sid", "role")

    def __init__(self, session_id: str, channel_id: str) -> None:
        self.session_id = session_id
        self.channel_id = channel_id
        self.ufrag = secrets.token_hex(4)
        self.pwd = secrets.token_hex(16)
        self.peer: Peer | None = None
        self.remote: tuple[str, str, str] | None = None
        self.sections: list[Section] = []
        self.ext_ids: dict[str, int] = {}  # uri -> id, as the client numbered them
        self.pts: dict[tuple[str, int, int], int] = {}  # codec key -> the client's payload type
        self.inbound: dict[int, InTrack] = {}  # publisher SSRC -> track
        self.routes_in: dict[str, OutRoute] = {}  # track_id -> route to this session
        self.out_by_ssrc: dict[int, OutRoute] = {}
        self.screen_stream: str | None = None
        self.version = 1
        self.offer_pending = False
        self.dirty = False
        self.started = False  # the first client offer was answered
        self.rtcp_ssrc = secrets.randbits(32) or 1
        self.next_mid = 0
        self.closed = False
        self.ice_sid = secrets.randbits(62)
        self.role = "passive"  # the server's a=setup once the peer is registered


class PlaneCounters:
    __slots__ = ("offers_in", "answers_in", "offers_out", "answers_out", "glare_ignored", "sdp_rejected",
                 "routes", "tracks", "unknown_route")

    offers_in: int
    answers_in: int
    offers_out: int
    answers_out: int
    glare_ignored: int
    sdp_rejected: int
    routes: int
    tracks: int
    unknown_route: int

    def __init__(self) -> None:
        for n in self.__slots__:
            setattr(self, n, 0)


class MediaPlane:
    """See the module docstring."""

    def __init__(self, config: Any, emit: Callable[[MediaEvent], None]) -> None:
        self.config = config
        self._emit = emit
        self.sessions: dict[str, Session] = {}
        self.tracks: dict[str, InTrack] = {}
        self.negotiation = PlaneCounters()
        self.forwarder = Forwarder(send_pli=self._send_pli, on_voice=self._on_voice)
        self.endpoint = UdpEndpoint(
            TransportConfig(host=config.ice_address_udp, port=config.ice_port_udp,
                            rcvbuf=getattr(config, "udp_rcvbuf", 4 << 20),
                            sndbuf=getattr(config, "udp_sndbuf", 4 << 20)),
            self,
        )
        self.address: tuple[str, int] | None = None
        self._report_interval = float(getattr(config, "report_interval", 1.0))
        self._carry: dict[str, list[tuple[str, bool]]] = {}  # see open_session

    # -- serving ------------------------------------------------------------------------------------------------
    async def serve(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Run the endpoint and the periodic RTCP task until cancelled; reports the bound ``(host, port)``."""
        async with trio.open_nursery() as nursery:
            self.address = await nursery.start(self.endpoint.serve)
            nursery.start_soon(self._periodic)
            task_status.started(self.address)

    @property
    def counters(self) -> dict[str, int]:
        out = self.forwarder.counters.as_dict()
        out.update({n: getattr(self.negotiation, n) for n in PlaneCounters.__slots__})
        return out

    def _candidate(self) -> tuple[str, int]:
        c = self.config
        host = c.ice_host_override or c.ice_address_udp
        port = c.ice_host_port_override or (self.address[1] if self.address else c.ice_port_udp)
        return host, port

    # -- sessions -----------------------------------------------------------------------------------------------
    def open_session(self, session_id: str, channel_id: str) -> None:
        """Register a session; its client's first offer is expected next. Re-opening replaces the old one.

        ``close_session(sid)`` directly followed by ``open_session(sid)`` (the server's reconnect path: a new page
        takes over the session) carries over the routes the session received, since the core emits no new
        ``RouteAdded`` for them; any ``apply()`` in between forgets them (use ``restore_routes`` then).
        """
        if session_id in self.sessions:
            self.close_session(session_id)
        carry = self._carry.pop(session_id, [])
        self._carry.clear()
        s = self.sessions[session_id] = Session(session_id, channel_id)
        for track_id, paused in carry:
            t = self.tracks.get(track_id)
            if t is not None and not t.ended and t.session is not s:
                self._add_route(t, s, paused)
                s.dirty = True

    def close_session(self, session_id: str) -> None:
        """Forget a session: its peer, its tracks (their routes to others are torn down and re-offered), its routes.

        Emits no ``TrackUnpublished``: the server tells the core the session left, which removes its tracks.
        """
        s = self.sessions.pop(session_id, None)
        if s is None:
            return
        s.closed = True
        self._carry = {session_id: [(tid, r.paused) for tid, r in s.routes_in.items()]}
        self.endpoint.remove_peer(session_id)
        s.peer = None
        touched: set[Session] = set()
        for sec in s.sections:
            if sec.track is not None:
                self._drop_track(sec.track, touched)
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
        try:
            if kind == "offer":
                self._on_offer(s, sdp)
            elif kind == "answer":
                self._on_answer(s, sdp)
            else:
                raise SdpRejected(f"unknown signal type {kind!r}")
        except SdpError as exc:
            self.negotiation.sdp_rejected += 1
            raise SdpRejected(str(exc)) from exc

    def _on_offer(self, s: Session, text: str) -> None:
        self.negotiation.offers_in += 1
        if s.offer_pending:
            self.negotiation.glare_ignored += 1  # impolite: the client rolls back and answers our offer
            return
        offer = parse_sdp(text)
        by_mid = {sec.mid: sec for sec in s.sections}
        offered = [m.mid for m in offer.media]
        missing = [sec.mid for sec in s.sections if sec.offered and sec.mid not in offered]
        if missing:
            raise SdpError(f"offer lacks sections {missing}")
        first = next((m for m in offer.media if m.port and m.ice_ufrag), None)
        if first is None:
            raise SdpError("no usable m-section")
        if not first.fingerprint or not first.ice_pwd:
            raise SdpError("missing ICE password or DTLS fingerprint")
        remote = (first.ice_ufrag, first.ice_pwd, first.fingerprint)
        if remote != s.remote:
            role = "active" if first.setup == "passive" else "passive"
            try:
                s.peer = None
                self.endpoint.add_peer(s.session_id, s.ufrag, s.pwd, remote[0], remote[1], remote[2], role)
            except ValueError as exc:
                raise SdpError(str(exc)) from exc
            s.remote = remote
            s.role = role
        for m in offer.media:
            for ident, uri in m.extmap.items():
                if uri in ACCEPTED_EXT:
                    s.ext_ids.setdefault(uri, ident)
        published: list[InTrack] = []
        unpublished: list[InTrack] = []
        new_sections: list[Section] = []
        for m in offer.media:
            sec = by_mid.get(m.mid)
            if sec is None:
                sec = self._client_section(s, m)
                new_sections.append(sec)
            if sec.origin == "server":
                r = sec.route
                if r is not None and r.negotiated and (not m.port or m.direction not in ("recvonly", "sendrecv")):
                    r.negotiated = False  # the client declined the stream: stop sending until re-accepted
                    r.track.relive()
                if not m.port:
                    sec.rejected = True
                continue
            if sec.rejected:
                continue
            sec.direction = m.direction if m.port else "inactive"
            sending = sec.direction in ("sendonly", "sendrecv")
            t = sec.track
            if t is not None and (not sending or (m.media_ssrc is not None and m.media_ssrc != t.ssrc)):
                if not sending:
                    unpublished.append(t)
                    sec.track = None
                else:  # same track, new SSRC (a replaced sender): re-key it
                    s.inbound.pop(t.ssrc or 0, None)
                    t.ssrc = m.media_ssrc
                    s.inbound[m.media_ssrc] = t  # type: ignore[index]
            if sending and sec.track is None:
                sec.track = t = self._new_track(s, sec, m)
                published.append(t)
            if not m.port:
                sec.rejected = True
        # the offer's order, then the server sections not offered yet (they follow in the next server offer)
        in_offer = {m.mid for m in offer.media}
        known = {sec.mid: sec for sec in s.sections + new_sections}
        s.sections = [known[m.mid] for m in offer.media] + [x for x in s.sections if x.mid not in in_offer]
        self._send(s, "answer", [self._answer_view(s, m) for m in offer.media])
        s.started = True
        self.negotiation.answers_out += 1
        touched: set[Session] = set()
        for t in unpublished:
            self._emit(TrackUnpublished(session_id=s.session_id, track_id=t.track_id))
            self._drop_track(t, touched)
        for t in published:
            self.tracks[t.track_id] = t
            self.negotiation.tracks += 1
            self._emit(TrackPublished(session_id=s.session_id, track_id=t.track_id, kind=t.kind))
        for other in touched:
            self._negotiate(other)
        if s.dirty:
            self._negotiate(s)

    def _answer_view(self, s: Session, m: MLine) -> ServerSection:
        """The answer to one offered section: what the server does on it, limited by what the client offered."""
        view = self._by_mid(s, m.mid).server_view(s)
        if view.direction == "sendonly" and (not m.port or m.direction not in ("recvonly", "sendrecv")):
            view.direction = "inactive"  # the client declines this stream for now
        if not m.port and view.direction != "rejected":
            view.direction = "rejected"
            view.proto, view.fmts = m.proto, m.fmts
        return view

    @staticmethod
    def _by_mid(s: Session, mid: str) -> Section:
        for sec in s.sections:
            if sec.mid == mid:
                return sec
        raise KeyError(mid)

    def _client_section(self, s: Session, m: MLine) -> Section:
        sec = Section(mid=m.mid, kind=m.kind, origin="client")
        sec.proto, sec.fmts = m.proto, m.fmts
        if m.kind not in ("audio", "video") or not m.port or "RTP" not in m.proto or m.simulcast:
            sec.rejected = True
            return sec
        wanted = AUDIO_CODECS if m.kind == "audio" else VIDEO_CODECS
        codec = None
        for name in wanted:
            codec = next((c for c in m.codecs if c.name.lower() == name and self._codec_ok(c)), None)
            if codec is not None:
                break
        if codec is None:
            sec.rejected = True
            return sec
        fb = [f for f in codec.fb if f in VIDEO_FB] if m.kind == "video" else []
        sec.codecs = [Codec(pt=codec.pt, name=codec.name, clock=codec.clock, channels=codec.channels,
                            fmtp=codec.fmtp, fb=fb)]
        sec.extmap = {i: u for i, u in m.extmap.items() if u in ACCEPTED_EXT}
        for c in m.codecs:
            s.pts.setdefault(c.key, c.pt)
        return sec

    @staticmethod
    def _codec_ok(c: Codec) -> bool:
        if c.name.lower() == "h264":
            return "packetization-mode=1" in c.fmtp
        return True

    def _new_track(self, s: Session, sec: Section, m: MLine) -> InTrack:
        stream = m.msid_stream if m.msid_stream and m.msid_stream != "-" else s.session_id
        screen = s.screen_stream is not None and stream == s.screen_stream
        if sec.kind == "audio":
            kind = TrackKind.SCREEN_AUDIO if screen else TrackKind.AUDIO
        else:
            kind = TrackKind.SCREEN_VIDEO if screen else TrackKind.VIDEO
        c = sec.codecs[0]
        ext = {u: i for i, u in sec.extmap.items()}
        t = InTrack(track_id=f"{s.session_id}_{sec.mid}", session=s, kind=kind, media=sec.kind, mid=sec.mid,
                    ssrc=m.media_ssrc, clock_rate=c.clock,
                    codecs={c.pt: (c.name.lower(), c.clock, c.channels, c.fmtp)}, ext=ext, stream_id=stream)
        if t.ssrc is not None:
            s.inbound[t.ssrc] = t
        return t

    def _on_answer(self, s: Session, text: str) -> None:
        self.negotiation.answers_in += 1
        if not s.offer_pending:
            raise SdpError("answer without an outstanding offer")
        # whatever happens the offer is settled; a bad answer leaves the session dirty, to be offered again
        s.offer_pending = False
        try:
            answer = parse_sdp(text)
        except SdpError:
            s.dirty = True
            raise
        offered = [sec for sec in s.sections if sec.offered]
        if [m.mid for m in answer.media] != [sec.mid for sec in offered]:
            s.dirty = True
            raise SdpError("answer sections do not match the offer")
        for m, sec in zip(answer.media, offered, strict=True):
            r = sec.route
            if sec.origin != "server" or r is None:
                continue
            accepted = m.port != 0 and m.direction in ("recvonly", "sendrecv")
            accepted = accepted and any(c.pt == sec.codecs[0].pt for c in m.codecs)
            if accepted != r.negotiated:
                r.negotiated = accepted
                r.track.relive()
                if accepted and r.track.media == "video":
                    self.forwarder.request_keyframe(r.track)
        if s.dirty:
            self._negotiate(s)

    def _send(self, s: Session, kind: str, sections: list[ServerSection]) -> None:
        host, port = self._candidate()
        s.version += 1
        text = render_sdp(session_version=s.version, ufrag=s.ufrag, pwd=s.pwd, fingerprint=self.endpoint.fingerprint,
                          setup=s.role, host=host, port=port,
                          sections=sections, session_id=s.ice_sid)
        self._emit(SendSignal(session_id=s.session_id, msg={"type": kind, "sdp": text}))

    def _negotiate(self, s: Session) -> None:
        """Send a server offer if something changed and the session is stable; else remember to."""
        if s.closed:
            return
        s.dirty = True
        if s.offer_pending or not s.started:
            return
        s.dirty = False
        s.offer_pending = True
        self.negotiation.offers_out += 1
        # a route removed before it was ever offered leaves nothing to tell the client
        s.sections = [x for x in s.sections if x.offered or x.route is not None]
        for sec in s.sections:
            if not sec.offered:
                self._bind(s, sec)
                sec.offered = True
        self._send(s, "offer", [sec.server_view(s) for sec in s.sections])

    # -- routing (core outputs) ---------------------------------------------------------------------------------
    def apply(self, outputs: Iterable[Any]) -> None:
        """Apply the core's routing outputs; other outputs are ignored. Re-offers each touched receiver once."""
        self._carry.clear()
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
        ssrc = secrets.randbits(32)
        while ssrc == 0 or ssrc in s.out_by_ssrc:
            ssrc = secrets.randbits(32)
        s.next_mid += 1
        mid = f"s{s.next_mid}"
        r = OutRoute(track=t, receiver=s, ssrc=ssrc, mid=mid, paused=paused, ts_offset=secrets.randbits(32))
        r.last_seq = secrets.randbits(15)
        sec = Section(mid=mid, kind=t.media, origin="server")
        sec.route = r
        s.sections.append(sec)
        t.routes[s.session_id] = r
        s.routes_in[t.track_id] = r
        s.out_by_ssrc[ssrc] = r
        self.negotiation.routes += 1
        return r

    def _bind(self, s: Session, sec: Section) -> None:
        """Choose a new server section's payload type and extension ids in the receiver's numbering.

        Done when the section is first offered, after the client's first offer told us its numbering.
        """
        r = sec.route
        assert r is not None
        t = r.track
        pub_pt, (name, clock, channels, fmtp) = next(iter(t.codecs.items()))
        key = (name, clock, channels)
        pt = s.pts.get(key)
        if pt is None:
            used = set(s.pts.values())
            pt = pub_pt if pub_pt not in used else next(p for p in range(96, 128) if p not in used)
            s.pts[key] = pt
        pub_name = next((x.codecs[0].name for x in t.session.sections if x.track is t), name)
        sec.codecs = [Codec(pt=pt, name=pub_name, clock=clock, channels=channels, fmtp=fmtp,
                            fb=list(VIDEO_FB) if t.media == "video" else [])]
        table = [0] * 16
        for uri in FORWARDED_EXT[t.media]:
            pub_id = t.ext.get(uri)
            rid = s.ext_ids.get(uri)
            if rid is None:
                used_ids = set(s.ext_ids.values())
                rid = next((i for i in range(1, 15) if i not in used_ids), None)
                if rid is None:
                    continue
                s.ext_ids[uri] = rid
            sec.extmap[rid] = uri
            if pub_id:
                table[pub_id] = rid
        mid_id = s.ext_ids.get(URI_MID)
        if mid_id is not None:
            sec.extmap[mid_id] = URI_MID
        r.set_mapping({pub_pt: pt}, tuple(table))

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
        for sec in s.sections:
            if sec.route is r:
                sec.route = None
        self.negotiation.routes -= 1

    def _drop_track(self, t: InTrack, touched: set[Session]) -> None:
        t.ended = True
        for r in list(t.routes.values()):
            self._drop_route(r)
            touched.add(r.receiver)
        if t.ssrc is not None and t.session.inbound.get(t.ssrc) is t:
            del t.session.inbound[t.ssrc]
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
        self._emit(SessionConnected(session_id=s.session_id))
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
        touched: set[Session] = set()
        for sec in s.sections:
            if sec.track is not None:
                self._drop_track(sec.track, touched)
                sec.track = None
        for other in touched:
            self._negotiate(other)
        self._emit(SessionClosed(session_id=peer.session_id, reason=reason))

    def restore_routes(self, routes: Iterable[Any]) -> None:
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
        if self.forwarder.on_rtp(s.inbound, plain) is None and len(plain) >= 12:
            self._learn_ssrc(s, plain)

    def _learn_ssrc(self, s: Session, plain: bytes) -> None:
        """A publisher that did not signal its SSRC: bind it through the MID extension, then forward."""
        mid_id = s.ext_ids.get(URI_MID)
        if not mid_id or not plain[0] & 0x10:
            return
        off = 12 + 4 * (plain[0] & 0x0F)
        elems, _ = parse_ext(plain, off)
        for eid, data in elems or ():
            if eid == mid_id:
                mid = data.decode("ascii", "replace")
                sec = next((x for x in s.sections if x.mid == mid and x.track is not None), None)
                if sec is not None and sec.track is not None and sec.track.ssrc is None:
                    ssrc = int.from_bytes(plain[8:12], "big")
                    sec.track.ssrc = ssrc
                    s.inbound[ssrc] = sec.track
                    self.forwarder.counters.drop_unknown_ssrc -= 1
                    self.forwarder.on_rtp(s.inbound, plain)
                return

    def on_rtcp(self, peer: Peer, plain: bytes) -> None:
        s = self.sessions.get(peer.session_id)
        if s is None:
            return
        c = self.forwarder.counters
        c.rtcp_in += 1
        try:
            for pt, fmt, sender, media, body in rtcp.iter_rtcp(plain):
                if pt == rtcp.SR:
                    t = s.inbound.get(sender)
                    if t is not None:
                        ntp, _ = rtcp.sr_info(body)
                        t.sr_ntp_mid = (ntp >> 16) & 0xFFFFFFFF
                        t.sr_rx = time.monotonic()
                elif pt == rtcp.RTPFB and fmt == 1:
                    r = s.out_by_ssrc.get(media)
                    if r is not None:
                        missing = self.forwarder.answer_nack(r, rtcp.nack_seqs(body))
                        pub = r.track.session.peer
                        if missing and pub is not None and r.track.ssrc is not None:
                            c.nack_forwarded += 1
                            pub.send_rtcp(rtcp.build_nack(r.track.session.rtcp_ssrc, r.track.ssrc, missing))
                elif pt == rtcp.PSFB and fmt in (1, 4):
                    if fmt == 4 and len(body) >= 8:
                        media = int.from_bytes(body[4:8], "big")
                    r = s.out_by_ssrc.get(media)
                    if r is not None:
                        c.pli_in += 1
                        self.forwarder.request_keyframe(r.track)
        except rtcp.RtcpError:
            c.rtcp_malformed += 1

    def _send_pli(self, t: InTrack) -> None:
        peer = t.session.peer
        if peer is not None and t.ssrc is not None:
            peer.send_rtcp(rtcp.build_pli(t.session.rtcp_ssrc, t.ssrc))

    def _on_voice(self, s: Session, speaking: bool) -> None:
        if not s.closed:
            self._emit(VoiceActivity(session_id=s.session_id, speaking=speaking))

    # -- periodic RTCP ------------------------------------------------------------------------------------------
    async def _periodic(self) -> None:
        n = 0
        while True:
            await trio.sleep(self._report_interval / 4)
            self.forwarder.tick(list(self.tracks.values()))
            n += 1
            if n % 4 == 0:
                self.send_reports()

    def send_reports(self) -> None:
        """One round of RTCP: an SR per stream each session receives, an RR about the streams it publishes."""
        now = time.monotonic()
        ntp = rtcp.ntp_now(time.time())
        c = self.forwarder.counters
        for s in self.sessions.values():
            peer = s.peer
            if peer is None:
                continue
            for chunk in rtcp.session_reports(s.rtcp_ssrc, s.routes_in.values(), s.inbound.values(), now, ntp):
                peer.send_rtcp(chunk)
                c.rtcp_out += 1
