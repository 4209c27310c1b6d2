"""Simulcast forwarding: one layer per receiver, chosen from its bandwidth estimate, switched on key frames.

Theory of operation. A simulcast publisher's section names its streams by RID (``PublishedTrack.rids``, in the
client's order) and usually signals no SSRC. Its layers' SSRCs are therefore not in the session's ``inbound``
table: a layer's first packet reaches ``MediaPlane.on_rtp`` as an unknown SSRC on both fast paths, and ``on_rtp``
here learns the SSRC from the RID header extension (``SimulcastTrack.learn``) and indexes it, and each layer's RTX
SSRC learnt from the repaired RID, in the publisher session's ``simulcast_in`` table (SSRC -> ``SimulcastStream``).
The Python path finds the layer here for every packet; the native step finds it in that table and runs the same
per-packet rules in C on these objects (native/simulcast_step.h, ADR 0024), so only a layer's first packet takes
the Python path there.

Per packet (the same on both fast paths): the layer's byte count (its measured bitrate over the last second),
whether it starts a key frame
(``core.video.payload``), then for each live route of the track the route's ``LayerSwitcher``: its target is
``choose_layer`` over the layers that are sending, in the publisher's order, from the receiver's estimate
(``ReceiverEstimates``; the top layer while there is none). That choice is a decision, not per-packet work: it is
made again (``_decide``) when the receiver's estimate changed (``estimate_changed``), when the track's layer rates
changed (``SimulcastTrack.generation``) or ``DECIDE_INTERVAL_S`` after the last one (the upgrade hold runs on
time), never more often. Then the switcher decides whether this packet goes to
that receiver and under which sequence number, timestamp and VP8 picture id. A switcher waiting for a key frame
asks the publisher for one on the target layer's SSRC (one PLI per second per layer). Each route keeps the last
512 packets it sent, so a receiver's NACK is answered in its own numbering (on the receiver's RTX stream when it
negotiated one), and the newest timestamp it sent with when (its sender reports extrapolate from that).

Repair towards publishers: each layer's RTX stream is learnt from the repaired-RID extension and unwrapped onto
the layer (an RTX copy of a packet the layer already delivered is dropped); each layer remembers the sequence
numbers of its last 512 packets, so the plane's 250 ms round NACKs the holes (``nack_round``), and a receiver's
NACK for a packet its route never sent is passed to the publisher in the layer's numbering.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from callsd.core.video import Layer, LayerChoice, LayerPacket, LayerPolicy, LayerSwitcher, choose_layer
from callsd.core.video.payload import is_keyframe_start, parse_vp8_descriptor, rewrite_vp8_ids
from callsd.core.wire.rtp import read_mid, rewrite_rtp
from callsd.core.wire.rtx import header_length, unwrap_rtx, wrap_rtx
from callsd.core.wire.simulcast_sdp import MAX_LAYERS, REPAIRED_RID_URI, RID_URI

from .forwarder import URI_MID, Forwarder, InTrack, OutRoute
from .retransmit import MAX_NACKS, REORDER, WINDOW

__all__ = ["SimulcastTrack", "SimulcastStream", "SimulcastForwarder", "RATE_WINDOW_S", "ROUTE_CACHE",
           "DECIDE_INTERVAL_S"]

log = logging.getLogger("callsd.media.simulcast")
RATE_WINDOW_S = 1.0
NEED_WINDOWS = 5  # a layer's bitrate for the layer choice is its peak over this many windows
_POLICY = LayerPolicy()  # the layer choice's margin and hold (docs/video.md)
ROUTE_CACHE = 512
DECIDE_INTERVAL_S = 0.1  # a route's layer choice is made again at least this often while packets flow
_NEVER = float("-inf")


class _RouteState:
    __slots__ = ("switcher", "choice", "sent", "last_ts", "last_at", "decided_at", "decided_gen")

    def __init__(self, clock_rate: int, target: int) -> None:
        self.switcher = LayerSwitcher(clock_rate=clock_rate, target=target)
        self.choice: LayerChoice | None = None
        # when the layer choice was last made, and on which of the track's rate generations (``_decide``)
        self.decided_at = _NEVER
        self.decided_gen = -1
        self.sent: list[bytes | None] = [None] * ROUTE_CACHE  # by receiver sequence number
        # the newest RTP timestamp sent to the receiver (its numbering, route offset included) and when: an SR
        # extrapolates from it, as rtcp_term does for other routes from the track's last packet
        self.last_ts: int | None = None
        self.last_at = 0.0


class SimulcastTrack:
    """The simulcast side of one ``InTrack``: its RIDs, their SSRCs, rates and the per-receiver switch state."""

    __slots__ = ("track", "rids", "rid_ext", "codec", "ssrcs", "octets", "window_start", "rates", "last_pli",
                 "routes", "rtx_pt", "repaired_ext", "rtx_ssrcs", "received", "newest", "count", "nacked",
                 "layer_ssrcs", "primary_pt", "generation", "recent")

    def __init__(self, track: InTrack, rids: tuple[str, ...], rid_ext: int, rtx_pt: int | None = None,
                 repaired_ext: int = 0) -> None:
        self.track = track
        self.rids = rids
        self.rid_ext = rid_ext
        # RTX from the publisher (RFC 4588 with the repaired-RID extension naming the layer it repairs)
        self.rtx_pt = rtx_pt
        self.repaired_ext = repaired_ext
        self.rtx_ssrcs: dict[int, int] = {}  # RTX SSRC -> layer index
        # per layer, the sequence numbers of its last ROUTE_CACHE packets (by seq modulo): an RTX packet of one
        # already received (Chromium probes bandwidth by resending old packets on RTX) is not forwarded again
        self.received = [[-1] * ROUTE_CACHE for _ in rids]
        # for the NACK round (holes on the publisher's uplink): per layer the newest sequence number, the packets
        # seen (bounds the scan to what followed the first one) and how often each hole was asked for
        self.newest: list[int | None] = [None] * len(rids)
        self.count = [0] * len(rids)
        self.nacked: list[dict[int, int]] = [{} for _ in rids]
        self.codec = next(iter(track.codecs.values()))[0]  # "vp8" | "h264"
        self.primary_pt = next(iter(track.codecs))  # what an RTX packet of a layer is unwrapped to
        self.ssrcs: dict[int, int] = {}  # SSRC -> layer index (position in rids)
        self.layer_ssrcs: list[int | None] = [None] * len(rids)  # layer index -> its first SSRC (PLIs, NACKs)
        self.generation = 0  # bumped whenever ``rates`` change: the routes' layer choices are made again
        self.octets = [0] * len(rids)
        self.window_start = 0.0
        self.rates = [0] * len(rids)  # bit/s over the last window
        self.recent: deque[list[int]] = deque(maxlen=NEED_WINDOWS)  # the rates of the last windows (sending_layers)
        self.last_pli = [-1e9] * len(rids)
        self.routes: dict[str, _RouteState] = {}  # receiver session id -> its switch state

    def layer_ssrc(self, layer: int) -> int | None:
        return self.layer_ssrcs[layer]

    def learn(self, ssrc: int, layer: int, rtx: bool) -> None:
        """Bind ``ssrc`` to ``layer`` (its media or, ``rtx``, its RTX stream), here and in the publisher session's
        ``simulcast_in`` table, where the native step finds it."""
        if rtx:
            self.rtx_ssrcs[ssrc] = layer
        else:
            self.ssrcs[ssrc] = layer
            if self.layer_ssrcs[layer] is None:
                self.layer_ssrcs[layer] = ssrc
        self.track.session.simulcast_in[ssrc] = SimulcastStream(self, layer, rtx)

    def unindex(self) -> None:
        """Remove this track's SSRCs from the publisher session's ``simulcast_in`` table (the track is gone)."""
        table = self.track.session.simulcast_in
        for ssrc in [*self.ssrcs, *self.rtx_ssrcs]:
            stream = table.get(ssrc)
            if stream is not None and stream.track is self:
                del table[ssrc]

    def roll(self, now: float) -> None:
        """Close the rate window: each layer's bitrate over it, a new window from ``now``."""
        span = max(now - self.window_start, RATE_WINDOW_S)
        self.rates = [int(o * 8 / span) for o in self.octets] if self.window_start else [o * 8 for o in self.octets]
        self.octets = [0] * len(self.rids)
        self.window_start = now
        self.recent.append(self.rates)
        self.generation += 1

    def holes(self, layer: int) -> list[int]:
        """Sequence numbers of ``layer`` missing behind its newest to NACK now (each at most ``MAX_NACKS`` times;
        the newest ``REORDER`` are not holes yet), as ``retransmit.holes_to_nack`` does for other tracks."""
        newest = self.newest[layer]
        if newest is None:
            return []
        seen, asked = self.received[layer], self.nacked[layer]
        kept: dict[int, int] = {}
        lost: list[int] = []
        for back in range(min(WINDOW, self.count[layer]) - 1, REORDER - 1, -1):
            seq = (newest - back) & 0xFFFF
            if seen[seq % ROUTE_CACHE] == seq:
                continue
            n = asked.get(seq, 0)
            if n < MAX_NACKS:
                lost.append(seq)
                n += 1
            kept[seq] = n
        self.nacked[layer] = kept
        return lost

    def sending_layers(self) -> list[tuple[int, Layer]]:
        """(layer index, Layer) of the layers that sent in the last window, in the publisher's ``a=simulcast``
        order, lowest first (the convention browsers' pages follow and SFUs such as mediasoup rely on).

        Not by measured bitrate: a still screen's full layer can cost less than its half-size one (measured: the
        order flipped 7-14 times in 20 s with Chromium, each flip a switch and a wait for a key frame). A layer
        needs at least what the layers below it do, so its bitrate for the choice is the running maximum.

        And a move up needs a layer's peak, not its last second: a screen share's layer varies 2x from one second
        to the next (measured: a full layer at 60-137 kbit/s, mean 92), and a receiver moved up in a quiet second
        gets the next busy one, and the key frame of the switch, through a link that cannot carry them. So each
        ``Layer.peak`` is its highest over the last ``NEED_WINDOWS`` windows (a move down reads ``bitrate``)."""
        live: list[tuple[int, Layer]] = []
        need = peak = 0
        for i, rate in enumerate(self.rates):
            if rate > 0:
                need = max(need, rate)
                peak = max(peak, need, *(window[i] for window in self.recent))
                live.append((i, Layer(rid=self.rids[i], bitrate=need, peak=peak)))
        return live


class SimulcastStream:
    """What a learnt SSRC of a publisher session is: layer ``layer`` of ``track``, its media or its RTX stream
    (``Session.simulcast_in``'s values; the native step reads these three fields)."""

    __slots__ = ("track", "layer", "rtx")

    def __init__(self, track: SimulcastTrack, layer: int, rtx: bool) -> None:
        self.track = track
        self.layer = layer
        self.rtx = rtx


class SimulcastForwarder:
    """Owns the simulcast tracks of a plane. ``send_pli(session, ssrc)`` asks a publisher for a key frame;
    ``estimate(session_id)`` is the receiver's bandwidth estimate (bit/s) or None."""

    def __init__(self, forwarder: Forwarder, send_pli: Callable[[Any, int], None],
                 estimate: Callable[[str], int | None], clock: Callable[[], float] = time.monotonic,
                 send_nack: Callable[[Any, int, list[int]], None] | None = None,
                 proven: Callable[[str], int | None] | None = None) -> None:
        self.forwarder = forwarder
        self._proven = proven  # what a move up reads (ReceiverEstimates.proven); the estimate when None
        self._send_pli = send_pli
        self._send_nack = send_nack
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

    def add_track(self, track: InTrack, rids: tuple[str, ...], rtx_pt: int | None = None) -> None:
        """Forward ``track`` as simulcast when it has RIDs and the RID extension; ``rtx_pt``: its publisher's
        RTX payload type (RTX then comes on one SSRC per layer, named by the repaired-RID extension)."""
        rid_ext = track.ext.get(RID_URI, 0)
        old = self.tracks.pop(track.track_id, None)
        if old is not None:  # a replaced track: its SSRCs no longer lead to it (the native step reads the table)
            old.unindex()
        if rids and rid_ext:
            self.tracks[track.track_id] = SimulcastTrack(track, rids, rid_ext, rtx_pt,
                                                         track.ext.get(REPAIRED_RID_URI, 0))

    def forget_track(self, track: InTrack) -> None:
        st = self.tracks.pop(track.track_id, None)
        if st is not None:
            st.unindex()

    def estimate_changed(self, receiver_id: str) -> None:
        """The receiver's estimate moved: its routes' layer choices are made again on their next packet."""
        for st in self.tracks.values():
            rs = st.routes.get(receiver_id)
            if rs is not None:
                rs.decided_at = _NEVER

    def forget_route(self, route: OutRoute) -> None:
        st = self.tracks.get(route.track.track_id)
        if st is not None:
            st.routes.pop(route.receiver.session_id, None)

    def is_simulcast(self, route: OutRoute) -> bool:
        return route.track.track_id in self.tracks

    def wanted_bps(self, receiver_id: str) -> int | None:
        """What this receiver's estimate would have to reach for a layer above the one chosen for it (the next
        layer's bitrate x the policy's margin), the most over its simulcast tracks; None when it has the top
        layer of each (what probing.py probes for)."""
        want: int | None = None
        for st in self.tracks.values():
            rs = st.routes.get(receiver_id)
            if rs is None or rs.choice is None:
                continue
            layers = st.sending_layers()
            if rs.choice.index + 1 < len(layers):
                need = int(layers[rs.choice.index + 1][1].up_bitrate * _POLICY.up_margin)
                want = need if want is None else max(want, need)
        return want

    # -- the packet path ----------------------------------------------------------------------------------------
    def on_rtp(self, published: dict[str, InTrack], plain: bytes) -> bool:
        """Forward a packet of a simulcast layer of one of ``published`` (a session's tracks by mid). True when it
        was one (``Forwarder.on_rtp``'s unknown-SSRC count is taken back)."""
        ssrc = int.from_bytes(plain[8:12], "big")
        st, layer = self._layer_of(published, ssrc, plain)
        if st is None:
            st, layer = self._rtx_layer_of(published, ssrc, plain)
            if st is None:
                return False
            self.forwarder.counters.drop_unknown_ssrc -= 1
            self._on_rtx(st, layer, plain)
            return True
        self.forwarder.counters.drop_unknown_ssrc -= 1
        self._on_media(st, layer, plain)
        return True

    def _on_rtx(self, st: SimulcastTrack, layer: int, plain: bytes) -> None:
        """A publisher's retransmission of a packet of ``layer``: restore it and forward it like the original."""
        c = self.forwarder.counters
        c.rtx_in += 1
        media_ssrc = st.layer_ssrc(layer)
        original = (unwrap_rtx(plain, ssrc=media_ssrc, payload_type=st.primary_pt)
                    if media_ssrc is not None else None)
        if original is None:  # a padding probe, or a layer not seen yet
            c.drop_padding += 1
            return
        seq = original[2] << 8 | original[3]
        if st.received[layer][seq % ROUTE_CACHE] == seq:  # a probe made of a packet already forwarded
            c.drop_padding += 1
            return
        self._on_media(st, layer, original)

    def _on_media(self, st: SimulcastTrack, layer: int, plain: bytes) -> None:
        c = self.forwarder.counters
        c.rtp_in += 1
        c.rtp_in_bytes += len(plain)
        start = header_length(plain)
        if start is None:
            c.drop_malformed += 1
            return
        now = self._clock()
        seq = plain[2] << 8 | plain[3]
        st.received[layer][seq % ROUTE_CACHE] = seq
        st.count[layer] += 1
        newest = st.newest[layer]
        if newest is None or 0 < (seq - newest) & 0xFFFF < 0x8000:
            st.newest[layer] = seq
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

    def _rtx_layer_of(self, published: dict[str, InTrack], ssrc: int,
                      plain: bytes) -> tuple[SimulcastTrack | None, int]:
        """The simulcast track and layer an RTX packet on ``ssrc`` repairs (learnt from its repaired RID)."""
        for t in published.values():
            st = self.tracks.get(t.track_id)
            if st is not None and ssrc in st.rtx_ssrcs:
                return st, st.rtx_ssrcs[ssrc]
        for t in published.values():
            st = self.tracks.get(t.track_id)
            if (st is None or st.rtx_pt is None or not st.repaired_ext or plain[1] & 0x7F != st.rtx_pt
                    or _names_other_section(t, plain)):
                continue
            rid = read_mid(plain, st.repaired_ext)
            if rid in st.rids:
                st.learn(ssrc, st.rids.index(rid), rtx=True)
                return st, st.rtx_ssrcs[ssrc]
        return None, 0

    def _layer_of(self, published: dict[str, InTrack], ssrc: int, plain: bytes) -> tuple[SimulcastTrack | None, int]:
        for t in published.values():
            st = self.tracks.get(t.track_id)
            if st is not None and ssrc in st.ssrcs:
                return st, st.ssrcs[ssrc]
        for t in published.values():
            st = self.tracks.get(t.track_id)
            if st is None or plain[1] & 0x7F not in t.codecs or _names_other_section(t, plain):
                continue
            rid = read_mid(plain, st.rid_ext)  # an SDES string extension, read like the MID
            if rid in st.rids:
                st.learn(ssrc, st.rids.index(rid), rtx=False)
                return st, st.ssrcs[ssrc]
        return None, 0

    def _count(self, st: SimulcastTrack, layer: int, n: int, now: float) -> None:
        if now - st.window_start >= RATE_WINDOW_S:
            st.roll(now)
        st.octets[layer] += n
        if st.rates[layer] == 0:  # a layer's first packets: let it count as sending before the window closes
            st.rates[layer] = 1
            st.generation += 1

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
        proven = self._proven(receiver_id) if self._proven is not None else None
        rs.choice = choose_layer(estimate, [layer for _, layer in layers], prev, now * 1000.0, proven=proven)
        if prev is None or rs.choice.index != prev.index:  # a decision, not a packet: seconds apart at most
            chosen = layers[rs.choice.index][1]
            log.info("simulcast: %s gets %s of %s (%d bit/s, peak %d) at an estimate of %d bit/s (shown %s)",
                     receiver_id, chosen.rid, st.track.track_id, chosen.bitrate, chosen.peak, estimate, proven)
        return layers[rs.choice.index][0]

    def _forward(self, st: SimulcastTrack, route: OutRoute, p: LayerPacket, plain: bytes, start: int,
                 now: float) -> None:
        peer = route.receiver.peer
        opt = route.pt_map.get(plain[1] & 0x7F)
        if peer is None or opt is None:
            return
        rs = st.routes.get(route.receiver.session_id)
        if rs is None:
            rs = self._route_state(st, route, p.layer)
        if now - rs.decided_at >= DECIDE_INTERVAL_S or rs.decided_gen != st.generation:
            self._decide(st, rs, route.receiver.session_id, now)
        sw = rs.switcher
        before = sw.switches
        out = sw.on_packet(p)
        if sw.wants_keyframe:
            self._keyframe(st, sw.target, now)
        if out is None:
            return
        if sw.switches != before:
            self._switched(route, st, p.layer, sw.switches - before)
        buf = bytearray(plain)
        if not rewrite_rtp(buf, route.ssrc, out.seq, out.timestamp + route.ts_offset, opt, route.remap):
            self.forwarder.counters.drop_malformed += 1
            return
        if out.picture_id is not None or out.tl0picidx is not None:
            body = bytearray(buf[start:])
            if rewrite_vp8_ids(body, out.picture_id, out.tl0picidx):
                buf[start:] = body
        data = bytes(buf)
        ts = (out.timestamp + route.ts_offset) & 0xFFFFFFFF
        if rs.last_ts is None or 0 < (ts - rs.last_ts) & 0xFFFFFFFF < 0x80000000:
            rs.last_ts, rs.last_at = ts, now
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

    def _route_state(self, st: SimulcastTrack, route: OutRoute, layer: int) -> _RouteState:
        """The switch state of a route's first packet (``layer``: the packet's, the first target)."""
        rs = st.routes[route.receiver.session_id] = _RouteState(st.track.clock_rate, layer)
        return rs

    def _decide(self, st: SimulcastTrack, rs: _RouteState, receiver_id: str, now: float) -> None:
        """Make the route's layer choice again: the switcher's target, and whether the current layer stops at once
        (a move down for want of capacity, core.video.simulcast)."""
        sw = rs.switcher
        sw.target = self._target(st, rs, receiver_id, now)
        sw.stop_current = sw.current is not None and st.rates[sw.target] < st.rates[sw.current]
        rs.decided_at, rs.decided_gen = now, st.generation

    def _switched(self, route: OutRoute, st: SimulcastTrack, layer: int, switches: int) -> None:
        """A route's switcher started a new layer (rare: both fast paths report it here)."""
        log.info("simulcast: %s switched to %s of %s", route.receiver.session_id, st.rids[layer], st.track.track_id)
        self.switches += switches

    def _keyframe(self, st: SimulcastTrack, layer: int, now: float) -> None:
        ssrc = st.layer_ssrc(layer)
        if ssrc is None or now - st.last_pli[layer] < 1.0:
            return
        st.last_pli[layer] = now
        log.debug("simulcast: key frame of %s of %s asked for", st.rids[layer], st.track.track_id)
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
        if st is None or rs is None or peer is None:
            return
        missing: list[int] = []
        for seq in seqs:
            data = rs.sent[seq % ROUTE_CACHE]
            if data is None or (data[2] << 8 | data[3]) != seq:
                missing.append(seq)
                continue
            if route.rtx_pt is not None and route.rtx_ssrc is not None:
                wrapped = wrap_rtx(data, ssrc=route.rtx_ssrc, seq=route.rtx_seq, payload_type=route.rtx_pt)
                if wrapped is not None:
                    route.rtx_seq = (route.rtx_seq + 1) & 0xFFFF
                    c.rtx_out += 1
                    data = wrapped
            peer.send_rtp(data)
            c.nack_answered += 1
        self._ask_publisher(st, rs, missing)

    def _ask_publisher(self, st: SimulcastTrack, rs: _RouteState, missing: list[int]) -> None:
        """NACK the publisher for what a receiver lost that this route never sent (lost on the publisher's side):
        in the current layer's numbering, on its SSRC, if the publisher does RTX."""
        layer = rs.switcher.current
        ssrc = st.layer_ssrc(layer) if layer is not None else None
        if not missing or st.rtx_pt is None or ssrc is None or self._send_nack is None:
            return
        lost = [rs.switcher.source_seq(seq) for seq in missing]
        self._send_nack(st.track.session, ssrc, lost)
        self.forwarder.counters.nack_forwarded += 1

    def nack_round(self) -> None:
        """The plane's periodic round (every 250 ms): NACK each layer's holes to its publisher, for publishers that
        negotiated RTX (their padding then goes on RTX, so a hole in a layer is a real loss)."""
        if self._send_nack is None:
            return
        for st in self.tracks.values():
            if st.rtx_pt is None:
                continue
            for layer in range(len(st.rids)):
                ssrc = st.layer_ssrc(layer)
                lost = st.holes(layer) if ssrc is not None else []
                if ssrc is not None and lost:
                    self._send_nack(st.track.session, ssrc, lost)
                    self.forwarder.counters.nack_out += 1

    def sr_timestamp(self, route: OutRoute, now: float) -> int | None:
        """The RTP timestamp of ``route``'s stream at ``now`` (an SR's), extrapolated from the newest packet it
        sent; None for a route that is not simulcast or has sent nothing."""
        st = self.tracks.get(route.track.track_id)
        rs = st.routes.get(route.receiver.session_id) if st is not None else None
        if rs is None or rs.last_ts is None:
            return None
        return (rs.last_ts + int((now - rs.last_at) * route.track.clock_rate)) & 0xFFFFFFFF


def _names_other_section(t: InTrack, plain: bytes) -> bool:
    """Whether the packet's MID extension names another section than ``t``'s: a camera and a screen sent as
    simulcast use the same RIDs (q, f), so a RID alone does not say which track a new SSRC belongs to."""
    mid_id = t.ext.get(URI_MID, 0)
    mid = read_mid(plain, mid_id) if mid_id else None
    return mid is not None and mid != t.mid
