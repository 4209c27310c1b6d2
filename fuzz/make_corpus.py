"""Write the seed corpus, ``fuzz/corpus/<target>/seed-*``: valid inputs from tests/data, tests/media/data and the
codecs' own builders, so the fuzzer starts from messages the server really sees. Run it again only to change the
seeds (``python fuzz/make_corpus.py``); crashers found later are added by hand as ``crash-*`` files and stay.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

from callsd.adapters.media.dtls import Certificate, DtlsSession
from callsd.adapters.media.ice import binding_success, client_binding_request, parse_binding_request
from callsd.adapters.signaling_protocol import encode
from callsd.adapters.store import CallRecorder, JsonlStore
from callsd.adapters.store.compaction import compact
from callsd.core import JoinCall, Mute, PublishTrack, TrackKind
from callsd.core.calls.checkpoint import checkpoint
from callsd.core.calls.eventlog import decode_lines
from callsd.core.calls.replay import replay
from callsd.core.wire.rtcp import (
    Bye,
    ReportBlock,
    SdesChunk,
    SourceDescription,
    build_fir,
    build_nack,
    build_pli,
    build_rr,
    build_rtcp,
    build_sr,
)
from callsd.core.wire.rtp import RtpHeader, build_rtp

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
STUN_PASSWORD = "fuzz-password-0123456789"  # fuzz/targets.py signs with the same
TOKEN_SECRET = "fuzz-token-secret-0123456789"  # and verifies with the same


def stun_seeds() -> list[bytes]:
    seeds = [client_binding_request(server_ufrag="srv", client_ufrag="cli", server_pwd=STUN_PASSWORD,
                                    use_candidate=flag, tie_breaker=42)[0] for flag in (True, False)]
    request = parse_binding_request(seeds[0])
    seeds.append(binding_success(request, ("192.0.2.1", 5000), STUN_PASSWORD))
    return seeds


def dtls_seeds() -> list[bytes]:
    """The datagrams a real client sends: its ClientHello, and its second flight after the server's answer."""
    server_cert, client_cert = Certificate.generate("server"), Certificate.generate("client")
    server = DtlsSession(server_cert.context(), server=True, remote_fingerprint=client_cert.fingerprint)
    client = DtlsSession(client_cert.context(), server=False, remote_fingerprint=server_cert.fingerprint)
    client.start()
    hello = client.take_datagrams()
    seeds = [b"\xff\xfe".join(hello)]
    for datagram in hello:
        server.feed(datagram)
    for datagram in server.take_datagrams():
        client.feed(datagram)
    second = client.take_datagrams()
    if second:
        seeds.append(b"\xff\xfe".join(second))
        seeds.append(b"\xff\xfe".join(hello + second))
    return seeds


def rtp_seeds() -> list[bytes]:
    return [
        build_rtp(RtpHeader(marker=False, payload_type=111, sequence=1, timestamp=960, ssrc=0x11223344), b"opus"),
        build_rtp(RtpHeader(marker=True, payload_type=96, sequence=65535, timestamp=90000, ssrc=7, csrcs=(1, 2),
                            extension_profile=0xBEDE, extensions=((1, b"\x85"), (3, b"0"), (4, b"\x00\x01\x02"))),
                  b"\x90\xe0vp8"),
        build_rtp(RtpHeader(marker=False, payload_type=97, sequence=9, timestamp=1, ssrc=8,
                            extension_profile=0x1000, extensions=((20, b"mid-long"), (2, b""))), b"x" * 20),
        build_rtp(RtpHeader(marker=False, payload_type=111, sequence=2, timestamp=2, ssrc=9, padding=4), b"pp"),
    ]


def rtcp_seeds() -> list[bytes]:
    block = ReportBlock(ssrc=5, fraction_lost=3, cumulative_lost=10, highest_seq=1000, jitter=7, lsr=1, dlsr=2)
    return [
        build_sr(ssrc=1, ntp_timestamp=(3_900_000_000 << 32) | 5, rtp_timestamp=48000, packet_count=10,
                 octet_count=1000, reports=[block]),
        build_rr(ssrc=1, reports=[block, block]),
        build_pli(sender_ssrc=1, media_ssrc=2) + build_fir(sender_ssrc=1, media_ssrc=2, seq=3),
        build_nack(sender_ssrc=1, media_ssrc=2, lost=[10, 11, 15, 40]),
        build_rtcp([SourceDescription(chunks=(SdesChunk(ssrc=1, items=((1, b"cname@host"),)),)),
                    Bye(ssrcs=(1, 2), reason=b"bye")]),
        # A REMB (PSFB fmt 15): 1 SSRC, exponent 2, mantissa 250000.
        bytes([0x8F, 206, 0, 5]) + (1).to_bytes(4, "big") + bytes(4) + b"REMB"
        + bytes([1]) + ((2 << 18) | 250000).to_bytes(3, "big") + (7).to_bytes(4, "big"),
    ]


def sdp_seeds() -> list[bytes]:
    return [p.read_bytes() for p in sorted((ROOT / "tests" / "media" / "data").glob("*.sdp"))]


def signaling_seeds() -> list[bytes]:
    offer = (ROOT / "tests" / "media" / "data" / "offer_chromium.sdp").read_text()
    return [encode(kind, data).encode() for kind, data in [
        ("join", {"channel_id": "town-square", "user_id": "alice"}),
        ("sdp", {"type": "offer", "sdp": offer[:2000]}),
        ("ice", {"candidate": "candidate:1 1 udp 2122260223 192.0.2.1 5000 typ host", "sdp_mid": "0"}),
        ("mute", {}),
        ("react", {"emoji": "+1"}),
        ("reconnect", {"session_id": "s-1", "secret": "x"}),
    ]]


def eventlog_seeds(work: Path) -> list[bytes]:
    lines = (ROOT / "tests" / "data" / "example.jsonl").read_bytes().splitlines()
    seeds = lines[:3] + lines[-2:]  # version 1 records
    with JsonlStore(work / "chained.jsonl", fsync="never") as store:
        recorder = CallRecorder(store)
        recorder.handle(JoinCall(at=1, channel_id="c", session_id="s", user_id="u", call_id="k"))
        recorder.handle(PublishTrack(at=2, session_id="s", track_id="t", kind=TrackKind.VIDEO))
        recorder.handle(Mute(at=3, session_id="s"))
    seeds += (work / "chained.jsonl").read_bytes().splitlines()
    with JsonlStore(work / "chained.jsonl", fsync="never") as store:  # a compaction entry, the first line after
        compact(store, cut=2)
    seeds.append((work / "chained.jsonl").read_bytes().splitlines()[0])
    return seeds


def checkpoint_seeds() -> list[bytes]:
    records = list(decode_lines((ROOT / "tests" / "data" / "example.jsonl").read_bytes().splitlines()))
    seeds = []
    for cut in (0, 12, 24, len(records)):
        machine = replay(records, until=cut).machine
        seeds.append(json.dumps(checkpoint(machine, cut), sort_keys=True).encode())
    return seeds


def negotiation_seeds() -> list[bytes]:
    return sdp_seeds()


def candidate_seeds() -> list[bytes]:
    lines = [line.split(":", 1)[1] for p in sorted((ROOT / "tests" / "media" / "data").glob("*.sdp"))
             for line in p.read_text().splitlines() if line.startswith("a=candidate:")]
    return [line.encode() for line in lines[:4]] + [
        b"1 1 udp 2122260223 192.0.2.1 5000 typ host generation 0",
        b"2 1 tcp 1518280447 192.0.2.1 9 typ host tcptype active",
        b"3 1 udp 1686052607 203.0.113.5 61000 typ srflx raddr 192.0.2.1 rport 5000",
    ]


def token_seeds() -> list[bytes]:
    from callsd.app.auth import create_token

    return [create_token(secret=TOKEN_SECRET, user_id=user, channels=channels, expires_at=2_000_000_000).encode()
            for user, channels in (("alice", ["town-square"]), ("bob", ["dev", "ops"]))] + [
        create_token(secret=TOKEN_SECRET, user_id="old", channels=["town-square"], expires_at=1).encode()]


def http_inbound_seeds() -> list[bytes]:
    """Keep-alive streams as clients and proxies send them (a first byte: the cut and whether 101 is answered)."""
    get = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    upgrade = (b"GET /api/v1/websocket HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               b"Sec-WebSocket-Key: x\r\nSec-WebSocket-Extensions: permessage-deflate\r\nSec-WebSocket-Version: 13\r\n\r\n")
    text = bytes([0x81, 0x85, 0, 0, 0, 0]) + b"hello"
    big = bytes([0x81, 0xFE, 0x04, 0x00, 0, 0, 0, 0]) + b"x" * 40
    post = b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nabcde"
    chunked = b"POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3;e=1\r\nabc\r\n0\r\nT: 1\r\n\r\n"
    smuggle = b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
    return [b"\x81" + get + post + chunked + upgrade + text + big, b"\x40" + get + upgrade + text * 3,
            b"\x11" + chunked + smuggle + upgrade, b"\x07" + b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"]


def main() -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        table = {
            "stun": stun_seeds(), "dtls": dtls_seeds(), "rtp": rtp_seeds(), "rtcp": rtcp_seeds(),
            "sdp": sdp_seeds(), "signaling": signaling_seeds(), "eventlog": eventlog_seeds(Path(tmp)),
            "checkpoint": checkpoint_seeds(), "negotiation": negotiation_seeds(), "candidate": candidate_seeds(),
            "token": token_seeds(), "http_inbound": http_inbound_seeds(),
        }
    only = set(sys.argv[1:])  # names given: rewrite only those targets' seeds
    for target, seeds in table.items():
        if only and target not in only:
            continue
        folder = HERE / "corpus" / target
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.glob("seed-*"):
            old.unlink()
        for seed in seeds:
            (folder / f"seed-{hashlib.sha1(seed).hexdigest()[:16]}").write_bytes(seed)
        print(f"{target}: {len(seeds)} seed(s)")


if __name__ == "__main__":
    main()
