"""The SDP model (RFC 8866 as WebRTC writes it): plain frozen dataclasses, and the one declared error.

``sdp_parse.parse_sdp`` builds these from text and ``sdp.build_sdp`` writes them back; import all three through
``callsd.core.wire.sdp``. Helpers on ``MediaSection`` answer the questions the server asks (``codec(pt)``,
``extension_id(uri)``, ``ssrc_attribute(ssrc, name)``, ``rtx_pairs()``).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, fields

from ..errors import RemoteProtocolError

__all__ = [
    "SdpError",
    "Direction",
    "Origin",
    "Codec",
    "Extmap",
    "Fingerprint",
    "Candidate",
    "Msid",
    "SsrcAttribute",
    "SsrcGroup",
    "Group",
    "MediaSection",
    "SessionDescription",
    "parse_fmtp",
]


class SdpError(RemoteProtocolError):
    """An SDP document could not be parsed; the message gives the line number and the problem."""


class Direction(enum.StrEnum):
    SENDRECV = "sendrecv"
    SENDONLY = "sendonly"
    RECVONLY = "recvonly"
    INACTIVE = "inactive"

    @property
    def sends(self) -> bool:
        return self in (Direction.SENDRECV, Direction.SENDONLY)

    @property
    def receives(self) -> bool:
        return self in (Direction.SENDRECV, Direction.RECVONLY)

    @staticmethod
    def of(sends: bool, receives: bool) -> Direction:
        if sends:
            return Direction.SENDRECV if receives else Direction.SENDONLY
        return Direction.RECVONLY if receives else Direction.INACTIVE

    def reversed(self) -> Direction:
        """The direction as seen from the other side (sendonly ↔ recvonly)."""
        return Direction.of(self.receives, self.sends)


@dataclass(frozen=True, slots=True, kw_only=True)
class Origin:
    username: str = "-"
    session_id: str = "0"
    session_version: int = 0
    nettype: str = "IN"
    addrtype: str = "IP4"
    address: str = "0.0.0.0"


@dataclass(frozen=True, slots=True, kw_only=True)
class Codec:
    """One payload type of a media section: its a=rtpmap, a=fmtp and a=rtcp-fb lines.

    ``name`` is empty for a static payload type without a=rtpmap. ``feedback`` holds the rtcp-fb values
    ("nack", "nack pli", "ccm fir", "goog-remb", "transport-cc").
    """

    payload_type: int
    name: str = ""
    clock_rate: int = 0
    channels: int | None = None
    fmtp: str | None = None
    feedback: tuple[str, ...] = ()

    @property
    def params(self) -> dict[str, str]:
        return parse_fmtp(self.fmtp)


@dataclass(frozen=True, slots=True, kw_only=True)
class Extmap:
    id: int
    uri: str
    direction: Direction | None = None
    attributes: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Fingerprint:
    algorithm: str  # "sha-256"
    value: str  # "AB:CD:..."


@dataclass(frozen=True, slots=True, kw_only=True)
class Candidate:
    foundation: str
    component: int
    transport: str
    priority: int
    address: str
    port: int
    type: str
    related_address: str | None = None
    related_port: int | None = None
    extensions: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Msid:
    stream_id: str
    track_id: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class SsrcAttribute:
    ssrc: int
    attribute: str
    value: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class SsrcGroup:
    semantics: str  # "FID", "SIM", "FEC-FR"
    ssrcs: tuple[int, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Group:
    semantics: str  # "BUNDLE"
    mids: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class MediaSection:
    kind: str  # audio, video, application
    port: int
    protocol: str
    formats: tuple[str, ...]
    connection: str | None = None
    bandwidths: tuple[str, ...] = ()
    mid: str | None = None
    direction: Direction | None = None
    msids: tuple[Msid, ...] = ()
    ice_ufrag: str | None = None
    ice_pwd: str | None = None
    ice_options: str | None = None
    fingerprints: tuple[Fingerprint, ...] = ()
    setup: str | None = None
    candidates: tuple[Candidate, ...] = ()
    end_of_candidates: bool = False
    rtcp: str | None = None
    rtcp_mux: bool = False
    rtcp_rsize: bool = False
    codecs: tuple[Codec, ...] = ()
    extmaps: tuple[Extmap, ...] = ()
    extmap_allow_mixed: bool = False
    ssrcs: tuple[SsrcAttribute, ...] = ()
    ssrc_groups: tuple[SsrcGroup, ...] = ()
    other: tuple[tuple[str, str | None], ...] = ()

    @property
    def rejected(self) -> bool:
        return self.port == 0

    def with_mid(self, mid: str | None) -> MediaSection:
        """This section under another mid, as ``dataclasses.replace(self, mid=mid)`` makes it, in less than half
        the time (no walk over the fields' metadata, no keyword ``__init__``): the parse of an answer to an offer
        with receive slots makes one per repeated section (sdp_parse.py, ``_repeated_sections``). The class's own
        ``__new__``, not ``object.__new__``: compiled by mypyc (docs/adr/0053) the class allocates its own layout."""
        clone = MediaSection.__new__(MediaSection)
        for name in _MEDIA_SECTION_FIELDS:
            object.__setattr__(clone, name, getattr(self, name))
        object.__setattr__(clone, "mid", mid)
        return clone

    def with_transport(self, mid: str | None, ice_ufrag: str | None, ice_pwd: str | None,
                       fingerprints: tuple[Fingerprint, ...], msids: tuple[Msid, ...],
                       ssrcs: tuple[SsrcAttribute, ...], ssrc_groups: tuple[SsrcGroup, ...]) -> MediaSection:
        """This section with another mid, ICE credentials, fingerprints, msids and SSRCs (as ``with_mid``): a
        section a client sent before, in another document, with this document's own lines of that kind
        (sdp_parse.py, known sections)."""
        clone = self.with_mid(mid)
        object.__setattr__(clone, "ice_ufrag", ice_ufrag)
        object.__setattr__(clone, "ice_pwd", ice_pwd)
        object.__setattr__(clone, "fingerprints", fingerprints)
        object.__setattr__(clone, "msids", msids)
        object.__setattr__(clone, "ssrcs", ssrcs)
        object.__setattr__(clone, "ssrc_groups", ssrc_groups)
        return clone

    def codec(self, payload_type: int) -> Codec | None:
        for c in self.codecs:
            if c.payload_type == payload_type:
                return c
        return None

    def extension_id(self, uri: str) -> int | None:
        for e in self.extmaps:
            if e.uri == uri:
                return e.id
        return None

    def ssrc_attribute(self, ssrc: int, attribute: str) -> str | None:
        for s in self.ssrcs:
            if s.ssrc == ssrc and s.attribute == attribute:
                return s.value
        return None

    def ssrc_list(self) -> tuple[int, ...]:
        """Distinct SSRCs of a=ssrc lines, in first-seen order."""
        seen: dict[int, None] = {}
        for s in self.ssrcs:
            seen.setdefault(s.ssrc, None)
        return tuple(seen)

    def rtx_pairs(self) -> dict[int, int]:
        """Primary SSRC → RTX SSRC from a=ssrc-group:FID lines."""
        return {g.ssrcs[0]: g.ssrcs[1] for g in self.ssrc_groups if g.semantics == "FID" and len(g.ssrcs) == 2}

    def attribute(self, name: str) -> str | None:
        """The first unmodelled attribute ``name`` (from ``other``), '' for a flag, None when absent."""
        for n, v in self.other:
            if n == name:
                return "" if v is None else v
        return None


_MEDIA_SECTION_FIELDS = tuple(f.name for f in fields(MediaSection))


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionDescription:
    origin: Origin = Origin()
    name: str = "-"
    timing: str = "0 0"
    connection: str | None = None
    bandwidths: tuple[str, ...] = ()
    groups: tuple[Group, ...] = ()
    msid_semantic: str | None = None
    ice_lite: bool = False
    ice_ufrag: str | None = None
    ice_pwd: str | None = None
    ice_options: str | None = None
    fingerprints: tuple[Fingerprint, ...] = ()
    setup: str | None = None
    extmap_allow_mixed: bool = False
    extmaps: tuple[Extmap, ...] = ()
    other: tuple[tuple[str, str | None], ...] = ()
    other_lines: tuple[str, ...] = ()  # i=, u=, e=, p=, z=, k=, r= lines kept verbatim ("i=...")
    media: tuple[MediaSection, ...] = ()

    def bundle(self) -> tuple[str, ...]:
        """The mids of the first a=group:BUNDLE, or () without one."""
        for g in self.groups:
            if g.semantics == "BUNDLE":
                return g.mids
        return ()


def parse_fmtp(fmtp: str | None) -> dict[str, str]:
    """``"a=1;b=2"`` → ``{"a": "1", "b": "2"}``; a bare token (e.g. RED's "111/111") maps to ''."""
    out: dict[str, str] = {}
    if not fmtp:
        return out
    for part in fmtp.split(";"):
        part = part.strip()
        if not part:
            continue
        key, sep, value = part.partition("=")
        out[key.strip()] = value.strip() if sep else ""
    return out
