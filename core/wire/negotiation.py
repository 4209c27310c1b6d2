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
  section in order and appends new ones. Sections with port 0 are rejected;
* a client may also create sections for the server to send on: ``recvonly`` sections of its first offer that the
  adapter names in ``handle_offer(sdp, receive_on)`` (its audio receive slots, docs/adr/0020-receive-slots.md,
  addendum). They are answered ``sendonly`` with the track's SSRC and msid and then behave as server sections
  (``make_offer`` re-offers them when their track's SSRC changes), except that their mid is the client's.

States: ``NEW`` (no offer yet) → ``STABLE`` after the first answer; ``STABLE`` → ``HAVE_LOCAL_OFFER`` when the server
offers, back to ``STABLE`` when the client answers (or on a rollback).

Glare: the server is the *impolite* peer of perfect negotiation (RFC 8829 4.1.8.2; docs/protocol.md). A client
offer that arrives while the server's own offer is pending is ignored (``OfferIgnored(reason="glare")``, nothing
changes); the client, polite, rolls its offer back, answers the server's offer, and offers again. The server never
needs a rollback of its own, and its pending offer stays valid. See docs/adr/0004-sdp-negotiation.md.

The codec policy (which codec a section accepts, and under which payload type a server offer sends one) lives in
``codec_policy.py``; the session-wide header extension ids in ``extension_ids.py``; the values this module takes
and returns in ``negotiation_results.py``. This module re-exports those names, so importers keep one place to
import the negotiation API from.

Limits (one message must not make the whole call's work grow): an offer may add at most ``MAX_CLIENT_SECTIONS``
m-sections of the client's own (the server's sections do not count; the web client uses three), else
``too_many_sections``, checked by counting ``m=`` lines before the SDP is parsed; and it may send on at most
``MAX_SENDING_SECTIONS`` sections of each media kind (audio: a microphone and a screen's audio; video: a camera
and a screen; simulcast layers share their section), else ``too_many_tracks``. The calls core then allows one
track of each ``TrackKind`` per session.

A remote party's mistake (unparsable SDP, no ICE credentials, an answer without a pending offer) is a typed
``OfferRejected``/``AnswerRejected`` result the adapter can report to the client; misuse by the adapter (offering
before the first client offer) raises ``LocalProtocolError``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace

from ..errors import LocalProtocolError
from .codec_policy import choose_codecs, offer_codecs
from .extension_ids import (
    ABS_SEND_TIME_URI,
    AUDIO_LEVEL_URI,
    KEPT_EXTENSIONS,
    MID_URI,
    OFFERED_EXTENSIONS,
    TOFFSET_URI,
    TWCC_URI,
    VIDEO_ORIENTATION_URI,
    ExtensionIds,
)
from .negotiation_results import (
    AnswerApplied,
    AnswerRejected,
    LocalTransport,
    NegotiationState,
    OfferAnswered,
    OfferIgnored,
    OfferMade,
    OfferRejected,
    OutgoingTrack,
    PublishedTrack,
    RemoteTransport,
    SdpRejectReason,
    SendingTrack,
)
from .negotiation_sdp import PROTOCOL as _PROTOCOL
from .negotiation_sdp import describe
from .sdp import (
    Codec,
    Direction,
    Extmap,
    MediaSection,
    SdpError,
    parse_sdp,
)
from .simulcast_sdp import SIMULCAST_EXTENSIONS, send_rids

__all__ = [
    "Negotiator",
    # re-exported from negotiation_results, codec_policy and extension_ids (module docstring)
    "NegotiationState", "SdpRejectReason", "LocalTransport", "RemoteTransport", "PublishedTrack", "OutgoingTrack",
    "SendingTrack", "OfferAnswered", "OfferRejected", "OfferIgnored", "OfferMade", "AnswerApplied", "AnswerRejected",
    "choose_codecs", "AUDIO_LEVEL_URI", "MID_URI", "ABS_SEND_TIME_URI", "TWCC_URI", "TOFFSET_URI",
    "VIDEO_ORIENTATION_URI",
]


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
    rids: tuple[str, ...] = ()  # the simulcast streams the client sends on this section (simulcast_sdp.py)

    def copy(self) -> _Slot:
        """A shallow copy (``dataclasses.replace`` costs several times more, once per section per offer)."""
        return _Slot(mid=self.mid, kind=self.kind, server_owned=self.server_owned, formats=self.formats,
                     rejected=self.rejected, codecs=self.codecs, extmaps=self.extmaps,
                     client_direction=self.client_direction, published=self.published, local=self.local,
                     rsize=self.rsize, rids=self.rids)


MAX_CLIENT_SECTIONS = 16  # m-sections a client may create (its transceivers, live or stopped)
MAX_SENDING_SECTIONS = {"audio": 2, "video": 2}  # sections a client may send on, per media kind


def _sending_over_limit(media: Sequence[MediaSection]) -> OfferRejected | None:
    """``too_many_tracks`` if the offer sends on more sections of a kind than ``MAX_SENDING_SECTIONS`` allows."""
    sending: dict[str, int] = {}
    for m in media:
        if not m.rejected and _direction(m).sends:
            sending[m.kind] = sending.get(m.kind, 0) + 1
    for kind, count in sending.items():
        limit = MAX_SENDING_SECTIONS.get(kind, 0)
        if count > limit:
            return OfferRejected(reason=SdpRejectReason.TOO_MANY_TRACKS,
                                 detail=f"the offer sends on {count} {kind} sections; at most {limit} "
                                        f"(a microphone and a screen's audio, a camera and a screen)")
    return None


def _bad_receive_sections(media: Sequence[MediaSection], receive_on: Mapping[str, OutgoingTrack],
                          negotiated: set[str], bundle: set[str]) -> str | None:
    """Why the sections a client names to receive on cannot carry those tracks, or None: each must be in the
    offer, new (not a negotiated one), bundled, not rejected, of the track's kind and ``recvonly``."""
    by_mid = {m.mid: m for m in media if m.mid is not None}
    for mid, track in receive_on.items():
        m = by_mid.get(mid)
        if m is None:
            return f"no m-section has mid {mid!r}"
        if mid in negotiated:
            return f"m-section {mid!r} was negotiated before: receive slots are new sections"
        if m.rejected or mid not in bundle or m.kind != track.kind or _direction(m) is not Direction.RECVONLY:
            return f"m-section {mid!r} is not a bundled recvonly {track.kind} section"
    return None


def _direction(m: MediaSection) -> Direction:
    return m.direction if m.direction is not None else Direction.SENDRECV


class Negotiator:
    """Negotiation state of one session. ``handle_offer``, ``make_offer`` and ``handle_answer`` are the interface.

    ``session_id`` is the numeric o= session id of the server's descriptions (random per session, drawn by the
    adapter). ``transport`` describes the server's ICE-lite endpoint.
    """

    __slots__ = ("transport", "session_id", "state", "remote", "_slots", "_pending", "_desired", "_version",
                 "_allow_mixed", "_client_codecs", "_extension_ids", "simulcast", "_sending")

    def __init__(self, *, transport: LocalTransport, session_id: int, simulcast: bool = False) -> None:
        self.transport = transport
        self.simulcast = simulcast  # accept a=simulcast/a=rid on video (answered recv); else one encoding
        self.session_id = session_id
        self.state = NegotiationState.NEW
        self.remote: RemoteTransport | None = None
        self._slots: list[_Slot] = []
        self._pending: list[_Slot] | None = None
        self._desired: tuple[OutgoingTrack, ...] = ()
        self._version = 0
        self._allow_mixed = False
        self._client_codecs: dict[int, Codec] = {}  # every codec the client ever offered, by its payload type
        self._extension_ids = ExtensionIds()  # header extension ids, session-wide (extension_ids.py)
        # ``sending`` as of the agreed slots list it was computed from: a list of slots is never changed once it is
        # the agreed one (offers and answers work on copies, then install a new list), so its identity is its value
        self._sending: tuple[list[_Slot] | None, tuple[SendingTrack, ...]] = (None, ())

    # --- queries ----------------------------------------------------------------------------------------------

    @property
    def published(self) -> tuple[PublishedTrack, ...]:
        return tuple(s.published for s in self._slots if s.published is not None)

    @property
    def sending(self) -> tuple[SendingTrack, ...]:
        """What the agreed description sends, section by section (computed once per agreed description: the
        answer's result and the plane's route sync both ask for it)."""
        made_from, sending = self._sending
        if made_from is not self._slots:
            sending = tuple(t for s in self._slots if (t := self._sending_of(s)) is not None)
            self._sending = (self._slots, sending)
        return sending

    def sending_track(self, track_id: str) -> SendingTrack | None:
        """``sending``'s entry for ``track_id`` alone (None if the agreed description does not send it): from
        ``sending`` when it was made for this description (a route put on a slot of a session that answered),
        else from its section (a track is on one section at most)."""
        made_from, sending = self._sending
        if made_from is self._slots:
            return next((t for t in sending if t.track_id == track_id), None)
        for s in self._slots:
            if s.local is not None and s.local.track_id == track_id:
                return self._sending_of(s)
        return None

    def mid_of(self, track_id: str) -> str | None:
        """The mid of the section that sends ``track_id`` in the pending offer, else in the agreed description."""
        for s in self._pending if self._pending is not None else self._slots:
            if s.local is not None and s.local.track_id == track_id and not s.rejected:
                return s.mid
        return None

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

    def handle_offer(self, sdp: str, receive_on: Mapping[str, OutgoingTrack] | None = None
                     ) -> OfferAnswered | OfferRejected | OfferIgnored:
        """Answer a client offer; ignore it while the server's own offer is pending (the server is impolite).

        ``receive_on`` (mid -> track): sections the client adds in this offer to receive the server's tracks on (its
        receive slots, docs/adr/0020-receive-slots.md): each must be a new, usable ``recvonly`` section of the
        track's kind, else ``bad_receive_slots``; the answer sends the track on it (``sendonly``, its SSRC and
        msid), with no server offer.

        The header extension ids of any offer that parses are remembered, even an ignored one: the browser keeps
        the ids of a transceiver it added for an offer it rolled back, so later server offers must not reuse them.
        """
        server_sections = sum(1 for slot in self._slots if slot.server_owned)
        if sdp.count("\nm=") + sdp.startswith("m=") > server_sections + MAX_CLIENT_SECTIONS:
            return OfferRejected(reason=SdpRejectReason.TOO_MANY_SECTIONS,
                                 detail=f"an offer may add at most {MAX_CLIENT_SECTIONS} m-sections of its own to "
                                        f"the {server_sections} the server offered")
        try:
            offer = parse_sdp(sdp)
        except SdpError as exc:
            if self._pending is not None:
                return OfferIgnored(reason="glare")
            return OfferRejected(reason=SdpRejectReason.MALFORMED, detail=str(exc))
        self._extension_ids.note_client(offer)
        if self._pending is not None:
            return OfferIgnored(reason="glare")
        too_many = _sending_over_limit(offer.media)
        if too_many is not None:
            return too_many
        live = [m for m in offer.media if not m.rejected]
        if not live:
            return OfferRejected(reason=SdpRejectReason.NO_MEDIA, detail="every m-section is rejected or missing")
        first = live[0]
        ufrag, pwd = first.ice_ufrag or offer.ice_ufrag, first.ice_pwd or offer.ice_pwd
        if not ufrag or not pwd:
            return OfferRejected(reason=SdpRejectReason.NO_ICE_CREDENTIALS, detail="no a=ice-ufrag/a=ice-pwd")
        fps = first.fingerprints or offer.fingerprints
        fp = next((f for f in fps if f.algorithm == "sha-256"), fps[0] if fps else None)
        if fp is None:
            return OfferRejected(reason=SdpRejectReason.NO_FINGERPRINT, detail="no a=fingerprint")
        setup = first.setup or offer.setup
        if setup not in ("actpass", "active", "passive"):
            return OfferRejected(reason=SdpRejectReason.NO_SETUP, detail=f"a=setup must be actpass/active/passive, "
                                                                  f"got {setup!r}")
        base = self._slots
        if len(offer.media) < len(base):
            return OfferRejected(reason=SdpRejectReason.SECTIONS_MISMATCH,
                                 detail=f"the offer has {len(offer.media)} m-sections, {len(base)} were negotiated")
        for i, slot in enumerate(base):
            m = offer.media[i]
            if m.mid != slot.mid and not (slot.rejected or m.rejected):
                return OfferRejected(reason=SdpRejectReason.SECTIONS_MISMATCH,
                                     detail=f"m-section {i} has mid {m.mid!r}, expected {slot.mid!r}")
        bundle = set(offer.bundle())
        wrong = _bad_receive_sections(offer.media, receive_on or {}, {slot.mid for slot in base}, bundle)
        if wrong is not None:
            return OfferRejected(reason=SdpRejectReason.BAD_RECEIVE_SLOTS, detail=wrong)
        slots: list[_Slot] = []
        published: list[PublishedTrack] = []
        unpublished: list[str] = []
        refused: list[str] = []
        # What a section agrees to depends only on its codecs and extensions (and the codec the server sends on it):
        # the parser gives repeated sections (receive slots: eight alike) the same tuples, so one computation each.
        agreed: dict[tuple[str, int, int, int, bool], tuple[tuple[Codec, ...], tuple[Extmap, ...]]] = {}
        for i, m in enumerate(offer.media):
            prev = base[i] if i < len(base) else None
            old = prev if prev is not None and prev.mid == m.mid else None
            if old is None and prev is not None and prev.published is not None:  # a recycled position
                unpublished.append(prev.published.track_id)
            slot = old.copy() if old is not None else _Slot(mid=m.mid or str(i), kind=m.kind, server_owned=False)
            if old is None and receive_on and m.mid is not None and m.mid in receive_on:
                slot.local = receive_on[m.mid]
            slot.formats = m.formats
            usable = (not m.rejected and m.mid is not None and m.kind in ("audio", "video") and m.rtcp_mux
                      and m.protocol == _PROTOCOL and m.mid in bundle)
            want = slot.local.codec if slot.local is not None else None
            server_sends = slot.server_owned or slot.local is not None
            key = (m.kind, id(m.codecs), id(m.extmaps), id(want), server_sends)
            known = agreed.get(key)
            codecs = known[0] if known is not None else choose_codecs(m.kind, m.codecs, want,
                                                                      server_sends=server_sends)
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
            slot.client_direction = _direction(m)
            # Kept on an inactive section too (a camera slot negotiated before the camera is on): a browser whose
            # simulcast offer is answered without a=simulcast drops its extra encodings for good (JSEP 5.3.1).
            slot.rids = send_rids(m) if self.simulcast and m.kind == "video" else ()
            # The RID extensions are kept on every video section while simulcast is allowed, not only on simulcast
            # ones: Chromium offers a later section only the extensions an earlier answer accepted, and refuses its
            # own offer of a new simulcast section (a screen share started mid-call) without them.
            slot.rsize = m.rtcp_rsize
            if known is not None:
                slot.extmaps = known[1]
            else:
                slot.extmaps = tuple(e for e in m.extmaps if e.uri in KEPT_EXTENSIONS[m.kind]
                                     or (self.simulcast and m.kind == "video" and e.uri in SIMULCAST_EXTENSIONS))
                slot.extmaps += self._more_extmaps(slot, m)
                agreed[key] = (codecs, slot.extmaps)
            self._update_published(slot, m, published, unpublished)
            slots.append(slot)
        if not any(not s.rejected for s in slots):
            return OfferRejected(reason=SdpRejectReason.NO_MEDIA, detail="no m-section offers a usable codec with "
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

    def _more_extmaps(self, slot: _Slot, m: MediaSection) -> tuple[Extmap, ...]:
        """Extensions an answer keeps beyond the kept ones: transport-wide cc on every section
        (``OFFERED_EXTENSIONS``): the server stamps what it sends a receiver, and reads the number on what a
        publisher sends it to send back transport-cc feedback (adapters/media/twcc_recv.py). (The RID extensions
        on every video section while simulcast is allowed are kept with the others, above.)"""
        kept = {e.uri for e in slot.extmaps}
        wanted = set(OFFERED_EXTENSIONS[m.kind])
        return tuple(e for e in m.extmaps if e.uri in wanted and e.uri not in kept)

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
        if self._unchanged(wanted):
            return None
        slots = [s.copy() for s in self._slots]
        changed = False
        for s in slots:
            if s.local is not None and s.local.track_id not in wanted:
                s.local = None
                changed = True
            elif s.local is not None and wanted[s.local.track_id].ssrc != s.local.ssrc:
                s.local = wanted[s.local.track_id]  # a receive slot's fresh SSRC (receive_slots.py)
                changed = True
        placed = {s.local.track_id for s in slots if s.local is not None}
        # A new section offered like one made earlier in this offer (same kind and codec, no RTX) gets what that
        # one got: with it in the bundle, ``offer_codecs`` finds the same payload type and ``for_offer`` the same
        # ids (a joiner's first offer has eight audio slots: one computation, not eight growing ones).
        made: dict[tuple[str, Codec], tuple[tuple[Codec, ...], tuple[Extmap, ...]]] = {}
        for t in self._desired:
            if t.track_id in placed:
                continue
            slot = _Slot(mid=self._new_mid(slots), kind=t.kind, server_owned=True,
                         client_direction=Direction.RECVONLY)
            slots.append(slot)
            slot.local = t
            alike = made.get((t.kind, t.codec)) if t.rtx_ssrc is None or t.kind != "video" else None
            if alike is not None:
                slot.codecs, slot.extmaps = alike
            else:
                slot.codecs = offer_codecs([x.codecs for x in slots if not x.rejected], t, self._client_codecs)
                slot.extmaps = self._extension_ids.for_offer(_bundle_extmaps(slots), t.kind)
                made[t.kind, t.codec] = (slot.codecs, slot.extmaps)
            changed = True
        if not changed:
            return None
        self._extension_ids.note_offered(_bundle_extmaps(slots))
        self._pending = slots
        self.state = NegotiationState.HAVE_LOCAL_OFFER
        setup = "active" if self.remote is not None and self.remote.dtls_role == "client" else "passive"
        return OfferMade(offer=self._describe(slots, offer=True, setup=setup),
                         sections=tuple((s.mid, s.local.track_id) for s in slots
                                        if s.local is not None and not s.rejected))

    def _unchanged(self, wanted: dict[str, OutgoingTrack]) -> bool:
        """Whether the agreed sections already send exactly ``wanted`` (the common case: with receive slots most
        route changes change nothing here), checked without copying the sections."""
        placed = 0
        for s in self._slots:
            if s.local is not None:
                w = wanted.get(s.local.track_id)
                if w is None or w.ssrc != s.local.ssrc:
                    return False
                placed += 1
        return placed == len(wanted)

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

    # --- the client's answer ----------------------------------------------------------------------------------

    def handle_answer(self, sdp: str) -> AnswerApplied | AnswerRejected:
        """Apply the client's answer to the pending server offer; a bad answer rolls the offer back."""
        pending = self._pending
        if pending is None:
            return AnswerRejected(reason=SdpRejectReason.NO_PENDING_OFFER, detail="no server offer is pending")
        try:
            answer = parse_sdp(sdp)
        except SdpError as exc:
            self.rollback()
            return AnswerRejected(reason=SdpRejectReason.MALFORMED, detail=str(exc))
        self._extension_ids.note_client(answer)
        if len(answer.media) != len(pending) or any(
                m.mid not in (None, s.mid) for s, m in zip(pending, answer.media, strict=True)):
            self.rollback()
            return AnswerRejected(reason=SdpRejectReason.SECTIONS_MISMATCH,
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
            if accepted and accepted[0].name.lower() != "rtx" and accepted != slot.codecs:
                slot.codecs = accepted  # (an equal tuple is not kept twice: sessions hold one per section)
            answered = {e.uri: e.id for e in m.extmaps}
            extmaps = tuple(e if e.id == answered[e.uri] else replace(e, id=answered[e.uri])
                            for e in slot.extmaps if e.uri in answered)
            if extmaps != slot.extmaps:
                slot.extmaps = extmaps
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
        return describe(slots, self.transport, session_id=self.session_id, version=self._version,
                        allow_mixed=self._allow_mixed, offer=offer, setup=setup)


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
        cname=m.ssrc_attribute(primaries[0], "cname") if primaries else None, rids=slot.rids,
    )


def _bundle_extmaps(slots: Sequence[_Slot]) -> Iterator[Extmap]:
    """The header extensions of the live (not rejected) sections, in section order."""
    for slot in slots:
        if not slot.rejected:
            yield from slot.extmaps
