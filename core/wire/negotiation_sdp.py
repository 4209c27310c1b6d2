"""The server's answers and offers, written from the negotiated sections (pure): ``describe`` and its model form
``description``.

Why two forms: ``description`` builds the whole `SessionDescription` (one `MediaSection` per section) and
``build_sdp`` writes it; that is the reference. ``describe`` writes the same text faster, and is what the
negotiator sends: a join's answer has nine sections (its own and eight receive slots, ADR 0020) and the slots differ
only in their mid, msid and SSRC lines, so each *shape* of section (kind, codecs, header extensions, direction,
rtcp-rsize, simulcast rids, RTX or not) is modelled and written once per document (`sdp.SectionTemplate`) and every
section of that shape is the template with its own mid, msid and SSRC lines filled in (issue 13 part 2,
docs/performance.md "Joins, session 9"). tests/media/test_media_negotiation_sdp.py holds ``describe`` byte for
byte equal to ``build_sdp(description(...))`` on Hypothesis-drawn sections.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from .negotiation_results import LocalTransport, OutgoingTrack
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
    SectionTemplate,
    SessionDescription,
    SharedBlocks,
    SsrcAttribute,
    SsrcGroup,
    build_sdp,
    section_template,
    section_text,
)
from .simulcast_sdp import receive_attributes

__all__ = ["DescribedSection", "describe", "description"]

PROTOCOL = "UDP/TLS/RTP/SAVPF"


class DescribedSection(Protocol):
    """What the server writes of one negotiated section (the negotiator's slot)."""

    @property
    def mid(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def formats(self) -> tuple[str, ...]: ...
    @property
    def rejected(self) -> bool: ...
    @property
    def codecs(self) -> tuple[Codec, ...]: ...
    @property
    def extmaps(self) -> tuple[Extmap, ...]: ...
    @property
    def client_direction(self) -> Direction: ...
    @property
    def local(self) -> OutgoingTrack | None: ...
    @property
    def rsize(self) -> bool: ...
    @property
    def rids(self) -> tuple[str, ...]: ...


class _Document:
    """What every section of one document shares: the transport's lines, written once per document."""

    __slots__ = ("t", "ip", "setup", "offer", "fingerprints", "candidates")

    def __init__(self, t: LocalTransport, *, offer: bool, setup: str) -> None:
        self.t, self.offer, self.setup = t, offer, setup
        algo, _, value = t.fingerprint.partition(" ")
        # One tuple for every section (and one for the candidates): build_sdp writes a tuple's lines once per offer
        self.fingerprints = (Fingerprint(algorithm=algo, value=value),)
        self.ip = "IP6" if ":" in t.host else "IP4"
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
        self.candidates = candidates

    def direction(self, s: DescribedSection) -> tuple[Direction, bool]:
        """The section's direction from the server's side, and whether the server sends on it."""
        sends = s.local is not None and (self.offer or s.client_direction.receives)
        return Direction.of(sends, s.client_direction.sends), sends

    def sending(self, s: DescribedSection, sends: bool
                ) -> tuple[tuple[Msid, ...], tuple[SsrcGroup, ...], tuple[SsrcAttribute, ...]]:
        """The section's own lines: the msid, the SSRC group and the SSRC attributes of the track it sends."""
        lt = s.local
        if not sends or lt is None:
            return (), (), ()
        has_rtx = lt.rtx_ssrc is not None and any(c.name.lower() == "rtx" for c in s.codecs)
        ssrcs: list[SsrcAttribute] = []
        for ssrc in (lt.ssrc, lt.rtx_ssrc) if has_rtx and lt.rtx_ssrc is not None else (lt.ssrc,):
            ssrcs += [SsrcAttribute(ssrc=ssrc, attribute="cname", value=lt.cname),
                      SsrcAttribute(ssrc=ssrc, attribute="msid", value=f"{lt.stream_id} {lt.track_id}")]
        groups = (SsrcGroup(semantics="FID", ssrcs=(lt.ssrc, lt.rtx_ssrc)),) \
            if has_rtx and lt.rtx_ssrc is not None else ()
        return (Msid(stream_id=lt.stream_id, track_id=lt.track_id),), groups, tuple(ssrcs)

    def section(self, s: DescribedSection) -> MediaSection:
        """The server's media section for ``s``."""
        t = self.t
        if s.rejected:
            return MediaSection(kind=s.kind, port=0, protocol=PROTOCOL if s.kind != "application"
                                else "UDP/DTLS/SCTP", formats=s.formats[:1] or ("0",), mid=s.mid,
                                connection="IN IP4 0.0.0.0")
        direction, sends = self.direction(s)
        msids, groups, ssrcs = self.sending(s, sends)
        return MediaSection(
            kind=s.kind, port=t.port, protocol=PROTOCOL,
            formats=tuple(str(c.payload_type) for c in s.codecs), connection=f"IN {self.ip} {t.host}",
            mid=s.mid, direction=direction, msids=msids, ice_ufrag=t.ice_ufrag, ice_pwd=t.ice_pwd,
            fingerprints=self.fingerprints, setup=self.setup,
            candidates=self.candidates, end_of_candidates=True, rtcp_mux=True, rtcp_rsize=s.rsize,
            codecs=s.codecs, extmaps=s.extmaps, ssrcs=ssrcs, ssrc_groups=groups,
            other=receive_attributes(s.rids),
        )

    def session(self, slots: Sequence[DescribedSection], session_id: int, version: int, allow_mixed: bool,
                media: tuple[MediaSection, ...]) -> SessionDescription:
        t = self.t
        return SessionDescription(
            origin=Origin(session_id=str(session_id), session_version=version, addrtype=self.ip, address=t.host),
            name="callsd", groups=(Group(semantics="BUNDLE", mids=tuple(s.mid for s in slots if not s.rejected)),),
            msid_semantic="WMS *", ice_lite=True, extmap_allow_mixed=allow_mixed, media=media,
        )


def description(slots: Sequence[DescribedSection], t: LocalTransport, *, session_id: int, version: int,
                allow_mixed: bool, offer: bool, setup: str) -> SessionDescription:
    """The server's description of ``slots`` as a model: what ``describe`` writes (the reference)."""
    doc = _Document(t, offer=offer, setup=setup)
    return doc.session(slots, session_id, version, allow_mixed, tuple(doc.section(s) for s in slots))


def describe(slots: Sequence[DescribedSection], t: LocalTransport, *, session_id: int, version: int,
             allow_mixed: bool, offer: bool, setup: str) -> str:
    """``build_sdp(description(...))``, each shape of section written once (module docstring)."""
    doc = _Document(t, offer=offer, setup=setup)
    shared: SharedBlocks = {}
    templates: dict[tuple[object, ...], SectionTemplate] = {}
    parts = [build_sdp(doc.session(slots, session_id, version, allow_mixed, ()))]
    for s in slots:
        if s.rejected:
            parts.append(section_text(doc.section(s), shared))
            continue
        direction, sends = doc.direction(s)
        lt = s.local if sends else None
        # Everything the section's lines depend on but its mid, msid and SSRCs; the tuples the negotiator shares
        # between alike sections (codecs, extmaps) by identity, as build_sdp's shared blocks are
        key = (s.kind, id(s.codecs), id(s.extmaps), direction, s.rsize, s.rids,
               lt is not None and lt.rtx_ssrc is not None)
        template = templates.get(key)
        if template is None:
            template = templates[key] = section_template(doc.section(s), shared)
        if lt is None:
            parts.append(template.fill(s.mid, "", ""))
            continue
        # The lines `sending` models, written straight from the track (the property test holds them equal)
        msid = f"{lt.stream_id} {lt.track_id}"
        own = f"a=ssrc:{lt.ssrc} cname:{lt.cname}\r\na=ssrc:{lt.ssrc} msid:{msid}\r\n"
        if lt.rtx_ssrc is not None and any(c.name.lower() == "rtx" for c in s.codecs):
            own = (f"a=ssrc-group:FID {lt.ssrc} {lt.rtx_ssrc}\r\n{own}a=ssrc:{lt.rtx_ssrc} cname:{lt.cname}\r\n"
                   f"a=ssrc:{lt.rtx_ssrc} msid:{msid}\r\n")
        parts.append(template.fill(s.mid, f"a=msid:{msid}\r\n", own))
    return "".join(parts)
