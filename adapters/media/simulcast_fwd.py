"""Simulcast forwarding: one layer per receiver, chosen from its bandwidth estimate, switched on key frames.

Theory of operation. A simulcast publisher's section names its streams by RID (``PublishedTrack.rids``, in the
client's order) and usually signals no SSRC. Its layers' SSRCs are therefore not in the session's ``inbound``
table, so both fast paths hand their packets to ``MediaPlane.on_rtp`` as unknown SSRCs, and ``on_rtp`` here learns
each SSRC from the RID header extension and forwards the packet in Python (ADR 0019: the per-packet simulcast
rules are pure, ``core.video.simulcast``, ready to be mirrored in the native step; until they are, simulcast video
costs the Python per-packet price).

Per packet: the layer's byte count (its measured bitrate over the last second), whether it starts a key frame
(``core.video.payload``), then for each live route of the track the route's ``LayerSwitcher``: its target is
``choose_layer`` over the layers that are sending, ordered by measured bitrate, from the receiver's estimate
(``ReceiverEstimates``; the top layer while there is none), and the switcher decides whether this packet goes to
that receiver and under which sequence number, timestamp and VP8 picture id. A switcher waiting for a key frame
asks the publisher for one on the target layer's SSRC (one PLI per second per layer). Each route keeps the last
512 packets it sent, so a receiver's NACK is answered in its own numbering.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from callsd.core.video import Layer, LayerChoice, LayerPacket, LayerSwitcher, choose_layer
from callsd.core.video.payload import is_keyframe_start, parse_vp8_descriptor, rewrite_vp8_ids
from callsd.core.wire.rtp import read_mid, rewrite_rtp
from callsd.core.wire.rtx import header_length
from callsd.core.wire.simulcast_sdp import MAX_LAYERS, RID_URI

from .forwarder import Forwarder, InTrack, OutRoute

__all__ = ["SimulcastTrack", "SimulcastForwarder", "RATE_WINDOW_S", "ROUTE_CACHE"]

RATE_WINDOW_S = 1.0
ROUTE_CACHE = 512


class _RouteState:
    __slots__ = ("switcher", "choice", "sent")

    def __init__(self, clock_rate: int, target: int) -> None:
        self.switcher = LayerSwitcher(clock_rate=clock_rate, target=target)
        self.choice: LayerChoice | None = None
        self.sent: list[bytes | None] = [None] * ROUTE_CACHE  # by receiver sequence number


class SimulcastTrack:
    """The simulcast side of one ``InTrack``: its RIDs, their SSRCs, rates and the per-receiver switch state."""

    __slots__ = ("track", "rids", "rid_ext", "codec", "ssrcs", "octets", "window_start", "rates", "last_pli",
                 "routes")

    def __init__(self, track: InTrack, rids: tuple[str, ...], rid_ext: int) -> None:
        self.track = track
        self.rids = rids
        self.rid_ext = rid_ext
        self.codec = next(iter(track.codecs.values()))[0]  # "vp8" | "h264"
        self.ssrcs: dict[int, int] = {}  # SSRC -> layer index (position in rids)
        self.octets = [0] * len(rids)
        self.window_start = 0.0
        self.rates = [0] * len(rids)  # bit/s over the last window
        self.last_pli = [-1e9] * len(rids)
        self.routes: dict[str, _RouteState] = {}  # receiver session id -> its switch state

    def layer_ssrc(self, layer: int) -> int | None:
        return next((ssrc for ssrc, i in self.ssrcs.items() if i == layer), None)

    def sending_layers(self) -> list[tuple[int, Layer]]:
        """(layer index, Layer) of the layers that sent in the last window, lowest bitrate first."""
        live = [(i, Layer(rid=self.rids[i], bitrate=rate)) for i, rate in enumerate(self.rates) if rate > 0]
        return sorted(live, key=lambda x: x[1].bitrate)


class SimulcastForwarder:
    """Owns the simulcast tracks of a plane. ``send_pli(session, ssrc)`` asks a publisher for a key frame;
    ``estimate(session_id)`` is the receiver's bandwidth estimate (bit/s) or None."""

    def __init__(self, forwarder: Forwarder, send_pli: Callable[[Any, int], None],
                 estimate: Callable[[str], int | None], clock: Callable[[], float] = time.monotonic) -> None:
        self.forwarder = forwarder
        self._send_pli = send_pli
        self._estimate = estimate
        self._clock = clock
        self.tracks: dict[str, SimulcastTrack] = {}  # track id -> state
        self.switches = 0
        # per layer (its position in a=simulcast, 0 = first; the web client lists the lowest first): packets and
        # payload-and-header bytes received from publishers and forwarded to receivers, for /metrics
        self.layer_rtp_in = [0] * MAX_LAYERS
        self.layer_bytes_in = [0] * MAX_LAYERS
        self.layer_rtp_out = [0] * MAX_LAYERS
        self.layer_bytes_out = [0] * MAX_LAYERS

    def counters(self) -> dict[str, int]:
        """The per-layer counters (``simulcast_<rtp|bytes>_<in|out>_l<layer>``) and the switches, flat, as the
        plane's counters are (a media worker reports them the same way)."""
        out = {"simulcast_switches": self.switches}
        for layer in range(MAX_LAYERS):
            out[f"simulcast_rtp_in_l{layer}"] = self.layer_rtp_in[layer]
            out[f"simulcast_bytes_in_l{layer}"] = self.layer_bytes_in[layer]
            out[f"simulcast_rtp_out_l{layer}"] = self.layer_rtp_out[layer]
            out[f"simulcast_bytes_out_l{layer}"] = self.layer_bytes_out[layer]
        return out

    def add_track(self, track: InTrack, rids: tuple[str, ...]) -> None:
        rid_ext = track.ext.get(RID_URI, 0)
        if rids and rid_ext:
            self.tracks[track.track_id] = SimulcastTrack(track, rids, rid_ext)

    def forget_track(self, track: InTrack) -> None:
        self.tracks.pop(track.track_id, None)

    def forget_route(self, route: OutRoute) -> None:
        st = self.tracks.get(route.track.track_id)
        if st is not None:
            st.routes.pop(route.receiver.session_id, None)

    def is_simulcast(self, route: OutRoute) -> bool:
        return route.track.track_id in self.tracks

    # -- the packet path ----------------------------------------------------------------------------------------
    def on_rtp(self, published: dict[str, InTrack], plain: bytes) -> bool:
        """Forward a packet of a simulcast layer of one of ``published`` (a session's tracks by mid). True when it
        was one (``Forwarder.on_rtp``'s unknown-SSRC count is taken back)."""
        ssrc = int.from_bytes(plain[8:12], "big")
        st, layer = self._layer_of(published, ssrc, plain)
        if st is None:
            return False
        c = self.forwarder.counters
        c.drop_unknown_ssrc -= 1
        c.rtp_in += 1
        c.rtp_in_bytes += len(plain)
        start = header_length(plain)
        if start is None:
            c.drop_malformed += 1
            return True
        now = self._clock()
        self.layer_rtp_in[layer] += 1
        self.layer_bytes_in[layer] += len(plain)
        self._count(st, layer, len(plain), now)
        payload = plain[start:]
        key = is_keyframe_start(st.codec, payload)
        d = parse_vp8_descriptor(payload) if st.codec == "vp8" else None
        packet = LayerPacket(layer=layer, seq=plain[2] << 8 | plain[3], timestamp=int.from_bytes(plain[4:8], "big"),
                             keyframe_start=key, now_ms=now * 1000.0,
                             picture_id=d.picture_id if d is not None else None,
                             picture_id_bits=d.picture_id_bits if d is not None and d.picture_id_bits else 15,
                             tl0picidx=d.tl0picidx if d is not None else None)
        for route in st.track.live:
            self._forward(st, route, packet, plain, start, now)
        return True

    def _layer_of(self, published: dict[str, InTrack], ssrc: int, plain: bytes) -> tuple[SimulcastTrack | None, int]:
        for t in published.values():
            st = self.tracks.get(t.track_id)
            if st is not None and ssrc in st.ssrcs:
                return st, st.ssrcs[ssrc]
        for t in published.values():
            st = self.tracks.get(t.track_id)
            if st is None or plain[1] & 0x7F not in t.codecs:
                continue
            rid = read_mid(plain, st.rid_ext)  # an SDES string extension, read like the MID
            if rid in st.rids:
                st.ssrcs[ssrc] = st.rids.index(rid)
                return st, st.ssrcs[ssrc]
        return None, 0

    def _count(self, st: SimulcastTrack, layer: int, n: int, now: float) -> None:
        if now - st.window_start >= RATE_WINDOW_S:
            span = max(now - st.window_start, RATE_WINDOW_S)
            st.rates = [int(o * 8 / span) for o in st.octets] if st.window_start else [o * 8 for o in st.octets]
            st.octets = [0] * len(st.rids)
            st.window_start = now
        st.octets[layer] += n
        if st.rates[layer] == 0:  # a layer's first packets: let it count as sending before the window closes
            st.rates[layer] = 1

    def _target(self, st: SimulcastTrack, rs: _RouteState, receiver_id: str, now: float) -> int:
        layers = st.sending_layers()
        if not layers:
            return rs.switcher.target
        estimate = self._estimate(receiver_id)
        if estimate is None:
            return layers[-1][0]
        # the choice is kept apart from the layer flowing: after choosing a higher layer, the switcher still
        # forwards the old one until the new one's key frame; the choice must not fall back meanwhile
        prev = rs.choice
        if prev is None or prev.index >= len(layers):
            current = next((k for k, (i, _) in enumerate(layers) if i == rs.switcher.current), None)
            prev = LayerChoice(index=current) if current is not None else None
        rs.choice = choose_layer(estimate, [layer for _, layer in layers], prev, now * 1000.0)
        return layers[rs.choice.index][0]

    def _forward(self, st: SimulcastTrack, route: OutRoute, p: LayerPacket, plain: bytes, start: int,
                 now: float) -> None:
        peer = route.receiver.peer
        opt = route.pt_map.get(plain[1] & 0x7F)
        if peer is None or opt is None:
            return
        rs = st.routes.get(route.receiver.session_id)
        if rs is None:
            rs = st.routes[route.receiver.session_id] = _RouteState(st.track.clock_rate, p.layer)
        sw = rs.switcher
        sw.target = self._target(st, rs, route.receiver.session_id, now)
        before = sw.switches
        out = sw.on_packet(p)
        if sw.wants_keyframe:
            self._keyframe(st, sw.target, now)
        if out is None:
            return
        self.switches += sw.switches - before
        buf = bytearray(plain)
        if not rewrite_rtp(buf, route.ssrc, out.seq, out.timestamp + route.ts_offset, opt, route.remap):
            self.forwarder.counters.drop_malformed += 1
            return
        if out.picture_id is not None or out.tl0picidx is not None:
            body = bytearray(buf[start:])
            if rewrite_vp8_ids(body, out.picture_id, out.tl0picidx):
                buf[start:] = body
        data = bytes(buf)
        rs.sent[out.seq % ROUTE_CACHE] = data
        route.last_seq = out.seq
        peer.send_rtp(data)
        route.packets += 1
        route.octets += len(plain) - start
        c = self.forwarder.counters
        c.rtp_out += 1
        c.rtp_out_bytes += len(data)
        self.layer_rtp_out[p.layer] += 1
        self.layer_bytes_out[p.layer] += len(data)

    def _keyframe(self, st: SimulcastTrack, layer: int, now: float) -> None:
        ssrc = st.layer_ssrc(layer)
        if ssrc is None or now - st.last_pli[layer] < 1.0:
            return
        st.last_pli[layer] = now
        self.forwarder.counters.pli_out += 1
        self._send_pli(st.track.session, ssrc)

    # -- feedback -----------------------------------------------------------------------------------------------
    def request_keyframe(self, route: OutRoute) -> None:
        """A receiver's PLI/FIR: ask for a key frame of the layer it is on (or is switching to)."""
        st = self.tracks.get(route.track.track_id)
        rs = st.routes.get(route.receiver.session_id) if st is not None else None
        if st is not None and rs is not None:
            self._keyframe(st, rs.switcher.target, self._clock())

    def answer_nack(self, route: OutRoute, seqs: list[int]) -> None:
        """Resend what this route sent under the sequence numbers ``seqs`` (plain resends, receiver numbering)."""
        st = self.tracks.get(route.track.track_id)
        rs = st.routes.get(route.receiver.session_id) if st is not None else None
        peer = route.receiver.peer
        c = self.forwarder.counters
        c.nack_in += 1
        if rs is None or peer is None:
            return
        for seq in seqs:
            data = rs.sent[seq % ROUTE_CACHE]
            if data is not None and (data[2] << 8 | data[3]) == seq:
                peer.send_rtp(data)
                c.nack_answered += 1
