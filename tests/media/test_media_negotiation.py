"""Offer/answer negotiation (core/wire/negotiation.py): against recorded offers and a live aiortc peer.

The proof that answers and server offers are valid is that aiortc accepts them (``setRemoteDescription``) and
answers; the Chromium proof is in test_media_negotiation_browser.py.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from callsd.core.errors import LocalProtocolError
from callsd.core.wire.negotiation import (
    AUDIO_LEVEL_URI,
    MID_URI,
    TWCC_URI,
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
    SdpRejectReason,
)
from callsd.core.wire.sdp import Codec, Direction, parse_sdp

DATA = Path(__file__).resolve().parent / "data"
CHROMIUM = (DATA / "offer_chromium.sdp").read_text()
AIORTC = (DATA / "offer_aiortc.sdp").read_text()
FP = "sha-256 " + ":".join(["AB"] * 32)
TRANSPORT = LocalTransport(ice_ufrag="srvu", ice_pwd="serverpassword0123456789", fingerprint=FP,
                           host="127.0.0.1", port=9)
OPUS = Codec(payload_type=111, name="opus", clock_rate=48000, channels=2, fmtp="minptime=10;useinbandfec=1")
VP8 = Codec(payload_type=96, name="VP8", clock_rate=90000)


def negotiator() -> Negotiator:
    return Negotiator(transport=TRANSPORT, session_id=4242)


def answered(result: object) -> OfferAnswered:
    assert isinstance(result, OfferAnswered), result
    return result


def test_answer_to_chromium_offer_publishes_its_tracks() -> None:
    n = negotiator()
    r = answered(n.handle_offer(CHROMIUM))
    assert n.state is NegotiationState.STABLE
    assert r.remote.dtls_role == "server" and r.remote.ice_ufrag == "/7cD" and r.remote.fingerprint.startswith("sha-256 ")
    audio, video = r.published
    assert (audio.kind, audio.mid, audio.payload_type, audio.codec.name) == ("audio", "0", 111, "opus")
    assert audio.extension_id(AUDIO_LEVEL_URI) == 1 and audio.extension_id(MID_URI) == 4
    # RTX is accepted for video (ADR 0019): the RTX payload type whose apt is the chosen codec, the FID SSRC
    assert (video.kind, video.payload_type, video.rtx_payload_type, video.codec.name) == ("video", 96, 97, "VP8")
    assert video.rtx_ssrc == 2067119197 and video.ssrcs and 2067119197 not in video.ssrcs
    assert audio.stream_id == video.stream_id and audio.track_id != video.track_id and audio.cname
    d = parse_sdp(r.answer)
    assert d.ice_lite and d.bundle() == ("0", "1")
    for m in d.media:
        assert m.setup == "passive" and m.direction is Direction.RECVONLY and m.rtcp_mux
        assert m.candidates[0].address == "127.0.0.1" and m.ice_ufrag == "srvu"
    a, v = d.media
    assert [c.name for c in a.codecs] == ["opus"] and a.codecs[0].params["useinbandfec"] == "1"
    # transport-cc feedback and the transport-wide-cc extension (the server sends publishers transport-cc
    # feedback, twcc_recv.py), no goog-remb (it sends them no REMB); the RTX codec of VP8 only (apt=96)
    assert [c.name for c in v.codecs] == ["VP8", "rtx"] and v.codecs[1].params == {"apt": "96"}
    assert set(v.codecs[0].feedback) == {"ccm fir", "nack", "nack pli", "transport-cc"}
    assert a.codecs[0].feedback == ("transport-cc",)
    assert {e.uri for e in v.extmaps} <= {MID_URI, "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time",
                                          "urn:ietf:params:rtp-hdrext:toffset", "urn:3gpp:video-orientation",
                                          TWCC_URI}
    assert TWCC_URI in {e.uri for e in v.extmaps}
    assert {e.uri for e in a.extmaps} == {AUDIO_LEVEL_URI, MID_URI, TWCC_URI}
    assert "rtx" not in r.answer.split("m=video")[0] and r.answer.count("rtx/90000") == 1
    assert "goog-remb" not in r.answer


def test_h264_is_chosen_when_vp8_is_not_offered() -> None:
    lines = [ln for ln in CHROMIUM.splitlines() if not ln.startswith(("a=rtpmap:96 ", "a=rtcp-fb:96 "))]
    text = "\r\n".join(ln.replace(" 96 97 102", " 97 102") for ln in lines if "apt=96" not in ln) + "\r\n"
    text = text.replace("a=rtpmap:97 rtx/90000\r\n", "").replace("m=video 9 UDP/TLS/RTP/SAVPF 97 ", "m=video 9 UDP/TLS/RTP/SAVPF ")
    r = answered(negotiator().handle_offer(text))
    video = r.published[1]
    assert video.codec.name == "H264" and video.codec.params["profile-level-id"] == "42e01f"
    assert video.codec.params["packetization-mode"] == "1"
    assert video.rtx_payload_type == 109  # the RTX of the chosen H264 (a=fmtp:109 apt=108)


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda t: "garbage", SdpRejectReason.MALFORMED),
        (lambda t: t.replace("a=fingerprint:", "a=x-fingerprint:"), SdpRejectReason.NO_FINGERPRINT),
        (lambda t: t.replace("a=ice-ufrag:", "a=x-ice-ufrag:"), SdpRejectReason.NO_ICE_CREDENTIALS),
        (lambda t: t.replace("a=rtcp-mux\n", ""), SdpRejectReason.NO_MEDIA),
        (lambda t: t.replace("a=setup:actpass", "a=setup:holdconn"), SdpRejectReason.NO_SETUP),
    ],
)
def test_a_bad_offer_is_a_typed_rejection(mutate: Any, reason: SdpRejectReason) -> None:
    n = negotiator()
    r = n.handle_offer(mutate(CHROMIUM))
    assert isinstance(r, OfferRejected) and r.reason is reason and r.detail
    assert n.state is NegotiationState.NEW


def test_offer_before_first_answer_is_local_misuse_and_stray_answer_is_rejected() -> None:
    n = negotiator()
    with pytest.raises(LocalProtocolError):
        n.make_offer([])
    n.handle_offer(CHROMIUM)
    r = n.handle_answer(CHROMIUM)
    assert isinstance(r, AnswerRejected) and r.reason is SdpRejectReason.NO_PENDING_OFFER


def out_track(name: str, kind: str, ssrc: int) -> OutgoingTrack:
    codec = OPUS if kind == "audio" else VP8
    return OutgoingTrack(track_id=f"t-{name}-{kind}", stream_id=f"s-{name}", kind=kind, ssrc=ssrc, codec=codec,
                         rtx_ssrc=ssrc + 1 if kind == "video" else None, cname=f"c-{name}")


def test_server_offer_adds_sendonly_sections_and_never_reuses_them() -> None:
    n = negotiator()
    n.handle_offer(CHROMIUM)
    made = n.make_offer([out_track("bob", "audio", 1000), out_track("bob", "video", 2000)])
    assert isinstance(made, OfferMade) and n.state is NegotiationState.HAVE_LOCAL_OFFER
    assert n.make_offer() is None  # already pending
    d = parse_sdp(made.offer)
    assert [m.mid for m in d.media] == ["0", "1", "s1", "s2"] and d.bundle() == ("0", "1", "s1", "s2")
    a, v = d.media[2], d.media[3]
    assert a.direction is Direction.SENDONLY and a.msids[0].track_id == "t-bob-audio" and a.ssrc_list() == (1000,)
    assert a.codecs[0].payload_type == 111  # the client's own PT for Opus
    # an OutgoingTrack with an rtx_ssrc is offered with RTX; the client never negotiated RTX, so a free PT is used
    assert v.rtx_pairs() == {2000: 2001} and [c.name for c in v.codecs] == ["VP8", "rtx"]
    # video asks the receiver for REMB (its receive-side estimate feeds the server's, ADR 0019) and both kinds for
    # transport-cc, with the transport-wide-cc extension under Chromium's usual id (the server stamps it)
    assert set(v.codecs[0].feedback) == {"nack", "nack pli", "ccm fir", "goog-remb", "transport-cc"}
    assert a.codecs[0].feedback == ("transport-cc",)
    assert a.extension_id(TWCC_URI) == v.extension_id(TWCC_URI) == 3
    assert v.extension_id(MID_URI) == 4  # the client's id for the mid extension
    # the client answers recvonly (mirror the offer with directions reversed)
    applied = n.handle_answer(mirror(made.offer))
    assert isinstance(applied, AnswerApplied) and n.state is NegotiationState.STABLE
    rtx_pt = v.codecs[1].payload_type
    assert {(t.track_id, t.payload_type, t.rtx_payload_type) for t in applied.sending} == {
        ("t-bob-audio", 111, None), ("t-bob-video", 96, rtx_pt)}
    assert n.make_offer() is None  # nothing changed
    removed = n.make_offer([out_track("bob", "video", 2000)])
    assert isinstance(removed, OfferMade)
    assert parse_sdp(removed.offer).media[2].direction is Direction.INACTIVE
    n.handle_answer(mirror(removed.offer))
    carol = n.make_offer([out_track("bob", "video", 2000), out_track("carol", "audio", 3000)])
    assert isinstance(carol, OfferMade)
    d = parse_sdp(carol.offer)
    assert [m.mid for m in d.media] == ["0", "1", "s1", "s2", "s3"]
    assert d.media[2].direction is Direction.INACTIVE and d.media[4].msids[0].stream_id == "s-carol"


def mirror(offer: str) -> str:
    """A minimal client answer: same sections, directions reversed, the server's codecs echoed."""
    out = []
    for line in offer.splitlines():
        for a, b in (("a=sendonly", "a=recvonly"), ("a=setup:passive", "a=setup:active"), ("a=ice-lite", None)):
            if line == a:
                line = b  # type: ignore[assignment]
        if line is None or line.startswith(("a=ssrc", "a=msid:", "a=candidate")):
            continue
        out.append(line.replace("srvu", "cliu"))
    return "\r\n".join(out) + "\r\n"


def test_glare_server_is_impolite_and_ignores_the_crossing_client_offer() -> None:
    n = negotiator()
    n.handle_offer(CHROMIUM)
    first = n.make_offer([out_track("bob", "audio", 1000)])
    assert isinstance(first, OfferMade)
    # the client re-offers (e.g. it starts a screen share) before answering: same sections plus a new one
    reoffer = CHROMIUM.replace("a=group:BUNDLE 0 1", "a=group:BUNDLE 0 1 2") + video_section("2", "screen")
    ignored = n.handle_offer(reoffer)
    assert ignored == OfferIgnored(reason="glare")
    assert n.state is NegotiationState.HAVE_LOCAL_OFFER and len(n.published) == 2  # nothing changed
    # the client (polite) rolls back, answers the server's offer, then offers again on top of it
    applied = n.handle_answer(mirror(first.offer))
    assert isinstance(applied, AnswerApplied) and [t.track_id for t in applied.sending] == ["t-bob-audio"]
    again = CHROMIUM.replace("a=group:BUNDLE 0 1", "a=group:BUNDLE 0 1 s1 2") + mirror_section(first.offer, "s1") \
        + video_section("2", "screen")
    r = answered(n.handle_offer(again))
    # (mirror() answered sections 0 and 1 without their SSRCs, so those two are re-published too)
    assert [p.track_id for p in r.published][-1] == "t-screen"
    assert [m.mid for m in parse_sdp(r.answer).media] == ["0", "1", "s1", "2"]
    assert [t.track_id for t in r.sending] == ["t-bob-audio"] and n.make_offer() is None


def mirror_section(offer: str, mid: str) -> str:
    """The client's re-offer of a server section: the server's section with the direction reversed."""
    text = mirror(offer)
    start = text.rindex("m=", 0, text.index(f"a=mid:{mid}"))
    end = text.find("m=", start + 2)
    return text[start : end if end >= 0 else len(text)]


def video_section(mid: str, name: str) -> str:
    video = CHROMIUM[CHROMIUM.index("m=video") :]
    video = video.replace("a=mid:1", f"a=mid:{mid}").replace("a=sendrecv", "a=sendonly")
    video = video.replace("215076bb-db32-4194-9d5a-a884a8a70cf3", f"t-{name}")
    return video.replace("2123697578", "55").replace("2067119197", "56")


def test_client_stops_publishing_and_rejects_a_section() -> None:
    n = negotiator()
    n.handle_offer(CHROMIUM)
    video_id = n.published[1].track_id
    second = CHROMIUM.replace("m=video 9 ", "m=video 0 ")
    r = answered(n.handle_offer(second))
    assert r.unpublished == (video_id,) and r.published == ()
    assert parse_sdp(r.answer).media[1].port == 0 and parse_sdp(r.answer).bundle() == ("0",)
    third = CHROMIUM.replace("m=video 9 ", "m=video 0 ").replace("a=sendrecv", "a=recvonly", 1)
    r3 = answered(n.handle_offer(third))
    assert len(r3.unpublished) == 1 and not n.published


# --- aiortc acceptance --------------------------------------------------------------------------------------


async def _aiortc_round_trip() -> dict[str, Any]:
    from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
    from aiortc.mediastreams import AudioStreamTrack, VideoStreamTrack

    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    got: list[tuple[str, str]] = []
    pc.on("track", lambda track: got.append((track.kind, track.id)))
    try:
        pc.addTrack(AudioStreamTrack())
        pc.addTrack(VideoStreamTrack())
        await pc.setLocalDescription(await pc.createOffer())
        n = negotiator()
        r = answered(n.handle_offer(pc.localDescription.sdp))
        await pc.setRemoteDescription(RTCSessionDescription(sdp=r.answer, type="answer"))
        made = n.make_offer([out_track("bob", "audio", 1000), out_track("bob", "video", 2000)])
        assert isinstance(made, OfferMade)
        await pc.setRemoteDescription(RTCSessionDescription(sdp=made.offer, type="offer"))
        await pc.setLocalDescription(await pc.createAnswer())
        applied = n.handle_answer(pc.localDescription.sdp)
        return {"published": r.published, "applied": applied, "tracks": got,
                "directions": [t.currentDirection for t in pc.getTransceivers()]}
    finally:
        await pc.close()


def test_aiortc_accepts_the_answer_and_the_server_offer(monkeypatch: pytest.MonkeyPatch) -> None:
    import aioice.ice

    monkeypatch.setattr(aioice.ice, "get_host_addresses", lambda use_ipv4, use_ipv6: ["127.0.0.1"])
    out = asyncio.run(asyncio.wait_for(_aiortc_round_trip(), 30))
    assert [p.kind for p in out["published"]] == ["audio", "video"]
    applied = out["applied"]
    assert isinstance(applied, AnswerApplied), applied
    assert sorted(t.track_id for t in applied.sending) == ["t-bob-audio", "t-bob-video"]
    assert sorted(kind for kind, _ in out["tracks"]) == ["audio", "video"]
    assert out["directions"] == ["sendonly", "sendonly", "recvonly", "recvonly"]


async def _aiortc_reoffers() -> dict[str, Any]:
    from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
    from aiortc.mediastreams import AudioStreamTrack, VideoStreamTrack

    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        pc.addTransceiver(AudioStreamTrack(), direction="sendonly")
        await pc.setLocalDescription(await pc.createOffer())
        n = negotiator()
        r = answered(n.handle_offer(pc.localDescription.sdp))
        await pc.setRemoteDescription(RTCSessionDescription(sdp=r.answer, type="answer"))
        made = n.make_offer([out_track("bob", "video", 2000)])
        assert isinstance(made, OfferMade)
        await pc.setRemoteDescription(RTCSessionDescription(sdp=made.offer, type="offer"))
        await pc.setLocalDescription(await pc.createAnswer())
        assert isinstance(n.handle_answer(pc.localDescription.sdp), AnswerApplied)
        # a screen share on a new sendonly transceiver, then a camera through addTrack, which makes aiortc reuse
        # the server's recvonly video transceiver (its section becomes sendrecv)
        pc.addTransceiver(VideoStreamTrack(), direction="sendonly")
        await pc.setLocalDescription(await pc.createOffer())
        screen = answered(n.handle_offer(pc.localDescription.sdp))
        await pc.setRemoteDescription(RTCSessionDescription(sdp=screen.answer, type="answer"))
        pc.addTrack(VideoStreamTrack())
        await pc.setLocalDescription(await pc.createOffer())
        camera = answered(n.handle_offer(pc.localDescription.sdp))
        await pc.setRemoteDescription(RTCSessionDescription(sdp=camera.answer, type="answer"))
        return {"screen": screen, "camera": camera, "sending": n.sending,
                "directions": [t.currentDirection for t in pc.getTransceivers()]}
    finally:
        await pc.close()


def test_aiortc_reoffers_for_screen_share_and_a_reused_transceiver(monkeypatch: pytest.MonkeyPatch) -> None:
    import aioice.ice

    monkeypatch.setattr(aioice.ice, "get_host_addresses", lambda use_ipv4, use_ipv6: ["127.0.0.1"])
    out = asyncio.run(asyncio.wait_for(_aiortc_reoffers(), 30))
    # aiortc numbers its new transceiver "1" (the server's section is "s1"); addTrack then reuses "s1"
    assert [(p.kind, p.mid) for p in out["screen"].published] == [("video", "1")]
    assert [(p.kind, p.mid) for p in out["camera"].published] == [("video", "s1")]
    assert [t.track_id for t in out["sending"]] == ["t-bob-video"]
    assert out["directions"] == ["sendonly", "sendrecv", "sendonly"]


def test_a_recycled_position_unpublishes_the_old_track() -> None:
    n = negotiator()
    n.handle_offer(CHROMIUM)
    old_video = n.published[1].track_id
    recycled = CHROMIUM.replace("a=mid:1", "a=mid:7").replace("a=group:BUNDLE 0 1", "a=group:BUNDLE 0 7")
    recycled = recycled.replace("m=video 9 ", "m=video 0 ")
    r = answered(n.handle_offer(recycled))
    assert r.unpublished == (old_video,)
    assert [m.mid for m in parse_sdp(r.answer).media] == ["0", "7"]


def test_an_ipv6_host_is_described_as_ip6() -> None:
    n = Negotiator(transport=LocalTransport(ice_ufrag="srvu", ice_pwd="serverpassword0123456789", fingerprint=FP,
                                            host="::1", port=9), session_id=1)
    d = parse_sdp(answered(n.handle_offer(CHROMIUM)).answer)
    assert d.origin.addrtype == "IP6" and d.media[0].connection == "IN IP6 ::1"
    assert d.media[0].candidates[0].address == "::1"


def test_a_codec_the_client_offered_but_was_not_chosen_keeps_the_clients_payload_type() -> None:
    n = negotiator()
    n.handle_offer(CHROMIUM)  # VP8 is chosen; H264 42e01f is PT 108 in this browser's numbering
    h264 = Codec(payload_type=120, name="H264", clock_rate=90000,
                 fmtp="packetization-mode=1;profile-level-id=42e01f")
    made = n.make_offer([OutgoingTrack(track_id="t", stream_id="s", kind="video", ssrc=5, codec=h264)])
    assert isinstance(made, OfferMade)
    (codec,) = parse_sdp(made.offer).media[2].codecs
    assert (codec.name, codec.payload_type) == ("H264", 108)
    assert set(codec.feedback) <= {"nack", "nack pli", "ccm fir", "goog-remb", "transport-cc"}
    assert "nack" in codec.feedback
    # a codec the client never offered takes a PT that means nothing else to it
    av1 = Codec(payload_type=96, name="AV1X", clock_rate=90000)
    made2 = n.make_offer([OutgoingTrack(track_id="t", stream_id="s", kind="video", ssrc=5, codec=h264),
                          OutgoingTrack(track_id="u", stream_id="s", kind="video", ssrc=6, codec=av1)])
    assert made2 is None  # the first offer is still pending
    n.handle_answer(mirror(made.offer))
    made3 = n.make_offer()
    assert isinstance(made3, OfferMade)
    pt = parse_sdp(made3.offer).media[3].codecs[0].payload_type
    client_pts = {int(x.split()[0].split(":")[1]) for x in CHROMIUM.splitlines() if x.startswith("a=rtpmap:")}
    assert pt not in client_pts


# --- header extension ids: one URI per id for the whole session (BUNDLE) -------------------------------------

TOFFSET = "urn:ietf:params:rtp-hdrext:toffset"
ORIENTATION = "urn:3gpp:video-orientation"
ABS_SEND_TIME = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"
# the recorded Chromium offer with only its audio section (a browser that publishes its microphone, no camera yet)
CHROMIUM_AUDIO_ONLY = CHROMIUM[: CHROMIUM.index("m=video")].replace("a=group:BUNDLE 0 1", "a=group:BUNDLE 0")


def client_ids(*offers: str) -> dict[int, str]:
    """id -> URI as the client numbered its header extensions, over every section of these descriptions."""
    out: dict[int, str] = {}
    for text in offers:
        for m in parse_sdp(text).media:
            for e in m.extmaps:
                assert out.setdefault(e.id, e.uri) == e.uri, f"the client itself maps id {e.id} to two URIs"
    return out


def server_ids(text: str) -> dict[int, str]:
    out: dict[int, str] = {}
    for m in parse_sdp(text).media:
        for e in m.extmaps:
            assert out.setdefault(e.id, e.uri) == e.uri, f"id {e.id} means two URIs in one bundle"
    return out


def test_a_server_video_offer_to_an_audio_only_chromium_keeps_its_extension_ids() -> None:
    n = negotiator()
    answered(n.handle_offer(CHROMIUM_AUDIO_ONLY))
    made = n.make_offer([out_track("bob", "video", 2000)])  # another participant's camera
    assert isinstance(made, OfferMade)
    offered = server_ids(made.offer)
    # the audio section numbered transport-cc 3 (not negotiated, still taken); nothing else may take it, and the
    # server's own sections offer transport-cc under that same id
    mine = client_ids(CHROMIUM_AUDIO_ONLY)
    assert {i: u for i, u in offered.items() if mine.get(i, u) != u} == {}
    # new URIs take Chromium's usual ids, so its next offer with a camera (numbered as in the recorded offer:
    # playout-delay 5, video-content-type 6, ...) cannot collide either
    video = {e.uri: e.id for e in parse_sdp(made.offer).media[1].extmaps}
    assert video == {MID_URI: 4, ABS_SEND_TIME: 2, TOFFSET: 14, ORIENTATION: 13, TWCC_URI: 3}
    full = client_ids(CHROMIUM)
    assert {i: u for i, u in offered.items() if full.get(i, u) != u} == {}


def test_extension_ids_the_client_used_are_never_given_to_another_uri() -> None:
    # a client (not Chromium) that numbers toffset's and video orientation's usual ids for other URIs, in a video
    # section it has rejected, and keeps abs-send-time under its own id
    video = (CHROMIUM[CHROMIUM.index("m=video"):].replace("m=video 9 ", "m=video 0 ")
             .replace("a=extmap:14 urn:ietf:params:rtp-hdrext:toffset", "a=extmap:14 urn:example:fourteen")
             .replace("a=extmap:13 urn:3gpp:video-orientation", "a=extmap:13 urn:example:thirteen")
             .replace("a=extmap:2 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time",
                      "a=extmap:9 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"))
    audio = "".join(line for line in CHROMIUM[: CHROMIUM.index("m=video")].splitlines(keepends=True)
                    if not line.startswith("a=extmap:2 "))
    offer = audio + video
    n = negotiator()
    answered(n.handle_offer(offer))
    made = n.make_offer([out_track("bob", "video", 2000)])
    assert isinstance(made, OfferMade)
    offered = server_ids(made.offer)
    mine = client_ids(offer)
    assert {i: u for i, u in offered.items() if mine.get(i, u) != u} == {}
    ids = {u: i for i, u in offered.items()}
    assert ids[ABS_SEND_TIME] == 9 and ids[MID_URI] == 4
    assert ids[TOFFSET] not in mine and ids[ORIENTATION] not in mine


def test_extension_ids_from_the_clients_answer_are_kept_for_the_session() -> None:
    n = negotiator()
    answered(n.handle_offer(CHROMIUM_AUDIO_ONLY))
    first = n.make_offer([out_track("bob", "video", 2000)])
    assert isinstance(first, OfferMade)
    # the client answers with toffset under another id: later offers follow the client's numbering
    answer = mirror(first.offer).replace("a=extmap:14 urn:ietf:params:rtp-hdrext:toffset",
                                         "a=extmap:12 urn:ietf:params:rtp-hdrext:toffset")
    assert isinstance(n.handle_answer(answer), AnswerApplied)
    second = n.make_offer([out_track("bob", "video", 2000), out_track("carol", "video", 3000)])
    assert isinstance(second, OfferMade)
    offered = server_ids(second.offer)
    assert {u: i for i, u in offered.items()}[TOFFSET] == 12
    assert {i: u for i, u in offered.items() if client_ids(CHROMIUM_AUDIO_ONLY, answer).get(i, u) != u} == {}


def test_a_reoffer_rewrites_unchanged_sections_with_the_current_transport_and_version() -> None:
    """Sections that did not change are reused between offers, yet what they describe stays current: a new
    server port (the plane learns it once serving) reaches every section, and the o= version still grows."""
    n = negotiator()
    n.handle_offer(CHROMIUM)
    first = n.make_offer([out_track("bob", "audio", 1000)])
    assert isinstance(first, OfferMade)
    n.handle_answer(mirror(first.offer))
    n.transport = LocalTransport(ice_ufrag="srvu", ice_pwd="serverpassword0123456789", fingerprint=FP,
                                 host="127.0.0.1", port=5004)
    second = n.make_offer([out_track("bob", "audio", 1000), out_track("carol", "audio", 3000)])
    assert isinstance(second, OfferMade)
    d1, d2 = parse_sdp(first.offer), parse_sdp(second.offer)
    assert {m.port for m in d1.media} == {9} and {m.port for m in d2.media} == {5004}
    assert d2.origin.session_version > d1.origin.session_version
    assert [m.mid for m in d2.media] == ["0", "1", "s1", "s2"]
    n.handle_answer(mirror(second.offer))
    third = n.make_offer([out_track("carol", "audio", 3000)])
    assert isinstance(third, OfferMade)
    d3 = parse_sdp(third.offer)
    assert d3.media[2].direction is Direction.INACTIVE and d3.media[3] == d2.media[3]
