"""The differential harness for video on the native fast path (tests/media/test_native_video_diff.py): simulcast
publishers (2-3 layers, VP8 or H.264, with or without RTX per layer), single-encoding video tracks with an RTX
stream, receivers with and without RTX, and a stream of events on top of ``native_support``'s: layer packets
(key frames and not, every VP8 descriptor form, H.264 single NAL units, STAP-A and FU-A, padding, RTX copies and
RTX padding probes, RIDs the server does not know, MIDs of another section), RTX packets of single-encoding tracks,
REMB from receivers (which moves their layer), virtual time passing (the rate windows, the decisions' interval, the
PLI throttle), the periodic NACK rounds, NACKs from receivers. ``VideoRun`` plays it through a real ``MediaPlane``
with a given fast path, on a virtual clock, and records the simulcast state as well as what ``Run`` records."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

from callsd.adapters.media import plane_rtcp, retransmit
from callsd.core.wire import rtcp
from callsd.core.wire.simulcast_sdp import REPAIRED_RID_URI, RID_URI
from compiled_support import state_names
from hypothesis import strategies as st
from native_support import MID_EXT, PROFILES, PUBLISHER_TWCC_EXT, RouteSpec, Run, Scenario, TrackSpec

RID_EXT, RRID_EXT = 10, 11
RTX_PT = 97  # the publishers' RTX payload type
ROUTE_RTX_PT = 98  # the receivers'
RIDS = ("q", "h", "f")


@dataclass(frozen=True)
class SimulcastSpec:
    track: int  # index of a video TrackSpec (not signalled) in the base scenario
    layers: int
    ssrcs: tuple[int, ...]
    rtx_ssrcs: tuple[int, ...] | None  # None: the publisher does no RTX


@dataclass(frozen=True)
class RtxSpec:
    track: int  # index of a signalled video TrackSpec
    ssrc: int


@dataclass(frozen=True)
class VideoScenario:
    base: Scenario  # its events include the video events below
    simulcast: tuple[SimulcastSpec, ...]
    rtx: tuple[RtxSpec, ...]
    route_rtx: tuple[bool, ...]  # per base route: the receiver negotiated RTX


def _vp8(draw: Any, key: bool, pid: int, tl0: int) -> bytes:
    form = draw(st.sampled_from(["full", "full", "pid7", "plain", "middle", "truncated", "tid_only"]))
    head = bytes([0x00 if key else 0x01])
    if form == "full":
        return bytes([0x90, 0xE0, 0x80 | (pid >> 8 & 0x7F), pid & 0xFF, tl0 & 0xFF, 0x20]) + head
    if form == "pid7":
        return bytes([0x90, 0x80, pid & 0x7F]) + head
    if form == "plain":
        return bytes([0x10]) + head
    if form == "middle":  # not the start of partition 0
        return bytes([0x90 | draw(st.integers(0, 7)) & 0xEF, 0x80, pid & 0x7F]) + head
    if form == "tid_only":
        return bytes([0x90, 0x20, 0x40]) + head
    return bytes([0x90, 0xC0])[: draw(st.integers(1, 2))]


def _h264(draw: Any, key: bool) -> bytes:
    form = draw(st.sampled_from(["single", "stap", "fu_start", "fu_middle", "stap_bad"]))
    nal = draw(st.sampled_from([5, 7])) if key else draw(st.sampled_from([1, 6, 8]))
    if form == "single":
        return bytes([0x60 | nal])
    if form == "stap":
        return bytes([0x78, 0, 2, 0x60 | 9, 0, 0, 3, 0x60 | nal, 1, 2])
    if form == "stap_bad":
        return bytes([0x78, 0, 9, 0x65])
    return bytes([0x7C, (0x80 if form == "fu_start" else 0) | nal])


@st.composite
def layer_event(draw: Any, sims: tuple[SimulcastSpec, ...], codecs: tuple[str, ...]) -> tuple[Any, ...]:
    sim = draw(st.integers(0, len(sims) - 1))
    layer = draw(st.integers(0, sims[sim].layers - 1))
    key = draw(st.integers(0, 2)) == 0
    payload = (_vp8 if codecs[sim] == "vp8" else lambda d, k, *_: _h264(d, k))(draw, key, draw(st.integers(0, 0x7FFF)),
                                                                            draw(st.integers(0, 255)))
    payload += draw(st.binary(max_size=40)) + bytes(layer * draw(st.sampled_from([0, 150, 400])))  # higher: larger
    ext = draw(st.sampled_from(["rid", "rid", "rid_mid", "rid_twcc", "other_mid", "unknown_rid", "none"]))
    return ("layer", sim, layer, draw(st.sampled_from([1, 1, 1, 2, 0, -2, 300])), payload, ext,
            draw(st.sampled_from([0, 0, 0, 4])), draw(st.sampled_from(["ok"] * 6 + ["forged", "replay"])),
            draw(st.sampled_from(["media"] * 4 + ["rtx", "probe"])), draw(st.sampled_from([1, 1, 3, 10, 30])))


@st.composite
def video_scenarios(draw: Any) -> VideoScenario:
    publishers = draw(st.integers(1, 2))
    receivers = draw(st.integers(1, 3))
    tracks: list[TrackSpec] = []
    sims: list[SimulcastSpec] = []
    codecs: list[str] = []
    rtxs: list[RtxSpec] = []
    used: set[int] = set()

    def ssrc() -> int:
        x = draw(st.integers(1, 0xFFFFFFFF).filter(lambda v: v not in used))
        used.add(x)
        return x

    for p in range(publishers):
        for _ in range(draw(st.integers(1, 2))):
            codec = draw(st.sampled_from(["vp8", "vp8", "h264"]))
            tracks.append(TrackSpec(publisher=p, media="video", ssrc=ssrc(), signalled=False, level_id=0,
                                    codec=codec))
            layers = draw(st.integers(2, 3))
            sims.append(SimulcastSpec(track=len(tracks) - 1, layers=layers,
                                      ssrcs=tuple(ssrc() for _ in range(layers)),
                                      rtx_ssrcs=tuple(ssrc() for _ in range(layers)) if draw(st.booleans()) else None))
            codecs.append(codec)
        if draw(st.booleans()):  # a single-encoding camera with RTX
            tracks.append(TrackSpec(publisher=p, media="video", ssrc=ssrc(), signalled=True, level_id=0, codec="vp8"))
            rtxs.append(RtxSpec(track=len(tracks) - 1, ssrc=ssrc()))
    routes = []
    for ti in range(len(tracks)):
        for r in range(receivers):
            if draw(st.integers(0, 5)):
                remap = draw(st.lists(st.tuples(st.sampled_from([MID_EXT, RID_EXT, PUBLISHER_TWCC_EXT, 2]),
                                                st.sampled_from([0, 1, 4, 14])), max_size=2))
                routes.append(RouteSpec(track=ti, receiver=r, ssrc=ssrc(), ts_offset=draw(st.integers(0, 0xFFFFFFFF)),
                                        last_seq=draw(st.integers(0, 0xFFFF)), pt=draw(st.sampled_from([96, 100, 127])),
                                        remap=tuple(remap), paused=draw(st.integers(0, 7)) == 0,
                                        negotiated=draw(st.integers(0, 7)) > 0))
    sims_t, tracks_t = tuple(sims), tuple(tracks)
    plain = [i for i, t in enumerate(tracks) if t.signalled]
    other = [
        st.tuples(st.just("clock"), st.sampled_from([0.01, 0.05, 0.1, 0.3, 1.0, 1.6])),
        st.tuples(st.just("remb"), st.integers(0, receivers - 1), st.sampled_from([30_000, 150_000, 400_000,
                                                                                    5_000_000])),
        st.tuples(st.just("clock"), st.sampled_from([0.05, 0.3, 1.0])),
        st.tuples(st.just("round")),
        st.tuples(st.just("drain"), st.integers(1, 300)),
        st.tuples(st.just("nack"), st.integers(0, max(0, len(routes) - 1)), st.lists(st.integers(0, 40), max_size=3)),
        st.tuples(st.just("pause"), st.integers(0, max(0, len(routes) - 1))),
        st.tuples(st.just("rekey"), st.integers(0, publishers + receivers - 1), st.binary(min_size=60, max_size=60)),
    ]
    if rtxs:
        other.append(st.tuples(st.just("rtx"), st.integers(0, len(rtxs) - 1), st.integers(0, 20),
                               st.sampled_from(["ok", "ok", "probe", "wrong_pt"])))
    if plain:
        from native_support import rtp_event
        other.append(rtp_event(tracks_t).filter(lambda e: tracks_t[e[1]].signalled))
    # layer packets, time and estimates most often: a switch needs a target change, then the target's key frame
    layers = layer_event(sims_t, tuple(codecs))
    moves = st.one_of(st.tuples(st.just("clock"), st.sampled_from([0.3, 1.0, 1.6])),
                      st.tuples(st.just("remb"), st.integers(0, receivers - 1), st.sampled_from([30_000, 5_000_000])))
    rest = st.one_of(*other)
    event = st.integers(0, 9).flatmap(lambda k: layers if k < 6 else moves if k < 8 else rest)  # one_of de-dupes
    events = draw(st.lists(event, min_size=10, max_size=80))
    base = Scenario(profile=draw(st.sampled_from(sorted(PROFILES))), publishers=publishers, receivers=receivers,
                    receivers_connected=tuple(draw(st.integers(0, 5)) > 0 for _ in range(receivers)),
                    tracks=tracks_t, routes=tuple(routes), events=tuple(events))
    return VideoScenario(base=base, simulcast=sims_t, rtx=tuple(rtxs),
                         route_rtx=tuple(draw(st.booleans()) for _ in routes))


def _remb(bps: int) -> bytes:
    exp = 0
    while bps >> exp >= 1 << 18:
        exp += 1
    m = bps >> exp
    return b"REMB" + bytes([0, exp << 2 | m >> 16, m >> 8 & 0xFF, m & 0xFF])


class VideoRun(Run):
    """``Run`` with simulcast and RTX tracks, on a virtual clock: the datagrams sent so far are handled at each
    "clock" event (and each drain), then the clock moves."""

    def __init__(self, vs: VideoScenario, fast_path: str, twcc: bool = False) -> None:
        super().__init__(vs.base, fast_path, twcc)
        self.vs = vs
        self.now = 1000.0
        plane = self.plane
        plane.simulcast._clock = plane.estimates._clock = plane.forwarder._clock = lambda: self.now
        for spec in vs.simulcast:
            track = self.tracks[spec.track]
            track.ext.update({RID_URI: RID_EXT, REPAIRED_RID_URI: RRID_EXT})
            plane.simulcast.add_track(track, RIDS[: spec.layers], RTX_PT if spec.rtx_ssrcs else None)
        for spec in vs.rtx:
            track = self.tracks[spec.track]
            retransmit.register_rtx(track.session.inbound_rtx, track, spec.ssrc, RTX_PT)
        for i, (route, rtx) in enumerate(zip(self.routes, vs.route_rtx, strict=True)):
            if rtx:
                route.rtx_ssrc, route.rtx_pt = 0x7000 + i, ROUTE_RTX_PT
        self.layer_seq: dict[tuple[int, int], int] = {}
        self.rtx_seq: dict[tuple[int, int], int] = {}
        self.layer_ts: dict[tuple[int, int], int] = {}

    def play_event(self, ev: tuple[Any, ...]) -> None:
        kind = ev[0]
        if kind == "layer":
            for k in range(ev[-1]):
                self.play_layer(*ev[1:-1], first=k == 0)
        elif kind == "rtx":
            self.play_rtx(*ev[1:])
        elif kind == "clock":  # what was sent so far is handled now, then time passes
            self.drain()
            self.now += ev[1]
        elif kind == "remb":
            i = self.sc.publishers + ev[1]
            ctx = self.client_ctx[i]
            if ctx is not None:
                fb = rtcp.Feedback(packet_type=206, fmt=15, sender_ssrc=9, media_ssrc=0, fci=_remb(ev[2]))
                data = ctx.protect_rtcp(rtcp.build_rtcp([fb]))
                assert data is not None
                self.send(i, bytes(data))
        elif kind == "round":
            self.drain()
            retransmit.nack_round(self.plane.forwarder, list(self.plane.tracks.values()), plane_rtcp.send_nack)
            self.plane.simulcast.nack_round()
            self.plane.forwarder.tick(list(self.plane.tracks.values()))
        else:
            super().play_event(ev)

    def play_layer(self, sim: int, layer: int, seq_step: int, payload: bytes, ext: str, padding: int, fate: str,
                   form: str, first: bool) -> None:
        spec = self.vs.simulcast[sim]
        key = (sim, layer)
        rtx = form != "media" and spec.rtx_ssrcs is not None
        seq = self.layer_seq[key] = (self.layer_seq.get(key, 100 * layer) + (seq_step if first else 1)) & 0xFFFF
        ts = self.layer_ts[key] = (self.layer_ts.get(key, 7 * layer) + (3000 if first else 0)) & 0xFFFFFFFF
        rid = b"x" if ext == "unknown_rid" else RIDS[layer].encode()
        body = b""
        if ext != "none":
            body += bytes([((RRID_EXT if rtx else RID_EXT) << 4) | (len(rid) - 1)]) + rid
        if ext in ("rid_mid", "other_mid"):
            mid = str(spec.track if ext == "rid_mid" else spec.track + 1).encode()
            body += bytes([(MID_EXT << 4) | (len(mid) - 1)]) + mid
        if ext == "rid_twcc":
            body += bytes([(PUBLISHER_TWCC_EXT << 4) | 1]) + struct.pack("!H", seq * 7 & 0xFFFF)
        body += bytes(-len(body) % 4)
        block = struct.pack("!HH", 0xBEDE, len(body) // 4) + body if body else b""
        ssrc, pt = spec.ssrcs[layer], 96
        if rtx:
            assert spec.rtx_ssrcs is not None
            ssrc, pt = spec.rtx_ssrcs[layer], RTX_PT
            rseq = self.rtx_seq[key] = (self.rtx_seq.get(key, 5000) + 1) & 0xFFFF
            payload = b"" if form == "probe" else struct.pack("!H", (seq - 1 - seq_step % 3) & 0xFFFF) + payload
            if form == "probe":
                padding = padding or 8
            seq = rseq
        b0 = 0x80 | (0x10 if block else 0) | (0x20 if padding else 0)
        plain = struct.pack("!BBHII", b0, pt, seq, ts, ssrc) + block + payload
        if padding:
            plain += bytes(padding - 1) + bytes([padding])
        self.send_rtp(self.vs.base.tracks[spec.track].publisher, plain, fate)

    def play_rtx(self, index: int, back: int, form: str) -> None:
        spec = self.vs.rtx[index]
        t = self.vs.base.tracks[spec.track]
        key = (-1, index)
        rseq = self.rtx_seq[key] = (self.rtx_seq.get(key, 9000) + 1) & 0xFFFF
        osn = (self.seqs[spec.track] - back) & 0xFFFF
        payload = b"" if form == "probe" else struct.pack("!H", osn) + bytes([0x10, 0x01]) + bytes(range(back))
        padding = 4 if form == "probe" else 0
        b0 = 0x80 | (0x20 if padding else 0)
        plain = struct.pack("!BBHII", b0, 96 if form == "wrong_pt" else RTX_PT, rseq, osn * 960, spec.ssrc) + payload
        if padding:
            plain += bytes(padding - 1) + bytes([padding])
        self.send_rtp(t.publisher, plain, "ok")

    def outcome(self) -> dict[str, Any]:
        out = super().outcome()
        out["routes"] = [(*row, r.rtx_seq) for row, r in zip(out["routes"], self.routes, strict=True)]
        sf = self.plane.simulcast
        out["layers"] = [(tid, st.ssrcs, st.rtx_ssrcs, st.layer_ssrcs, st.received, st.newest, st.count, st.octets,
                          st.rates, st.window_start, st.generation, st.last_pli, st.nacked,
                          {sid: _route_state(rs) for sid, rs in st.routes.items()})
                         for tid, st in sf.tracks.items()]
        out["simulcast_in"] = [sorted((k, v.layer, v.rtx, v.track.track.track_id) for k, v in s.simulcast_in.items())
                               for s in self.sessions]
        return out


def _route_state(rs: Any) -> tuple[Any, ...]:
    sw = rs.switcher
    return (rs.choice, rs.sent, rs.last_ts, rs.last_at, rs.decided_at, rs.decided_gen,
            tuple(getattr(sw, name) for name in state_names(type(sw))))


def run_video(vs: VideoScenario, fast_path: str, twcc: bool = False) -> dict[str, Any]:
    r = VideoRun(vs, fast_path, twcc)
    try:
        r.play()
        return r.outcome()
    finally:
        r.close()
