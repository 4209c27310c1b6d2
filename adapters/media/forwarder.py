"""The SFU forwarding table and its per-packet path.

Theory of operation
-------------------
Each published track (one SDP m-section a client sends on) is an ``InTrack``, found by the publisher session's
``inbound`` dict keyed by the SSRC the client signalled (or learned from the MID header extension). Each
(track, receiving session) pair that the call core routes is an ``OutRoute`` with its own SSRC, a sequence-number
offset and a timestamp offset, the payload-type mapping and a ``core.rtp.ExtensionRemap`` (publisher extension id ->
receiver id; anything not mapped, e.g. MID, is blanked to padding). All of that is computed when routes change; the
per-packet path only looks things up and does integer arithmetic.

The rewrite is ``core.rtp.rewrite_rtp``'s, byte for byte (a property test checks it on arbitrary packets): same
length, first byte kept, PT/seq/timestamp/SSRC replaced, extension ids remapped in place. It is not called per
packet, though: ``rewrite_rtp`` works on a ``bytearray`` copy, and the SRTP layer wants ``bytes`` back, two copies
per receiver. Instead the forwarder packs the 12-byte header itself and appends the extension block rewritten by
``rewrite_rtp`` once per distinct block and remap table (audio blocks repeat: a level of 0..127 and a constant
MID), then the untouched payload. The NACK path (``OutRoute.rewrite``) calls ``rewrite_rtp`` directly.

``InTrack.live`` is the tuple of routes that are negotiated by the receiver and not paused. A paused route
(muted audio) is left out; when it is resumed it re-syncs its sequence offset on the next packet so that the
receiver sees consecutive sequence numbers (the RTP timestamps keep advancing with real time, which is what a
receiver's jitter buffer expects after a silence).

Padding-only packets (bandwidth probes) are not forwarded; each one shifts the routes' sequence offsets so that
receivers see no gap.

Video tracks keep the last 512 packets (in publisher numbering) so that a receiver's NACK, translated back through
the route's offset, can be answered without asking the publisher: as an RTX packet (RFC 4588, on the route's RTX
SSRC and payload type, with its own sequence numbers) when the receiver negotiated RTX, else as a plain resend.
NACK answers run in Python on both fast paths (docs/adr/0019).
"""

from __future__ import annotations

import itertools
import struct
import time
from collections.abc import Callable
from typing import Any

from callsd.core.calls.events import TrackKind
from callsd.core.wire.rtp import ExtensionRemap, make_extension_remap, read_audio_level, rewrite_rtp
from callsd.core.wire.rtx import wrap_rtx

from .route_record import RouteRecord
from .track_record import TrackRecord

__all__ = ["InTrack", "OutRoute", "Forwarder", "ForwarderCounters", "CACHE_SIZE", "URI_MID", "URI_AUDIO_LEVEL",
           "rewrite_extension_block"]

CACHE_SIZE = 512
_CACHE_MASK = CACHE_SIZE - 1
_HDR = struct.Struct("!BBHII")
_DROP_ALL = make_extension_remap({})

# Voice activity: audio level is -dBov (0 loud .. 127 silent). A packet louder than the threshold scores +1, a
# quieter one -1; speaking starts at VAD_ON and stops when the score falls back to 0 (about 0.3 s / 0.6 s of audio
# at 50 packets per second).
VAD_THRESHOLD = 60
VAD_ON = 15
VAD_MAX = 30


class ForwarderCounters:
    """Plain integers read by the metrics exporter."""

    __slots__ = (
        "rtp_in", "rtp_in_bytes", "rtp_out", "rtp_out_bytes", "drop_unknown_ssrc", "drop_malformed", "drop_padding",
        "drop_no_route", "drop_paused", "nack_in", "nack_answered", "nack_forwarded", "pli_in", "pli_out",
        "rtcp_in", "rtcp_out", "rtcp_malformed", "rtx_in", "rtx_out", "nack_out",
    )

    rtp_in: int
    rtp_in_bytes: int
    rtp_out: int
    rtp_out_bytes: int
    drop_unknown_ssrc: int
    drop_malformed: int
    drop_padding: int
    drop_no_route: int
    drop_paused: int
    nack_in: int
    nack_answered: int
    nack_forwarded: int
    pli_in: int
    pli_out: int
    rtcp_in: int
    rtcp_out: int
    rtcp_malformed: int
    rtx_in: int  # RTX packets from publishers, unwrapped and forwarded as the originals (plane.on_rtp)
    rtx_out: int  # NACK answers sent as RTX packets
    nack_out: int  # NACKs the server sent a publisher for holes in its stream (nack_gen.py)

    def __init__(self) -> None:
        for name in self.__slots__:
            setattr(self, name, 0)

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.__slots__}


class InTrack(TrackRecord):
    """A track one session publishes: its SSRC, codec and extension ids, its routes and reception stats.

    The per-packet reception fields (``packets``, ``octets``, ``base_seq``, ``max_seq``, ``cycles``, ``started``,
    ``last_ts``, ``last_rx``, ``vad_score``, ``speaking``, ``level_id``) are the base class's (track_record.py)."""

    # the slots the step reads per packet first, in the line after the record's fields
    __slots__ = (
        "live", "cache", "routes", "session", "track_id", "kind", "media", "mid", "ssrc", "clock_rate", "codecs",
        "ext", "expected_prior", "received_prior", "sr_ntp_mid", "sr_rx", "last_pli", "pli_pending", "stream_id",
        "ended", "ext_cache", "rtx_ssrc", "rtx_pt", "nacked",
    )

    def __init__(
        self, *, track_id: str, session: Any, kind: TrackKind, media: str, mid: str, ssrc: int | None,
        clock_rate: int, codecs: dict[int, tuple[str, int, int, str]], ext: dict[str, int], stream_id: str,
    ) -> None:
        self.track_id = track_id
        self.session = session
        self.kind = kind
        self.media = media  # "audio" | "video"
        self.mid = mid
        self.ssrc = ssrc
        self.clock_rate = clock_rate
        # pt -> (name lower, clock rate, channels, fmtp)
        self.codecs = codecs
        # uri -> publisher's extension id
        self.ext = ext
        self.stream_id = stream_id
        self.level_id = ext.get(URI_AUDIO_LEVEL, 0) if media == "audio" else 0
        self.routes: dict[str, OutRoute] = {}
        self.live: tuple[OutRoute, ...] = ()
        self.cache: list[bytes | None] | None = [None] * CACHE_SIZE if media == "video" else None
        self.packets = 0
        self.octets = 0
        self.max_seq = 0
        self.cycles = 0
        self.base_seq = 0
        self.started = False
        self.last_ts = 0
        self.last_rx = 0.0
        self.expected_prior = 0
        self.received_prior = 0
        self.sr_ntp_mid = 0
        self.sr_rx = 0.0
        self.last_pli = -1e9
        self.pli_pending = False
        self.vad_score = 0
        self.speaking = False
        self.ended = False
        # raw extension block -> [audio level or -1, {route ext_key: rewritten block or None}, raw block]: audio
        # blocks repeat (MID, a level of 0..127), so most packets skip parsing; bounded by clearing
        self.ext_cache: dict[bytes, list[Any]] = {}
        # RTX (RFC 4588) the publisher negotiated: its RTX SSRC and payload type (None: no RTX); the holes the
        # server asked it to repair, publisher seq -> NACKs sent (nack_gen.py)
        self.rtx_ssrc: int | None = None
        self.rtx_pt: int | None = None
        self.nacked: dict[int, int] = {}

    def relive(self) -> None:
        """Recompute ``live`` after a route was added, removed, paused, resumed or negotiated."""
        self.live = tuple(r for r in self.routes.values() if r.negotiated and not r.paused)


class OutRoute(RouteRecord):
    """Forwarding state of one track to one receiving session, in that receiver's numbering.

    The per-packet fields (``ssrc``, ``ts_offset``, ``seq_offset``, ``last_seq``, ``resync``, ``packets``,
    ``octets``) are the base class's (route_record.py: C fields the native step updates in place)."""

    # the slots the step reads per packet first (receiver, pt_map, remap): the line after the record's fields
    __slots__ = (
        "receiver", "pt_map", "remap", "track", "mid", "ext_key", "paused", "negotiated", "removed", "rtx_ssrc",
        "rtx_pt", "rtx_seq",
    )

    def __init__(self, *, track: InTrack, receiver: Any, ssrc: int, mid: str, paused: bool, ts_offset: int) -> None:
        self.track = track
        self.receiver = receiver  # a plane Session: has .peer (transport peer or None)
        self.ssrc = ssrc
        self.mid = mid
        self.pt_map: dict[int, int] = {}
        self.remap = _DROP_ALL
        self.ext_key = _remap_key(self.remap)
        self.paused = paused
        self.negotiated = False
        self.resync = True
        self.seq_offset = 0
        self.ts_offset = ts_offset
        self.last_seq = 0
        self.packets = 0
        self.octets = 0
        self.removed = False
        # RTX toward this receiver: the SSRC the server offered (video), the payload type the receiver accepted
        # (None: not negotiated, NACKs are answered with plain resends), the RTX stream's next sequence number
        self.rtx_ssrc: int | None = None
        self.rtx_pt: int | None = None
        self.rtx_seq = 0

    def set_mapping(self, pt_map: dict[int, int], ext: ExtensionRemap | dict[int, int] | tuple[int, ...]) -> None:
        """Set the payload-type map (publisher PT -> receiver PT) and the extension remap: an ``ExtensionRemap``,
        a ``{publisher id: receiver id}`` dict, or a 16-entry table indexed by publisher id (0 = drop)."""
        if isinstance(ext, tuple):
            ext = {i: v for i, v in enumerate(ext) if i and v}
        if isinstance(ext, dict):
            ext = make_extension_remap(ext)
        if len(_PT_MAPS) < _MAX_SHARED_REMAPS:  # equal payload-type maps are shared too (~220 B a route)
            pt_map = _PT_MAPS.setdefault(tuple(sorted(pt_map.items())), pt_map)
        self.pt_map = pt_map
        if len(_REMAPS) < _MAX_SHARED_REMAPS:  # routes with equal tables share one (~300 B a route)
            ext = _REMAPS.setdefault(ext.table, ext)
        self.remap = ext
        self.ext_key = _remap_key(ext)

    def rewrite(self, plain: bytes) -> bytes | None:
        """This route's copy of one publisher packet (slow path: NACK answers). ``None`` if not forwardable."""
        if len(plain) < 12:
            return None
        b0, b1, seq, ts, _ = _HDR.unpack_from(plain)
        opt = self.pt_map.get(b1 & 0x7F)
        if opt is None:
            return None
        buf = bytearray(plain)
        if not rewrite_rtp(buf, self.ssrc, seq + self.seq_offset, ts + self.ts_offset, opt, self.remap):
            return None
        return bytes(buf)


_REMAP_KEYS: dict[bytes, int] = {}
_REMAPS: dict[bytes, ExtensionRemap] = {}  # one per distinct table (a handful per server in practice)
_PT_MAPS: dict[tuple[tuple[int, int], ...], dict[int, int]] = {}  # read-only once set: routes share equal ones
_MAX_SHARED_REMAPS = 1024  # clients choose the ids: past this many distinct tables, routes keep their own


_PRIVATE_KEYS = itertools.count(-1, -1)  # past the shared ones: a key of its own per route (negative, never reused)


def _remap_key(remap: ExtensionRemap) -> int:
    """A small int naming a remap table, so routes with equal tables share rewritten blocks. Clients choose the
    extension ids, so the shared names are bounded like the tables (``_MAX_SHARED_REMAPS``); past them a route gets
    a name of its own and shares nothing, rather than the table of names growing for the life of the server."""
    key = _REMAP_KEYS.get(remap.table)
    if key is None:
        if len(_REMAP_KEYS) >= _MAX_SHARED_REMAPS:
            return next(_PRIVATE_KEYS)
        key = _REMAP_KEYS[remap.table] = len(_REMAP_KEYS)
    return key


URI_MID = "urn:ietf:params:rtp-hdrext:sdes:mid"
URI_AUDIO_LEVEL = "urn:ietf:params:rtp-hdrext:ssrc-audio-level"
_FAKE_HDR = b"\x90" + bytes(11)


def rewrite_extension_block(raw: bytes, remap: ExtensionRemap) -> bytes | None:
    """``raw`` (a header-extension block: profile, length, elements) as ``core.rtp.rewrite_rtp`` leaves it under
    ``remap``; ``None`` when the block is malformed (the packet is dropped for that receiver)."""
    if remap.identity:
        return raw
    buf = bytearray(_FAKE_HDR)
    buf += raw
    if not rewrite_rtp(buf, 0, 0, 0, 0, remap):
        return None
    return bytes(buf[12:])


class Forwarder:
    """Owns the per-packet path; the plane owns the tables' lifecycle.

    ``request_keyframe(track)`` is called (rate limited to one per second per track, a deferred request is sent by
    ``tick``) when a receiver asks for a keyframe or a video route goes live. ``on_voice(session, speaking)``
    reports debounced voice activity of a publisher's audio track.
    """

    def __init__(
        self,
        *,
        send_pli: Callable[[InTrack], None],
        on_voice: Callable[[Any, bool], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.counters = ForwarderCounters()
        self._send_pli = send_pli
        self._on_voice = on_voice
        self._clock = clock

    # -- the hot path -------------------------------------------------------------------------------------------
    def on_rtp(self, inbound: dict[int, InTrack], plain: bytes) -> InTrack | None:
        """Forward one decrypted RTP packet of a publisher to every live route of its track.

        ``inbound`` is the publisher session's SSRC table. Returns the track, or ``None`` when the SSRC is
        unknown (the caller may try to learn it from the MID extension and call again).
        """
        c = self.counters
        n = len(plain)
        if n < 12 or plain[0] >> 6 != 2:
            c.drop_malformed += 1
            return None
        b0, b1, seq, ts, ssrc = _HDR.unpack_from(plain)
        track = inbound.get(ssrc)
        if track is None:
            c.drop_unknown_ssrc += 1
            return None
        c.rtp_in += 1
        c.rtp_in_bytes += n
        track.packets += 1
        track.octets += n
        # reception statistics (RFC 3550 A.1, without probation)
        if not track.started:
            track.started = True
            track.base_seq = seq
            track.max_seq = seq
        else:
            d = (seq - track.max_seq) & 0xFFFF
            if 0 < d < 0x8000:
                if seq < track.max_seq:
                    track.cycles += 0x10000
                track.max_seq = seq
        track.last_ts = ts
        track.last_rx = self._clock()
        cc = b0 & 0x0F
        off = 12 + 4 * cc
        entry = None
        start = off
        if b0 & 0x10:
            if off + 4 > n:
                c.drop_malformed += 1
                return track
            start = off + 4 + 4 * ((plain[off + 2] << 8) | plain[off + 3])
            if start > n:
                c.drop_malformed += 1
                return track
            raw = plain[off:start]
            entry = track.ext_cache.get(raw)
            if entry is None:
                level = read_audio_level(plain, track.level_id) if track.level_id else -1
                if len(track.ext_cache) >= 1024:
                    track.ext_cache.clear()
                entry = track.ext_cache[raw] = [level & 0x7F if level >= 0 else -1, {}, raw]
            if entry[0] >= 0:
                self._vad(track, entry[0])
        if b0 & 0x20 and n - start - plain[-1] <= 0:
            # padding only (a sender's bandwidth probe): not forwarded; later packets close the gap it leaves
            c.drop_padding += 1
            for r in track.routes.values():
                r.seq_offset = (r.seq_offset - 1) & 0xFFFF
            return track
        cache = track.cache
        if cache is not None:
            cache[seq & _CACHE_MASK] = plain
        live = track.live
        if not live:
            c.drop_no_route += 1
            return track
        pt = b1 & 0x7F
        mk = b1 & 0x80
        csrc = plain[12:off] if cc else b""
        payload = plain[start:]
        plen = n - start
        pack = _HDR.pack
        for r in live:
            opt = r.pt_map.get(pt)
            if opt is None:
                continue
            peer = r.receiver.peer
            if peer is None:
                continue
            if r.resync:
                r.seq_offset = (r.last_seq + 1 - seq) & 0xFFFF
                r.resync = False
            oseq = (seq + r.seq_offset) & 0xFFFF
            if (oseq - r.last_seq) & 0xFFFF < 0x8000:
                r.last_seq = oseq
            if entry is not None:
                blk = entry[1].get(r.ext_key, False)
                if blk is False:
                    blk = entry[1][r.ext_key] = rewrite_extension_block(entry[2], r.remap)
                if blk is None:
                    c.drop_malformed += 1
                    continue
                out = pack(b0, mk | opt, oseq, (ts + r.ts_offset) & 0xFFFFFFFF, r.ssrc) + csrc + blk + payload
            else:
                out = pack(b0, mk | opt, oseq, (ts + r.ts_offset) & 0xFFFFFFFF, r.ssrc) + csrc + payload
            peer.send_rtp(out)
            r.packets += 1
            r.octets += plen
            c.rtp_out += 1
            c.rtp_out_bytes += len(out)
        return track

    def _vad(self, track: InTrack, level: int) -> None:
        score = track.vad_score
        if level <= VAD_THRESHOLD:
            if score < VAD_MAX:
                score += 1
        elif score > 0:
            score -= 1
        track.vad_score = score
        if not track.speaking and score >= VAD_ON:
            track.speaking = True
            self._on_voice(track.session, True)
        elif track.speaking and score == 0:
            track.speaking = False
            self._on_voice(track.session, False)

    # -- feedback -----------------------------------------------------------------------------------------------
    def request_keyframe(self, track: InTrack) -> None:
        """Ask the publisher for a keyframe now, or at the next ``tick`` if one was asked for < 1 s ago."""
        if track.media != "video" or track.ended:
            return
        now = self._clock()
        if now - track.last_pli >= 1.0:
            track.last_pli = now
            track.pli_pending = False
            self.counters.pli_out += 1
            self._send_pli(track)
        else:
            track.pli_pending = True

    def tick(self, tracks: list[InTrack]) -> None:
        """Periodic work: deferred keyframe requests, and voice activity of tracks that went silent (DTX)."""
        now = self._clock()
        for t in tracks:
            if t.pli_pending and now - t.last_pli >= 1.0:
                self.request_keyframe(t)
            if t.speaking and now - t.last_rx > 1.0:
                t.speaking = False
                t.vad_score = 0
                self._on_voice(t.session, False)

    def answer_nack(self, route: OutRoute, seqs: list[int]) -> list[int]:
        """Resend what the cache holds of ``seqs`` (receiver numbering); return the publisher seqs it lacked."""
        track = route.track
        self.counters.nack_in += 1
        cache = track.cache
        missing: list[int] = []
        peer = route.receiver.peer
        if cache is None or peer is None:
            return missing
        for s in seqs:
            orig = (s - route.seq_offset) & 0xFFFF
            pkt = cache[orig & _CACHE_MASK]
            if pkt is not None and ((pkt[2] << 8) | pkt[3]) == orig:
                out = route.rewrite(pkt)
                if out is not None and route.rtx_pt is not None and route.rtx_ssrc is not None:
                    out = wrap_rtx(out, ssrc=route.rtx_ssrc, seq=route.rtx_seq, payload_type=route.rtx_pt)
                    if out is not None:
                        route.rtx_seq = (route.rtx_seq + 1) & 0xFFFF
                        self.counters.rtx_out += 1
                if out is not None:
                    peer.send_rtp(out)
                    self.counters.nack_answered += 1
                    continue
            missing.append(orig)
        return missing
