"""Offer/answer negotiation for one client session (JSEP, RFC 8829), pure: SDP text in, SDP text and facts out.

Theory of operation
-------------------
The server is an ICE-lite SFU endpoint (RFC 8445 2.5) on one UDP port. Everything is bundled on one transport
(RFC 9143) with rtcp-mux (RFC 5761). Each m-section is a *slot* with a stable position and mid:

* the client makes the first offer; its send-capable sections carry the tracks it publishes (mic, camera, screen),
  which the answer accepts as ``recvonly`` (or ``sendrecv`` when the server also sends on that section);
* to send a track to the client the server makes an offer (``make_offer``) with one ``sendonly`` section per
  outgoing track, appended at the end with a server mid (``s1``, ``s2``, ...: never a number, so it cannot collide
  with a mid the client picks for a transceiver it is adding meanwhile). A removed track leaves its section
  ``inactive`` for good: sections are never recycled (a receiver's element for a departed track goes away with its
  transceiver, and a new track always arrives on a new transceiver);
* the client re-offers when it starts or stops publishing (screen sharing); its offer repeats every existing
  section in order and appends new ones. Sections with port 0 are rejected.

States: ``NEW`` (no offer yet) → ``STABLE`` after the first answer; ``STABLE`` → ``HAVE_LOCAL_OFFER`` when the server
offers, back to ``STABLE`` when the client answers (or on a rollback).

Glare: the server is the *impolite* peer of perfect negotiation (RFC 8829 4.1.8.2; docs/protocol.md). A client
offer that arrives while the server's own offer is pending is ignored (``OfferIgnored(reason="glare")``, nothing
changes); the client, polite, rolls its offer back, answers the server's offer, and offers again. The server never
needs a rollback of its own, and its pending offer stays valid. See docs/adr/0004-sdp-negotiation.md.

Codec policy: Opus 48 kHz/2 with ``useinbandfec=1`` for audio; VP8, else H264 with packetization-mode=1 (profile
42e01f, then 42001f, then any) for video. A single codec per section keeps forwarding a plain payload-type
rewrite. RTX is not accepted (the forwarder answers NACKs from its cache with plain retransmissions) and neither
are transport-cc or goog-remb (the server sends neither kind of feedback, and accepting them would make a browser
wait for feedback that never comes): rtcp-fb is limited to nack, nack pli and ccm fir as offered; header extensions
to audio level and mid for audio; mid, abs-send-time, toffset and video orientation for video. A server offer may
still carry RTX for an ``OutgoingTrack`` with an ``rtx_ssrc`` (the media plane passes none).

Header extension ids are session-wide: once the client wrote an id for a URI (any offer or answer, any section, even
an offer ignored for glare) the server never gives that id another URI; a URI takes its bundle id, else the
client's, else the server's earlier one, else Chromium's usual id (``_USUAL_IDS``), else the lowest free id.

A remote party's mistake (unparsable SDP, no ICE credentials, an answer without a pending offer) is a typed
``OfferRejected``/``AnswerRejected`` result the adapter can report to the client; misuse by the adapter (offering
before the first client offer) raises ``LocalProtocolError``.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, replace

from ..errors import LocalProtocolError
from .sdp import (
    Candidate,
    Codec,
    Direction,
    Extmap,
    Fingerprint,
    Group,
    MediaSection,
    Msid,
    Origin,
    SdpError,
    SessionDescription,
    SsrcAttribute,
    SsrcGroup,
    build_sdp,
    parse_sdp,
)

__all__ = [
    "AUDIO_LEVEL_URI", "MID_URI", "ABS_SEND_TIME_URI", "TWCC_URI",
    "NegotiationState", "Rejection", "LocalTransport", "RemoteTransport", "PublishedTrack", "OutgoingTrack",
    "SendingTrack", "OfferAnswered", "OfferRejected", "OfferIgnored", "OfferMade", "AnswerApplied", "AnswerRejected",
    "Negotiator", "choose_codecs", "TOFFSET_URI", "VIDEO_ORIENTATION_URI",
]

AUDIO_LEVEL_URI = "urn:ietf:params:rtp-hdrext:ssrc-audio-level"
MID_URI = "urn:ietf:params:rtp-hdrext:sdes:mid"
ABS_SEND_TIME_URI = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"
TWCC_URI = "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01"
TOFFSET_URI = "urn:ietf:params:rtp-hdrext:toffset"
VIDEO_ORIENTATION_URI = "urn:3gpp:video-orientation"
_KEPT_EXTENSIONS = {
    "audio": (AUDIO_LEVEL_URI, MID_URI),
    "video": (MID_URI, ABS_SEND_TIME_URI, TOFFSET_URI, VIDEO_ORIENTATION_URI),
}
# the ids Chromium gives these URIs in its offers (tests/media/data/offer_chromium.sdp): a new URI in a server offer
# takes its usual id when the client has not used that id, so the browser's own next offer agrees with ours
_USUAL_IDS = {AUDIO_LEVEL_URI: 1, ABS_SEND_TIME_URI: 2, TWCC_URI: 3, MID_URI: 4, VIDEO_ORIENTATION_URI: 13,
              TOFFSET_URI: 14}
_KEPT_FEEDBACK = ("nack", "nack pli", "ccm fir")
_VIDEO_FEEDBACK = ("nack", "nack pli", "ccm fir")  # what a server offer asks for on video sections
_H264_PROFILES = ("42e01f", "42001f")
_PROTOCOL = "UDP/TLS/RTP/SAVPF"


class NegotiationState(enum.StrEnum):
    NEW = "new"
    STABLE = "stable"
    HAVE_LOCAL_OFFER = "have-local-offer"


class Rejection(enum.StrEnum):
    """Machine-readable reasons for refusing a client's SDP."""

    MALFORMED = "malformed_sdp"
    NO_MEDIA = "no_usable_media"
    NO_ICE_CREDENTIALS = "no_ice_credentials"
    NO_FINGERPRINT = "no_fingerprint"
    NO_SETUP = "bad_setup"
    SECTIONS_MISMATCH = "sections_mismatch"
    NO_PENDING_OFFER = "no_pending_offer"


@dataclass(frozen=True, slots=True, kw_only=True)
class LocalTransport:
    """The server's side of the transport: ICE-lite credentials, DTLS fingerprint ("sha-256 AB:..."), host:port.

    ``extra_hosts``: more addresses of the same port, one host candidate each after ``host`` (which also goes in
    ``c=``), e.g. every interface of a server bound to the wildcard address. ``tcp_port``: when not 0, each address
    also gets an ICE-TCP passive candidate on that port (RFC 6544), ranked below the UDP ones."""

    ice_ufrag: str
    ice_pwd: str
    fingerprint: str
    host: str
    port: int
    extra_hosts: tuple[str, ...] = ()
    tcp_port: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class RemoteTransport:
    """The client's ICE credentials and fingerprint; ``dtls_role`` is the *server's* role: "server" or "client"."""

    ice_ufrag: str
    ice_pwd: str
    fingerprint: str
    dtls_role: str


@dataclass(frozen=True, slots=True, kw_only=True)
class PublishedTrack:
    """A track the client sends on section ``mid``: register it with the core (``PublishTrack``) and map SSRCs.

    ``extensions`` are ``(uri, id)`` pairs as negotiated; ``payload_type``/``rtx_payload_type`` the accepted codec.
    """

    mid: str
    track_id: str
    stream_id: str
    kind: str  # "audio" | "video"
    ssrcs: tuple[int, ...]
    rtx_ssrc: int | None
    payload_type: int
    rtx_payload_type: int | None
    codec: Codec
    extensions: tuple[tuple[str, int], ...]
    cname: str | None = None

    def extension_id(self, uri: str) -> int | None:
        return dict(self.extensions).get(uri)


@dataclass(frozen=True, slots=True, kw_only=True)
class OutgoingTrack:
    """A track the server should send to this client: the publisher's track and codec, the server-chosen SSRCs."""

    track_id: str
    stream_id: str
    kind: str  # "audio" | "video"
    ssrc: int
    codec: Codec  # the publisher's negotiated codec (name, clock rate, channels, fmtp)
    rtx_ssrc: int | None = None
    cname: str = "callsd"


@dataclass(frozen=True, slots=True, kw_only=True)
class SendingTrack:
    """How to send ``track_id`` to this client, as negotiated: rewrite to this PT, SSRC and extension ids."""

    mid: str
    track_id: str
    ssrc: int
    rtx_ssrc: int | None
    payload_type: int
    rtx_payload_type: int | None
    extensions: tuple[tuple[str, int], ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class OfferAnswered:
    """The client's offer was accepted: send ``answer``; publish/unpublish the listed tracks; start the transport
    with ``remote``. ``sending`` lists every track the server now sends to this client; ``refused`` the outgoing
    tracks whose section the client rejected (port 0) in this offer: offering them again would loop."""

    answer: str
    remote: RemoteTransport
    published: tuple[PublishedTrack, ...] = ()
    unpublished: tuple[str, ...] = ()
    sending: tuple[SendingTrack, ...] = ()
    refused: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class OfferIgnored:
    """The client's offer crossed the server's pending offer (glare) and was dropped: nothing changed. The client
    (the polite side) rolls back and answers the pending offer. ``reason`` is "glare"."""

    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class OfferRejected:
    reason: Rejection
    detail: str


@dataclass(frozen=True, slots=True, kw_only=True)
class OfferMade:
    offer: str


@dataclass(frozen=True, slots=True, kw_only=True)
class AnswerApplied:
    """The client accepted the server's offer; ``refused`` lists outgoing tracks whose section it rejected."""

    sending: tuple[SendingTrack, ...] = ()
    published: tuple[PublishedTrack, ...] = ()
    unpublished: tuple[str, ...] = ()
    refused: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class AnswerRejected:
    reason: Rejection
    detail: str


@dataclass(slots=True, kw_only=True)
class _Slot:
    mid: str
    kind: str
    server_owned: bool
    formats: tuple[str, ...] = ()
    rejected: bool = False
    codecs: tuple[Codec, ...] = ()
    extmaps: tuple[Extmap, ...] = ()
    client_direction: Direction = Direction.INACTIVE  # from the client's point of view
    published: PublishedTrack | None = None
    local: OutgoingTrack | None = None
    rsize: bool = True

    def copy(self) -> _Slot:
        """A shallow copy (``dataclasses.replace`` costs several times more, once per section per offer)."""
        return _Slot(mid=self.mid, kind=self.kind, server_owned=self.server_owned, formats=self.formats,
                     rejected=self.rejected, codecs=self.codecs, extmaps=self.extmaps,
                     client_direction=self.client_direction, published=self.published, local=self.local,
                     rsize=self.rsize)


def _codec_key(c: Codec) -> tuple[str, int, int]:
    return (c.name.lower(), c.clock_rate, c.channels or 1)


def _h264_ok(c: Codec, profile: str | None) -> bool:
    p = c.params
    return p.get("packetization-mode") == "1" and (profile is None or p.get("profile-level-id", "").lower() == profile)


def _same_codec(a: Codec, b: Codec) -> bool:
    if _codec_key(a) != _codec_key(b):
        return False
    if a.name.lower() == "h264":
        pa, pb = a.params, b.params  # same packetization mode and profile (profile_idc + constraint flags)
        return (pa.get("packetization-mode", "0") == pb.get("packetization-mode", "0")
                and pa.get("profile-level-id", "42001f").lower()[:4] == pb.get("profile-level-id", "42001f").lower()[:4])
    return True


def _primary_choice(kind: str, offered: Sequence[Codec], want: Codec | None) -> Codec | None:
    if want is not None:
        return next((c for c in offered if _same_codec(c, want)), None)
    if kind == "audio":
        return next((c for c in offered if _codec_key(c) == ("opus", 48000, 2)), None)
    if kind == "video":
        vp8 = next((c for c in offered if _codec_key(c)[:2] == ("vp8", 90000)), None)
        if vp8 is not None:
            return vp8
        for profile in (*_H264_PROFILES, None):
            h264 = next((c for c in offered if _codec_key(c)[:2] == ("h264", 90000) and _h264_ok(c, profile)), None)
            if h264 is not None:
                return h264
    return None


def choose_codecs(kind: str, offered: Sequence[Codec], want: Codec | None = None) -> tuple[Codec, ...]:
    """The codecs to accept from an offered list: one primary codec (the policy's choice, or the one matching
    ``want``), with rtcp-fb filtered and Opus FEC on; never RTX. Empty when nothing fits."""
    primary = _primary_choice(kind, offered, want)
    if primary is None:
        return ()
    fmtp = primary.fmtp
    if primary.name.lower() == "opus":
        params = primary.params
        params["useinbandfec"] = "1"
        fmtp = ";".join(f"{k}={v}" if v else k for k, v in params.items())
    feedback = tuple(f for f in primary.feedback if f in _KEPT_FEEDBACK) if kind == "video" else ()
    return (replace(primary, fmtp=fmtp, feedback=feedback),)


def _direction(m: MediaSection) -> Direction:
    return m.direction if m.direction is not None else Direction.SENDRECV


class Negotiator:
    """Negotiation state of one session. ``handle_offer``, ``make_offer`` and ``handle_answer`` are the interface.

    ``session_id`` is the numeric o= session id of the server's descriptions (random per session, drawn by the
    adapter). ``transport`` describes the server's ICE-lite endpoint.
    """

    __slots__ = ("transport", "session_id", "state", "remote", "_slots", "_pending", "_desired", "_version",
                 "_allow_mixed", "_client_codecs", "_client_ext", "_client_ext_ids", "_server_ext")

    def __init__(self, *, transport: LocalTransport, session_id: int) -> None:
        self.transport = transport
        self.session_id = session_id
        self.state = NegotiationState.NEW
        self.remote: RemoteTransport | None = None
        self._slots: list[_Slot] = []
        self._pending: list[_Slot] | None = None
        self._desired: tuple[OutgoingTrack, ...] = ()
        self._version = 0
        self._allow_mixed = False
        self._client_codecs: dict[int, Codec] = {}  # every codec the client ever offered, by its payload type
        # header extension ids: every id the client wrote in any offer or answer (any section, accepted or not,
        # even a glare-ignored offer) -> the URIs it gave it, the client's latest id for each URI, and the ids
        # the server itself offered. An id means one URI for the whole session (BUNDLE; Chromium refuses a
        # description that renumbers one: "RTP extension ID reassignment not supported")
        self._client_ext: dict[int, set[str]] = {}
        self._client_ext_ids: dict[str, int] = {}
        self._server_ext: dict[int, str] = {}

    # --- queries ----------------------------------------------------------------------------------------------

    @property
    def published(self) -> tuple[PublishedTrack, ...]:
        return tuple(s.published for s in self._slots if s.published is not None)

    @property
    def sending(self) -> tuple[SendingTrack, ...]:
        return tuple(t for s in self._slots if (t := self._sending_of(s)) is not None)

    @staticmethod
    def _sending_of(s: _Slot) -> SendingTrack | None:
        if s.local is None or s.rejected or not s.client_direction.receives or not s.codecs:
            return None
        rtx = next((c.payload_type for c in s.codecs[1:] if c.name.lower() == "rtx"), None)
        return SendingTrack(mid=s.mid, track_id=s.local.track_id, ssrc=s.local.ssrc,
                            rtx_ssrc=s.local.rtx_ssrc if rtx is not None else None,
                            payload_type=s.codecs[0].payload_type, rtx_payload_type=rtx,
                            extensions=tuple((e.uri, e.id) for e in s.extmaps))

    # --- the client's offer -----------------------------------------------------------------------------------

    def handle_offer(self, sdp: str) -> OfferAnswered | OfferRejected | OfferIgnored:
        """Answer a client offer; ignore it while the server's own offer is pending (the server is impolite).

        The header extension ids of any offer that parses are remembered, even an ignored one: the browser keeps
        the ids of a transceiver it added for an offer it rolled back, so later server offers must not reuse them.
        """
        try:
            offer = parse_sdp(sdp)
        except SdpError as exc:
            if self._pending is not None:
                return OfferIgnored(reason="glare")
            return OfferRejected(reason=Rejection.MALFORMED, detail=str(exc))
        self._note_client_extensions(offer)
        if self._pending is not None:
            return OfferIgnored(reason="glare")
        live = [m for m in offer.media if not m.rejected]
        if not live:
            return OfferRejected(reason=Rejection.NO_MEDIA, detail="every m-section is rejected or missing")
        first = live[0]
        ufrag, pwd = first.ice_ufrag or offer.ice_ufrag, first.ice_pwd or offer.ice_pwd
        if not ufrag or not pwd:
            return OfferRejected(reason=Rejection.NO_ICE_CREDENTIALS, detail="no a=ice-ufrag/a=ice-pwd")
        fps = first.fingerprints or offer.fingerprints
        fp = next((f for f in fps if f.algorithm == "sha-256"), fps[0] if fps else None)
        if fp is None:
            return OfferRejected(reason=Rejection.NO_FINGERPRINT, detail="no a=fingerprint")
        setup = first.setup or offer.setup
        if setup not in ("actpass", "active", "passive"):
            return OfferRejected(reason=Rejection.NO_SETUP, detail=f"a=setup must be actpass/active/passive, "
                                                                  f"got {setup!r}")
        base = self._slots
        if len(offer.media) < len(base):
            return OfferRejected(reason=Rejection.SECTIONS_MISMATCH,
                                 detail=f"the offer has {len(offer.media)} m-sections, {len(base)} were negotiated")
        for i, slot in enumerate(base):
            m = offer.media[i]
            if m.mid != slot.mid and not (slot.rejected or m.rejected):
                return OfferRejected(reason=Rejection.SECTIONS_MISMATCH,
                                     detail=f"m-section {i} has mid {m.mid!r}, expected {slot.mid!r}")
        bundle = set(offer.bundle())
        slots: list[_Slot] = []
        published: list[PublishedTrack] = []
        unpublished: list[str] = []
        refused: list[str] = []
        for i, m in enumerate(offer.media):
            prev = base[i] if i < len(base) else None
            old = prev if prev is not None and prev.mid == m.mid else None
            if old is None and prev is not None and prev.published is not None:  # a recycled position
                unpublished.append(prev.published.track_id)
            slot = old.copy() if old is not None else _Slot(mid=m.mid or str(i), kind=m.kind, server_owned=False)
            slot.formats = m.formats
            usable = (not m.rejected and m.mid is not None and m.kind in ("audio", "video") and m.rtcp_mux
                      and m.protocol == _PROTOCOL and m.mid in bundle)
            codecs = choose_codecs(m.kind, m.codecs, slot.local.codec if slot.local is not None else None)
            if not usable or not codecs:
                if slot.published is not None:
                    unpublished.append(slot.published.track_id)
                if slot.local is not None:
                    refused.append(slot.local.track_id)
                slot.rejected, slot.published, slot.local = True, None, None
                slot.client_direction = Direction.INACTIVE
                slots.append(slot)
                continue
            slot.rejected = False
            slot.codecs = codecs
            slot.extmaps = tuple(e for e in m.extmaps if e.uri in _KEPT_EXTENSIONS[m.kind])
            slot.client_direction = _direction(m)
            slot.rsize = m.rtcp_rsize
            self._update_published(slot, m, published, unpublished)
            slots.append(slot)
        if not any(not s.rejected for s in slots):
            return OfferRejected(reason=Rejection.NO_MEDIA, detail="no m-section offers a usable codec with "
                                                                  "BUNDLE and rtcp-mux")
        self._slots = slots
        self._allow_mixed = offer.extmap_allow_mixed
        for m in live:
            for c in m.codecs:
                if c.name:
                    self._client_codecs.setdefault(c.payload_type, c)
        self.state = NegotiationState.STABLE
        role = "client" if setup == "passive" else "server"
        self.remote = RemoteTransport(ice_ufrag=ufrag, ice_pwd=pwd, fingerprint=f"{fp.algorithm} {fp.value}",
                                      dtls_role=role)
        answer = self._describe(slots, offer=False, setup="active" if role == "client" else "passive")
        return OfferAnswered(answer=answer, remote=self.remote, published=tuple(published),
                             unpublished=tuple(unpublished), sending=self.sending, refused=tuple(refused))

    def _update_published(self, slot: _Slot, m: MediaSection, published: list[PublishedTrack],
                          unpublished: list[str]) -> None:
        new = _published_track(slot, m) if slot.client_direction.sends else None
        old = slot.published
        if old is not None and (new is None or (new.track_id, new.ssrcs) != (old.track_id, old.ssrcs)):
            unpublished.append(old.track_id)
        if new is not None and (old is None or (new.track_id, new.ssrcs) != (old.track_id, old.ssrcs)):
            published.append(new)
        slot.published = new

    # --- the server's offer -----------------------------------------------------------------------------------

    def make_offer(self, tracks: Sequence[OutgoingTrack] | None = None) -> OfferMade | None:
        """Offer the client exactly ``tracks`` (the whole outgoing set; None = the last set given).

        Returns None when nothing would change or when an offer is already pending (call again after the answer:
        the last set is remembered). New tracks take a new section at the end; removed tracks leave their section
        inactive (never reused). Raises ``LocalProtocolError`` before the client's first offer was answered.
        """
        if tracks is not None:
            self._desired = tuple(tracks)
        if self.state is NegotiationState.NEW:
            raise LocalProtocolError("make_offer before the client's first offer was answered")
        if self.state is NegotiationState.HAVE_LOCAL_OFFER:
            return None
        wanted = {t.track_id: t for t in self._desired}
        slots = [s.copy() for s in self._slots]
        changed = False
        for s in slots:
            if s.local is not None and s.local.track_id not in wanted:
                s.local = None
                changed = True
        placed = {s.local.track_id for s in slots if s.local is not None}
        for t in self._desired:
            if t.track_id in placed:
                continue
            slot = _Slot(mid=self._new_mid(slots), kind=t.kind, server_owned=True,
                         client_direction=Direction.RECVONLY)
            slots.append(slot)
            slot.local = t
            slot.codecs = self._offer_codecs(slots, t, self._client_codecs)
            slot.extmaps = self._offer_extmaps(slots, t.kind)
            changed = True
        if not changed:
            return None
        for s in slots:
            if not s.rejected:
                for e in s.extmaps:
                    self._server_ext.setdefault(e.id, e.uri)
        self._pending = slots
        self.state = NegotiationState.HAVE_LOCAL_OFFER
        setup = "active" if self.remote is not None and self.remote.dtls_role == "client" else "passive"
        return OfferMade(offer=self._describe(slots, offer=True, setup=setup))

    def rollback(self) -> None:
        """Forget a pending server offer (e.g. the client never answered and the adapter gives up)."""
        if self._pending is not None:
            self._pending = None
            self.state = NegotiationState.STABLE

    @staticmethod
    def _new_mid(slots: Sequence[_Slot]) -> str:
        """``s<n>``, the first unused: browsers and aiortc number their own mids, so a letter avoids collisions."""
        used = {s.mid for s in slots}
        n = 1
        while f"s{n}" in used:
            n += 1
        return f"s{n}"

    @staticmethod
    def _offer_codecs(slots: Sequence[_Slot], t: OutgoingTrack, client: dict[int, Codec]) -> tuple[Codec, ...]:
        """The publisher's codec under the payload type this client uses for it (negotiated, else as the client
        numbered it in any offer), or a payload type free in both the bundle and the client's own numbering."""
        in_use: dict[int, tuple[str, int, int]] = {}
        mine: Codec | None = None
        rtx_pt: int | None = None
        for s in slots:
            if s.rejected:
                continue
            for c in s.codecs:
                in_use.setdefault(c.payload_type, _codec_key(c))
            if mine is None and s.codecs and _same_codec(s.codecs[0], t.codec):
                mine = s.codecs[0]
                rtx_pt = next((c.payload_type for c in s.codecs[1:] if c.name.lower() == "rtx"), None)
        if mine is None:
            offered = next((c for c in client.values() if _same_codec(c, t.codec)), None)
            if offered is not None and in_use.get(offered.payload_type, _codec_key(offered)) == _codec_key(offered):
                mine = replace(offered, feedback=tuple(f for f in offered.feedback if f in _KEPT_FEEDBACK)
                               if t.kind == "video" else ())
        avoid = dict(in_use)  # the bundle's PTs, then the client's own numbering where possible
        for pt, c in client.items():
            avoid.setdefault(pt, _codec_key(c))

        def free(preferred: int) -> int:
            if preferred not in avoid:
                return preferred
            dynamic: list[int] = [*range(96, 128), *range(35, 64)]
            for taken in (avoid, in_use):
                pt = next((p for p in dynamic if p not in taken), None)
                if pt is not None:
                    return pt
            raise LocalProtocolError("no free payload type left in this bundle")

        if mine is not None:
            primary = replace(t.codec, payload_type=mine.payload_type, feedback=mine.feedback)
        else:
            pt = free(t.codec.payload_type) if avoid.get(t.codec.payload_type) != _codec_key(t.codec) \
                else t.codec.payload_type
            fb = _VIDEO_FEEDBACK if t.kind == "video" else ()
            primary = replace(t.codec, payload_type=pt, feedback=fb)
        in_use[primary.payload_type] = avoid[primary.payload_type] = _codec_key(primary)
        if t.rtx_ssrc is None or t.kind != "video":
            return (primary,)
        if rtx_pt is None or in_use.get(rtx_pt, ("rtx", 90000, 1)) != ("rtx", 90000, 1):
            rtx_pt = free(primary.payload_type + 1)
        return (primary, Codec(payload_type=rtx_pt, name="rtx", clock_rate=90000, fmtp=f"apt={primary.payload_type}"))

    def _note_client_extensions(self, d: SessionDescription) -> None:
        for e in (*d.extmaps, *(e for m in d.media for e in m.extmaps)):
            self._client_ext.setdefault(e.id, set()).add(e.uri)
            self._client_ext_ids[e.uri] = e.id

    def _offer_extmaps(self, slots: Sequence[_Slot], kind: str) -> tuple[Extmap, ...]:
        """The kept extensions for ``kind``, each under one id for the whole session: the id it has in the bundle,
        else the client's own id for it (even if an offer the client refused used that id for something else),
        else the id the server offered it under before, else Chromium's usual id, else the lowest id; never an id
        the client or the bundle uses for another URI (an extension left without a free id is not offered)."""
        bundle: dict[str, int] = {}
        taken: dict[int, str] = {}
        for s in slots:
            if not s.rejected:
                for e in s.extmaps:
                    bundle.setdefault(e.uri, e.id)
                    taken.setdefault(e.id, e.uri)

        def free(i: int | None, uri: str, *, strict: bool = True) -> bool:
            return (i is not None and 1 <= i <= 14 and taken.get(i, uri) == uri
                    and self._client_ext.get(i, {uri}) == {uri}
                    and (not strict or self._server_ext.get(i, uri) == uri))

        previous = {u: i for i, u in self._server_ext.items()}
        out = []
        for uri in _KEPT_EXTENSIONS[kind]:
            chosen = bundle.get(uri)
            if chosen is None:
                # The client's own id for this URI outranks the server's numbering in offers the client refused.
                own = self._client_ext_ids.get(uri)
                chosen = own if free(own, uri, strict=False) else None
                if chosen is None:
                    candidates = (previous.get(uri), _USUAL_IDS.get(uri), *range(1, 15))
                    chosen = next((i for i in candidates if free(i, uri)), None)
                if chosen is None:  # every id is spoken for: give up the server's own past numbering first
                    chosen = next((i for i in range(1, 15) if free(i, uri, strict=False)), None)
                if chosen is None:
                    continue
                taken[chosen] = uri
            out.append(Extmap(id=chosen, uri=uri))
        return tuple(out)

    # --- the client's answer ----------------------------------------------------------------------------------

    def handle_answer(self, sdp: str) -> AnswerApplied | AnswerRejected:
        """Apply the client's answer to the pending server offer; a bad answer rolls the offer back."""
        pending = self._pending
        if pending is None:
            return AnswerRejected(reason=Rejection.NO_PENDING_OFFER, detail="no server offer is pending")
        try:
            answer = parse_sdp(sdp)
        except SdpError as exc:
            self.rollback()
            return AnswerRejected(reason=Rejection.MALFORMED, detail=str(exc))
        self._note_client_extensions(answer)
        if len(answer.media) != len(pending) or any(
                m.mid not in (None, s.mid) for s, m in zip(pending, answer.media, strict=True)):
            self.rollback()
            return AnswerRejected(reason=Rejection.SECTIONS_MISMATCH,
                                  detail=f"the answer has {len(answer.media)} m-sections, the offer had {len(pending)}")
        published: list[PublishedTrack] = []
        unpublished: list[str] = []
        refused: list[str] = []
        for slot, m in zip(pending, answer.media, strict=True):
            if slot.rejected:
                continue
            if m.rejected or not m.codecs:
                if slot.local is not None:
                    refused.append(slot.local.track_id)
                if slot.published is not None:
                    unpublished.append(slot.published.track_id)
                slot.rejected, slot.local, slot.published = True, None, None
                slot.client_direction = Direction.INACTIVE
                continue
            offered = {c.payload_type: c for c in slot.codecs}
            accepted = tuple(offered[c.payload_type] for c in m.codecs if c.payload_type in offered)
            if accepted and accepted[0].name.lower() != "rtx":
                slot.codecs = accepted
            answered = {e.uri: e.id for e in m.extmaps}
            slot.extmaps = tuple(e if e.id == answered[e.uri] else replace(e, id=answered[e.uri])
                                 for e in slot.extmaps if e.uri in answered)
            slot.client_direction = _direction(m)
            self._update_published(slot, m, published, unpublished)
        self._slots = pending
        self._pending = None
        self.state = NegotiationState.STABLE
        return AnswerApplied(sending=self.sending, published=tuple(published), unpublished=tuple(unpublished),
                             refused=tuple(refused))

    # --- writing SDP ------------------------------------------------------------------------------------------

    def _describe(self, slots: Sequence[_Slot], *, offer: bool, setup: str) -> str:
        self._version += 1
        t = self.transport
        algo, _, value = t.fingerprint.partition(" ")
        ip = "IP6" if ":" in t.host else "IP4"
        hosts = (t.host, *t.extra_hosts)
        candidates = tuple(Candidate(foundation=str(i + 1), component=1, transport="udp", priority=2130706431 - i,
                                     address=host, port=t.port, type="host")
                           for i, host in enumerate(hosts))
        if t.tcp_port:
            # RFC 6544 4.2: host type preference, passive direction preference (4 << 13) in the local preference
            candidates += tuple(Candidate(foundation=f"{i + 1}t", component=1, transport="tcp",
                                          priority=(90 << 24) | (((4 << 13) | (8191 - i)) << 8) | 255, address=host,
                                          port=t.tcp_port, type="host", extensions=(("tcptype", "passive"),))
                                for i, host in enumerate(hosts))
        desc = SessionDescription(
            origin=Origin(session_id=str(self.session_id), session_version=self._version, addrtype=ip,
                          address=t.host),
            name="callsd", groups=(Group(semantics="BUNDLE", mids=tuple(s.mid for s in slots if not s.rejected)),),
            msid_semantic="WMS *", ice_lite=True, extmap_allow_mixed=self._allow_mixed,
            media=tuple(self._section(s, offer=offer, setup=setup, ip=ip, algo=algo, value=value,
                                      candidates=candidates) for s in slots),
        )
        return build_sdp(desc)

    def _section(self, s: _Slot, *, offer: bool, setup: str, ip: str, algo: str, value: str,
                 candidates: tuple[Candidate, ...]) -> MediaSection:
        """The server's media section for ``s``."""
        t = self.transport
        if s.rejected:
            return MediaSection(kind=s.kind, port=0, protocol=_PROTOCOL if s.kind != "application"
                                else "UDP/DTLS/SCTP", formats=s.formats[:1] or ("0",), mid=s.mid,
                                connection="IN IP4 0.0.0.0")
        sends = s.local is not None and (offer or s.client_direction.receives)
        receives = s.client_direction.sends
        direction = Direction.of(sends, receives)
        ssrcs: list[SsrcAttribute] = []
        groups: tuple[SsrcGroup, ...] = ()
        msids: tuple[Msid, ...] = ()
        if sends and s.local is not None:
            lt = s.local
            msids = (Msid(stream_id=lt.stream_id, track_id=lt.track_id),)
            has_rtx = lt.rtx_ssrc is not None and any(c.name.lower() == "rtx" for c in s.codecs)
            for ssrc in (lt.ssrc, lt.rtx_ssrc) if has_rtx and lt.rtx_ssrc is not None else (lt.ssrc,):
                ssrcs += [SsrcAttribute(ssrc=ssrc, attribute="cname", value=lt.cname),
                          SsrcAttribute(ssrc=ssrc, attribute="msid", value=f"{lt.stream_id} {lt.track_id}")]
            if has_rtx and lt.rtx_ssrc is not None:
                groups = (SsrcGroup(semantics="FID", ssrcs=(lt.ssrc, lt.rtx_ssrc)),)
        return MediaSection(
            kind=s.kind, port=t.port, protocol=_PROTOCOL,
            formats=tuple(str(c.payload_type) for c in s.codecs), connection=f"IN {ip} {t.host}",
            mid=s.mid, direction=direction, msids=msids, ice_ufrag=t.ice_ufrag, ice_pwd=t.ice_pwd,
            fingerprints=(Fingerprint(algorithm=algo, value=value),), setup=setup,
            candidates=candidates, end_of_candidates=True, rtcp_mux=True, rtcp_rsize=s.rsize,
            codecs=s.codecs, extmaps=s.extmaps, ssrcs=tuple(ssrcs), ssrc_groups=groups,
        )


def _published_track(slot: _Slot, m: MediaSection) -> PublishedTrack | None:
    ssrcs = m.ssrc_list()
    rtx_pairs = m.rtx_pairs()
    rtx_ssrcs = set(rtx_pairs.values())
    primaries = tuple(s for s in ssrcs if s not in rtx_ssrcs)
    stream_id: str | None = None
    track_id: str | None = None
    if m.msids:
        stream_id, track_id = m.msids[0].stream_id, m.msids[0].track_id
    elif primaries:
        value = m.ssrc_attribute(primaries[0], "msid")
        if value:
            stream_id, _, track_id = value.partition(" ")
    if not track_id:
        track_id = f"mid-{slot.mid}"
    rtx_codec = next((c for c in slot.codecs[1:] if c.name.lower() == "rtx"), None)
    return PublishedTrack(
        mid=slot.mid, track_id=track_id, stream_id=stream_id or "-", kind=slot.kind, ssrcs=primaries,
        rtx_ssrc=rtx_pairs.get(primaries[0]) if primaries and rtx_codec is not None else None, payload_type=slot.codecs[0].payload_type,
        rtx_payload_type=rtx_codec.payload_type if rtx_codec is not None else None, codec=slot.codecs[0],
        extensions=tuple((e.uri, e.id) for e in slot.extmaps),
        cname=m.ssrc_attribute(primaries[0], "cname") if primaries else None,
    )

