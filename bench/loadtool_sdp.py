"""What answering the server's re-offers costs a simulated user, before and after the section cache (issue 13).

    .venv/bin/python -m bench.loadtool_sdp                      # 20 calls x 8 users, offers of 4..16 sections
    .venv/bin/python -m bench.loadtool_sdp --json out.json

Method: the re-offers a user of an 8-user call gets while its call fills (4, 6, ... 16 m-sections: its own two, then
two more per other user; every section carries the user's server-side ICE credentials, so nothing is shared between
users), for ``--calls x 8`` users, answered as `SimUser._answer` does:

- ``before``: the line-by-line reader (`_read_lines`, what `parse_sdp` was) run twice per offer (once to answer,
  once more to apply it: the code before this session), then `build_answer`;
- ``after``: `parse_sdp` (each distinct m-section read once, `_read_sections`) once, then `build_answer`.

The cache is emptied before each ``after`` pass, so its misses are counted. CPU time (``time.process_time``) per
offer, both alternated ``--rounds`` times in one process; medians and their ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

FP = "sha-256 " + ":".join(["AB"] * 32)


def server_offer(user: int, sections: int) -> str:
    """A re-offer shaped as the server's: BUNDLE, ICE-lite, the user's own two sections recvonly, the others'."""
    lines = ["v=0", f"o=- 1 {sections} IN IP4 127.0.0.1", "s=-", "t=0 0",
             "a=group:BUNDLE " + " ".join(str(i) for i in range(sections)), "a=ice-lite"]
    for i in range(sections):
        audio = i % 2 == 0
        pt = 111 if audio else 96
        lines += [f"m={'audio' if audio else 'video'} 8443 UDP/TLS/RTP/SAVPF {pt}", "c=IN IP4 127.0.0.1", f"a=mid:{i}",
                  "a=recvonly" if i < 2 else "a=sendonly", "a=rtcp-mux", f"a=ice-ufrag:srv{user}",
                  "a=ice-pwd:" + "q" * 24, "a=fingerprint:" + FP, "a=setup:passive",
                  "a=candidate:1 1 udp 2130706431 127.0.0.1 8443 typ host",
                  "a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level",
                  "a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid",
                  f"a=rtpmap:{pt} {'opus/48000/2' if audio else 'VP8/90000'}", "a=rtcp-fb:96 nack",
                  "a=rtcp-fb:96 nack pli"]
        if i >= 2:
            lines += [f"a=msid:u{i} u{i}-t", f"a=ssrc:{1000 + i} cname:u{i}"]
    return "\r\n".join([*lines, ""])


def measure(calls: int, rounds: int) -> dict[str, Any]:
    from callsd.app.loadtest import sdp

    offers = [server_offer(call * 8 + user, n) for call in range(calls) for user in range(8) for n in range(4, 17, 2)]
    tracks = [sdp.LocalTrack(kind="audio", ssrc=1111, stream_id="s1", track_id="s1-a", mid="0"),
              sdp.LocalTrack(kind="video", ssrc=2222, stream_id="s1-screen", track_id="s1-s", mid="1")]

    def line_by_line(text: str) -> sdp.SessionDescription:
        session = sdp.SessionDescription(media=[])
        sdp._read_lines(text, session)
        return session

    def answer(desc: sdp.SessionDescription) -> str:
        return sdp.build_answer(desc, session_id=1, version=2, tracks=tracks, ufrag="abcd", pwd="p" * 24,
                                fingerprint=FP, cname="lt1")

    def before() -> None:
        for text in offers:
            answer(line_by_line(text))
            line_by_line(text)

    def after() -> None:
        sdp._read_sections.cache_clear()
        for text in offers:
            answer(sdp.parse_sdp(text))

    for text in offers[:50]:
        assert answer(line_by_line(text)) == answer(sdp.parse_sdp(text))
    runs: dict[str, list[float]] = {"before": [], "after": []}
    for _ in range(rounds):
        for name, run in (("before", before), ("after", after)):
            t0 = time.process_time()
            run()
            runs[name].append(round(1e6 * (time.process_time() - t0) / len(offers), 1))
    median = {k: statistics.median(v) for k, v in runs.items()}
    return {"utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()), "loadavg": list(os.getloadavg()),
            "offers": len(offers), "us_per_offer": runs, "median_us_per_offer": median,
            "ratio": round(median["before"] / median["after"], 2)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.loadtool_sdp", description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", type=Path, help="also write the result here")
    args = parser.parse_args(argv)
    out = measure(args.calls, args.rounds)
    text = json.dumps(out, indent=1)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
