"""The SDP a simulated user speaks: its own offer, the server's answer, and answers to the server's re-offers.

This is deliberately a small, forgiving SDP reader/writer for the load tool only (the server's own, strict codec is
``callsd.core.wire.sdp``): the load client never has to interoperate with anything but callsd, and it must not depend on
the code it is measuring. It understands what a WebRTC peer needs for BUNDLE + rtcp-mux + ICE-lite + DTLS-SRTP:
session and media-level ``ice-ufrag``/``ice-pwd``/``fingerprint``/``setup``, host candidates, and per m-section the
mid, kind, port, direction, payload types with their rtpmap/fmtp/rtcp-fb lines, extmaps and ssrc lines.

Offer shape (built by :func:`build_offer`): one Opus ``sendrecv`` audio m-section (every user publishes audio; muted
users just send no packets) and, per local video source (camera or screen), one VP8 ``sendonly`` video m-section with
its own msid stream id. Answers to server offers (:func:`build_answer`) keep the local m-sections sending and receive
everything else (``recvonly``), echoing the offered codecs and header extensions.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

__all__ = [
    "AUDIO_LEVEL_URI",
    "MID_URI",
    "LocalTrack",
    "MediaSection",
    "SessionDescription",
    "parse_sdp",
    "build_offer",
    "build_answer",
]

AUDIO_LEVEL_URI = "urn:ietf:params:rtp-hdrext:ssrc-audio-level"
MID_URI = "urn:ietf:params:rtp-hdrext:sdes:mid"

OPUS_PT = 111
VP8_PT = 96


@dataclass(slots=True)
class LocalTrack:
    """A source this user sends: ``kind`` is "audio" or "video"; ``mid`` is assigned by the offer."""

    kind: str
    ssrc: int
    stream_id: str
    track_id: str
    mid: str = ""
    payload_type: int = 0
    simulcast: list[str] = field(default_factory=list)  # a simulcast track's lines (simulcast.offer_lines)


@dataclass(slots=True)
class MediaSection:
    kind: str
    port: int
    protocol: str
    formats: list[int]
    mid: str = ""
    direction: str = "sendrecv"
    rtpmap: dict[int, str] = field(default_factory=dict)  # pt -> "opus/48000/2"
    codec_lines: list[str] = field(default_factory=list)  # rtpmap/fmtp/rtcp-fb lines, verbatim
    extmap: dict[str, int] = field(default_factory=dict)  # uri -> id
    ssrcs: list[int] = field(default_factory=list)
    msid: str = ""
    ice_ufrag: str = ""
    ice_pwd: str = ""
    fingerprint: str = ""
    setup: str = ""
    candidates: list[tuple[str, int]] = field(default_factory=list)  # udp host (ip, port)

    def clock_rate(self, pt: int) -> int:
        """RTP clock rate of ``pt`` from its rtpmap (48 kHz audio / 90 kHz video when absent)."""
        spec = self.rtpmap.get(pt, "")
        parts = spec.split("/")
        if len(parts) >= 2 and parts[1].isdigit():
            return int(parts[1])
        return 48000 if self.kind == "audio" else 90000


@dataclass(slots=True)
class SessionDescription:
    media: list[MediaSection]
    ice_ufrag: str = ""
    ice_pwd: str = ""
    fingerprint: str = ""
    setup: str = ""
    candidates: list[tuple[str, int]] = field(default_factory=list)
    ice_lite: bool = False

    def ice_credentials(self) -> tuple[str, str]:
        """The ICE ufrag/pwd (session level, else the first m-section's, as BUNDLE shares one transport)."""
        for m in self.media:
            if m.ice_ufrag and m.ice_pwd:
                return (self.ice_ufrag or m.ice_ufrag, self.ice_pwd or m.ice_pwd)
        return (self.ice_ufrag, self.ice_pwd)

    def dtls_fingerprint(self) -> str:
        """"sha-256 AB:CD:..." from the session or the first m-section that carries one."""
        if self.fingerprint:
            return self.fingerprint
        for m in self.media:
            if m.fingerprint:
                return m.fingerprint
        return ""

    def dtls_setup(self) -> str:
        if self.setup:
            return self.setup
        for m in self.media:
            if m.setup:
                return m.setup
        return ""

    def all_candidates(self) -> list[tuple[str, int]]:
        out = list(self.candidates)
        for m in self.media:
            out.extend(c for c in m.candidates if c not in out)
        return out


def _parse_candidate(value: str) -> tuple[str, int] | None:
    """``foundation component transport priority ip port typ type ...`` -> (ip, port) for UDP, else None."""
    parts = value.split()
    if len(parts) < 8 or parts[2].lower() != "udp" or parts[6] != "typ":
        return None
    try:
        return (parts[4], int(parts[5]))
    except ValueError:
        return None


SECTION_CACHE = 32_768  # m-sections kept parsed: 1,600 users x ~16 sections each, the 200-call shape


def parse_sdp(text: str) -> SessionDescription:
    """Parse an SDP blob; raises ``ValueError`` when it has no usable structure (no ``m=`` line is allowed).

    The text after each line break that starts an ``m=`` line is parsed once per distinct text (`_read_sections`,
    cached): a server re-offer repeats every section of the previous one and adds or changes a few, and each user
    answers one per join in its call; at 200 calls x 8 answering them was 14 % of the load process (py-spy,
    session 7), most of it this parser. The sections of the result may be shared with other results: read them,
    never change them."""
    if not isinstance(text, str) or not text.startswith("v="):
        raise ValueError("SDP must start with v=")
    head, *rest = text.split("\nm=")
    session = SessionDescription(media=[])
    _read_lines(head, session)
    for chunk in rest:
        sections, ice_lite = _read_sections(chunk.rstrip())  # (the same section last or not: the same key)
        session.media.extend(sections)
        session.ice_lite = session.ice_lite or ice_lite
    return session


@functools.lru_cache(maxsize=SECTION_CACHE)
def _read_sections(chunk: str) -> tuple[tuple[MediaSection, ...], bool]:
    """The m-section(s) of ``"m=" + chunk`` (one, unless a line break `str.splitlines` knows hides another), and
    whether they said ``a=ice-lite`` (a session property wherever it is written). Nothing in them is session-level:
    they start with an ``m=`` line."""
    scratch = SessionDescription(media=[])
    _read_lines("m=" + chunk, scratch)
    return tuple(scratch.media), scratch.ice_lite


def _read_lines(text: str, session: SessionDescription) -> None:
    """SDP lines into ``session``: the attributes before the first ``m=`` line its own, then its m-sections."""
    current: MediaSection | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if len(line) < 2 or line[1] != "=":
            continue
        key, value = line[0], line[2:]
        if key == "m":
            parts = value.split()
            if len(parts) < 3:
                raise ValueError(f"bad m= line: {line!r}")
            formats = [int(p) for p in parts[3:] if p.isdigit()]
            current = MediaSection(kind=parts[0], port=int(parts[1].split("/")[0]), protocol=parts[2], formats=formats)
            session.media.append(current)
            continue
        if key != "a":
            continue
        name, _, arg = value.partition(":")
        target_is_media = current is not None
        if name == "ice-lite":
            session.ice_lite = True
        elif name in ("ice-ufrag", "ice-pwd", "fingerprint", "setup"):
            attr = name.replace("-", "_")
            setattr(current if target_is_media else session, attr, arg.strip())
        elif name == "candidate":
            cand = _parse_candidate(arg)
            if cand is not None:
                (current.candidates if current is not None else session.candidates).append(cand)
        elif current is None:
            continue
        elif name == "mid":
            current.mid = arg.strip()
        elif name in ("sendrecv", "sendonly", "recvonly", "inactive"):
            current.direction = name
        elif name == "rtpmap":
            pt_text, _, spec = arg.partition(" ")
            if pt_text.isdigit():
                current.rtpmap[int(pt_text)] = spec.strip()
            current.codec_lines.append(line)
        elif name in ("fmtp", "rtcp-fb"):
            current.codec_lines.append(line)
        elif name == "extmap":
            ident, _, uri = arg.partition(" ")
            ident = ident.split("/")[0]
            if ident.isdigit():
                current.extmap[uri.strip().split()[0] if uri.strip() else ""] = int(ident)
        elif name == "ssrc":
            ssrc_text = arg.split(" ", 1)[0]
            if ssrc_text.isdigit() and int(ssrc_text) not in current.ssrcs:
                current.ssrcs.append(int(ssrc_text))
        elif name == "msid":
            current.msid = arg.strip()


def _transport_lines(ufrag: str, pwd: str, fingerprint: str, setup: str, candidate: tuple[str, int] | None) -> list[str]:
    lines = []
    if candidate is not None:
        ip, port = candidate
        lines.append(f"a=candidate:1 1 udp 2130706431 {ip} {port} typ host")
        lines.append("a=end-of-candidates")
    lines += [f"a=ice-ufrag:{ufrag}", f"a=ice-pwd:{pwd}", f"a=fingerprint:{fingerprint}", f"a=setup:{setup}"]
    return lines


def _header(session_id: int, version: int, mids: list[str]) -> list[str]:
    return [
        "v=0",
        f"o=- {session_id} {version} IN IP4 127.0.0.1",
        "s=-",
        "t=0 0",
        "a=group:BUNDLE " + " ".join(mids),
        "a=msid-semantic: WMS *",
    ]


def _track_lines(track: LocalTrack, cname: str) -> list[str]:
    if track.simulcast:  # layers are named by RID, not signalled by SSRC (as Chromium does)
        return [f"a=msid:{track.stream_id} {track.track_id}", *track.simulcast]
    return [
        f"a=msid:{track.stream_id} {track.track_id}",
        f"a=ssrc:{track.ssrc} cname:{cname}",
        f"a=ssrc:{track.ssrc} msid:{track.stream_id} {track.track_id}",
    ]


def build_offer(
    *,
    session_id: int,
    tracks: list[LocalTrack],
    ufrag: str,
    pwd: str,
    fingerprint: str,
    cname: str,
    candidate: tuple[str, int] | None,
    receive_slots: int = 0,
) -> str:
    """The initial offer: one m-section per local track, mids "0", "1", ... (assigned into ``tracks``), then
    ``receive_slots`` ``recvonly`` audio sections (the next mids: ``slot_mids``), the receive slots the server
    answers with others' audio (protocol 1.4, docs/adr/0020-receive-slots.md).

    Audio is ``sendrecv`` (Opus/48000/2, in-band FEC, audio-level and mid extensions); video is ``sendonly`` VP8 with
    NACK/PLI/FIR feedback. DTLS role ``actpass`` (the server answers passive and this client connects).
    """
    for index, track in enumerate(tracks):
        track.mid = str(index)
        track.payload_type = OPUS_PT if track.kind == "audio" else VP8_PT
    slots = slot_mids(tracks, receive_slots)
    lines = _header(session_id, 2, [t.mid for t in tracks] + slots)
    for track in tracks:
        pt = track.payload_type
        lines.append(f"m={track.kind} 9 UDP/TLS/RTP/SAVPF {pt}")
        lines += ["c=IN IP4 0.0.0.0", "a=rtcp:9 IN IP4 0.0.0.0"]
        lines += _transport_lines(ufrag, pwd, fingerprint, "actpass", candidate)
        lines.append(f"a=mid:{track.mid}")
        if track.kind == "audio":
            lines.append(f"a=extmap:1 {AUDIO_LEVEL_URI}")
            lines.append(f"a=extmap:4 {MID_URI}")
            lines.append("a=sendrecv")
        else:
            lines.append(f"a=extmap:4 {MID_URI}")
            lines.append("a=sendonly")
        lines.append("a=rtcp-mux")
        if track.kind == "audio":
            lines += [f"a=rtpmap:{pt} opus/48000/2", f"a=fmtp:{pt} minptime=10;useinbandfec=1"]
        else:
            lines += [
                f"a=rtpmap:{pt} VP8/90000",
                f"a=rtcp-fb:{pt} nack",
                f"a=rtcp-fb:{pt} nack pli",
                f"a=rtcp-fb:{pt} ccm fir",
            ]
        lines += _track_lines(track, cname)
    for mid in slots:
        lines += [f"m=audio 9 UDP/TLS/RTP/SAVPF {OPUS_PT}", "c=IN IP4 0.0.0.0", "a=rtcp:9 IN IP4 0.0.0.0"]
        lines += _transport_lines(ufrag, pwd, fingerprint, "actpass", candidate)
        lines += [f"a=mid:{mid}", f"a=extmap:1 {AUDIO_LEVEL_URI}", f"a=extmap:4 {MID_URI}", "a=recvonly",
                  "a=rtcp-mux", f"a=rtpmap:{OPUS_PT} opus/48000/2", f"a=fmtp:{OPUS_PT} minptime=10;useinbandfec=1"]
    return "\r\n".join(lines) + "\r\n"


def slot_mids(tracks: list[LocalTrack], receive_slots: int) -> list[str]:
    """The mids ``build_offer`` gives its ``receive_slots`` slot sections: the ones after the tracks'."""
    return [str(len(tracks) + n) for n in range(receive_slots)]


_REVERSE = {"sendrecv": "sendrecv", "sendonly": "recvonly", "recvonly": "sendonly", "inactive": "inactive"}


def build_answer(
    offer: SessionDescription,
    *,
    session_id: int,
    version: int,
    tracks: list[LocalTrack],
    ufrag: str,
    pwd: str,
    fingerprint: str,
    cname: str,
) -> str:
    """Answer a server (re-)offer: m-sections in the offer's order, local tracks keep sending, others recvonly.

    Codec and extmap lines are echoed from the offer; the payload type the server offers for a local track's mid
    is written back into ``track.payload_type`` so the sender uses it. The DTLS role stays ``active``.
    """
    by_mid = {t.mid: t for t in tracks}
    bundle = [m.mid for m in offer.media if m.port != 0]
    lines = _header(session_id, version, bundle)
    for m in offer.media:
        fmts = " ".join(str(f) for f in m.formats) or "0"
        if m.port == 0:
            lines.append(f"m={m.kind} 0 {m.protocol} {fmts}")
            lines.append(f"a=mid:{m.mid}")
            continue
        lines.append(f"m={m.kind} 9 {m.protocol} {fmts}")
        lines += ["c=IN IP4 0.0.0.0", "a=rtcp:9 IN IP4 0.0.0.0"]
        lines += _transport_lines(ufrag, pwd, fingerprint, "active", None)
        lines.append(f"a=mid:{m.mid}")
        for uri, ident in m.extmap.items():
            lines.append(f"a=extmap:{ident} {uri}")
        local = by_mid.get(m.mid)
        if local is not None:
            direction = _REVERSE[m.direction]
            if local.kind == "video" and direction == "sendrecv":
                direction = "sendonly"
            if m.formats and local.payload_type not in m.formats:
                local.payload_type = m.formats[0]
        else:
            direction = "recvonly" if m.direction in ("sendrecv", "sendonly") else "inactive"
        lines.append(f"a={direction}")
        lines.append("a=rtcp-mux")
        lines += m.codec_lines
        if local is not None and direction in ("sendrecv", "sendonly"):
            lines += [ln for ln in _track_lines(local, cname) if not ln.startswith("a=extmap:")]  # echoed above
    return "\r\n".join(lines) + "\r\n"
