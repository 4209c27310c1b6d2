"""The SDP a simulated user speaks: its own offer, the server's answer, and answers to the server's re-offers.

This is deliberately a small, forgiving SDP reader/writer for the load tool only (the server's own, strict codec is
``callsd.core.wire.sdp``): the load client never has to interoperate with anything but callsd, and it must not depend on
the code it is measuring. It understands what a WebRTC peer needs for BUNDLE + rtcp-mux + ICE-lite + DTLS-SRTP:
session and media-level ``ice-ufrag``/``ice-pwd``/``fingerprint``/``setup``, host candidates, and per m-section the
mid, kind, port, direction, payload types with their rtpmap/fmtp/rtcp-fb lines, extmaps and ssrc lines.

Offer shape (built by :func:`build_offer`, in the web client's order): one Opus ``sendrecv`` audio m-section (every
user publishes audio; muted users just send no packets); the camera's: a VP8 ``sendonly`` video m-section when the
user sends camera video, else an ``inactive`` one with Chromium's whole video codec list, as a browser negotiates its
camera's slot before the camera is on (:mod:`.camera_slot`); a screen share's VP8 ``sendonly`` section with its own
msid stream id; then the receive slots (``recvonly`` audio). Answers to server offers (:func:`build_answer`) keep the local m-sections sending and receive
everything else (``recvonly``), echoing the offered codecs and header extensions.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

from . import camera_slot

__all__ = [
    "AUDIO_LEVEL_URI",
    "MID_URI",
    "LocalTrack",
    "MediaSection",
    "SessionDescription",
    "parse_sdp",
    "build_offer",
    "build_answer",
    "camera_slot_kept",
    "camera_slot_mid",
    "slot_mids",
]

AUDIO_LEVEL_URI = "urn:ietf:params:rtp-hdrext:ssrc-audio-level"
MID_URI = "urn:ietf:params:rtp-hdrext:sdes:mid"

OPUS_PT = 111
VP8_PT = 96


@dataclass(slots=True)
class LocalTrack:
    """A source this user sends: ``kind`` is "audio" or "video"; ``mid`` is assigned by the offer. ``camera``: this
    video track is the user's camera (it takes the camera's section); other video tracks are screen shares."""

    kind: str
    ssrc: int
    stream_id: str
    track_id: str
    mid: str = ""
    payload_type: int = 0
    simulcast: list[str] = field(default_factory=list)  # a simulcast track's lines (simulcast.offer_lines)
    camera: bool = False


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


CAMERA_SLOT = "camera"  # the inactive camera section of a user without a camera track, in `offer_sections`
RECEIVE_SLOT = "slot"  # a recvonly audio section the server answers with another's audio (ADR 0020)


def offer_sections(tracks: list[LocalTrack], receive_slots: int) -> list[LocalTrack | str]:
    """What ``build_offer``'s m-sections are, in order (section ``n`` has mid ``str(n)``): the tracks, with the
    camera's inactive section after the microphone's when no track is the camera (the web client's order: mic,
    camera, screen), then ``receive_slots`` receive slots."""
    sections: list[LocalTrack | str] = list(tracks)
    if not any(track.camera for track in tracks):
        sections.insert(min(1, len(tracks)), CAMERA_SLOT)
    return sections + [RECEIVE_SLOT] * receive_slots


def slot_mids(tracks: list[LocalTrack], receive_slots: int) -> list[str]:
    """The mids ``build_offer`` gives its ``receive_slots`` receive slots (what the offer message's ``slot_mids``
    names)."""
    return [str(n) for n, section in enumerate(offer_sections(tracks, receive_slots)) if section == RECEIVE_SLOT]


def camera_slot_mid(tracks: list[LocalTrack]) -> str:
    """The mid of the inactive camera section ``build_offer`` adds for ``tracks`` ("" when a track is the camera)."""
    return next((str(n) for n, section in enumerate(offer_sections(tracks, 0)) if section == CAMERA_SLOT), "")


def camera_slot_kept(answer: SessionDescription, mid: str) -> bool:
    """Whether the server's ``answer`` kept the camera section ``mid`` as a browser's would be: video, accepted
    (port not 0, codecs chosen) and ``inactive``. False when there is no such section (``mid`` "")."""
    return any(m.mid == mid and m.kind == "video" and m.port != 0 and bool(m.formats) and m.direction == "inactive"
               for m in answer.media) if mid else False


def _camera_slot_lines(mid: str, transport: list[str]) -> list[str]:
    """A browser's camera transceiver before the camera is on: inactive, Chromium's codecs and extensions."""
    return [f"m=video 9 UDP/TLS/RTP/SAVPF {' '.join(str(pt) for pt in camera_slot.FORMATS)}", "c=IN IP4 0.0.0.0",
            "a=rtcp:9 IN IP4 0.0.0.0", *transport, f"a=mid:{mid}", *camera_slot.EXTMAP_LINES, "a=inactive",
            *camera_slot.SECTION_FLAGS, *camera_slot.CODEC_LINES]


def _track_section(track: LocalTrack, cname: str, transport: list[str]) -> list[str]:
    pt = track.payload_type
    lines = [f"m={track.kind} 9 UDP/TLS/RTP/SAVPF {pt}", "c=IN IP4 0.0.0.0", "a=rtcp:9 IN IP4 0.0.0.0", *transport,
             f"a=mid:{track.mid}"]
    if track.kind == "audio":
        lines += [f"a=extmap:1 {AUDIO_LEVEL_URI}", f"a=extmap:4 {MID_URI}", "a=sendrecv", "a=rtcp-mux",
                  f"a=rtpmap:{pt} opus/48000/2", f"a=fmtp:{pt} minptime=10;useinbandfec=1"]
    else:
        lines += [f"a=extmap:4 {MID_URI}", "a=sendonly", "a=rtcp-mux", f"a=rtpmap:{pt} VP8/90000",
                  f"a=rtcp-fb:{pt} nack", f"a=rtcp-fb:{pt} nack pli", f"a=rtcp-fb:{pt} ccm fir"]
    return lines + _track_lines(track, cname)


def _receive_slot_lines(mid: str, transport: list[str]) -> list[str]:
    return [f"m=audio 9 UDP/TLS/RTP/SAVPF {OPUS_PT}", "c=IN IP4 0.0.0.0", "a=rtcp:9 IN IP4 0.0.0.0", *transport,
            f"a=mid:{mid}", f"a=extmap:1 {AUDIO_LEVEL_URI}", f"a=extmap:4 {MID_URI}", "a=recvonly", "a=rtcp-mux",
            f"a=rtpmap:{OPUS_PT} opus/48000/2", f"a=fmtp:{OPUS_PT} minptime=10;useinbandfec=1"]


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
    """The initial offer, its sections as ``offer_sections`` lays them out (mids "0", "1", ..., the tracks' assigned
    into ``tracks``): a section per local track, the camera's inactive section when no track is the camera, then
    ``receive_slots`` ``recvonly`` audio sections (their mids: ``slot_mids``), the receive slots the server answers
    with others' audio (protocol 1.4, docs/adr/0020-receive-slots.md).

    Audio is ``sendrecv`` (Opus/48000/2, in-band FEC, audio-level and mid extensions); video is ``sendonly`` VP8 with
    NACK/PLI/FIR feedback. DTLS role ``actpass`` (the server answers passive and this client connects).
    """
    sections = offer_sections(tracks, receive_slots)
    transport = _transport_lines(ufrag, pwd, fingerprint, "actpass", candidate)
    lines = _header(session_id, 2, [str(n) for n in range(len(sections))])
    for n, section in enumerate(sections):
        if isinstance(section, LocalTrack):
            section.mid = str(n)
            section.payload_type = OPUS_PT if section.kind == "audio" else VP8_PT
            lines += _track_section(section, cname, transport)
        elif section == CAMERA_SLOT:
            lines += _camera_slot_lines(str(n), transport)
        else:
            lines += _receive_slot_lines(str(n), transport)
    return "\r\n".join(lines) + "\r\n"


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
    camera_slot: str = "",
) -> str:
    """Answer a server (re-)offer: m-sections in the offer's order, local tracks keep sending, others recvonly.

    Codec and extmap lines are echoed from the offer; the payload type the server offers for a local track's mid
    is written back into ``track.payload_type`` so the sender uses it. The DTLS role stays ``active``.
    ``camera_slot``: the mid of this user's inactive camera section (``camera_slot_mid`` of its first offer's
    tracks), answered ``inactive`` whatever the offer says, as a browser's inactive transceiver answers it.
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
        elif m.mid == camera_slot:
            direction = "inactive"
        else:
            direction = "recvonly" if m.direction in ("sendrecv", "sendonly") else "inactive"
        lines.append(f"a={direction}")
        lines.append("a=rtcp-mux")
        lines += m.codec_lines
        if local is not None and direction in ("sendrecv", "sendonly"):
            lines += [ln for ln in _track_lines(local, cname) if not ln.startswith("a=extmap:")]  # echoed above
    return "\r\n".join(lines) + "\r\n"
