"""The differential harness of the native fast path (tests/media/test_native_diff.py, test_native_engine.py and
the sanitized run of scripts/fuzz-native.sh): random calls and packet streams, and a ``Run`` that plays one through a
real ``MediaPlane`` + ``UdpEndpoint`` on loopback sockets with a given ``fast_path`` and records what came out."""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass
from typing import Any
from unittest import mock

from callsd.adapters.media import plane_rtcp
from callsd.adapters.media.dtls import Certificate, SrtpKeys
from callsd.adapters.media.forwarder import URI_AUDIO_LEVEL, URI_MID, InTrack, OutRoute
from callsd.adapters.media.plane import MediaPlane, PlaneConfig
from callsd.adapters.media.srtp import SrtpContext
from callsd.adapters.media.twcc_recv import FeedbackSender
from callsd.adapters.media.twcc_send import TransportSequencer
from callsd.core.calls.events import TrackKind
from callsd.core.wire import rtcp
from hypothesis import strategies as st

CERT = Certificate.generate()
PROFILES = {b"SRTP_AEAD_AES_128_GCM": 28, b"SRTP_AES128_CM_SHA1_80": 30}
PUB_PT = {"audio": 111, "video": 96}
MID_EXT = 3
PUBLISHER_TWCC_EXT = 5  # a publisher's transport-wide-cc id in ``twcc`` runs (ext_block draws 2-byte elements of it)


# --- the scenario --------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class TrackSpec:
    publisher: int
    media: str  # "audio" | "video"
    ssrc: int
    signalled: bool  # False: the server learns the SSRC from the MID extension
    level_id: int  # publisher's audio-level extension id (0: none)
    codec: str = ""  # the codec name the track's (one) payload type stands for; "" = the media kind


@dataclass(frozen=True)
class RouteSpec:
    track: int
    receiver: int
    ssrc: int
    ts_offset: int
    last_seq: int
    pt: int
    remap: tuple[tuple[int, int], ...]
    paused: bool
    negotiated: bool


@dataclass(frozen=True)
class Scenario:
    profile: bytes
    publishers: int
    receivers: int
    receivers_connected: tuple[bool, ...]
    tracks: tuple[TrackSpec, ...]
    routes: tuple[RouteSpec, ...]
    events: tuple[tuple[Any, ...], ...]


def ext_block(draw: Any, level_id: int, mid: str | None) -> bytes:
    """A header-extension block: one-byte, two-byte, another profile, or malformed."""
    form = draw(st.sampled_from(["one", "one", "two", "other", "garbage", "overrun"]))
    if form == "garbage":
        return draw(st.binary(min_size=4, max_size=24))
    if form == "overrun":  # the block's length is right, one element's is not: dropped per rewritten route
        two = draw(st.booleans())
        elem = bytes([5, 9, 1]) if two else bytes([0x53, 1])
        return struct.pack("!HH", 0x1000 if two else 0xBEDE, 1) + elem + bytes(4 - len(elem))
    if form == "other":
        words = draw(st.integers(0, 3))
        return struct.pack("!HH", draw(st.integers(0, 0xFFFF)), words) + draw(st.binary(min_size=4 * words,
                                                                                          max_size=4 * words))
    body = b""
    if form == "one":
        if level_id and draw(st.booleans()):
            body += bytes([level_id << 4, draw(st.sampled_from([0x05, 0x0A, 0x7F, 0x85, 0x20, 0x50]))])
        if mid is not None:
            body += bytes([(MID_EXT << 4) | (len(mid) - 1)]) + mid.encode()
        if draw(st.booleans()):  # a transport-wide sequence number (what twcc runs record for publishers)
            body += bytes([(PUBLISHER_TWCC_EXT << 4) | 1]) + draw(st.binary(min_size=2, max_size=2))
        for _ in range(draw(st.integers(0, 2))):
            eid = draw(st.sampled_from([0, 1, 2, 3, 5, 9, 15]))
            data = draw(st.binary(min_size=1, max_size=4))
            body += bytes([(eid << 4) | (len(data) - 1)]) + data
        profile = 0xBEDE
    else:
        if draw(st.booleans()):
            body += bytes([PUBLISHER_TWCC_EXT, 2]) + draw(st.binary(min_size=2, max_size=2))
        for _ in range(draw(st.integers(0, 3))):
            eid = draw(st.integers(0, 20))
            data = draw(st.binary(max_size=5))
            body += bytes([eid, len(data)]) + data
        profile = 0x1000 | draw(st.integers(0, 15))
    body += bytes(-len(body) % 4)
    words = len(body) // 4
    if draw(st.integers(0, 9)) == 0:
        words += draw(st.integers(1, 3))  # claims more than it has: malformed
    return struct.pack("!HH", profile, words) + body


@st.composite
def rtp_event(draw: Any, tracks: tuple[TrackSpec, ...]) -> tuple[Any, ...]:
    index = draw(st.integers(0, len(tracks) - 1))
    t = tracks[index]
    seq_step = draw(st.sampled_from([1, 1, 1, 1, 2, 5, 0, -1, -3, 40000]))
    pt = PUB_PT[t.media] if draw(st.integers(0, 7)) else draw(st.integers(0, 127))
    cc = draw(st.sampled_from([0, 0, 0, 1, 2]))
    ext = None
    if draw(st.integers(0, 3)):
        ext = ext_block(draw, t.level_id, None if t.signalled else str(index))
    padding = draw(st.sampled_from([0, 0, 0, 0, 3, 255]))
    payload = draw(st.binary(min_size=0, max_size=60))
    marker = draw(st.booleans())
    ssrc = t.ssrc if draw(st.integers(0, 15)) else draw(st.integers(0, 0xFFFFFFFF))
    fate = draw(st.sampled_from(["ok"] * 8 + ["forged", "replay", "v1"]))
    repeat = draw(st.sampled_from([1, 2, 5, 20, 40]))
    return ("rtp", index, seq_step, pt, cc, ext, padding, payload, marker, ssrc, fate, repeat)


@st.composite
def scenarios(draw: Any) -> Scenario:
    publishers = draw(st.integers(1, 2))
    receivers = draw(st.integers(1, 3))
    tracks = []
    for p in range(publishers):
        for media in draw(st.lists(st.sampled_from(["audio", "video"]), min_size=1, max_size=2)):
            tracks.append(TrackSpec(publisher=p, media=media, ssrc=draw(st.integers(1, 0xFFFFFFFF)),
                                    signalled=draw(st.integers(0, 4)) > 0,
                                    level_id=draw(st.sampled_from([1, 1, 2, 0])) if media == "audio" else 0))
    routes = []
    ssrcs: set[int] = set()
    for ti, _t in enumerate(tracks):
        for r in range(receivers):
            if not draw(st.integers(0, 5)):
                continue
            ssrc = draw(st.integers(1, 0xFFFFFFFF).filter(lambda x: x not in ssrcs))
            ssrcs.add(ssrc)
            # publisher id -> receiver id; 14 is the last one-byte id, 15 and 16 are blanked in one-byte blocks
            remap = draw(st.lists(st.tuples(st.sampled_from([1, 2, 3, 5, 9]),
                                            st.sampled_from([0, 1, 4, 13, 14, 15, 16])), max_size=3))
            routes.append(RouteSpec(track=ti, receiver=r, ssrc=ssrc, ts_offset=draw(st.integers(0, 0xFFFFFFFF)),
                                    last_seq=draw(st.integers(0, 0xFFFF)), pt=draw(st.integers(0, 127)),
                                    remap=tuple(remap), paused=draw(st.integers(0, 5)) == 0,
                                    negotiated=draw(st.integers(0, 7)) > 0))
    tracks_t = tuple(tracks)
    other = st.one_of(
        st.tuples(st.just("garbage"), st.integers(0, publishers + receivers), st.binary(min_size=0, max_size=40)),
        st.tuples(st.just("drain"), st.integers(1, 300)),
        st.tuples(st.just("rekey"), st.integers(0, publishers + receivers - 1), st.binary(min_size=60,
                                                                                           max_size=60)),
        st.tuples(st.just("ssrc"), st.integers(0, len(tracks) - 1), st.integers(1, 0xFFFFFFFF)),
        st.tuples(st.just("pause"), st.integers(0, max(0, len(routes) - 1))),
        st.tuples(st.just("nack"), st.integers(0, max(0, len(routes) - 1)), st.lists(st.integers(0, 40),
                                                                                     max_size=3)),
        st.tuples(st.just("report"), st.booleans()),
        # a peer's send state changing under the routes toward it (native/send_state.h caches it in the route)
        st.tuples(st.just("send_state"), st.integers(0, publishers + receivers - 1),
                  st.sampled_from(["unready", "move", "move_by_name", "detach", "sequencer"])),
    )
    events = draw(st.lists(st.one_of(rtp_event(tracks_t), rtp_event(tracks_t), rtp_event(tracks_t), other),
                           min_size=10, max_size=60))
    return Scenario(profile=draw(st.sampled_from(sorted(PROFILES))), publishers=publishers, receivers=receivers,
                    receivers_connected=tuple(draw(st.integers(0, 5)) > 0 for _ in range(receivers)),
                    tracks=tracks_t, routes=tuple(routes), events=tuple(events))


class ReportClock:
    """The clocks the RTCP round reads (SR timestamps), fixed: both paths' reports must be byte-identical."""

    @staticmethod
    def monotonic() -> float:
        return 1000.25

    @staticmethod
    def time() -> float:
        return 1_800_000_000.5


# --- one run -------------------------------------------------------------------------------------------------------

def keys_for(profile: bytes, seed: bytes) -> tuple[SrtpKeys, SrtpKeys]:
    """(server side, client side) keys of one peer."""
    n = PROFILES[profile]
    a, b = seed[:n], seed[n : 2 * n]
    return (SrtpKeys(profile=profile, local_key=a, remote_key=b), SrtpKeys(profile=profile, local_key=b, remote_key=a))


class Run:
    """One path's plane, endpoint socket and client sockets, driven by a scenario."""

    def __init__(self, sc: Scenario, fast_path: str, twcc: bool = False) -> None:
        self.sc = sc
        self.events: list[Any] = []
        self.plane = MediaPlane(PlaneConfig(ice_port_udp=0, fast_path=fast_path), self.events.append)
        self.plane.forwarder._clock = lambda: 1000.0
        self.endpoint = ep = self.plane.endpoint
        assert ep.path.name == fast_path
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)  # a whole stream fits between drains
        self.sock.bind(("127.0.0.1", 0))
        self.sock.setblocking(False)
        ep._sock = self.sock
        self.server = self.sock.getsockname()
        n = sc.publishers + sc.receivers
        self.clients = []
        for _ in range(n + 1):  # the last one is a stranger
            c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
            c.bind(("127.0.0.1", 0))
            c.setblocking(False)
            self.clients.append(c)
        self.client_ctx: list[SrtpContext | None] = [None] * n
        self.sessions = []
        self.sequencers: list[TransportSequencer] = []
        self.feedback: list[FeedbackSender] = []
        for i in range(n):
            sid = f"s{i}"
            self.plane.open_session(sid, "ch")
            s = self.plane.sessions[sid]
            s.rtcp_ssrc = 0x5000 + i
            s.mid_ext_id = MID_EXT
            self.sessions.append(s)
            connected = i < sc.publishers or sc.receivers_connected[i - sc.publishers]
            ep.add_peer(sid, f"u{i}", "p" * 22, f"c{i}", "q" * 22, CERT.fingerprint)
            if connected:
                self.rekey(i, bytes(range(i, i + 60)))
                self.plane.on_connected(ep.peer(sid))  # type: ignore[arg-type]  # noqa: E501
                peer = ep.peer(sid)
                if twcc and i >= sc.publishers and peer is not None:  # a receiver that negotiated transport-cc
                    peer.twcc = TransportSequencer(5, lambda: 1000.0)
                    self.sequencers.append(peer.twcc)
                elif twcc and peer is not None:  # a publisher that negotiated transport-cc: its arrivals recorded
                    peer.twcc_in = FeedbackSender(PUBLISHER_TWCC_EXT, s.rtcp_ssrc, 0.0)
                    self.feedback.append(peer.twcc_in)
        self.tracks: list[InTrack] = []
        for ti, t in enumerate(sc.tracks):
            s = self.sessions[t.publisher]
            ext = {URI_MID: MID_EXT}
            if t.level_id:
                ext[URI_AUDIO_LEVEL] = t.level_id
            track = InTrack(track_id=f"t{ti}", session=s, kind=TrackKind.AUDIO if t.media == "audio" else
                            TrackKind.VIDEO, media=t.media, mid=str(ti), ssrc=t.ssrc if t.signalled else None,
                            clock_rate=48000 if t.media == "audio" else 90000,
                            codecs={PUB_PT[t.media]: (t.codec or t.media, 48000, 1, "")}, ext=ext,
                            stream_id="st")
            s.published[str(ti)] = track
            if t.signalled:
                s.inbound[t.ssrc] = track
            self.plane.tracks[track.track_id] = track
            self.tracks.append(track)
        self.routes: list[OutRoute] = []
        for rs in sc.routes:
            track = self.tracks[rs.track]
            rcv = self.sessions[sc.publishers + rs.receiver]
            r = OutRoute(track=track, receiver=rcv, ssrc=rs.ssrc, mid="", paused=rs.paused, ts_offset=rs.ts_offset)
            r.last_seq = rs.last_seq
            r.set_mapping({PUB_PT[track.media]: rs.pt}, dict(rs.remap))
            r.negotiated = rs.negotiated
            track.routes[rcv.session_id] = r
            rcv.routes_in[track.track_id] = r
            rcv.out_by_ssrc[r.ssrc] = r
            track.relive()
            self.routes.append(r)
        self.seqs = [1000 * i for i in range(len(sc.tracks))]
        self.sent: list[list[bytes]] = [[] for _ in range(n)]
        self.received: list[list[bytes]] = [[] for _ in range(n + 1)]

    def rekey(self, i: int, seed: bytes) -> None:
        server, client = keys_for(self.sc.profile, seed)
        ep = self.endpoint
        peer = ep.peer(f"s{i}")
        assert peer is not None
        addr = self.clients[i].getsockname()
        peer.srtp = ep.path.srtp_context(server)
        peer._tx = peer.srtp.tx
        peer.address = addr
        peer.connected = True
        peer.ice.addresses.add(addr)
        ep._by_addr[addr] = peer
        self.client_ctx[i] = SrtpContext(client)

    def send(self, i: int, data: bytes) -> None:
        self.clients[i].sendto(data, self.server)

    def drain(self, batch: int = 256) -> None:
        while self.endpoint.path.drain(self.sock, batch) >= batch:
            pass
        for i, c in enumerate(self.clients):
            while True:
                try:
                    self.received[i].append(c.recv(4096))
                except BlockingIOError:
                    break

    def play(self) -> None:
        for ev in self.sc.events:
            self.play_event(ev)
        self.drain()

    def play_event(self, ev: tuple[Any, ...]) -> None:
        kind = ev[0]
        if kind == "rtp":
            for k in range(ev[-1]):
                self.play_rtp(*ev[1:-1], first=k == 0)
        elif kind == "garbage":
            self.send(ev[1], ev[2])
        elif kind == "drain":
            self.drain(ev[1])
        elif kind == "rekey":
            self.drain()
            if self.client_ctx[ev[1]] is not None:
                self.rekey(ev[1], ev[2])
        elif kind == "ssrc":
            self.drain()
            t = self.tracks[ev[1]]
            s = t.session
            if t.ssrc is not None and s.inbound.get(t.ssrc) is t:
                del s.inbound[t.ssrc]
            t.ssrc = ev[2]
            s.inbound[t.ssrc] = t
        elif kind == "pause" and self.routes:
            self.drain()
            r = self.routes[ev[1]]
            r.paused = not r.paused
            r.resync = True
            r.track.relive()
        elif kind == "report":  # the RTCP round (True: all at once) or one tick of it, at a clock both runs share
            self.drain()
            with mock.patch.object(plane_rtcp, "time", ReportClock):
                if ev[1]:
                    self.plane.send_reports()
                else:
                    self.plane.send_due_reports()
        elif kind == "send_state":
            self.change_send_state(ev[1], ev[2])
        elif kind == "nack" and self.routes:
            r = self.routes[ev[1]]
            rcv = self.sc.publishers + self.sc.routes[ev[1]].receiver
            ctx = self.client_ctx[rcv]
            if ctx is not None:
                lost = [(r.last_seq - back) & 0xFFFF for back in ev[2]]  # recent packets: mostly cached
                plain = rtcp.build_nack(sender_ssrc=7, media_ssrc=r.ssrc, lost=lost)
                data = ctx.protect_rtcp(plain)
                assert data is not None
                self.send(rcv, bytes(data))

    def change_send_state(self, i: int, change: str) -> None:
        """Toggle one thing a receiver's routes send with: the peer's transmit session (None, as when it lost its
        only address), its address (to the stranger's socket; once through a name built at run time, which is not
        interned), the session's peer (None, as when it reconnects), or its transport-wide sequencer (replaced, or a first
        one: negotiated after the peer's routes started sending)."""
        s = self.sessions[i]
        peer = self.endpoint.peer(f"s{i}")
        if peer is None or peer.srtp is None:
            return
        if change == "unready":
            peer._tx = None if peer._tx is not None else peer.srtp.tx
        elif change in ("move", "move_by_name"):
            home, away = self.clients[i].getsockname(), self.clients[-1].getsockname()
            setattr(peer, "address" if change == "move" else "".join(["add", "ress"]),
                    away if peer.address == home else home)
        elif change == "detach":
            s.peer = None if s.peer is not None else peer
        elif peer.twcc is not None:  # a new one in its place: the old one is freed
            at = self.sequencers.index(peer.twcc)  # type: ignore[arg-type]
            self.sequencers[at] = peer.twcc = TransportSequencer(5, lambda: 1000.0)
        else:  # one where there was none, maybe while its routes send: they stamp from the next packet on
            peer.twcc = TransportSequencer(5, lambda: 1000.0)
            self.sequencers.append(peer.twcc)

    def play_rtp(self, index: int, seq_step: int, pt: int, cc: int, ext: bytes | None, padding: int,
                 payload: bytes, marker: bool, ssrc: int, fate: str, first: bool) -> None:
        t = self.sc.tracks[index]
        self.seqs[index] = seq = (self.seqs[index] + (seq_step if first else 1)) & 0xFFFF
        b0 = 0x80 | cc | (0x10 if ext is not None else 0) | (0x20 if padding else 0)
        if fate == "v1":
            b0 = (b0 & 0x3F) | 0x40 | 0x80  # version 3: still RTP to the demux, not to the forwarder
        plain = struct.pack("!BBHII", b0, (0x80 if marker else 0) | pt, seq, seq * 960 & 0xFFFFFFFF, ssrc)
        plain += b"".join(struct.pack("!I", 0xC0000000 + k) for k in range(cc))
        if ext is not None:
            plain += ext
        plain += payload
        if padding:
            plain += bytes(padding - 1) + bytes([padding])
        self.send_rtp(t.publisher, plain, fate)

    def send_rtp(self, publisher: int, plain: bytes, fate: str) -> None:
        """Protect ``plain`` as the publisher's client would and send it; ``fate``: "ok", "forged" (a bad tag),
        "replay" (sent twice)."""
        ctx = self.client_ctx[publisher]
        if ctx is None:
            self.send(publisher, plain)
            return
        data = ctx.protect_rtp(plain)
        if data is None:  # libsrtp refused (e.g. an extension length it cannot parse): send it in the clear
            self.send(publisher, plain)
            return
        data = bytes(data)
        if fate == "forged":
            data = data[:-1] + bytes([data[-1] ^ 1])
        self.send(publisher, data)
        if fate == "replay":
            self.send(publisher, data)
        self.sent[publisher].append(data)

    def outcome(self) -> dict[str, Any]:
        return {
            "received": self.received,
            "transport": self.endpoint.counters.snapshot(),
            "plane": self.plane.counters,
            "events": [repr(e) for e in self.events],
            "tracks": [(t.packets, t.octets, t.started, t.base_seq, t.max_seq, t.cycles, t.last_ts, t.last_rx,
                        t.vad_score, t.speaking, t.ssrc, t.cache) for t in self.tracks],
            "routes": [(r.seq_offset, r.last_seq, r.resync, r.packets, r.octets) for r in self.routes],
            "sequencers": [(q.next_seq, q.stamped, q.unstampable, q.sent_bytes, q._send_ms, q._size, q._seq,
                            q._reported, q._cluster) for q in self.sequencers],
            "arrivals": [self.arrivals(f) for f in self.feedback],
        }

    @staticmethod
    def arrivals(f: FeedbackSender) -> tuple[Any, ...]:
        """What a publisher's feedback would report: numbers received or not (arrival times are wall clock)."""
        reports = []
        f.drain()
        while (tcc := f.recorder.feedback(1, 0)) is not None:
            reports.append((tcc.base_seq, tuple(a is not None for a in tcc.arrivals)))
        return (f.recorder.recorded, f.recorder.ignored, f.media_ssrc, tuple(reports))

    def close(self) -> None:
        for c in [self.sock, *self.clients]:
            c.close()


def run(sc: Scenario, fast_path: str, twcc: bool = False) -> dict[str, Any]:
    """``twcc``: every connected receiver stamps transport-wide sequence numbers (the native step has each packet
    stamped by the receiver's sequencer, then protects and sends it itself: the same bytes, the same numbering)."""
    r = Run(sc, fast_path, twcc)
    try:
        r.play()
        return r.outcome()
    finally:
        r.close()
