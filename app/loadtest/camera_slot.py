"""The camera's inactive video section a browser puts in its first offer, as Chromium writes it.

The web client (app/static/media.js, ``connectMedia``) negotiates its camera's transceiver up front, ``inactive``,
whether or not the camera is on: the server learns the browser's video codecs and header-extension numbers before
it forwards anyone's video. Chromium offers its whole video codec list there (23 formats: VP8, H.264 in four
profiles, AV1, VP9 in two, RED, ULPFEC, each with its RTX), and reading, choosing from and answering it is part of
what a browser's join costs the server. So the load tool's first offer carries the same section when a user has no
camera of its own (``sdp.build_offer``).

The lines are copied from a recorded Chromium offer (tests/media/data/offer_chromium_slots.sdp, its mid 1), in
Chromium's order, not derived from the server's codec tables: the tool must not depend on the code it measures.
tests/loadtest/test_camera_slot_offer.py checks they still match the recording.
"""

from __future__ import annotations

__all__ = ["CODEC_LINES", "EXTMAP_LINES", "FORMATS", "SECTION_FLAGS"]

EXTMAP_LINES = (
    "a=extmap:14 urn:ietf:params:rtp-hdrext:toffset",
    "a=extmap:2 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time",
    "a=extmap:13 urn:3gpp:video-orientation",
    "a=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01",
    "a=extmap:5 http://www.webrtc.org/experiments/rtp-hdrext/playout-delay",
    "a=extmap:6 http://www.webrtc.org/experiments/rtp-hdrext/video-content-type",
    "a=extmap:7 http://www.webrtc.org/experiments/rtp-hdrext/video-timing",
    "a=extmap:8 http://www.webrtc.org/experiments/rtp-hdrext/color-space",
    "a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid",
    "a=extmap:10 urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id",
    "a=extmap:11 urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id",
)

CODEC_LINES = (
    "a=rtpmap:96 VP8/90000",
    "a=rtcp-fb:96 goog-remb",
    "a=rtcp-fb:96 transport-cc",
    "a=rtcp-fb:96 ccm fir",
    "a=rtcp-fb:96 nack",
    "a=rtcp-fb:96 nack pli",
    "a=rtpmap:97 rtx/90000",
    "a=fmtp:97 apt=96",
    "a=rtpmap:102 H264/90000",
    "a=rtcp-fb:102 goog-remb",
    "a=rtcp-fb:102 transport-cc",
    "a=rtcp-fb:102 ccm fir",
    "a=rtcp-fb:102 nack",
    "a=rtcp-fb:102 nack pli",
    "a=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42001f",
    "a=rtpmap:103 rtx/90000",
    "a=fmtp:103 apt=102",
    "a=rtpmap:104 H264/90000",
    "a=rtcp-fb:104 goog-remb",
    "a=rtcp-fb:104 transport-cc",
    "a=rtcp-fb:104 ccm fir",
    "a=rtcp-fb:104 nack",
    "a=rtcp-fb:104 nack pli",
    "a=fmtp:104 level-asymmetry-allowed=1;packetization-mode=0;profile-level-id=42001f",
    "a=rtpmap:107 rtx/90000",
    "a=fmtp:107 apt=104",
    "a=rtpmap:108 H264/90000",
    "a=rtcp-fb:108 goog-remb",
    "a=rtcp-fb:108 transport-cc",
    "a=rtcp-fb:108 ccm fir",
    "a=rtcp-fb:108 nack",
    "a=rtcp-fb:108 nack pli",
    "a=fmtp:108 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f",
    "a=rtpmap:109 rtx/90000",
    "a=fmtp:109 apt=108",
    "a=rtpmap:114 H264/90000",
    "a=rtcp-fb:114 goog-remb",
    "a=rtcp-fb:114 transport-cc",
    "a=rtcp-fb:114 ccm fir",
    "a=rtcp-fb:114 nack",
    "a=rtcp-fb:114 nack pli",
    "a=fmtp:114 level-asymmetry-allowed=1;packetization-mode=0;profile-level-id=42e01f",
    "a=rtpmap:115 rtx/90000",
    "a=fmtp:115 apt=114",
    "a=rtpmap:116 H264/90000",
    "a=rtcp-fb:116 goog-remb",
    "a=rtcp-fb:116 transport-cc",
    "a=rtcp-fb:116 ccm fir",
    "a=rtcp-fb:116 nack",
    "a=rtcp-fb:116 nack pli",
    "a=fmtp:116 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=4d001f",
    "a=rtpmap:117 rtx/90000",
    "a=fmtp:117 apt=116",
    "a=rtpmap:39 H264/90000",
    "a=rtcp-fb:39 goog-remb",
    "a=rtcp-fb:39 transport-cc",
    "a=rtcp-fb:39 ccm fir",
    "a=rtcp-fb:39 nack",
    "a=rtcp-fb:39 nack pli",
    "a=fmtp:39 level-asymmetry-allowed=1;packetization-mode=0;profile-level-id=4d001f",
    "a=rtpmap:40 rtx/90000",
    "a=fmtp:40 apt=39",
    "a=rtpmap:45 AV1/90000",
    "a=rtcp-fb:45 goog-remb",
    "a=rtcp-fb:45 transport-cc",
    "a=rtcp-fb:45 ccm fir",
    "a=rtcp-fb:45 nack",
    "a=rtcp-fb:45 nack pli",
    "a=fmtp:45 level-idx=5;profile=0;tier=0",
    "a=rtpmap:46 rtx/90000",
    "a=fmtp:46 apt=45",
    "a=rtpmap:98 VP9/90000",
    "a=rtcp-fb:98 goog-remb",
    "a=rtcp-fb:98 transport-cc",
    "a=rtcp-fb:98 ccm fir",
    "a=rtcp-fb:98 nack",
    "a=rtcp-fb:98 nack pli",
    "a=fmtp:98 profile-id=0",
    "a=rtpmap:99 rtx/90000",
    "a=fmtp:99 apt=98",
    "a=rtpmap:100 VP9/90000",
    "a=rtcp-fb:100 goog-remb",
    "a=rtcp-fb:100 transport-cc",
    "a=rtcp-fb:100 ccm fir",
    "a=rtcp-fb:100 nack",
    "a=rtcp-fb:100 nack pli",
    "a=fmtp:100 profile-id=2",
    "a=rtpmap:101 rtx/90000",
    "a=fmtp:101 apt=100",
    "a=rtpmap:118 red/90000",
    "a=rtpmap:119 rtx/90000",
    "a=fmtp:119 apt=118",
    "a=rtpmap:120 ulpfec/90000",
)

# After the direction, before the codecs (a=rtcp-xr is Chromium's too: the tool's parser and the server skip it).
SECTION_FLAGS = ("a=rtcp-mux", "a=rtcp-rsize", "a=rtcp-xr:rcvr-rtt=all")

# The m= line's payload types: the rtpmap lines' order, as Chromium lists them.
FORMATS = tuple(int(line.split(":", 1)[1].split(" ", 1)[0]) for line in CODEC_LINES if line.startswith("a=rtpmap:"))
