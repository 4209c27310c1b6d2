"""SDP (RFC 8866) as WebRTC endpoints write it (JSEP, RFC 8829): parse into dataclasses, build back to text.

``parse_sdp(text) -> SessionDescription`` accepts what Chromium (v150+) and aiortc produce: Unified Plan media
sections with BUNDLE, ICE, DTLS, RTP codecs, header extensions, msid and ssrc lines. Anything that does not parse
raises ``SdpError`` (the module's one declared error) with the line number and what is wrong. Attributes the server
does not model (a=rtcp-xr, a=simulcast, a=rid, a=sctp-port, ...) are kept, in order, in ``other`` so that
``build_sdp(parse_sdp(x))`` loses nothing; the builder writes lines in a fixed canonical order, so the text may be
reordered but ``parse_sdp(build_sdp(d)) == d`` holds for every parsed ``d``.

The model is plain data: the negotiation (core/wire/negotiation.py) reads offers with it and builds answers and offers
with ``dataclasses.replace`` or constructors.

Helpers on ``MediaSection`` answer the questions the server asks (``codec(pt)``, ``extension_id(uri)``,
``ssrc_attribute(ssrc, name)``, ``rtx_pairs()``).

This module is the one to import: it writes SDP (``build_sdp``, ``format_candidate``) and re-exports the model
(``sdp_model.py``) and the parser (``sdp_parse.py``), which import each other one way (sdp -> sdp_parse ->
sdp_model).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .sdp_model import (
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
    parse_fmtp,
)
from .sdp_parse import parse_candidate, parse_sdp

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
    "parse_sdp",
    "build_sdp",
    "parse_candidate",
    "format_candidate",
    "parse_fmtp",
    "SectionTemplate",
    "SharedBlocks",
    "section_template",
]


def format_candidate(c: Candidate) -> str:
    """The value of an a=candidate line (without "candidate:")."""
    s = f"{c.foundation} {c.component} {c.transport} {c.priority} {c.address} {c.port} typ {c.type}"
    if c.related_address is not None:
        s += f" raddr {c.related_address}"
    if c.related_port is not None:
        s += f" rport {c.related_port}"
    for k, v in c.extensions:
        s += f" {k} {v}"
    return s


# --- building ------------------------------------------------------------------------------------------------


def _attr(name: str, value: str | None) -> str:
    return f"a={name}" if value is None else f"a={name}:{value}"


def _extmap(e: Extmap) -> str:
    s = f"a=extmap:{e.id}" + (f"/{e.direction.value}" if e.direction else "") + f" {e.uri}"
    return s + (f" {e.attributes}" if e.attributes is not None else "")


def _codec_lines(codecs: tuple[Codec, ...]) -> list[str]:
    out = []
    for c in codecs:
        if c.name:
            out.append(f"a=rtpmap:{c.payload_type} {c.name}/{c.clock_rate}"
                       + (f"/{c.channels}" if c.channels is not None else ""))
        out += [f"a=rtcp-fb:{c.payload_type} {fb}" for fb in c.feedback]
        if c.fmtp is not None:
            out.append(f"a=fmtp:{c.payload_type} {c.fmtp}")
    return out


def _extmap_lines(extmaps: tuple[Extmap, ...]) -> list[str]:
    return [_extmap(e) for e in extmaps]


def _candidate_lines(candidates: tuple[Candidate, ...]) -> list[str]:
    return [f"a=candidate:{format_candidate(c)}" for c in candidates]


def _fingerprint_lines(fingerprints: tuple[Fingerprint, ...]) -> list[str]:
    return [f"a=fingerprint:{f.algorithm} {f.value}" for f in fingerprints]


# The lines of a block (codecs, extmaps, candidates, fingerprints) written once per document for each tuple object
# the sections share: the server's offers hand every section the same candidates and every alike receive slot the
# same codecs and extmaps (negotiation.py), so an offer of nine sections writes them once, not nine times. Keyed by
# the writer and the tuple's id, for one ``build_sdp`` call only: the document holds every tuple for that long, so
# no id is reused meanwhile.
_Shared = dict[tuple[Callable[[Any], list[str]], int], list[str]]
SharedBlocks = _Shared  # what a caller writing one document section by section passes to ``section_template``


def _block(shared: _Shared, write: Callable[[Any], list[str]], items: tuple[Any, ...]) -> list[str]:
    key = (write, id(items))
    lines = shared.get(key)
    if lines is None:
        lines = shared[key] = write(items)
    return lines


def _lines(lines: list[str]) -> str:
    return "".join(f"{line}\r\n" for line in lines)


@dataclass(frozen=True, slots=True)
class SectionTemplate:
    """A media section's text with holes for its mid, msid and SSRC lines, the lines that tell alike sections
    apart (the receive slots of one answer): ``fill`` writes a section of this shape with its own
    (core/wire/negotiation_sdp.py). Every part is whole CRLF-ended lines, or empty."""

    head: str  # m= to a=setup
    middle: str  # header extensions to the direction
    body: str  # rtcp-mux to the codecs
    tail: str  # candidates to the end

    def fill(self, mid: str | None, msid_lines: str, ssrc_lines: str) -> str:
        """The section with its mid, its msid lines and its SSRC lines (ssrc-group, then ssrc; CRLF-ended)."""
        if mid is None:
            return f"{self.head}{self.middle}{msid_lines}{self.body}{ssrc_lines}{self.tail}"
        return f"{self.head}a=mid:{mid}\r\n{self.middle}{msid_lines}{self.body}{ssrc_lines}{self.tail}"


def section_template(m: MediaSection, shared: _Shared) -> SectionTemplate:
    """``m``'s lines but its mid, msid and SSRC ones, as a template; ``shared`` as in ``build_sdp`` (one per
    document)."""
    head = [f"m={m.kind} {m.port} {m.protocol}" + "".join(f" {f}" for f in m.formats)]
    if m.connection is not None:
        head.append(f"c={m.connection}")
    head += [f"b={b}" for b in m.bandwidths]
    if m.rtcp is not None:
        head.append(f"a=rtcp:{m.rtcp}")
    for name, value in (("ice-ufrag", m.ice_ufrag), ("ice-pwd", m.ice_pwd), ("ice-options", m.ice_options)):
        if value is not None:
            head.append(f"a={name}:{value}")
    head += _block(shared, _fingerprint_lines, m.fingerprints)
    if m.setup is not None:
        head.append(f"a=setup:{m.setup}")
    middle = list(_block(shared, _extmap_lines, m.extmaps))
    if m.extmap_allow_mixed:
        middle.append("a=extmap-allow-mixed")
    if m.direction is not None:
        middle.append(f"a={m.direction.value}")
    body = []
    if m.rtcp_mux:
        body.append("a=rtcp-mux")
    if m.rtcp_rsize:
        body.append("a=rtcp-rsize")
    body += _block(shared, _codec_lines, m.codecs)
    tail = list(_block(shared, _candidate_lines, m.candidates))
    if m.end_of_candidates:
        tail.append("a=end-of-candidates")
    tail += [_attr(n, v) for n, v in m.other]
    return SectionTemplate(head=_lines(head), middle=_lines(middle), body=_lines(body), tail=_lines(tail))


def section_text(m: MediaSection, shared: _Shared) -> str:
    """One media section's lines, CRLF-ended."""
    msids = "".join(f"a=msid:{s.stream_id}" + (f" {s.track_id}\r\n" if s.track_id is not None else "\r\n")
                    for s in m.msids)
    ssrcs = "".join([*(f"a=ssrc-group:{g.semantics}" + "".join(f" {s}" for s in g.ssrcs) + "\r\n"
                       for g in m.ssrc_groups),
                     *(f"a=ssrc:{s.ssrc} {s.attribute}" + (f":{s.value}\r\n" if s.value is not None else "\r\n")
                       for s in m.ssrcs)])
    return section_template(m, shared).fill(m.mid, msids, ssrcs)


def build_sdp(sd: SessionDescription) -> str:
    """Serialize a session description to SDP text with CRLF line ends (the inverse of ``parse_sdp``)."""
    o = sd.origin
    out = ["v=0", f"o={o.username} {o.session_id} {o.session_version} {o.nettype} {o.addrtype} {o.address}",
           f"s={sd.name}"]
    if sd.connection is not None:
        out.append(f"c={sd.connection}")
    out += [f"b={b}" for b in sd.bandwidths]
    out.append(f"t={sd.timing}")
    out += list(sd.other_lines)
    out += [f"a=group:{g.semantics}" + "".join(f" {m}" for m in g.mids) for g in sd.groups]
    if sd.extmap_allow_mixed:
        out.append("a=extmap-allow-mixed")
    if sd.msid_semantic is not None:
        out.append(f"a=msid-semantic:{sd.msid_semantic}")
    if sd.ice_lite:
        out.append("a=ice-lite")
    for name, value in (("ice-ufrag", sd.ice_ufrag), ("ice-pwd", sd.ice_pwd), ("ice-options", sd.ice_options)):
        if value is not None:
            out.append(f"a={name}:{value}")
    out += [f"a=fingerprint:{f.algorithm} {f.value}" for f in sd.fingerprints]
    if sd.setup is not None:
        out.append(f"a=setup:{sd.setup}")
    out += [_extmap(e) for e in sd.extmaps]
    out += [_attr(n, v) for n, v in sd.other]
    shared: _Shared = {}
    return "\r\n".join(out) + "\r\n" + "".join(section_text(m, shared) for m in sd.media)
