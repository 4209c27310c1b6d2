"""Properties of the media codecs (core/wire/rtp.py, core/wire/rtcp.py, core/wire/sdp.py, core/wire/negotiation.py).

* any input either parses or raises the codec's one declared error, nothing else (h11's fuzz invariant);
* build/parse round trips for RTP headers, RTCP packets and SDP documents;
* the hot-path helpers never raise on arbitrary bytes;
* ``StreamRewriter`` output is gapless across pauses and publisher switches;
* negotiation policy: answers never accept what the server does not implement (goog-remb from a publisher; RTX only for video), and
  the server is impolite: a client offer crossing a pending server offer changes nothing;
* header extension ids: over any sequence of offers and answers (with glare, rejected sections, renumbering
  clients), every id the server writes means what the client made it mean in everything the client wrote before.
"""

from __future__ import annotations

from pathlib import Path

from callsd.core.wire.negotiation import (
    AnswerApplied,
    AnswerRejected,
    LocalTransport,
    NegotiationState,
    Negotiator,
    OfferAnswered,
    OfferIgnored,
    OfferMade,
    OfferRejected,
    OutgoingTrack,
)
from callsd.core.wire.rtcp import (
    Bye,
    Feedback,
    Fir,
    Nack,
    Pli,
    ReceiverReport,
    ReportBlock,
    RtcpError,
    SdesChunk,
    SenderReport,
    SourceDescription,
    UnknownRtcp,
    build_rtcp,
    nack_pairs,
    parse_rtcp,
)
from callsd.core.wire.rtp import (
    RtpError,
    RtpHeader,
    StreamRewriter,
    build_rtp,
    find_extension,
    make_extension_remap,
    parse_rtp,
    payload_offset,
    peek_seq,
    peek_ssrc,
    read_audio_level,
    read_mid,
    rewrite_rtp,
    rewrite_rtx,
)
from callsd.core.wire.sdp import Codec, Direction, SdpError, build_sdp, parse_sdp
from hypothesis import given
from hypothesis import strategies as st

DATA = Path(__file__).resolve().parent.parent / "tests" / "media" / "data"
OFFERS = [(DATA / name).read_text() for name in ("offer_chromium.sdp", "offer_aiortc.sdp")]

u8, u16, u32 = st.integers(0, 255), st.integers(0, 0xFFFF), st.integers(0, 0xFFFFFFFF)


# --- RTP ------------------------------------------------------------------------------------------------------

one_byte_ext = st.lists(st.tuples(st.integers(1, 14), st.binary(min_size=1, max_size=16)), max_size=5)
two_byte_ext = st.lists(st.tuples(st.integers(1, 255), st.binary(max_size=40)), max_size=5)


@st.composite
def rtp_headers(draw: st.DrawFn) -> RtpHeader:
    form = draw(st.sampled_from(["none", "one", "two"]))
    profile = {"none": None, "one": 0xBEDE, "two": 0x1000 | draw(st.integers(0, 15))}[form]
    exts = draw(one_byte_ext) if form == "one" else draw(two_byte_ext) if form == "two" else []
    return RtpHeader(
        marker=draw(st.booleans()), payload_type=draw(st.integers(0, 127)), sequence=draw(u16),
        timestamp=draw(u32), ssrc=draw(u32), csrcs=tuple(draw(st.lists(u32, max_size=15))),
        extension_profile=profile, extensions=tuple(exts), padding=draw(st.sampled_from([0, 1, 4, 255])),
    )


@given(st.binary(max_size=300))
def test_rtp_parser_returns_or_raises_rtp_error(data: bytes) -> None:
    try:
        h = parse_rtp(data)
    except RtpError:
        return
    assert 12 <= h.payload_offset <= h.payload_end <= len(data)


@given(st.binary(max_size=300), st.integers(0, 20))
def test_rtp_hot_path_helpers_never_raise(data: bytes, ext_id: int) -> None:
    peek_ssrc(data), peek_seq(data), payload_offset(data), find_extension(data, ext_id)
    read_audio_level(data, ext_id), read_mid(data, ext_id)
    buf = bytearray(data)
    rewrite_rtp(buf, 1, 2, 3, 96, make_extension_remap({1: 2, 2: 0, 3: 3}))
    assert len(buf) == len(data)
    media = StreamRewriter(ssrc=1, payload_type=96, clock_rate=90000)
    rewrite_rtx(bytearray(data), StreamRewriter(ssrc=2, payload_type=97, clock_rate=90000), media, 0)
    media.rewrite(bytearray(data), 0)


@given(rtp_headers(), st.binary(max_size=200))
def test_rtp_build_parse_round_trip(h: RtpHeader, payload: bytes) -> None:
    pkt = build_rtp(h, payload)
    p = parse_rtp(pkt)
    assert (p.marker, p.payload_type, p.sequence, p.timestamp, p.ssrc, p.csrcs, p.extensions, p.padding) == (
        h.marker, h.payload_type, h.sequence, h.timestamp, h.ssrc, h.csrcs, h.extensions, h.padding)
    assert p.extension_profile == h.extension_profile
    assert pkt[p.payload_offset : p.payload_end] == payload
    for ext_id, value in h.extensions:
        loc = find_extension(pkt, ext_id)
        first = next(v for i, v in h.extensions if i == ext_id)
        assert loc is not None and pkt[loc[0] : loc[0] + loc[1]] == first
        del value


@given(rtp_headers(), st.dictionaries(st.integers(1, 14), st.integers(0, 14)))
def test_rtp_remap_keeps_length_and_payload(h: RtpHeader, mapping: dict[int, int]) -> None:
    pkt = bytearray(build_rtp(h, b"payload"))
    before = parse_rtp(pkt)
    assert rewrite_rtp(pkt, 7, 8, 9, 100, make_extension_remap(mapping))
    after = parse_rtp(pkt)
    assert (after.ssrc, after.sequence, after.timestamp, after.payload_type) == (7, 8, 9, 100)
    assert pkt[after.payload_offset : after.payload_end] == b"payload" and after.marker == before.marker
    if h.extension_profile == 0xBEDE:
        expected = tuple((mapping[i], v) for i, v in before.extensions if mapping.get(i, 0) != 0)
        assert after.extensions == expected


@given(st.lists(st.tuples(st.sampled_from(["pkt", "pause", "switch"]), st.integers(1, 3)), max_size=60),
       u16, u32)
def test_stream_rewriter_output_is_gapless(ops: list[tuple[str, int]], start_seq: int, start_ts: int) -> None:
    rw = StreamRewriter(ssrc=1, payload_type=96, clock_rate=90000, initial_seq=start_seq, initial_ts=start_ts)
    ssrc, seq, ts, now = 10, 65000, 0, 0
    outs: list[tuple[int, int]] = []
    for op, k in ops:
        now += 20 * k
        if op == "pause":
            rw.pause()
            seq = (seq + 50 * k) & 0xFFFF  # the publisher kept counting
            ts = (ts + 90000 * k) & 0xFFFFFFFF
        elif op == "switch":
            ssrc += 1
            seq = (seq * 7 + k) & 0xFFFF
        seq = (seq + 1) & 0xFFFF
        ts = (ts + 1800) & 0xFFFFFFFF
        out = rw.translate(ssrc, seq, ts, now)
        assert out is not None
        outs.append(out)
    for i, (s, t) in enumerate(outs):
        assert s == (start_seq + i) & 0xFFFF
        if i:
            assert 0 < (t - outs[i - 1][1]) & 0xFFFFFFFF < 0x80000000  # timestamps only move forward


# --- RTCP -----------------------------------------------------------------------------------------------------

blocks = st.builds(ReportBlock, ssrc=u32, fraction_lost=u8, cumulative_lost=st.integers(-(2**23), 2**23 - 1),
                   highest_seq=u32, jitter=u32, lsr=u32, dlsr=u32)
rtcp_packets = st.one_of(
    st.builds(SenderReport, ssrc=u32, ntp_timestamp=st.integers(0, 2**64 - 1), rtp_timestamp=u32,
              packet_count=u32, octet_count=u32, reports=st.lists(blocks, max_size=3).map(tuple)),
    st.builds(ReceiverReport, ssrc=u32, reports=st.lists(blocks, max_size=3).map(tuple)),
    st.builds(SourceDescription, chunks=st.lists(st.builds(
        SdesChunk, ssrc=u32, items=st.lists(st.tuples(st.integers(1, 8), st.binary(max_size=20)),
                                            max_size=3).map(tuple)), max_size=3).map(tuple)),
    st.builds(Bye, ssrcs=st.lists(u32, max_size=4).map(tuple), reason=st.none() | st.binary(max_size=30)),
    st.builds(Nack, sender_ssrc=u32, media_ssrc=u32,
              lost=st.lists(u16, min_size=1, max_size=20).map(
                  lambda seqs: tuple(s for pid, blp in nack_pairs(seqs)
                                     for s in (pid, *((pid + b + 1) & 0xFFFF for b in range(16) if blp >> b & 1))))),
    st.builds(Pli, sender_ssrc=u32, media_ssrc=u32),
    st.builds(Fir, sender_ssrc=u32, media_ssrc=u32, entries=st.lists(st.tuples(u32, u8), max_size=3).map(tuple)),
    st.builds(Feedback, packet_type=st.sampled_from([205, 206]), fmt=st.sampled_from([15, 2, 3]), sender_ssrc=u32,
              media_ssrc=u32, fci=st.binary(max_size=12).map(lambda b: b + bytes(-len(b) % 4))),
    st.builds(UnknownRtcp, packet_type=st.sampled_from([204, 207, 210]), count=st.integers(0, 31),
              body=st.binary(max_size=12).map(lambda b: b + bytes(-len(b) % 4))),
)


@given(st.binary(max_size=300))
def test_rtcp_parser_returns_or_raises_rtcp_error(data: bytes) -> None:
    try:
        packets = parse_rtcp(data)
    except RtcpError:
        return
    assert packets and len(data) % 4 == 0


@given(st.lists(rtcp_packets, min_size=1, max_size=4))
def test_rtcp_build_parse_round_trip(packets: list[object]) -> None:
    assert parse_rtcp(build_rtcp(packets)) == packets  # type: ignore[arg-type]


# --- SDP ------------------------------------------------------------------------------------------------------

sdp_lines = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["a=sendrecv", "a=rtcp-mux", "m=audio 9 UDP/TLS/RTP/SAVPF 111", "a=rtpmap:111 opus/48000/2",
                     "a=mid:0", "a=group:BUNDLE 0", "a=ssrc:1 cname:x", "a=candidate:1 1 udp 1 127.0.0.1 9 typ host",
                     "a=extmap:1 urn:x", "a=fmtp:111 a=b", "o=- 1 1 IN IP4 127.0.0.1", "a=setup:actpass"]),
)


@given(st.lists(sdp_lines, max_size=20))
def test_sdp_parser_returns_or_raises_sdp_error_and_round_trips(lines: list[str]) -> None:
    text = "v=0\r\n" + "\r\n".join(lines)
    try:
        d = parse_sdp(text)
    except SdpError:
        return
    assert parse_sdp(build_sdp(d)) == d


@given(st.sampled_from(OFFERS), st.data())
def test_mutated_real_offers_parse_or_fail_cleanly_and_negotiate_without_crashing(offer: str, data: st.DataObject
                                                                                  ) -> None:
    lines = offer.splitlines()
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(lines) - 1))
        action = data.draw(st.sampled_from(["drop", "dup", "cut", "junk"]))
        if action == "drop":
            del lines[i]
        elif action == "dup":
            lines.insert(i, lines[i])
        elif action == "cut":
            lines[i] = lines[i][: data.draw(st.integers(0, len(lines[i])))]
        else:
            lines[i] = lines[i][:2] + data.draw(st.text(max_size=10))
        if not lines:
            return
    text = "\r\n".join(lines) + "\r\n"
    try:
        d = parse_sdp(text)
    except SdpError:
        d = None
    if d is not None:
        assert parse_sdp(build_sdp(d)) == d
    n = Negotiator(transport=LocalTransport(ice_ufrag="u", ice_pwd="p" * 22, fingerprint="sha-256 AA",
                                            host="127.0.0.1", port=9), session_id=1)
    r = n.handle_offer(text)
    assert isinstance(r, OfferAnswered | OfferRejected)
    if isinstance(r, OfferAnswered):
        answer = parse_sdp(r.answer)
        for m in answer.media:
            primary = m.codecs[0] if m.codecs else None
            assert primary is None or primary.name.lower() != "rtx"
            # RTX only on video, only one, and only for the section's codec (ADR 0019)
            rtx = [c for c in m.codecs if c.name.lower() == "rtx"]
            assert not rtx or (m.kind == "video" and len(rtx) == 1 and primary is not None
                               and rtx[0].params.get("apt") == str(primary.payload_type))
            # the server sends publishers transport-cc feedback (twcc_recv.py), never REMB
            assert all(f != "goog-remb" for c in m.codecs for f in c.feedback)
        assert all(p.rtx_payload_type is None and p.rtx_ssrc is None for p in r.published if p.kind == "audio")


@given(st.sampled_from(OFFERS), st.data())
def test_a_client_offer_crossing_a_pending_server_offer_changes_nothing(offer: str, data: st.DataObject) -> None:
    n = Negotiator(transport=LocalTransport(ice_ufrag="u", ice_pwd="p" * 22, fingerprint="sha-256 AA",
                                            host="127.0.0.1", port=9), session_id=1)
    assert isinstance(n.handle_offer(offer), OfferAnswered)
    vp8 = Codec(payload_type=96, name="VP8", clock_rate=90000)
    made = n.make_offer([OutgoingTrack(track_id="t", stream_id="s", kind="video", ssrc=5, codec=vp8)])
    assert isinstance(made, OfferMade)
    before = (n.state, n.published, n.sending, n.remote)
    lines = offer.splitlines()
    crossing = "\r\n".join(lines[: data.draw(st.integers(0, len(lines)))]) + "\r\n"
    for text in (offer, crossing):
        assert n.handle_offer(text) == OfferIgnored(reason="glare")
    assert (n.state, n.published, n.sending, n.remote) == before
    answer = [ln.replace("a=sendonly", "a=recvonly") for ln in made.offer.splitlines() if ln != "a=ice-lite"]
    assert isinstance(n.handle_answer("\r\n".join(answer) + "\r\n"), AnswerApplied)
    assert [t.track_id for t in n.sending] == ["t"]


def _mutate(lines: list[str], data: st.DataObject) -> list[str]:
    for _ in range(data.draw(st.integers(1, 4))):
        if not lines:
            break
        i = data.draw(st.integers(0, len(lines) - 1))
        action = data.draw(st.sampled_from(["drop", "dup", "cut", "swap"]))
        if action == "drop":
            del lines[i]
        elif action == "dup":
            lines.insert(i, lines[i])
        elif action == "cut":
            lines[i] = lines[i][: data.draw(st.integers(0, len(lines[i])))]
        else:
            j = data.draw(st.integers(0, len(lines) - 1))
            lines[i], lines[j] = lines[j], lines[i]
    return lines


@given(st.data())
def test_negotiator_survives_mutated_answers(data: st.DataObject) -> None:
    n = Negotiator(transport=LocalTransport(ice_ufrag="u", ice_pwd="p" * 22, fingerprint="sha-256 AA",
                                            host="127.0.0.1", port=9), session_id=1)
    assert isinstance(n.handle_offer(OFFERS[0]), OfferAnswered)
    vp8 = Codec(payload_type=96, name="VP8", clock_rate=90000)
    made = n.make_offer([OutgoingTrack(track_id="t", stream_id="s", kind="video", ssrc=5, rtx_ssrc=6, codec=vp8)])
    assert isinstance(made, OfferMade)
    answer = [ln.replace("a=sendonly", "a=recvonly") for ln in made.offer.splitlines() if ln != "a=ice-lite"]
    r = n.handle_answer("\r\n".join(_mutate(answer, data)) + "\r\n")
    assert isinstance(r, AnswerApplied | AnswerRejected)
    assert n.state is NegotiationState.STABLE  # applied, or rolled back: never stuck with a pending offer


# --- header extension ids over a session ----------------------------------------------------------------------

EXT_POOL = ("urn:ietf:params:rtp-hdrext:ssrc-audio-level", "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time",
            "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01",
            "urn:ietf:params:rtp-hdrext:sdes:mid", "http://www.webrtc.org/experiments/rtp-hdrext/playout-delay",
            "http://www.webrtc.org/experiments/rtp-hdrext/video-content-type",
            "http://www.webrtc.org/experiments/rtp-hdrext/video-timing",
            "http://www.webrtc.org/experiments/rtp-hdrext/color-space",
            "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id", "urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id",
            "urn:3gpp:video-orientation", "urn:ietf:params:rtp-hdrext:toffset", "urn:example:other")
MID_EXT = "urn:ietf:params:rtp-hdrext:sdes:mid"
CHROMIUM_EXT_IDS = (1, 2, 3, 4, 5, 6, 7, 8, 10, 11, 13, 14, 12)  # as in offer_chromium.sdp (the last made up)
OPUS = Codec(payload_type=111, name="opus", clock_rate=48000, channels=2, fmtp="minptime=10;useinbandfec=1")
VP8 = Codec(payload_type=96, name="VP8", clock_rate=90000)


class ModelClient:
    """A browser-like peer: it numbers each URI once (its default id, unless that id already means something in
    the session), keeps the ids of everything it wrote even if the offer was ignored or rolled back, and adopts
    the ids of the server's sections it accepts. ``written`` is what the server can know: id -> URIs."""

    def __init__(self, defaults: dict[str, int]) -> None:
        self.defaults = defaults
        self.known: dict[int, str] = {}  # id -> URI in this client's session (written or applied)
        self.written: dict[int, set[str]] = {}
        self.uri_ids: dict[str, set[int]] = {}  # (two ids only after a crossing offer numbered a URI anew)
        self.sections: list[dict[str, object]] = []  # negotiated: mid, kind, port, direction, ext [(uri, id)]
        self.wanted: list[dict[str, object]] = []  # sections added but not negotiated yet
        self.version = 0

    def number(self, uri: str) -> int:
        for i, u in self.known.items():
            if u == uri:
                return i
        i = self.defaults[uri]
        if i in self.known:
            i = next(j for j in range(1, 15) if j not in self.known)
        self.known[i] = uri
        return i

    def add_section(self, kind: str, uris: list[str]) -> None:
        mid = str(len(self.sections) + len(self.wanted))
        ext = [(u, self.number(u)) for u in dict.fromkeys([MID_EXT, *uris])]
        self.wanted.append({"mid": mid, "kind": kind, "port": 9, "direction": "sendonly", "ext": ext})

    def describe(self, sections: list[dict[str, object]], setup: str) -> str:
        self.version += 1
        lines = ["v=0", f"o=- 1 {self.version} IN IP4 127.0.0.1", "s=-", "t=0 0",
                 "a=group:BUNDLE " + " ".join(str(m["mid"]) for m in sections if m["port"])]
        for m in sections:
            pt = "111 opus/48000/2" if m["kind"] == "audio" else "96 VP8/90000"
            lines += [f"m={m['kind']} {m['port']} UDP/TLS/RTP/SAVPF {pt.split()[0]}", "c=IN IP4 0.0.0.0",
                      "a=ice-ufrag:cliu", "a=ice-pwd:clientpassword0123456789", "a=fingerprint:sha-256 "
                      + ":".join(["CD"] * 32), f"a=setup:{setup}", f"a=mid:{m['mid']}"]
            if m["port"]:
                ext: list[tuple[str, int]] = m["ext"]  # type: ignore[assignment]
                lines += [f"a=extmap:{i} {u}" for u, i in ext]
                lines += [f"a={m['direction']}", "a=rtcp-mux", f"a=rtpmap:{pt}"]
                if m["direction"] in ("sendonly", "sendrecv"):
                    lines.append(f"a=msid:s t{m['mid']}")
        for m in sections:
            if m["port"]:
                ext = m["ext"]  # type: ignore[assignment]
                for u, i in ext:
                    self.written.setdefault(i, set()).add(u)
                    self.uri_ids.setdefault(u, set()).add(i)
        return "\r\n".join(lines) + "\r\n"

    def offer(self) -> str:
        return self.describe([*self.sections, *self.wanted], "actpass")

    def offer_answered(self, answer: str) -> None:
        self.sections += self.wanted
        self.wanted = []
        for m, a in zip(self.sections, parse_sdp(answer).media, strict=True):
            m["ext"] = [(e.uri, e.id) for e in a.extmaps]  # re-offers repeat what was negotiated
            m["port"] = a.port and m["port"]

    def conflicts(self, offer: str) -> bool:
        """Would a browser refuse this server offer (an id it already gives another URI)?"""
        return any(self.known.get(e.id, e.uri) != e.uri for m in parse_sdp(offer).media for e in m.extmaps)

    def answer(self, offer: str, data: st.DataObject) -> str:
        out: list[dict[str, object]] = []
        for i, m in enumerate(parse_sdp(offer).media):
            mine = self.sections[i] if i < len(self.sections) else None
            accept = m.port != 0 and (mine is not None or data.draw(st.booleans(), label="accept"))
            ext = [(e.uri, e.id) for e in m.extmaps
                   if mine is not None or data.draw(st.booleans(), label="keep extension")] if accept else []
            direction = (m.direction or Direction.SENDRECV).reversed()
            out.append({"mid": m.mid, "kind": m.kind, "port": 9 if accept else 0, "direction": str(direction),
                        "ext": ext})
            for u, j in ext:
                self.known.setdefault(j, u)
        self.sections = out
        return self.describe(out, "active")


def _check_server_ids(description: str, written: dict[int, set[str]], uri_ids: dict[str, set[int]],
                      old_mids: set[str]) -> None:
    """No id means two URIs in the description; none means another URI than the client made it mean; a URI the
    client numbered keeps (one of) the client's ids; a new server section carries the mid extension."""
    seen: dict[int, str] = {}
    for m in parse_sdp(description).media:
        for e in m.extmaps:
            assert seen.setdefault(e.id, e.uri) == e.uri, f"id {e.id} means two URIs in one description"
            assert written.get(e.id, {e.uri}) == {e.uri}, f"id {e.id} given to {e.uri}, the client used it for " \
                                                          f"{written[e.id]}"
            assert e.id in uri_ids.get(e.uri, {e.id}), f"{e.uri} renumbered {uri_ids[e.uri]} -> {e.id}"
        if m.port and m.mid not in old_mids:
            assert MID_EXT in {e.uri for e in m.extmaps}  # the client has numbered mid: always kept


@given(st.data())
def test_server_extension_ids_never_conflict_with_the_clients(data: st.DataObject) -> None:
    ids = data.draw(st.one_of(st.just(CHROMIUM_EXT_IDS), st.permutations(range(1, 15)).map(tuple)), label="ids")
    client = ModelClient(dict(zip(EXT_POOL, ids, strict=False)))
    n = Negotiator(transport=LocalTransport(ice_ufrag="u", ice_pwd="p" * 22, fingerprint="sha-256 AA",
                                            host="127.0.0.1", port=9), session_id=1)
    uris = st.lists(st.sampled_from(EXT_POOL), max_size=6)
    client.add_section(data.draw(st.sampled_from(["audio", "video"])), data.draw(uris))
    answered = n.handle_offer(client.offer())
    assert isinstance(answered, OfferAnswered)
    _check_server_ids(answered.answer, client.written, client.uri_ids, set())
    client.offer_answered(answered.answer)
    names = st.lists(st.sampled_from([("a", "audio"), ("b", "video"), ("c", "video"), ("d", "audio")]),
                     unique=True)
    for _ in range(data.draw(st.integers(1, 8), label="steps")):
        action = data.draw(st.sampled_from(["client_offer", "server_offer", "reject_own"]), label="action")
        if action == "server_offer":
            tracks = [OutgoingTrack(track_id=name, stream_id="s", kind=kind, ssrc=1000 + ord(name),
                                    codec=OPUS if kind == "audio" else VP8) for name, kind in data.draw(names)]
            made = n.make_offer(tracks)
            if made is None:
                continue
            _check_server_ids(made.offer, client.written, client.uri_ids, {str(m["mid"]) for m in client.sections})
            if data.draw(st.booleans(), label="crossing camera offer"):  # glare: the client offers meanwhile
                client.add_section(data.draw(st.sampled_from(["audio", "video"])), data.draw(uris))
                assert n.handle_offer(client.offer()) == OfferIgnored(reason="glare")
            if client.conflicts(made.offer):  # only possible after a crossing offer: the browser refuses it
                n.rollback()
                continue
            applied = n.handle_answer(client.answer(made.offer, data))
            assert isinstance(applied, AnswerApplied)
        elif action == "reject_own" and len(client.sections) > 1:
            i = data.draw(st.integers(0, len(client.sections) - 1))
            client.sections[i]["port"] = 0
        if action != "server_offer" or client.wanted:
            if action == "client_offer":
                client.add_section(data.draw(st.sampled_from(["audio", "video"])), data.draw(uris))
            answer = n.handle_offer(client.offer())
            if isinstance(answer, OfferRejected):  # every section rejected, or more sending sections than allowed
                assert answer.reason.value in ("no_usable_media", "too_many_tracks")
                return
            assert isinstance(answer, OfferAnswered)
            _check_server_ids(answer.answer, client.written, client.uri_ids, {str(m["mid"]) for m in client.sections})
            client.offer_answered(answer.answer)
