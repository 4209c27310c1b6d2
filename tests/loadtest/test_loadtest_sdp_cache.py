"""The load client's SDP reader with its per-section cache reads what the former line-by-line reader did, for any
text, the first time and on cache hits (the same sections again, in another offer)."""

from __future__ import annotations

from callsd.app.loadtest.sdp import MediaSection, SessionDescription, _parse_candidate, parse_sdp
from hypothesis import given, settings
from hypothesis import strategies as st

LINES = st.sampled_from([
    "m=audio 9 UDP/TLS/RTP/SAVPF 111", "m=video 9 UDP/TLS/RTP/SAVPF 96", "m=video x y", "m=", "m=audio", " m=audio 0 P",
    "a=mid:0", "a=mid:1", "a=rtpmap:111 opus/48000/2", "a=rtpmap:x", "a=fmtp:111 minptime=10", "a=rtcp-fb:96 nack",
    "a=extmap:1 urn:x", "a=extmap:", "a=extmap:a/b", "a=extmap:2/sendonly urn:y z", "a=ssrc:1 cname:x", "a=ssrc:1 m",
    "a=ssrc:", "a=candidate:1 1 udp", "a=candidate:1 1 udp 1 127.0.0.1 9 typ host", "a=ice-ufrag:u", "a=ice-pwd:p",
    "a=ice-lite", "a=fingerprint:sha-256 AB", "a=setup:actpass", "a=sendonly", "a=recvonly", "a=inactive",
    "a=msid:s t", "c=IN IP4 0.0.0.0", "a=group:BUNDLE 0", "a", "x=1", "",
])


def reference_parse(text: str) -> SessionDescription:
    """The parser before the section cache (session 7), line by line: the reference."""
    if not isinstance(text, str) or not text.startswith("v="):
        raise ValueError("SDP must start with v=")
    session = SessionDescription(media=[])
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
    return session


def _as_tuple(desc: SessionDescription) -> tuple[object, ...]:
    def section(m: MediaSection) -> tuple[object, ...]:
        return (m.kind, m.port, m.protocol, m.formats, m.mid, m.direction, m.rtpmap, m.codec_lines, m.extmap,
                m.ssrcs, m.msid, m.ice_ufrag, m.ice_pwd, m.fingerprint, m.setup, m.candidates)
    return (desc.ice_ufrag, desc.ice_pwd, desc.fingerprint, desc.setup, desc.candidates, desc.ice_lite,
            [section(m) for m in desc.media])


def _read(parse: object, text: str) -> object:
    try:
        return _as_tuple(parse(text))  # type: ignore[operator]
    except ValueError as exc:
        return ("ValueError", str(exc))


@settings(max_examples=400, deadline=None)
@given(st.one_of(st.text(max_size=200), st.lists(st.one_of(LINES, st.text(max_size=30)), max_size=40).map(
    lambda lines: "\r\n".join(["v=0", *lines]))), st.sampled_from(["\r\n", "\n"]))
def test_cached_sections_read_as_the_line_by_line_reader(text: str, newline: str) -> None:
    text = text.replace("\r\n", newline)
    want = _read(reference_parse, text)
    assert _read(parse_sdp, text) == want
    assert _read(parse_sdp, text) == want  # every section now a cache hit
