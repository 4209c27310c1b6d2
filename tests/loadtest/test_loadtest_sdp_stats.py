"""The load client's SDP and statistics: offers the server's own SDP codec accepts, answers to re-offers, loss and
jitter as RFC 3550 defines them, percentiles."""

from __future__ import annotations

import pytest
from callsd.app.loadtest.sdp import LocalTrack, build_answer, build_offer, parse_sdp
from callsd.core.wire import sdp as core_sdp
from callsd.peer.stats import Histogram, StreamStats, percentile, summarize

FP = "sha-256 " + ":".join(["AB"] * 32)


def _offer(tracks: list[LocalTrack]) -> str:
    return build_offer(session_id=42, tracks=tracks, ufrag="abcd", pwd="p" * 24, fingerprint=FP, cname="lt1",
                       candidate=("127.0.0.1", 40000))


def _tracks() -> list[LocalTrack]:
    return [LocalTrack(kind="audio", ssrc=1111, stream_id="s1", track_id="s1-a"),
            LocalTrack(kind="video", ssrc=2222, stream_id="s1", track_id="s1-v", camera=True)]  # no camera slot
    # (a user without a camera offers the camera's inactive section too: tests/loadtest/test_camera_slot_offer.py)


def test_offer_has_bundle_transport_and_tracks() -> None:
    tracks = _tracks()
    desc = parse_sdp(_offer(tracks))
    assert [m.kind for m in desc.media] == ["audio", "video"]
    assert [m.mid for m in desc.media] == ["0", "1"] == [t.mid for t in tracks]
    assert desc.media[0].direction == "sendrecv" and desc.media[1].direction == "sendonly"
    assert desc.ice_credentials() == ("abcd", "p" * 24)
    assert desc.dtls_fingerprint() == FP and desc.dtls_setup() == "actpass"
    assert desc.all_candidates() == [("127.0.0.1", 40000)]
    assert desc.media[0].clock_rate(111) == 48000 and desc.media[1].clock_rate(96) == 90000
    assert desc.media[1].ssrcs == [2222] and desc.media[1].msid == "s1 s1-v"


def test_offer_is_accepted_by_the_servers_sdp_codec() -> None:
    desc = core_sdp.parse_sdp(_offer(_tracks()))
    assert len(desc.media) == 2


def test_answer_to_a_reoffer_keeps_own_tracks_sending_and_receives_the_rest() -> None:
    tracks = _tracks()
    _offer(tracks)
    server_offer = "\r\n".join([
        "v=0", "o=- 1 3 IN IP4 127.0.0.1", "s=-", "t=0 0", "a=group:BUNDLE 0 1 2", "a=ice-lite",
        "m=audio 8443 UDP/TLS/RTP/SAVPF 111", "c=IN IP4 127.0.0.1", "a=mid:0", "a=recvonly", "a=rtcp-mux",
        "a=ice-ufrag:srv", "a=ice-pwd:" + "q" * 24, "a=fingerprint:" + FP, "a=setup:passive",
        "a=candidate:1 1 udp 2130706431 127.0.0.1 8443 typ host",
        "a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level", "a=rtpmap:111 opus/48000/2",
        "m=video 8443 UDP/TLS/RTP/SAVPF 100", "c=IN IP4 127.0.0.1", "a=mid:1", "a=recvonly", "a=rtcp-mux",
        "a=rtpmap:100 VP8/90000",
        "m=audio 8443 UDP/TLS/RTP/SAVPF 111", "c=IN IP4 127.0.0.1", "a=mid:2", "a=sendonly", "a=rtcp-mux",
        "a=rtpmap:111 opus/48000/2", "a=msid:other other-a", "a=ssrc:999 cname:x",
        "m=video 0 UDP/TLS/RTP/SAVPF 96", "a=mid:3", "a=inactive", "",
    ])
    answer = parse_sdp(build_answer(parse_sdp(server_offer), session_id=42, version=3, tracks=tracks, ufrag="abcd",
                                    pwd="p" * 24, fingerprint=FP, cname="lt1"))
    assert [(m.mid, m.direction) for m in answer.media] == [
        ("0", "sendonly"), ("1", "sendonly"), ("2", "recvonly"), ("3", "sendrecv")]
    assert answer.media[3].port == 0
    assert tracks[1].payload_type == 100  # the server's payload type for our camera is used
    assert answer.media[0].ssrcs == [1111] and answer.media[2].ssrcs == []
    assert answer.dtls_setup() == "active"
    assert answer.media[0].extmap == {"urn:ietf:params:rtp-hdrext:ssrc-audio-level": 1}


def test_parse_rejects_non_sdp() -> None:
    with pytest.raises(ValueError):
        parse_sdp("hello")


def test_stream_stats_counts_loss_across_sequence_wrap() -> None:
    st = StreamStats("audio", 48000)
    seqs = [65530 + i for i in range(6)] + [0, 1, 3, 4]  # 2 is lost, one wrap
    for i, seq in enumerate(seqs):
        st.update(seq & 0xFFFF, 960 * i, 20.0 * i)
    assert st.received == 10 and st.expected == 11 and st.lost == 1
    assert st.jitter_ms == pytest.approx(0.0, abs=1e-6)  # perfectly paced


def test_stream_stats_jitter_follows_rfc3550() -> None:
    st = StreamStats("audio", 48000)
    for i in range(200):
        arrival = 20.0 * i + (5.0 if i % 2 else 0.0)  # every other packet 5 ms late
        st.update(i, 960 * i, arrival)
    # |D| is 5 ms every packet; the estimator converges to 5 ms.
    assert st.jitter_ms == pytest.approx(5.0, rel=0.01)
    st.update(150, 0, 10_000.0)  # a late duplicate is not credit
    assert st.lost == 0


def test_histogram_and_percentiles() -> None:
    h = Histogram()
    for v in range(1, 101):
        h.add(float(v))
    assert h.count == 100 and h.maximum == 100.0
    assert h.quantile(0.5) == pytest.approx(50, abs=0.2)
    assert Histogram.from_json(h.to_json()).quantile(0.95) == h.quantile(0.95)
    assert percentile([1.0, 2.0, 3.0, 4.0], 0.5) == 2.5
    s = summarize([10.0, 20.0, 30.0])
    assert s["count"] == 3 and s["p50"] == 20.0 and s["max"] == 30.0
    assert summarize([])["p95"] is None


def test_metrics_page_parsing_picks_the_capacity_figures() -> None:
    from callsd.app.loadtest.runner import parse_metrics

    page = "\n".join([
        "# HELP callsd_process_cpu_seconds_total CPU", "callsd_process_cpu_seconds_total 12.5",
        "callsd_process_resident_memory_bytes 1.5e+08",
        'callsd_rtc_rtp_packets_total{direction="out",type="rtp"} 1000.0',
        'callsd_rtc_rtp_packets_total{direction="out",type="rtcp"} 50.0',
        'callsd_rtc_rtp_packets_total{direction="in",type="rtp"} 300.0',
        'callsd_rtc_rtp_packets_total{direction="in",type="stun"} 7.0',
        "callsd_rtc_sessions_total 8.0", "garbage line", "",
    ])
    assert parse_metrics(page) == {"cpu_seconds": 12.5, "rss_bytes": 1.5e8, "rtp_packets_out": 1000.0,
                                   "rtp_packets_in": 300.0, "sessions": 8.0}


def test_udp_drop_counters_are_read_per_port(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from callsd.peer import udp_drops

    table = tmp_path / "udp"
    table.write_text(
        "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref "
        "pointer drops\n"
        "  183: 0100007F:A44B 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 289535 2 "
        "00000000547ef4a6 17\n"
        " 1145: 0100007F:20FB 0100007F:A44B 01 00000000:00000000 00:00000000 00000000     0        0 291752 2 "
        "000000007a9d7b24 0\n"
    )
    assert udp_drops({0xA44B, 8443}, str(table)) == {0xA44B: 17, 8443: 0}
    assert udp_drops({1}, str(tmp_path / "missing")) == {}


def test_end_to_end_loss_from_sender_counters_sees_what_sequence_rewriting_hides() -> None:
    st = StreamStats("audio", 48000)
    # The server renumbered contiguously (seq 0..9) but the sender's counters jump: 3 packets vanished upstream.
    counters = [1, 2, 3, 4, 8, 9, 10, 11, 12, 13]
    for i, counter in enumerate(counters):
        st.update(i, 960 * i, 20.0 * i)
        if i % 3 == 0 or i == len(counters) - 1:  # only some packets are decrypted
            st.sample(7, counter)
    assert st.lost == 0
    assert st.e2e_expected == 13 and st.e2e_lost == 3
