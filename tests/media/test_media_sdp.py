"""SDP parse/build against offers recorded from Chromium and aiortc (core/wire/sdp.py)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from unittest.mock import patch

import pytest
from callsd.core.wire import sdp_parse
from callsd.core.wire.sdp import (
    Direction,
    SdpError,
    SessionDescription,
    build_sdp,
    parse_candidate,
    parse_sdp,
)
from hypothesis import given, settings
from hypothesis import strategies as st

DATA = Path(__file__).resolve().parent / "data"
CHROMIUM = (DATA / "offer_chromium.sdp").read_text()
AIORTC = (DATA / "offer_aiortc.sdp").read_text()


def test_chromium_offer_exposes_what_the_server_needs() -> None:
    d = parse_sdp(CHROMIUM)
    assert d.bundle() == ("0", "1") and d.extmap_allow_mixed
    audio, video = d.media
    assert (audio.kind, audio.mid, audio.direction, audio.setup) == ("audio", "0", Direction.SENDRECV, "actpass")
    assert audio.rtcp_mux and audio.rtcp_rsize and audio.ice_ufrag and audio.ice_pwd
    assert audio.fingerprints[0].algorithm == "sha-256"
    opus = audio.codec(111)
    assert opus is not None and (opus.name, opus.clock_rate, opus.channels) == ("opus", 48000, 2)
    assert opus.params == {"minptime": "10", "useinbandfec": "1"} and opus.feedback == ("transport-cc",)
    assert audio.extension_id("urn:ietf:params:rtp-hdrext:ssrc-audio-level") == 1
    assert audio.msids[0].track_id and audio.ssrc_list() and audio.attribute("rtcp-xr") == "rcvr-rtt=all"
    (primary, rtx), = video.rtx_pairs().items()
    assert video.ssrc_attribute(primary, "cname") == video.ssrc_attribute(rtx, "cname")
    rtx_codec = video.codec(97)
    assert rtx_codec is not None and rtx_codec.name == "rtx" and rtx_codec.params == {"apt": "96"}
    assert [c.payload_type for c in video.codecs][:3] == [96, 97, 102]


def test_aiortc_offer_parses_with_candidates() -> None:
    d = parse_sdp(AIORTC)
    assert [m.kind for m in d.media] == ["audio", "video"]
    assert d.media[0].candidates and d.media[0].end_of_candidates
    c = d.media[0].candidates[0]
    assert c.component == 1 and c.transport == "udp" and c.type == "host"


@pytest.mark.parametrize("text", [CHROMIUM, AIORTC])
def test_round_trip_keeps_every_attribute(text: str) -> None:
    d = parse_sdp(text)
    again = build_sdp(d)
    assert parse_sdp(again) == d
    assert again.endswith("\r\n") and "\n" not in again.replace("\r\n", "")
    # every line of the original is still there (only the order may change, and msid-semantic's spacing)
    assert sorted(set(text.replace("a=msid-semantic: ", "a=msid-semantic:").splitlines())) == sorted(
        set(again.splitlines()))


def test_port_zero_is_rejected_and_unknown_lines_are_kept() -> None:
    text = ("v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\ni=info\r\nt=0 0\r\n"
            "m=application 0 UDP/DTLS/SCTP webrtc-datachannel\r\na=mid:2\r\na=sctp-port:5000\r\n")
    d = parse_sdp(text)
    (m,) = d.media
    assert m.rejected and m.codecs == () and m.attribute("sctp-port") == "5000"
    assert d.other_lines == ("i=info",)
    assert parse_sdp(build_sdp(d)) == d


def test_candidate_with_related_address_and_extensions() -> None:
    c = parse_candidate("842163049 1 udp 1677729535 127.0.0.1 50000 typ srflx raddr 0.0.0.0 rport 0 "
                        "generation 0 network-cost 999")
    assert (c.type, c.related_address, c.related_port) == ("srflx", "0.0.0.0", 0)
    assert c.extensions == (("generation", "0"), ("network-cost", "999"))


HEAD = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "line 1: an SDP document starts with 'v=0'"),
        ("v=0\r\ns=-\r\n", "no o= line"),
        ("v=0\r\no=- 1 IN IP4\r\n", "line 2: o= needs 6 fields"),
        (HEAD + "garbage\r\n", "line 5: expected '<letter>=<value>'"),
        (HEAD + "m=audio\r\n", "line 5: m= needs"),
        (HEAD + "m=audio x UDP/TLS/RTP/SAVPF 111\r\n", "line 5: m= port must be an integer"),
        (HEAD + "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=rtpmap:112 opus/48000/2\r\n",
         "line 6: a=rtpmap for payload type 112, which is not on the m= line"),
        (HEAD + "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=rtpmap:111 opus\r\n", "line 6: a=rtpmap needs"),
        (HEAD + "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=extmap:0 urn:x\r\n", "line 6: extmap id must be in 1..255"),
        (HEAD + "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=sendrecv\r\na=recvonly\r\n", "line 7: more than one direction"),
        (HEAD + "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=setup:sideways\r\n", "line 6: a=setup must be"),
        (HEAD + "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=candidate:1 1 udp 1 127.0.0.1 9\r\n", "line 6: expected"),
        (HEAD + "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=ssrc:abc cname:x\r\n", "line 6: a=ssrc id must be"),
        (HEAD + "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\ns=late\r\n", "line 6: 's=' is not allowed in a media"),
    ],
)
def test_malformed_sdp_names_the_line(text: str, message: str) -> None:
    with pytest.raises(SdpError) as info:
        parse_sdp(text)
    assert message in str(info.value)


SLOT = ("m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=ice-ufrag:abcd\r\na=ice-pwd:0123456789abcdef012345\r\n"
        "a=setup:active\r\na=mid:{mid}\r\na=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level\r\na=recvonly\r\n"
        "a=rtcp-mux\r\na=rtpmap:111 opus/48000/2\r\na=rtcp-fb:111 transport-cc\r\na=fmtp:111 minptime=10\r\n")


def test_sections_alike_but_for_their_mid_parse_as_each_would_alone() -> None:
    """An answer to eight receive slots repeats one section with eight mids; the parser reuses the first parse for
    the others (core/wire/sdp_parse.py, ``_repeated_sections``): each must equal that section parsed on its own."""
    mids = ["0", *(f"s{n}" for n in range(1, 9))]
    doc = parse_sdp(HEAD + "".join(SLOT.format(mid=m) for m in mids))
    assert [m.mid for m in doc.media] == mids
    for m, mid in zip(doc.media, mids, strict=True):
        assert m == parse_sdp(HEAD + SLOT.format(mid=mid)).media[0]


@pytest.mark.parametrize(
    ("tail", "message"),
    [
        ("a=bogus line\r\n", "line 41: bad attribute name"),  # after three sections: numbering still counts them
        ("a=mid:x\r\n", "line 41: a=mid appears twice"),  # a repeated section with a second mid is parsed in full
        ("s=late\r\n", "line 41: 's=' is not allowed in a media section"),
    ],
)
def test_an_error_after_repeated_sections_names_its_line(tail: str, message: str) -> None:
    text = HEAD + SLOT.format(mid="a") + SLOT.format(mid="b") + SLOT.format(mid="c") + tail
    with pytest.raises(SdpError) as info:
        parse_sdp(text)
    assert message in str(info.value)


def _unshared(doc: SessionDescription) -> SessionDescription:
    """``doc`` with every tuple of every section a distinct object (``build_sdp`` writes a shared one once)."""
    return replace(doc, media=tuple(
        replace(m, codecs=tuple(list(m.codecs)), extmaps=tuple(list(m.extmaps)),
                candidates=tuple(list(m.candidates)), fingerprints=tuple(list(m.fingerprints)))
        for m in doc.media))


def test_sections_sharing_their_tuples_are_written_as_unshared_ones() -> None:
    """The server's offers hand every section one candidates tuple and one fingerprint tuple, and alike receive slots
    one codecs and one extmaps tuple; ``build_sdp`` writes each shared tuple's lines once per document and copies
    them. The text must be what writing every section on its own gives, and parse back to the same sections."""
    doc = parse_sdp(HEAD + "".join(SLOT.format(mid=m) for m in ["0", "s1", "s2", "s3"]))
    first = doc.media[0]
    shared = replace(doc, media=tuple(
        replace(m, codecs=first.codecs, extmaps=first.extmaps, candidates=first.candidates,
                fingerprints=first.fingerprints) for m in doc.media))
    assert shared.media[1].codecs is shared.media[2].codecs
    text = build_sdp(shared)
    assert text == build_sdp(_unshared(shared))
    assert parse_sdp(text).media == shared.media
    # a section with its own tuples between shared ones keeps its own lines
    other = replace(first, mid="x", codecs=(replace(first.codecs[0], payload_type=109, fmtp="stereo=1"),))
    mixed = replace(shared, media=(*shared.media[:2], other, *shared.media[2:]))
    assert build_sdp(mixed) == build_sdp(_unshared(mixed))
    assert "a=fmtp:109 stereo=1" in build_sdp(mixed)


_SECTION_LINES = st.lists(st.sampled_from([
    "a=sendrecv", "a=recvonly", "a=rtcp-mux", "a=rtpmap:111 opus/48000/2", "a=fmtp:111 minptime=10",
    "a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level", "a=ssrc:5 cname:x", "a=bogus", "a=mid:extra",
    "a=setup:active", "garbage", "",
]), max_size=5)


@settings(max_examples=300, deadline=None)
@given(sections=st.lists(st.tuples(st.sampled_from(["m=audio 9 UDP/TLS/RTP/SAVPF 111", "m=audio 0 RTP/AVP 0"]),
                                   st.sampled_from(["a", "b", "0", None]), _SECTION_LINES, _SECTION_LINES),
                         min_size=1, max_size=6),
       end=st.sampled_from(["\r\n", "\n", "\r\n\r\n", ""]))
def test_skipping_repeated_sections_changes_no_result_and_no_error(
        sections: list[tuple[str, str | None, list[str], list[str]]], end: str) -> None:
    """Whatever the document (alike sections, several or no mids, bad lines, blank lines, any line ends), the parse
    that reuses repeated sections gives what the parse of every line gives: the same sections or the same error."""
    lines = HEAD.rstrip("\r\n").split("\r\n")
    for m_line, mid, before, after in sections:
        lines += [m_line, *before, *([f"a=mid:{mid}"] if mid is not None else []), *after]
    text = "\r\n".join(lines) + end

    def parse() -> object:
        try:
            return parse_sdp(text)
        except SdpError as exc:
            return str(exc)

    reusing = parse()
    with patch.object(sdp_parse, "_repeated_sections", lambda _text, _count: {}):
        assert parse() == reusing


@pytest.mark.parametrize("end", ["\r\n", "\r\n\r\n", ""])
def test_every_section_alike_an_earlier_one_is_reused_the_last_one_too(end: str) -> None:
    mids = ["0", *(f"s{n}" for n in range(1, 9))]
    text = (HEAD + "".join(SLOT.format(mid=m) for m in mids)).rstrip("\r\n") + end
    normalized = text.replace("\r\n", "\n")
    count = len(normalized.rstrip("\n").split("\n"))
    repeats = sdp_parse._repeated_sections(normalized, count)
    assert sorted(mid for _end, _first, mid in repeats.values()) == sorted(mids[1:])
    assert max(end for end, _first, _mid in repeats.values()) == count


_TRANSPORT_LINES = st.lists(st.sampled_from([
    "a=ice-ufrag:abcd", "a=ice-ufrag:wxyz", "a=ice-pwd:0123456789abcdef012345", "a=fingerprint:sha-256 AB:CD",
    "a=fingerprint:SHA-256 01:02", "a=fingerprint:", "a=mid:q", "a=mid:r", "a=ice-ufrag", "a=ice-pwd:",
    "a=msid:st tr", "a=msid:a b c", "a=ssrc:5 cname:x", "a=ssrc:6 msid:st tr", "a=ssrc:x cname:y", "a=ssrc:7 ",
    "a=ssrc-group:FID 5 6", "a=ssrc-group:FID", "a=ssrc-group:FID 5 z",
]), max_size=4)


def _parsed_or_error(text: str) -> object:
    try:
        return parse_sdp(text)
    except SdpError as exc:
        return str(exc)


@settings(max_examples=300, deadline=None)
@given(sections=st.lists(st.tuples(st.sampled_from(["m=audio 9 UDP/TLS/RTP/SAVPF 111", "m=audio 0 RTP/AVP 0"]),
                                   _SECTION_LINES, _SECTION_LINES, _TRANSPORT_LINES, _TRANSPORT_LINES),
                         min_size=1, max_size=5),
       end=st.sampled_from(["\r\n", "\n", ""]))
def test_known_sections_change_no_result_and_no_error(
        sections: list[tuple[str, list[str], list[str], list[str], list[str]]], end: str) -> None:
    """A section another document already had (the same lines but its mid, ICE credentials and fingerprint) is
    reused with this document's own transport lines (core/wire/sdp_parse.py, known sections): the parse gives
    what reading every line gives, the same sections or the same error, whatever the transport lines are."""
    def document(which: int) -> str:
        lines = HEAD.rstrip("\r\n").split("\r\n")
        for m_line, before, after, *transport in sections:
            lines += [m_line, *before, *transport[which], *after]
        return "\r\n".join(lines) + end

    sdp_parse._KNOWN.clear()
    _parsed_or_error(document(0))  # the first client's document: its sections become known
    reusing = _parsed_or_error(document(1))
    sdp_parse._KNOWN.clear()
    assert _parsed_or_error(document(1)) == reusing


def test_a_browsers_next_offer_reuses_its_known_sections() -> None:
    """The web client's first offer as Chromium makes it, then another browser's (other credentials, fingerprint,
    SSRC): equal to its own parse from nothing, and its camera and slot sections came from the known ones."""
    first = (DATA / "offer_chromium_slots.sdp").read_text()
    old = parse_sdp(first)
    second = (first.replace(old.media[0].ice_ufrag or "", "Zz9+").replace(old.media[0].ice_pwd or "",
                                                                        "p" * 24)
              .replace(old.media[0].fingerprints[0].value, ":".join(["0F"] * 32))
              .replace(f"a=ssrc:{old.media[0].ssrcs[0].ssrc} ", "a=ssrc:4242 "))
    sdp_parse._KNOWN.clear()
    known = parse_sdp(first)
    reused = parse_sdp(second)
    camera = reused.media[1]
    assert camera.codecs is known.media[1].codecs and reused.media[2].codecs is known.media[2].codecs
    assert reused.media[0].codecs is known.media[0].codecs  # the microphone's too, with its own SSRC lines
    assert reused.media[0].ssrc_list() == (4242,) and known.media[0].ssrc_list() != (4242,)
    assert camera.ice_ufrag == "Zz9+" and camera.fingerprints[0].value == ":".join(["0F"] * 32)
    sdp_parse._KNOWN.clear()
    assert parse_sdp(second) == reused


def test_the_known_sections_keep_no_clients_credentials_or_ssrcs() -> None:
    sdp_parse._KNOWN.clear()
    parse_sdp((DATA / "offer_chromium_slots.sdp").read_text())
    assert sdp_parse._KNOWN
    for m in sdp_parse._KNOWN.values():
        assert (m.mid, m.ice_ufrag, m.ice_pwd, m.fingerprints, m.msids, m.ssrcs, m.ssrc_groups) == (
            None, None, None, (), (), (), ())
