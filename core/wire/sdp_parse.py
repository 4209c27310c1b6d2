"""SDP parsing (pure): ``parse_sdp(text) -> SessionDescription``, and the a=candidate line parser.

Accepts what Chromium (v150+) and aiortc produce; anything else raises ``SdpError`` naming the line and the problem.
Attributes the model does not know are kept, in order, in ``other``. See ``sdp.py`` for the whole contract.
"""

from __future__ import annotations

import re
from collections.abc import Callable

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
)

__all__ = ["parse_sdp", "parse_candidate"]

_MAX_SDP = 256 * 1024
# Whitespace test for names and tokens: ``\s`` on str patterns is exactly ``str.isspace`` (Py_UNICODE_ISSPACE),
# one C-level scan instead of a generator over every character.
_has_space = re.compile(r"\s").search


def _int(text: str, what: str, lo: int = 0, hi: int = 2**64 - 1) -> int:
    if not text.isdigit() or not text.isascii():
        raise ValueError(f"{what} must be an integer, got {text!r}")
    value = int(text)
    if not lo <= value <= hi:
        raise ValueError(f"{what} must be in {lo}..{hi}, got {value}")
    return value


def _token(text: str, what: str) -> str:
    if not text or _has_space(text):
        raise ValueError(f"{what} must be a non-empty token, got {text!r}")
    return text


def parse_candidate(value: str) -> Candidate:
    """Parse the value of an a=candidate line (RFC 8839 5.1); raise ``SdpError`` when malformed."""
    try:
        return _parse_candidate(value)
    except ValueError as exc:
        raise SdpError(f"a=candidate: {exc}") from None


def _parse_candidate(value: str) -> Candidate:
    parts = value.split()
    if len(parts) < 8 or parts[6] != "typ":
        raise ValueError(f"expected '<foundation> <component> <transport> <priority> <address> <port> typ <type>', "
                         f"got {value!r}")
    rest = parts[8:]
    if len(rest) % 2:
        raise ValueError(f"odd number of extension tokens in {value!r}")
    raddr: str | None = None
    rport: int | None = None
    ext: list[tuple[str, str]] = []
    for i in range(0, len(rest), 2):
        k, v = rest[i], rest[i + 1]
        if k == "raddr" and raddr is None:
            raddr = v
        elif k == "rport" and rport is None:
            rport = _int(v, "rport", 0, 65535)
        else:
            ext.append((k, v))
    return Candidate(
        foundation=parts[0], component=_int(parts[1], "component", 1, 256), transport=parts[2],
        priority=_int(parts[3], "priority", 0, 2**32 - 1), address=parts[4], port=_int(parts[5], "port", 0, 65535),
        type=parts[7], related_address=raddr, related_port=rport, extensions=tuple(ext),
    )


def _parse_fingerprint(value: str) -> Fingerprint:
    algo, _, fp = value.partition(" ")
    if not algo or not fp.strip():
        raise ValueError(f"expected '<hash> <hex pairs>', got {value!r}")
    return Fingerprint(algorithm=algo.lower(), value=_token(fp.strip(), "fingerprint"))


def _parse_extmap(value: str) -> Extmap:
    parts = value.split(maxsplit=2)
    if len(parts) < 2:
        raise ValueError(f"expected '<id>[/<direction>] <uri>', got {value!r}")
    ident, _, d = parts[0].partition("/")
    direction = None
    if d:
        try:
            direction = Direction(d)
        except ValueError:
            raise ValueError(f"unknown extmap direction {d!r}") from None
    return Extmap(id=_int(ident, "extmap id", 1, 255), uri=parts[1], direction=direction,
                  attributes=parts[2] if len(parts) > 2 else None)


def _pt(fmt: str) -> int:
    """The payload type of an m= format, or -1 for a non-RTP format ("webrtc-datachannel", "5000")."""
    if fmt.isascii() and fmt.isdigit() and len(fmt) <= 3 and int(fmt) <= 127:
        return int(fmt)
    return -1


class _MediaBuilder:
    """Mutable accumulator for one m-section while its lines are read."""

    def __init__(self, kind: str, port: int, protocol: str, formats: tuple[str, ...]) -> None:
        self.kind, self.port, self.protocol, self.formats = kind, port, protocol, formats
        self.fields: dict[str, object] = {}
        self.lists: dict[str, list[object]] = {k: [] for k in (
            "bandwidths", "msids", "fingerprints", "candidates", "extmaps", "ssrcs", "ssrc_groups", "other")}
        self.rtpmap: dict[int, tuple[str, int, int | None]] = {}
        self.fmtp: dict[int, str] = {}
        self.fb: dict[int, list[str]] = {}
        self.pts = {_pt(f) for f in formats} - {-1}

    def build(self) -> MediaSection:
        codecs = []
        for f in self.formats:
            pt = _pt(f)
            if pt < 0:
                continue
            name, rate, ch = self.rtpmap.get(pt, ("", 0, None))
            codecs.append(Codec(payload_type=pt, name=name, clock_rate=rate, channels=ch, fmtp=self.fmtp.get(pt),
                                feedback=tuple(self.fb.get(pt, ()))))
        kw: dict[str, object] = {k: tuple(v) for k, v in self.lists.items()}
        kw.update(self.fields)
        return MediaSection(kind=self.kind, port=self.port, protocol=self.protocol, formats=self.formats,
                            codecs=tuple(codecs), **kw)  # type: ignore[arg-type]

    def pt_of(self, value: str, attr: str) -> tuple[int, str]:
        pt_text, _, rest = value.partition(" ")
        pt = _int(pt_text, f"a={attr} payload type", 0, 127)
        if pt not in self.pts:
            raise ValueError(f"a={attr} for payload type {pt}, which is not on the m= line")
        return pt, rest.strip()


_DIRECTIONS = {d.value for d in Direction}
_FLAG_ATTRS = {"rtcp-mux": "rtcp_mux", "rtcp-rsize": "rtcp_rsize", "end-of-candidates": "end_of_candidates",
               "extmap-allow-mixed": "extmap_allow_mixed"}
_TEXT_ATTRS = {"ice-ufrag": "ice_ufrag", "ice-pwd": "ice_pwd", "ice-options": "ice_options", "setup": "setup",
               "mid": "mid", "rtcp": "rtcp"}


def _direction_attr(m: _MediaBuilder, name: str, value: str | None) -> bool:
    if value is not None:
        return False
    if "direction" in m.fields:
        raise ValueError("more than one direction attribute")
    m.fields["direction"] = Direction(name)
    return True


def _flag_attr(m: _MediaBuilder, name: str, value: str | None) -> bool:
    if value is not None:
        return False
    m.fields[_FLAG_ATTRS[name]] = True
    return True


def _text_attr(m: _MediaBuilder, name: str, value: str | None) -> bool:
    if value is None:
        return False
    if name == "setup" and value not in ("actpass", "active", "passive", "holdconn"):
        raise ValueError(f"a=setup must be actpass, active, passive or holdconn, got {value!r}")
    if name in m.fields:
        raise ValueError(f"a={name} appears twice")
    m.fields[_TEXT_ATTRS[name]] = value
    return True


def _rtpmap_attr(m: _MediaBuilder, name: str, value: str | None) -> bool:
    if value is None:
        return False
    pt, rest = m.pt_of(value, "rtpmap")
    parts = rest.split("/")
    if len(parts) not in (2, 3) or not parts[0]:
        raise ValueError(f"a=rtpmap needs '<pt> <name>/<rate>[/<channels>]', got {value!r}")
    if pt in m.rtpmap:
        raise ValueError(f"a=rtpmap for payload type {pt} appears twice")
    ch = _int(parts[2], "channels", 1, 255) if len(parts) == 3 else None
    m.rtpmap[pt] = (parts[0], _int(parts[1], "clock rate", 1, 2**32 - 1), ch)
    return True


def _fmtp_attr(m: _MediaBuilder, name: str, value: str | None) -> bool:
    if value is None:
        return False
    pt, rest = m.pt_of(value, "fmtp")
    if pt in m.fmtp:
        raise ValueError(f"a=fmtp for payload type {pt} appears twice")
    m.fmtp[pt] = rest
    return True


def _rtcp_fb_attr(m: _MediaBuilder, name: str, value: str | None) -> bool:
    if value is None or value.startswith("*"):
        return False
    pt, rest = m.pt_of(value, "rtcp-fb")
    if not rest:
        raise ValueError("a=rtcp-fb needs a feedback type")
    m.fb.setdefault(pt, []).append(rest)
    return True


def _extmap_attr(m: _MediaBuilder, name: str, value: str | None) -> bool:
    if value is None:
        return False
    m.lists["extmaps"].append(_parse_extmap(value))
    return True


def _fingerprint_attr(m: _MediaBuilder, name: str, value: str | None) -> bool:
    if value is None:
        return False
    m.lists["fingerprints"].append(_parse_fingerprint(value))
    return True


def _candidate_attr(m: _MediaBuilder, name: str, value: str | None) -> bool:
    if value is None:
        return False
    m.lists["candidates"].append(_parse_candidate(value))
    return True


def _msid_attr(m: _MediaBuilder, name: str, value: str | None) -> bool:
    if value is None:
        return False
    parts = value.split()
    if not 1 <= len(parts) <= 2:
        raise ValueError(f"a=msid needs '<stream id> [<track id>]', got {value!r}")
    m.lists["msids"].append(Msid(stream_id=parts[0], track_id=parts[1] if len(parts) == 2 else None))
    return True


def _ssrc_attr(m: _MediaBuilder, name: str, value: str | None) -> bool:
    if value is None:
        return False
    ssrc_text, _, attr = value.partition(" ")
    ssrc = _int(ssrc_text, "a=ssrc id", 0, 2**32 - 1)
    aname, sep, aval = attr.partition(":")
    m.lists["ssrcs"].append(SsrcAttribute(ssrc=ssrc, attribute=_token(aname, "a=ssrc attribute"),
                                          value=aval if sep else None))
    return True


def _ssrc_group_attr(m: _MediaBuilder, name: str, value: str | None) -> bool:
    if value is None:
        return False
    parts = value.split()
    if len(parts) < 2:
        raise ValueError(f"a=ssrc-group needs '<semantics> <ssrc>...', got {value!r}")
    m.lists["ssrc_groups"].append(SsrcGroup(
        semantics=parts[0], ssrcs=tuple(_int(p, "ssrc-group id", 0, 2**32 - 1) for p in parts[1:])))
    return True


# One handler per modelled media attribute name; a handler returns False when the line's form (flag or value) is
# not the modelled one, and the line is then kept in ``other`` like any unmodelled attribute.
_MEDIA_ATTRS: dict[str, Callable[[_MediaBuilder, str, str | None], bool]] = {
    **{d: _direction_attr for d in _DIRECTIONS}, **{f: _flag_attr for f in _FLAG_ATTRS},
    **{t: _text_attr for t in _TEXT_ATTRS}, "rtpmap": _rtpmap_attr, "fmtp": _fmtp_attr, "rtcp-fb": _rtcp_fb_attr,
    "extmap": _extmap_attr, "fingerprint": _fingerprint_attr, "candidate": _candidate_attr, "msid": _msid_attr,
    "ssrc": _ssrc_attr, "ssrc-group": _ssrc_group_attr,
}


def _media_attribute(m: _MediaBuilder, name: str, value: str | None) -> None:
    handler = _MEDIA_ATTRS.get(name)
    if handler is None or not handler(m, name, value):
        m.lists["other"].append((name, value))


def _repeated_sections(text: str, count: int) -> dict[int, tuple[int, int, str]]:
    """The media sections that repeat an earlier section of the document line for line but for their ``a=mid``:
    index of the m= line -> (index after the section, the earlier section's position among the sections, the mid).
    ``text`` is the document with LF line ends, ``count`` its number of lines once trailing empty ones are dropped.

    Why: a client's answer to an offer with receive slots (ADR 0020) has nine sections, eight of them alike but for
    the mid. Identical lines parse to identical values, so such a section is the earlier one with another mid;
    the earlier one was parsed in full (any error in those lines was raised there). Sections with no or several
    a=mid lines are always parsed. The sections are compared as text (each one chunk of the document split at
    ``\nm=``, its mid line cut out), which costs a few string operations per section, not a Python step per line."""
    chunks = text.rstrip("\n").split("\nm=")  # the lines the parser reads: trailing empty ones dropped
    first_of: dict[str, int] = {}
    repeats: dict[int, tuple[int, int, str]] = {}
    start = chunks[0].count("\n") + 1  # the index of the first m= line
    for position, chunk in enumerate(chunks[1:]):
        end = min(start + chunk.count("\n") + 1, count)
        at = chunk.find("\na=mid:")
        if at >= 0 and chunk.find("\na=mid:", at + 1) < 0:
            after = chunk.find("\n", at + 1)
            if after < 0:
                after = len(chunk)
            first = first_of.setdefault(chunk[:at] + chunk[after:], position)
            if first != position:
                repeats[start] = (end, first, chunk[at + 7 : after])
        start = end
    return repeats


# Known sections: what a client's sections parsed to, by their text without the lines that change from one
# client or document to the next (its mid, ICE credentials, fingerprint, and the msid and SSRCs of what it sends:
# ``_TRANSPORT_LINES``).
#
# Why: a browser's first offer has ten sections, and every browser of one version writes nine of them alike but
# for those lines: the microphone's, the camera's (118 lines: Chromium's 23 video formats, ~250 µs to parse here)
# and the receive slots'. The first join parses them; every later join reuses the parsed section and reads only its transport
# lines (issue 13 part 2, docs/performance.md "Joins, session 9"). A pure memo: the result is what parsing every
# line gives (the transport lines are read by the same handlers, in the same order, with the same errors; the
# others, parsed without error before, cannot fail now: no other line's outcome depends on them), held so by
# tests/media/test_media_sdp.py. Bounded: ``_KNOWN_MAX`` sections of at most ``_KNOWN_TEXT`` characters, the
# oldest forgotten first, so a client sending new sections every time costs the cache nothing but its slots.
_TRANSPORT_LINES = ("a=mid:", "a=ice-ufrag:", "a=ice-pwd:", "a=fingerprint:", "a=msid:", "a=ssrc:", "a=ssrc-group:")
_KNOWN_MAX = 64
_KNOWN_TEXT = 16 * 1024
_KNOWN: dict[str, MediaSection] = {}


def _section_key(lines: list[str], start: int, end: int) -> tuple[str, list[int]]:
    """The known-sections key of ``lines[start:end]`` (one section) and the indexes of its transport lines."""
    key: list[str] = []
    transport: list[int] = []
    for i in range(start, end):
        line = lines[i]
        if line.startswith(_TRANSPORT_LINES):
            transport.append(i)
        else:
            key.append(line)
    return "\n".join(key), transport


def _known_section(known: MediaSection, lines: list[str], transport: list[int]) -> MediaSection:
    """``known`` with this document's transport lines, read as the full parse reads them."""
    m = _MediaBuilder(known.kind, known.port, known.protocol, known.formats)
    for i in transport:
        name, _, value = lines[i][2:].partition(":")
        try:
            _media_attribute(m, name, value)
        except ValueError as exc:
            raise SdpError(f"line {i + 1}: {exc}") from None
    fields, lists = m.fields, m.lists
    return known.with_transport(
        fields.get("mid"), fields.get("ice_ufrag"), fields.get("ice_pwd"),  # type: ignore[arg-type]
        tuple(lists["fingerprints"]), tuple(lists["msids"]), tuple(lists["ssrcs"]),  # type: ignore[arg-type]
        tuple(lists["ssrc_groups"]))  # type: ignore[arg-type]


def _remember(key: str, section: MediaSection) -> None:
    """Keep ``section`` as known, without its transport lines' values: no client's credentials or SSRCs stay in the
    memo (every reuse sets its own)."""
    if len(key) > _KNOWN_TEXT:
        return
    if key not in _KNOWN and len(_KNOWN) >= _KNOWN_MAX:
        del _KNOWN[next(iter(_KNOWN))]
    _KNOWN[key] = section.with_transport(None, None, None, (), (), (), ())


def _section_ends(lines: list[str], index: int) -> int:
    """The index after the section whose m= line is ``lines[index - 1]``."""
    count = len(lines)
    while index < count and not lines[index].startswith("m="):
        index += 1
    return index


def parse_sdp(text: str) -> SessionDescription:
    """Parse an SDP document (CRLF or LF line ends). Raise ``SdpError`` naming the line and the problem."""
    if not isinstance(text, str):
        raise SdpError("an SDP document must be text")
    if len(text) > _MAX_SDP:
        raise SdpError(f"SDP document of {len(text)} characters is larger than {_MAX_SDP}")
    text = text.replace("\r\n", "\n")
    stray = "\r" in text or "\x00" in text  # one scan of the document; the line is found only when it is bad
    lines = text.split("\n")
    while lines and lines[-1] == "":
        lines.pop()
    if not lines or lines[0] != "v=0":
        raise SdpError("line 1: an SDP document starts with 'v=0'")
    sess: dict[str, object] = {}
    s_lists: dict[str, list[object]] = {k: [] for k in (
        "bandwidths", "groups", "fingerprints", "extmaps", "other", "other_lines")}
    media: list[MediaSection] = []
    current: _MediaBuilder | None = None
    current_key: str | None = None  # the known-sections key of ``current`` (None: not to be remembered)
    seen_origin = False
    repeats = {} if stray else _repeated_sections(text, len(lines))
    index, count = 1, len(lines)
    while index < count:
        repeat = repeats.get(index)
        if repeat is not None:
            if current is not None:
                media.append(_built(current, current_key))
                current = None
            end, earlier, mid = repeat
            media.append(media[earlier].with_mid(mid))
            index = end
            continue
        line = lines[index]
        index += 1
        number = index  # 1-based line number
        try:
            if stray and ("\r" in line or "\x00" in line):
                raise ValueError("stray carriage return or NUL inside a line")
            if len(line) < 2 or line[1] != "=" or not ("a" <= line[0] <= "z"):
                raise ValueError(f"expected '<letter>=<value>', got {line[:40]!r}")
            kind, value = line[0], line[2:]
            if kind == "a":  # most lines: tested first (the branches are exclusive, so the order is free)
                name, sep, avalue = value.partition(":")
                if not name or _has_space(name):
                    raise ValueError(f"bad attribute name in {line[:40]!r}")
                aval: str | None = avalue if sep else None
                if current is not None:
                    _media_attribute(current, name, aval)
                else:
                    _session_attribute(sess, s_lists, name, aval)
            elif kind == "m":
                if current is not None:
                    media.append(_built(current, current_key))
                    current = None
                current_key = None
                if not stray:
                    end = _section_ends(lines, index)
                    key, transport = _section_key(lines, index - 1, end)
                    known = _KNOWN.get(key)
                    if known is not None:
                        media.append(_known_section(known, lines, transport))
                        index = end
                        continue
                    current_key = key
                parts = value.split()
                if len(parts) < 3:
                    raise ValueError(f"m= needs '<media> <port> <proto> <fmt>...', got {value!r}")
                port_text = parts[1].partition("/")[0]
                current = _MediaBuilder(parts[0], _int(port_text, "m= port", 0, 65535), parts[2],
                                        tuple(parts[3:]))
            elif kind == "c":
                if current is not None:
                    current.fields["connection"] = value
                else:
                    sess["connection"] = value
            elif kind == "b":
                (current.lists if current is not None else s_lists)["bandwidths"].append(value)
            elif current is not None:
                raise ValueError(f"'{kind}=' is not allowed in a media section")
            elif kind == "o":
                parts = value.split()
                if len(parts) != 6:
                    raise ValueError(f"o= needs 6 fields, got {len(parts)}")
                sess["origin"] = Origin(username=parts[0], session_id=parts[1],
                                        session_version=_int(parts[2], "o= session version"),
                                        nettype=parts[3], addrtype=parts[4], address=parts[5])
                seen_origin = True
            elif kind == "s":
                sess["name"] = value
            elif kind == "t":
                sess["timing"] = value
            elif kind == "v":
                raise ValueError("v= appears twice")
            else:
                s_lists["other_lines"].append(line)
        except ValueError as exc:
            raise SdpError(f"line {number}: {exc}") from None
    if current is not None:
        media.append(_built(current, current_key))
    if not seen_origin:
        raise SdpError("the session has no o= line")
    kw: dict[str, object] = {k: tuple(v) for k, v in s_lists.items()}
    kw.update(sess)
    return SessionDescription(media=tuple(media), **kw)  # type: ignore[arg-type]


def _built(current: _MediaBuilder, key: str | None) -> MediaSection:
    """The section read into ``current``, remembered as known under ``key`` (if any)."""
    section = current.build()
    if key is not None:
        _remember(key, section)
    return section


def _session_attribute(sess: dict[str, object], lists: dict[str, list[object]], name: str,
                       value: str | None) -> None:
    if name == "group" and value is not None:
        parts = value.split()
        if not parts:
            raise ValueError("a=group needs a semantics")
        lists["groups"].append(Group(semantics=parts[0], mids=tuple(parts[1:])))
    elif name == "msid-semantic" and value is not None:
        sess["msid_semantic"] = value.strip()
    elif name == "ice-lite" and value is None:
        sess["ice_lite"] = True
    elif name == "extmap-allow-mixed" and value is None:
        sess["extmap_allow_mixed"] = True
    elif name in ("ice-ufrag", "ice-pwd", "ice-options", "setup") and value is not None:
        sess[name.replace("-", "_")] = value
    elif name == "fingerprint" and value is not None:
        lists["fingerprints"].append(_parse_fingerprint(value))
    elif name == "extmap" and value is not None:
        lists["extmaps"].append(_parse_extmap(value))
    else:
        lists["other"].append((name, value))
