"""The load client's SDP reader either parses or raises ValueError, for any text (a server bug must show up as a
counted `bad_offer`/`bad_answer`, never as a crashed load process), and StreamStats never counts negative loss."""

from __future__ import annotations

from callsd.app.loadtest.sdp import parse_sdp
from callsd.peer.stats import StreamStats
from hypothesis import given, settings
from hypothesis import strategies as st

LINES = st.sampled_from([
    "v=0", "m=audio 9 UDP/TLS/RTP/SAVPF 111", "m=video x y", "m=", "m=audio", "a=mid:0", "a=rtpmap:111 opus/48000/2",
    "a=rtpmap:x", "a=extmap:1 urn:x", "a=extmap:", "a=extmap:a/b", "a=ssrc:1 cname:x", "a=ssrc:", "a=candidate:1 1 udp",
    "a=candidate:1 1 udp 1 127.0.0.1 x typ host", "a=candidate:1 1 udp 1 127.0.0.1 9 typ host", "a=ice-ufrag:u",
    "a=fingerprint:sha-256 AB", "a=setup:actpass", "a=sendonly", "a=msid:s t", "c=IN IP4 0.0.0.0", "a=group:BUNDLE 0",
])


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=300), st.lists(st.one_of(LINES, st.text(max_size=40)), max_size=30).map(
    lambda lines: "\r\n".join(["v=0", *lines]))))
def test_parse_sdp_returns_or_raises_value_error(text: str) -> None:
    try:
        desc = parse_sdp(text)
    except ValueError:
        return
    desc.ice_credentials()
    desc.dtls_fingerprint()
    desc.all_candidates()
    for m in desc.media:
        for pt in m.formats:
            m.clock_rate(pt)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 0xFFFF), st.integers(0, 2**32 - 1), st.floats(0, 1e6)), max_size=60))
def test_stream_stats_never_negative(packets: list[tuple[int, int, float]]) -> None:
    s = StreamStats("audio", 48000)
    for seq, ts, arrival in packets:
        s.update(seq, ts, arrival)
    assert s.lost >= 0 and s.expected >= 0 and s.jitter >= 0
    assert s.received == len(packets)
