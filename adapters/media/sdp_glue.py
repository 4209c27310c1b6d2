"""The slice of SDP (RFC 8866, JSEP RFC 8829, BUNDLE RFC 9143) the media plane reads from clients and writes back.

``parse_sdp(text)`` returns a ``Sdp`` with one ``MLine`` per m-section: kind, mid, direction, codecs (rtpmap,
fmtp, rtcp-fb), header extensions, SSRCs and msid, and the ICE/DTLS parameters (session-level values are copied
into each section that lacks them). It raises ``SdpError`` when a section the plane needs is unusable.

``render_sdp(...)`` writes the server's side: answers and re-offers, ICE-lite, one host candidate, BUNDLE over
every section with a non-zero port. The server only ever sends on sections it created itself (one per forwarded
track) and only receives on sections the client created.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["SdpError", "Codec", "MLine", "Sdp", "parse_sdp", "render_sdp", "ServerSection", "reverse_direction"]


class SdpError(ValueError):
    """The client's SDP cannot be used (missing ICE credentials, fingerprint or mid, malformed lines)."""


@dataclass(slots=True)
class Codec:
    pt: int
    name: str  # as written, e.g. "opus", "VP8"
    clock: int
    channels: int = 1
    fmtp: str = ""
    fb: list[str] = field(default_factory=list)

    @property
    def key(self) -> tuple[str, int, int]:
        return (self.name.lower(), self.clock, self.channels)


@dataclass(slots=True)
class MLine:
    kind: str
    port: int
    proto: str
    fmts: list[str]
    mid: str = ""
    direction: str = "sendrecv"
    codecs: list[Codec] = field(default_factory=list)
    extmap: dict[int, str] = field(default_factory=dict)
    ssrcs: list[int] = field(default_factory=list)
    fid: dict[int, int] = field(default_factory=dict)  # rtx ssrc -> media ssrc
    msid_stream: str = ""
    msid_track: str = ""
    ice_ufrag: str = ""
    ice_pwd: str = ""
    fingerprint: str = ""
    setup: str = ""
    simulcast: bool = False

    @property
    def media_ssrc(self) -> int | None:
        for s in self.ssrcs:
            if s not in self.fid:
                return s
        return None


@dataclass(slots=True)
class Sdp:
    media: list[MLine]
    bundle: list[str]


def reverse_direction(d: str) -> str:
    return {"sendonly": "recvonly", "recvonly": "sendonly"}.get(d, d)


def parse_sdp(text: str) -> Sdp:
    """Parse a client's offer or answer. Raises ``SdpError``."""
    if not isinstance(text, str) or not text.startswith("v=0"):
        raise SdpError("not an SDP document")
    session: dict[str, str] = {}
    media: list[MLine] = []
    bundle: list[str] = []
    cur: MLine | None = None
    rtpmap: dict[int, Codec] = {}
    fmtps: dict[int, str] = {}
    fbs: dict[int, list[str]] = {}

    def close() -> None:
        if cur is None:
            return
        for pt_s in cur.fmts:
            try:
                pt = int(pt_s)
            except ValueError:
                continue
            codec = rtpmap.get(pt)
            if codec is None:
                continue
            codec.fmtp = fmtps.get(pt, "")
            codec.fb = fbs.get(pt, []) + fbs.get(-1, [])
            cur.codecs.append(codec)

    for raw in text.splitlines():
        line = raw.strip()
        if len(line) < 2 or line[1] != "=":
            continue
        t, v = line[0], line[2:]
        if t == "m":
            close()
            parts = v.split()
            if len(parts) < 3:
                raise SdpError(f"bad m-line: {line!r}")
            try:
                port = int(parts[1].split("/")[0])
            except ValueError as exc:
                raise SdpError(f"bad m-line port: {line!r}") from exc
            cur = MLine(kind=parts[0], port=port, proto=parts[2], fmts=parts[3:])
            rtpmap, fmtps, fbs = {}, {}, {}
            media.append(cur)
            continue
        if t != "a":
            continue
        key, _, val = v.partition(":")
        if cur is None:
            if key == "group" and val.startswith("BUNDLE"):
                bundle = val.split()[1:]
            elif key in ("ice-ufrag", "ice-pwd", "fingerprint", "setup") and not (
                key == "fingerprint" and session.get(key, "").lower().startswith("sha-256")
            ):
                session[key] = val.strip()
            continue
        try:
            if key == "mid":
                cur.mid = val.strip()
            elif key in ("sendrecv", "sendonly", "recvonly", "inactive"):
                cur.direction = key
            elif key == "rtpmap":
                pt_s, enc = val.split(None, 1)
                bits = enc.split("/")
                ch = int(bits[2]) if len(bits) > 2 else 1
                rtpmap[int(pt_s)] = Codec(pt=int(pt_s), name=bits[0], clock=int(bits[1]), channels=ch)
            elif key == "fmtp":
                pt_s, params = val.split(None, 1)
                fmtps[int(pt_s)] = params.strip()
            elif key == "rtcp-fb":
                pt_s, fb = val.split(None, 1)
                fbs.setdefault(-1 if pt_s == "*" else int(pt_s), []).append(fb.strip())
            elif key == "extmap":
                ident, uri = val.split(None, 1)
                cur.extmap[int(ident.split("/")[0])] = uri.split()[0]
            elif key == "ssrc":
                ssrc_s, attr = val.split(None, 1)
                ssrc = int(ssrc_s)
                if ssrc not in cur.ssrcs:
                    cur.ssrcs.append(ssrc)
                if attr.startswith("msid:") and not cur.msid_stream:
                    ids = attr[5:].split()
                    cur.msid_stream = ids[0]
                    cur.msid_track = ids[1] if len(ids) > 1 else ""
            elif key == "ssrc-group":
                sem, *ids = val.split()
                if sem == "FID" and len(ids) == 2:
                    cur.fid[int(ids[1])] = int(ids[0])
            elif key == "msid":
                ids = val.split()
                cur.msid_stream = ids[0]
                cur.msid_track = ids[1] if len(ids) > 1 else ""
            elif key in ("ice-ufrag", "ice-pwd", "setup"):
                setattr(cur, key.replace("-", "_"), val.strip())
            elif key == "fingerprint":
                # several may be offered (aiortc: sha-256, -384, -512); keep sha-256, which the endpoint checks
                if not cur.fingerprint.lower().startswith("sha-256"):
                    cur.fingerprint = val.strip()
            elif key in ("simulcast", "rid"):
                cur.simulcast = True
        except (ValueError, IndexError) as exc:
            raise SdpError(f"bad attribute line: {line!r}") from exc
    close()
    for m in media:
        m.ice_ufrag = m.ice_ufrag or session.get("ice-ufrag", "")
        m.ice_pwd = m.ice_pwd or session.get("ice-pwd", "")
        m.fingerprint = m.fingerprint or session.get("fingerprint", "")
        m.setup = m.setup or session.get("setup", "")
        if not m.mid:
            raise SdpError("every m-section needs an a=mid (unified plan, BUNDLE)")
    if not media:
        raise SdpError("no m-sections")
    return Sdp(media=media, bundle=bundle)


@dataclass(slots=True)
class ServerSection:
    """One m-section as the server writes it (answer or offer)."""

    kind: str
    mid: str
    direction: str  # from the server's point of view; "rejected" writes port 0
    codecs: list[Codec]
    extmap: dict[int, str]
    proto: str = "UDP/TLS/RTP/SAVPF"
    fmts: list[str] = field(default_factory=list)  # only for rejected sections
    ssrc: int = 0
    msid_stream: str = ""
    msid_track: str = ""
    cname: str = ""


def render_sdp(
    *, session_version: int, ufrag: str, pwd: str, fingerprint: str, setup: str, host: str, port: int,
    sections: list[ServerSection], session_id: int,
) -> str:
    """The server's SDP: ICE-lite, rtcp-mux, BUNDLE, one host candidate on every section (all share the port)."""
    live = [s.mid for s in sections if s.direction != "rejected"]
    ip = "IP6" if ":" in host else "IP4"
    out = [
        "v=0",
        f"o=- {session_id} {session_version} IN {ip} {host}",
        "s=callsd",
        "t=0 0",
        "a=ice-lite",
        "a=msid-semantic: WMS *",
    ]
    if live:
        out.append("a=group:BUNDLE " + " ".join(live))
    for s in sections:
        if s.direction == "rejected":
            fmts = " ".join(s.fmts) or ("0" if s.kind != "application" else "webrtc-datachannel")
            out += [f"m={s.kind} 0 {s.proto} {fmts}", "c=IN IP4 0.0.0.0", f"a=mid:{s.mid}", "a=inactive"]
            continue
        pts = " ".join(str(c.pt) for c in s.codecs)
        out += [
            f"m={s.kind} {port} UDP/TLS/RTP/SAVPF {pts}",
            f"c=IN {ip} {host}",
            "a=rtcp:9 IN IP4 0.0.0.0",
            f"a=ice-ufrag:{ufrag}",
            f"a=ice-pwd:{pwd}",
            f"a=fingerprint:{fingerprint}",
            f"a=setup:{setup}",
            f"a=mid:{s.mid}",
        ]
        for ident, uri in sorted(s.extmap.items()):
            out.append(f"a=extmap:{ident} {uri}")
        out.append(f"a={s.direction}")
        if s.direction in ("sendonly", "sendrecv") and s.ssrc:
            out.append(f"a=msid:{s.msid_stream} {s.msid_track}")
        out += ["a=rtcp-mux", "a=rtcp-rsize"]
        for c in s.codecs:
            enc = f"{c.name}/{c.clock}" + (f"/{c.channels}" if c.channels > 1 else "")
            out.append(f"a=rtpmap:{c.pt} {enc}")
            for fb in c.fb:
                out.append(f"a=rtcp-fb:{c.pt} {fb}")
            if c.fmtp:
                out.append(f"a=fmtp:{c.pt} {c.fmtp}")
        if s.direction in ("sendonly", "sendrecv") and s.ssrc:
            out.append(f"a=ssrc:{s.ssrc} cname:{s.cname}")
            out.append(f"a=ssrc:{s.ssrc} msid:{s.msid_stream} {s.msid_track}")
        out.append(f"a=candidate:1 1 udp 2130706431 {host} {port} typ host")
        out.append("a=end-of-candidates")
    return "\r\n".join(out) + "\r\n"
