"""MediaPlane without sockets: SDP answers and re-offers, routes, the forwarding rewrite, RTCP termination.

Peers are fakes that record what the plane sends, attached as the endpoint would on connection.
"""

from __future__ import annotations

import struct
from typing import Any

import pytest
from callsd.adapters.media import plane_rtcp, retransmit
from callsd.adapters.media.events import SendSignal, TrackPublished, TrackUnpublished, VoiceActivity
from callsd.adapters.media.plane import MediaPlane, PlaneConfig, SdpRejected
from callsd.core.calls.events import TrackKind
from callsd.core.calls.outputs import RouteAdded, RoutePaused, RouteRemoved, RouteResumed
from callsd.core.wire import rtcp
from callsd.core.wire.rtx import unwrap_rtx, wrap_rtx
from callsd.core.wire.sdp import Direction, parse_sdp

FP = "sha-256 " + ":".join(["AB"] * 32)
LEVEL = "urn:ietf:params:rtp-hdrext:ssrc-audio-level"
MID = "urn:ietf:params:rtp-hdrext:sdes:mid"
TWCC = "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01"


def offer(*sections: tuple[str, str, str, int], stream: str = "stream-1", ufrag: str = "cli1",
          level_id: int = 1, mid_id: int = 4, opus_pt: int = 111, vp8_pt: int = 96, rtx_ssrc: int = 0) -> str:
    """A browser-like offer; each section is (kind, mid, direction, ssrc); video sends RTX on ``rtx_ssrc``."""
    lines = ["v=0", "o=- 1 2 IN IP4 127.0.0.1", "s=-", "t=0 0",
             "a=group:BUNDLE " + " ".join(s[1] for s in sections), "a=msid-semantic: WMS *"]
    for kind, mid, direction, ssrc in sections:
        pts = f"{opus_pt} 0" if kind == "audio" else f"{vp8_pt} 97 102"
        lines += [f"m={kind} 9 UDP/TLS/RTP/SAVPF {pts}", "c=IN IP4 0.0.0.0", f"a=ice-ufrag:{ufrag}",
                  "a=ice-pwd:0123456789abcdef012345", f"a=fingerprint:{FP}", "a=setup:actpass", f"a=mid:{mid}",
                  f"a=extmap:{mid_id} {MID}", f"a=extmap:3 {TWCC}", f"a={direction}", "a=rtcp-mux"]
        if kind == "audio":
            lines += [f"a=extmap:{level_id} {LEVEL}", f"a=rtpmap:{opus_pt} opus/48000/2",
                      f"a=fmtp:{opus_pt} minptime=10;useinbandfec=1", "a=rtpmap:0 PCMU/8000"]
        else:
            lines += [f"a=rtpmap:{vp8_pt} VP8/90000", f"a=rtcp-fb:{vp8_pt} nack", f"a=rtcp-fb:{vp8_pt} nack pli",
                      f"a=rtcp-fb:{vp8_pt} transport-cc", "a=rtpmap:97 rtx/90000", f"a=fmtp:97 apt={vp8_pt}",
                      "a=rtpmap:102 H264/90000", "a=fmtp:102 packetization-mode=1;profile-level-id=42e01f"]
        if direction in ("sendrecv", "sendonly"):
            lines += [f"a=msid:{stream} track-{mid}"] + ([f"a=ssrc:{ssrc} cname:c"] if ssrc else [])  # 0: unsignalled
            if kind == "video" and rtx_ssrc:
                lines += [f"a=ssrc-group:FID {ssrc} {rtx_ssrc}", f"a=ssrc:{rtx_ssrc} cname:c"]
    return "\r\n".join(lines) + "\r\n"


def answer_to(server_offer: str, twcc: bool = False) -> str:
    """What a client answers: it accepts every section the server sends on, with the offered codecs and
    header extensions (transport-wide-cc only with ``twcc``, like Chromium; aiortc does not do it)."""
    sdp = parse_sdp(server_offer)
    lines = ["v=0", "o=- 1 3 IN IP4 127.0.0.1", "s=-", "t=0 0"]
    for m in sdp.media:
        direction = (m.direction or Direction.SENDRECV).reversed()
        pts = " ".join(str(c.payload_type) for c in m.codecs) or "0"
        lines += [f"m={m.kind} {m.port or 0} UDP/TLS/RTP/SAVPF {pts}", f"a=mid:{m.mid}", f"a={direction}",
                  "a=ice-ufrag:cli1", "a=ice-pwd:0123456789abcdef012345", f"a=fingerprint:{FP}", "a=setup:active"]
        lines += [f"a=extmap:{e.id} {e.uri}" for e in m.extmaps if twcc or e.uri != TWCC]
        for c in m.codecs:
            lines.append(f"a=rtpmap:{c.payload_type} {c.name}/{c.clock_rate}" + (f"/{c.channels}" if c.channels else ""))
    return "\r\n".join(lines) + "\r\n"


def extmap(m: object) -> dict[int, str]:
    return {e.id: e.uri for e in m.extmaps}  # type: ignore[attr-defined]


class FakePeer:
    def __init__(self, session_id: str) -> None:
        self.session_id = session_id
        self.rtp: list[bytes] = []
        self.rtcp: list[bytes] = []
        self.data: Any = None
        self.address: Any = ("127.0.0.1", 50000)
        self.twcc: Any = None  # the plane's transport-wide sequencer when the answer accepted transport-cc
        self.twcc_in: Any = None  # the plane's transport-cc feedback sender when the offer accepted transport-cc
        self.closed = False  # the endpoint closed it (what twcc_recv.FeedbackPeers reads)

    def send_rtp(self, plain: bytes) -> bool:
        self.rtp.append(plain if self.twcc is None else self.twcc.stamp(plain))
        return True

    def send_rtcp(self, plain: bytes) -> bool:
        self.rtcp.append(plain)
        return True


class Rig:
    def __init__(self, simulcast: bool = True, **config: Any) -> None:
        self.events: list[Any] = []
        self.simulcast = simulcast
        self.plane = MediaPlane(PlaneConfig(ice_port_udp=40000, **config), self.events.append)
        self.peers: dict[str, FakePeer] = {}

    def signals(self, sid: str, kind: str) -> list[str]:
        return [e.msg["sdp"] for e in self.events
                if isinstance(e, SendSignal) and e.session_id == sid and e.msg["type"] == kind]

    def join(self, sid: str, *sections: tuple[str, str, str, int], **kw: Any) -> FakePeer:
        self.plane.open_session(sid, "chan", self.simulcast)
        self.plane.handle_signal(sid, {"type": "offer", "sdp": offer(*sections, ufrag=f"u{sid}", **kw)})
        peer = FakePeer(sid)
        self.peers[sid] = peer
        self.plane.on_connected(peer)  # type: ignore[arg-type]
        return peer

    def route(self, track: str, pub: str, rcv: str, kind: TrackKind = TrackKind.AUDIO, paused: bool = False) -> None:
        self.plane.apply([RouteAdded(channel_id="chan", track_id=track, kind=kind, publisher_id=pub,
                                     receiver_id=rcv, paused=paused)])

    def accept(self, sid: str, twcc: bool = False) -> None:
        self.plane.handle_signal(sid, {"type": "answer", "sdp": answer_to(self.signals(sid, "offer")[-1], twcc)})


def rtp(seq: int, ts: int, ssrc: int, pt: int = 111, ext: bytes = b"", payload: bytes = b"\x01" * 40,
        marker: bool = False) -> bytes:
    b0 = 0x90 if ext else 0x80
    return struct.pack("!BBHII", b0, (0x80 if marker else 0) | pt, seq, ts, ssrc) + ext + payload


def level_ext(level: int, level_id: int = 1, mid_id: int = 4, mid: bytes = b"0") -> bytes:
    body = bytes([(level_id << 4) | 0, level]) + bytes([(mid_id << 4) | (len(mid) - 1)]) + mid
    body += b"\x00" * (-len(body) % 4)
    return b"\xbe\xde" + (len(body) // 4).to_bytes(2, "big") + body


def test_answer_is_ice_lite_with_host_candidate_and_filtered_codecs() -> None:
    rig = Rig(ice_host_override="203.0.113.7", ice_host_port_override=3478)
    rig.join("A", ("audio", "0", "sendrecv", 1111), ("video", "1", "sendrecv", 2222))
    [text] = rig.signals("A", "answer")
    assert "a=ice-lite" in text and "a=setup:passive" in text
    assert "a=candidate:1 1 udp 2130706431 203.0.113.7 3478 typ host" in text
    ans = parse_sdp(text)
    assert [(m.mid, m.direction) for m in ans.media] == [("0", "recvonly"), ("1", "recvonly")]
    assert [c.name for c in ans.media[0].codecs] == ["opus"]
    assert [c.name for c in ans.media[1].codecs] == ["VP8", "rtx"]  # RTX for video (ADR 0019)
    # transport-cc: the server sends publishers feedback (twcc_recv.py)
    assert ans.media[1].codecs[0].feedback == ("nack", "nack pli", "transport-cc")
    assert TWCC in extmap(ans.media[0]).values() and MID in extmap(ans.media[0]).values()
    fp = ans.media[0].fingerprints[0]
    assert f"{fp.algorithm} {fp.value}" == rig.plane.endpoint.fingerprint


def test_published_tracks_and_screen_kinds() -> None:
    rig = Rig()
    rig.plane.open_session("A", "chan")
    rig.plane.set_screen_stream("A", "screen-1")
    rig.plane.handle_signal("A", {"type": "offer", "sdp": offer(("video", "0", "sendonly", 5), stream="screen-1")})
    rig.plane.handle_signal("A", {"type": "offer", "sdp": offer(("video", "0", "sendonly", 5), stream="screen-1")
                                  .replace("a=group:BUNDLE 0", "a=group:BUNDLE 0 1")
                                  + offer(("audio", "1", "sendonly", 6), stream="cam").split("a=msid-semantic: WMS *\r\n")[1]})
    published = [e for e in rig.events if isinstance(e, TrackPublished)]
    assert [(e.track_id, e.kind) for e in published] == [("A_0", TrackKind.SCREEN_VIDEO), ("A_1", TrackKind.AUDIO)]


def test_recvonly_offer_publishes_nothing_and_stopping_a_track_unpublishes() -> None:
    rig = Rig()
    rig.join("A", ("audio", "0", "sendrecv", 1))
    assert [type(e).__name__ for e in rig.events].count("TrackPublished") == 1
    rig.plane.handle_signal("A", {"type": "offer", "sdp": offer(("audio", "0", "recvonly", 1), ufrag="uA")})
    assert any(isinstance(e, TrackUnpublished) and e.track_id == "A_0" for e in rig.events)
    assert "A_0" not in rig.plane.tracks


def test_bad_sdp_is_rejected() -> None:
    rig = Rig()
    rig.plane.open_session("A", "chan")
    with pytest.raises(SdpRejected):
        rig.plane.handle_signal("A", {"type": "offer", "sdp": "hello"})
    with pytest.raises(SdpRejected):
        rig.plane.handle_signal("A", {"type": "offer", "sdp": offer(("audio", "0", "sendrecv", 1)).replace(
            f"a=fingerprint:{FP}\r\n", "")})
    with pytest.raises(SdpRejected):
        rig.plane.handle_signal("nobody", {"type": "offer", "sdp": offer(("audio", "0", "sendrecv", 1))})
    with pytest.raises(SdpRejected):
        rig.plane.handle_signal("A", {"type": "answer", "sdp": offer(("audio", "0", "sendrecv", 1))})


def test_route_is_offered_then_forwards_with_rewritten_header_and_extensions() -> None:
    rig = Rig()
    rig.join("A", ("audio", "0", "sendrecv", 1111))  # A: level id 1, mid id 4, opus 111
    b = rig.join("B", ("audio", "0", "sendrecv", 2222), level_id=2, mid_id=1, opus_pt=109)
    rig.route("A_0", "A", "B")
    [text] = rig.signals("B", "offer")
    sec = parse_sdp(text).media[1]
    assert sec.direction == "sendonly" and sec.mid == "s1" and sec.msids[0].track_id == "A_0"
    assert sec.codecs[0].payload_type == 109 and extmap(sec) == {2: LEVEL, 1: MID, 3: TWCC}  # B's own numbering
    out_ssrc = sec.ssrc_list()[0]
    rig.plane.on_rtp(rig.peers["A"], rtp(100, 5000, 1111, ext=level_ext(20)))  # type: ignore[arg-type]
    assert b.rtp == []  # not forwarded before B's answer
    rig.accept("B")
    for i in range(3):
        rig.plane.on_rtp(rig.peers["A"], rtp(101 + i, 5960 + 960 * i, 1111, ext=level_ext(20)))  # type: ignore
    assert len(b.rtp) == 3
    b0, b1, seq0, ts0, ssrc = struct.unpack_from("!BBHII", b.rtp[0])
    assert ssrc == out_ssrc and b1 & 0x7F == 109
    seqs = [struct.unpack_from("!H", p, 2)[0] for p in b.rtp]
    tss = [struct.unpack_from("!I", p, 4)[0] for p in b.rtp]
    assert seqs == [seq0, (seq0 + 1) & 0xFFFF, (seq0 + 2) & 0xFFFF]
    assert [(t - ts0) & 0xFFFFFFFF for t in tss] == [0, 960, 1920]
    # the level is renumbered to B's id 2, the publisher's MID is dropped (B demultiplexes by SSRC)
    assert b.rtp[0][12:20] == b"\xbe\xde\x00\x01" + bytes([0x20, 20, 0, 0])
    assert b.rtp[0][20:] == b"\x01" * 40


def test_pause_drops_and_resume_continues_sequence_numbers() -> None:
    rig = Rig()
    rig.join("A", ("audio", "0", "sendrecv", 1))
    b = rig.join("B", ("audio", "0", "sendrecv", 2))
    rig.route("A_0", "A", "B")
    rig.accept("B")
    a = rig.peers["A"]
    for i in range(5):
        rig.plane.on_rtp(a, rtp(i, i * 960, 1))  # type: ignore[arg-type]
    rig.plane.apply([RoutePaused(channel_id="chan", track_id="A_0", publisher_id="A", receiver_id="B")])
    for i in range(5, 50):
        rig.plane.on_rtp(a, rtp(i, i * 960, 1))  # type: ignore[arg-type]
    assert len(b.rtp) == 5
    rig.plane.apply([RouteResumed(channel_id="chan", track_id="A_0", publisher_id="A", receiver_id="B")])
    for i in range(50, 53):
        rig.plane.on_rtp(a, rtp(i, i * 960, 1))  # type: ignore[arg-type]
    seqs = [struct.unpack_from("!H", p, 2)[0] for p in b.rtp]
    assert [(s - seqs[0]) & 0xFFFF for s in seqs] == list(range(8))
    ts = [struct.unpack_from("!I", p, 4)[0] for p in b.rtp]
    assert (ts[5] - ts[4]) & 0xFFFFFFFF == 46 * 960  # timestamps keep real time across the pause


def test_route_removed_turns_section_inactive_and_stops_packets() -> None:
    rig = Rig()
    rig.join("A", ("audio", "0", "sendrecv", 1))
    b = rig.join("B", ("audio", "0", "sendrecv", 2))
    rig.route("A_0", "A", "B")
    rig.accept("B")
    rig.plane.apply([RouteRemoved(channel_id="chan", track_id="A_0", publisher_id="A", receiver_id="B")])
    sec = parse_sdp(rig.signals("B", "offer")[-1]).media[1]
    assert sec.mid == "s1" and sec.direction == "inactive" and not sec.ssrcs
    rig.accept("B")
    rig.plane.on_rtp(rig.peers["A"], rtp(1, 1, 1))  # type: ignore[arg-type]
    assert b.rtp == []


def test_changes_during_an_outstanding_offer_wait_and_client_offer_in_glare_is_ignored() -> None:
    rig = Rig()
    rig.join("A", ("audio", "0", "sendrecv", 1))
    rig.join("C", ("audio", "0", "sendrecv", 3))
    rig.join("B", ("audio", "0", "sendrecv", 2))
    rig.route("A_0", "A", "B")
    rig.route("C_0", "C", "B")  # B has an offer outstanding: no second offer yet
    assert len(rig.signals("B", "offer")) == 1
    answers = len(rig.signals("B", "answer"))
    rig.plane.handle_signal("B", {"type": "offer", "sdp": offer(("audio", "0", "sendrecv", 2), ufrag="uB")})
    assert len(rig.signals("B", "answer")) == answers  # impolite server: the client rolls back
    assert rig.plane.counters["glare_ignored"] == 1
    rig.accept("B")
    assert [m.mid for m in parse_sdp(rig.signals("B", "offer")[-1]).media] == ["0", "s1", "s2"]


def test_route_added_before_first_offer_follows_the_answer() -> None:
    rig = Rig()
    rig.join("A", ("audio", "0", "sendrecv", 1))
    rig.plane.open_session("B", "chan")
    rig.route("A_0", "A", "B")
    assert rig.signals("B", "offer") == []
    rig.plane.handle_signal("B", {"type": "offer", "sdp": offer(("audio", "0", "sendrecv", 2), ufrag="uB",
                                                                 opus_pt=100)})
    assert [m.mid for m in parse_sdp(rig.signals("B", "answer")[0]).media] == ["0"]
    sec = parse_sdp(rig.signals("B", "offer")[0]).media[1]
    assert sec.codecs[0].payload_type == 100  # bound to B's numbering, learnt from its first offer


def test_close_session_reoffers_to_receivers() -> None:
    rig = Rig()
    rig.join("A", ("audio", "0", "sendrecv", 1))
    rig.join("B", ("audio", "0", "sendrecv", 2))
    rig.route("A_0", "A", "B")
    rig.accept("B")
    rig.plane.close_session("A")
    assert parse_sdp(rig.signals("B", "offer")[-1]).media[1].direction == "inactive"
    assert "A_0" not in rig.plane.tracks and "A" not in rig.plane.sessions
    rig.plane.apply([RouteRemoved(channel_id="chan", track_id="A_0", publisher_id="A", receiver_id="B")])


def video_rig() -> tuple[Rig, FakePeer, FakePeer, int]:
    rig = Rig()
    rig.join("A", ("video", "0", "sendrecv", 7))
    b = rig.join("B", ("audio", "0", "sendrecv", 2))
    rig.route("A_0", "A", "B", kind=TrackKind.VIDEO)
    rig.accept("B")
    out_ssrc = parse_sdp(rig.signals("B", "offer")[-1]).media[1].ssrc_list()[0]
    return rig, rig.peers["A"], b, out_ssrc


def plis(peer: FakePeer) -> list[rtcp.Pli]:
    return [x for p in peer.rtcp for x in rtcp.parse_rtcp(p) if isinstance(x, rtcp.Pli)]


def test_new_video_route_asks_for_one_keyframe_and_plis_are_rate_limited() -> None:
    rig, a, b, out_ssrc = video_rig()
    assert len(plis(a)) == 1 and plis(a)[0].media_ssrc == 7
    for _ in range(5):
        rig.plane.on_rtcp(b, rtcp.build_pli(sender_ssrc=99, media_ssrc=out_ssrc))  # type: ignore[arg-type]
    assert len(plis(a)) == 1
    track = rig.plane.tracks["A_0"]
    track.last_pli -= 1.5  # a second and a half later, the deferred request goes out
    rig.plane.forwarder.tick([track])
    assert len(plis(a)) == 2
    rig.plane.on_rtcp(b, rtcp.build_fir(sender_ssrc=99, media_ssrc=out_ssrc, seq=1))  # type: ignore[arg-type]
    assert rig.plane.counters["pli_in"] == 6


def test_nack_is_answered_from_cache_in_receiver_numbering_or_passed_on() -> None:
    rig, a, b, out_ssrc = video_rig()
    for i in range(10):
        rig.plane.on_rtp(a, rtp(1000 + i, 90000 + i * 3000, 7, pt=96, payload=bytes([i]) * 100))  # type: ignore
    sent = list(b.rtp)
    seq5 = struct.unpack_from("!H", sent[5], 2)[0]
    nack = rtcp.build_nack(sender_ssrc=99, media_ssrc=out_ssrc, lost=[seq5, (seq5 + 1) & 0xFFFF])
    rig.plane.on_rtcp(b, nack)  # type: ignore[arg-type]
    # B accepted RTX (ADR 0019): the answers come on the RTX stream the offer paired with the route (FID), with
    # the RTX payload type, consecutive RTX sequence numbers, and the original sequence number leading the payload
    section = parse_sdp(rig.signals("B", "offer")[-1]).media[1]
    rtx_ssrc = section.rtx_pairs()[out_ssrc]
    rtx_pt = next(c.payload_type for c in section.codecs if c.name == "rtx")
    answers = b.rtp[10:]
    assert [unwrap_rtx(p, ssrc=out_ssrc, payload_type=sent[5][1] & 0x7F) for p in answers] == [sent[5], sent[6]]
    assert {struct.unpack_from("!I", p, 8)[0] for p in answers} == {rtx_ssrc}
    assert {p[1] & 0x7F for p in answers} == {rtx_pt}
    s0, s1 = (struct.unpack_from("!H", p, 2)[0] for p in answers)
    assert s1 == (s0 + 1) & 0xFFFF and rig.plane.counters["rtx_out"] == 2
    rig.plane.on_rtcp(b, rtcp.build_nack(sender_ssrc=99, media_ssrc=out_ssrc, lost=[(seq5 + 100) & 0xFFFF]))  # type: ignore[arg-type]
    nacks = [x for p in a.rtcp for x in rtcp.parse_rtcp(p) if isinstance(x, rtcp.Nack)]
    assert len(nacks) == 1 and nacks[0].lost == (1105,) and nacks[0].media_ssrc == 7


def test_voice_activity_is_debounced() -> None:
    rig = Rig()
    a = rig.join("A", ("audio", "0", "sendrecv", 1))
    for i in range(10):
        rig.plane.on_rtp(a, rtp(i, i * 960, 1, ext=level_ext(30)))  # type: ignore[arg-type]
    assert not [e for e in rig.events if isinstance(e, VoiceActivity)]
    for i in range(10, 40):
        rig.plane.on_rtp(a, rtp(i, i * 960, 1, ext=level_ext(30)))  # type: ignore[arg-type]
    for i in range(40, 100):
        rig.plane.on_rtp(a, rtp(i, i * 960, 1, ext=level_ext(127)))  # type: ignore[arg-type]
    voice = [e.speaking for e in rig.events if isinstance(e, VoiceActivity)]
    assert voice == [True, False]


def test_reports_carry_sr_per_sent_stream_and_rr_per_published_stream() -> None:
    rig = Rig()
    a = rig.join("A", ("audio", "0", "sendrecv", 1))
    b = rig.join("B", ("audio", "0", "sendrecv", 2))
    rig.route("A_0", "A", "B")
    rig.accept("B")
    for i in list(range(10)) + list(range(12, 20)):  # two packets lost
        rig.plane.on_rtp(a, rtp(i, i * 960, 1))  # type: ignore[arg-type]
    rig.plane.send_reports()
    srs = [x for p in b.rtcp for x in rtcp.parse_rtcp(p) if isinstance(x, rtcp.SenderReport)]
    assert len(srs) == 1 and (srs[0].packet_count, srs[0].octet_count) == (18, 18 * 40)
    rrs = [x for p in a.rtcp for x in rtcp.parse_rtcp(p) if isinstance(x, rtcp.ReceiverReport)]
    block = rrs[0].reports[0]
    assert (block.ssrc, block.cumulative_lost, block.highest_seq) == (1, 2, 19)


def test_media_closed_ends_published_tracks_and_an_ice_restart_republishes() -> None:
    rig = Rig()
    a = rig.join("A", ("audio", "0", "sendrecv", 1))
    rig.join("B", ("audio", "0", "sendrecv", 2))
    rig.route("A_0", "A", "B")
    rig.accept("B")
    rig.plane.on_closed(a, "consent_expired")  # type: ignore[arg-type]
    assert "A_0" not in rig.plane.tracks
    assert parse_sdp(rig.signals("B", "offer")[-1]).media[1].direction == "inactive"
    assert any(type(e).__name__ == "SessionClosed" and e.reason == "consent_expired" for e in rig.events)
    rig.plane.handle_signal("A", {"type": "offer", "sdp": offer(("audio", "0", "sendrecv", 1), ufrag="restart")})
    published = [e.track_id for e in rig.events if isinstance(e, TrackPublished)]
    assert published.count("A_0") == 2


def test_restore_routes_adds_only_what_is_missing() -> None:
    rig = Rig()
    rig.join("A", ("audio", "0", "sendrecv", 1))
    rig.join("B", ("audio", "0", "sendrecv", 2))
    added = RouteAdded(channel_id="chan", track_id="A_0", kind=TrackKind.AUDIO, publisher_id="A",
                       receiver_id="B", paused=True)
    rig.plane.restore_routes([added])
    rig.plane.restore_routes([added])
    assert len(rig.signals("B", "offer")) == 1
    assert rig.plane.sessions["B"].routes_in["A_0"].paused


def test_padding_only_probes_are_not_forwarded_and_leave_no_gap() -> None:
    rig = Rig()
    rig.join("A", ("audio", "0", "sendrecv", 1))
    b = rig.join("B", ("audio", "0", "sendrecv", 2))
    rig.route("A_0", "A", "B")
    rig.accept("B")
    a = rig.peers["A"]
    rig.plane.on_rtp(a, rtp(10, 0, 1))  # type: ignore[arg-type]
    probe = bytearray(rtp(11, 0, 1, payload=b"\x00" * 99 + b"\x64"))
    probe[0] |= 0x20
    rig.plane.on_rtp(a, bytes(probe))  # type: ignore[arg-type]
    rig.plane.on_rtp(a, rtp(12, 960, 1))  # type: ignore[arg-type]
    assert len(b.rtp) == 2 and rig.plane.counters["drop_padding"] == 1
    s0, s1 = (struct.unpack_from("!H", p, 2)[0] for p in b.rtp)
    assert (s1 - s0) & 0xFFFF == 1


def test_a_reopened_session_gets_its_routes_back_only_through_restore_routes() -> None:
    rig = Rig()
    rig.join("A", ("audio", "0", "sendrecv", 1))
    rig.join("B", ("audio", "0", "sendrecv", 2))
    rig.route("A_0", "A", "B", paused=True)
    rig.accept("B")
    rig.plane.close_session("B")
    rig.plane.open_session("B", "chan")  # a new page took the session over: no routes carried over implicitly
    assert rig.plane.sessions["B"].routes_in == {}
    rig.plane.restore_routes([RouteAdded(channel_id="chan", track_id="A_0", kind=TrackKind.AUDIO, publisher_id="A",
                                         receiver_id="B", paused=True)])  # the server's one reconnect mechanism
    assert rig.plane.sessions["B"].routes_in["A_0"].paused
    before = len(rig.signals("B", "offer"))
    rig.plane.handle_signal("B", {"type": "offer", "sdp": offer(("audio", "0", "sendrecv", 9), ufrag="new")})
    assert len(rig.signals("B", "offer")) == before + 1
    assert parse_sdp(rig.signals("B", "offer")[-1]).media[1].msids[0].track_id == "A_0"


def test_unsignalled_ssrc_is_learnt_from_the_mid_extension() -> None:
    rig = Rig()
    rig.plane.open_session("A", "chan")
    text = offer(("audio", "0", "sendrecv", 4242), ufrag="uA").replace("a=ssrc:4242 cname:c\r\n", "")
    rig.plane.handle_signal("A", {"type": "offer", "sdp": text})
    a = FakePeer("A")
    rig.peers["A"] = a
    rig.plane.on_connected(a)  # type: ignore[arg-type]
    b = rig.join("B", ("audio", "0", "sendrecv", 2))
    rig.route("A_0", "A", "B")
    rig.accept("B")
    rig.plane.on_rtp(a, rtp(1, 0, 777, pt=111, ext=level_ext(10, mid=b"0")))  # type: ignore[arg-type]
    rig.plane.on_rtp(a, rtp(2, 960, 777, pt=111))  # type: ignore[arg-type]
    assert rig.plane.tracks["A_0"].ssrc == 777 and len(b.rtp) == 2


def test_a_section_the_client_rejects_is_not_offered_again() -> None:
    rig = Rig()
    rig.join("A", ("audio", "0", "sendrecv", 1))
    b = rig.join("B", ("audio", "0", "sendrecv", 2))
    rig.route("A_0", "A", "B")
    head, _, tail = answer_to(rig.signals("B", "offer")[-1]).rpartition("m=audio 40000 ")
    rejecting = head + "m=audio 0 " + tail  # the client rejects the server's section s1
    assert rejecting.count("m=audio 0 ") == 1
    rig.plane.handle_signal("B", {"type": "answer", "sdp": rejecting})
    assert len(rig.signals("B", "offer")) == 1  # no loop of offers for a track the client refuses
    rig.plane.on_rtp(rig.peers["A"], rtp(1, 0, 1))  # type: ignore[arg-type]
    assert b.rtp == []
    # a later route change offers what changed, still without the refused track
    rig.join("C", ("audio", "0", "sendrecv", 3))
    rig.route("C_0", "C", "B")
    last = parse_sdp(rig.signals("B", "offer")[-1])
    assert [(m.mid, m.port != 0) for m in last.media] == [("0", True), ("s1", False), ("s2", True)]
    assert last.media[2].msids[0].track_id == "C_0"


def test_a_stale_or_bad_answer_is_rejected_and_the_offer_repeated_on_the_next_change() -> None:
    rig = Rig()
    rig.join("A", ("audio", "0", "sendrecv", 1))
    rig.join("B", ("audio", "0", "sendrecv", 2))
    rig.route("A_0", "A", "B")
    with pytest.raises(SdpRejected, match="sections_mismatch"):
        rig.plane.handle_signal("B", {"type": "answer", "sdp": offer(("audio", "0", "recvonly", 2))})
    assert rig.plane.counters["sdp_rejected"] == 1 and not rig.plane.sessions["B"].offer_pending
    rig.join("C", ("audio", "0", "sendrecv", 3))
    rig.route("C_0", "C", "B")
    assert [m.mid for m in parse_sdp(rig.signals("B", "offer")[-1]).media] == ["0", "s1", "s2"]


def test_every_server_offer_names_the_publisher_of_each_section_it_sends() -> None:
    """Protocol 1.1: ``signal`` offers carry ``tracks: [{mid, session_id, kind, source}]`` for every sent section."""
    rig = Rig()
    rig.join("A", ("audio", "0", "sendrecv", 1), ("video", "1", "sendrecv", 11))
    rig.join("B", ("audio", "0", "sendrecv", 2))
    rig.route("A_0", "A", "B")
    rig.accept("B")
    rig.route("A_1", "A", "B", kind=TrackKind.VIDEO)
    offers = [e.msg for e in rig.events if isinstance(e, SendSignal) and e.session_id == "B"
              and e.msg["type"] == "offer"]
    last = offers[-1]
    mids = [m.mid for m in parse_sdp(last["sdp"]).media if m.direction is not None and m.direction.sends]
    assert sorted(t["mid"] for t in last["tracks"]) == sorted(mids)
    assert sorted((t["session_id"], t["kind"], t["source"]) for t in last["tracks"]) == [
        ("A", "audio", "microphone"), ("A", "video", "camera")]
    for msg in offers:
        assert {t["mid"] for t in msg["tracks"]} <= {m.mid for m in parse_sdp(msg["sdp"]).media}


def rtx_rig() -> tuple[Rig, FakePeer, FakePeer]:
    rig = Rig()
    rig.join("A", ("video", "0", "sendrecv", 7), rtx_ssrc=8)
    b = rig.join("B", ("audio", "0", "sendrecv", 2))
    rig.route("A_0", "A", "B", kind=TrackKind.VIDEO)
    rig.accept("B")
    return rig, rig.peers["A"], b


def test_a_publishers_rtx_packet_fills_the_hole_and_reaches_the_receiver() -> None:
    rig, a, b = rtx_rig()
    for seq in (1000, 1001, 1002, 1004):
        rig.plane.on_rtp(a, rtp(seq, 90000 + seq, 7, pt=96, payload=bytes([seq & 0xFF]) * 50))  # type: ignore
    assert len(b.rtp) == 4
    lost = rtp(1003, 90000 + 1003, 7, pt=96, payload=bytes([1003 & 0xFF]) * 50)
    rtx = wrap_rtx(lost, ssrc=8, seq=500, payload_type=97)
    assert rtx is not None
    rig.plane.on_rtp(a, rtx)  # type: ignore[arg-type]
    assert len(b.rtp) == 5 and b.rtp[4].endswith(bytes([1003 & 0xFF]) * 50)
    assert struct.unpack_from("!H", b.rtp[4], 2)[0] == (struct.unpack_from("!H", b.rtp[2], 2)[0] + 1) & 0xFFFF
    counters = rig.plane.counters
    assert counters["rtx_in"] == 1 and counters["drop_unknown_ssrc"] == 0
    probe = struct.pack("!BBHII", 0xA0, 97, 501, 0, 8) + bytes(99) + b"\x64"  # RTX padding probe: dropped
    rig.plane.on_rtp(a, probe)  # type: ignore[arg-type]
    assert len(b.rtp) == 5 and rig.plane.counters["drop_padding"] == 1


def test_holes_in_a_publishers_stream_are_nacked_at_most_three_times() -> None:
    rig, a, b = rtx_rig()
    for seq in [*range(1000, 1004), *range(1006, 1012)]:
        rig.plane.on_rtp(a, rtp(seq, 90000 + seq, 7, pt=96))  # type: ignore[arg-type]
    track = rig.plane.tracks["A_0"]

    def nacks() -> list[tuple[int, ...]]:
        return [x.lost for p in a.rtcp for x in rtcp.parse_rtcp(p) if isinstance(x, rtcp.Nack)]

    for _ in range(5):
        retransmit.nack_round(rig.plane.forwarder, [track], plane_rtcp.send_nack)
    assert nacks() == [(1004, 1005)] * 3 and rig.plane.counters["nack_out"] == 3
    rig.plane.on_rtp(a, wrap_rtx(rtp(1004, 91004, 7, pt=96), ssrc=8, seq=1, payload_type=97))  # type: ignore
    assert retransmit.holes_to_nack(track) == [] and set(track.nacked) == {1005}


def test_a_publisher_without_rtx_is_not_nacked_by_the_server() -> None:
    rig, a, b, _ = video_rig()
    for seq in (1000, 1001, 1005, 1006, 1007, 1008):
        rig.plane.on_rtp(a, rtp(seq, 90000 + seq, 7, pt=96))  # type: ignore[arg-type]
    assert retransmit.holes_to_nack(rig.plane.tracks["A_0"]) == []


def test_a_receivers_remb_and_report_loss_drive_its_estimate() -> None:
    rig, a, b, out_ssrc = video_rig()
    estimates = rig.plane.estimates
    assert estimates.estimate("B") is None
    remb = rtcp.Feedback(packet_type=206, fmt=15, sender_ssrc=99, media_ssrc=0,
                         fci=b"REMB" + bytes([1]) + (2 << 18 | 150_000 >> 2).to_bytes(3, "big") + out_ssrc.to_bytes(4, "big"))
    rig.plane.on_rtcp(b, rtcp.build_rtcp([remb]))  # type: ignore[arg-type]
    assert estimates.estimate("B") == 150_000 and rig.plane.counters["remb_in"] == 1
    report = rtcp.build_rr(ssrc=99, reports=[rtcp.ReportBlock(ssrc=out_ssrc, fraction_lost=0)])
    for _ in range(3):
        rig.plane.on_rtcp(b, report)  # type: ignore[arg-type]
    assert estimates.estimate("B") == 150_000  # loss-free reports raise the loss-based rate, REMB still caps it
    lossy = rtcp.build_rr(ssrc=99, reports=[rtcp.ReportBlock(ssrc=out_ssrc, fraction_lost=128)])  # 50 %
    for _ in range(8):
        rig.plane.on_rtcp(b, lossy)  # type: ignore[arg-type]
    estimate = estimates.estimate("B")
    assert estimate is not None and estimate < 150_000 and rig.plane.counters["loss_reports"] == 11
    rig.plane.close_session("B")
    assert estimates.estimate("B") is None


def test_an_rtx_probe_carrying_the_mid_does_not_bind_the_media_ssrc() -> None:
    """A publisher that signals no SSRC (simulcast-style offers) may probe on its RTX stream first, with the MID."""
    rig = Rig()
    a = rig.join("A", ("video", "0", "sendrecv", 0))
    track = rig.plane.tracks["A_0"]
    assert track.ssrc is None
    mid = b"\xbe\xde\x00\x01" + bytes([4 << 4, ord("0")]) + b"\x00\x00"
    rig.plane.on_rtp(a, rtp(1, 0, 555, pt=97, ext=mid, payload=b"\x00\x01" + bytes(20)))  # type: ignore[arg-type]
    assert track.ssrc is None
    rig.plane.on_rtp(a, rtp(1, 0, 777, pt=96, ext=mid))  # type: ignore[arg-type]
    assert track.ssrc == 777
