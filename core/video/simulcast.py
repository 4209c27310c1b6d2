"""One receiver's view of a simulcast track: forward one layer, switch on key frames, keep the numbering seamless.

Theory of operation. A simulcast publisher sends the same picture 2-3 times (layers, each its own SSRC, sequence
numbers, timestamps and VP8 picture ids). A receiver must see *one* stream: consecutive sequence numbers (a gap is
a loss it would NACK), timestamps that advance with real time (its jitter buffer and A/V sync depend on them),
and VP8 picture ids / TL0PICIDX that continue (the decoder checks them). So per receiver the SFU keeps offsets from
the current layer's numbering to the receiver's, and re-bases them at a switch:

* the layer changes only on the first packet of a key frame of the *target* layer (a decoder cannot start a new
  stream mid-GOP); until then the current layer keeps flowing, and ``wants_keyframe`` tells the caller to ask the
  publisher for one (throttled by the caller, as PLIs are today). Except when ``stop_current`` is set (the caller
  sets it for a move *down*, made because the receiver's link cannot carry the current layer): then the current
  layer stops at once. Its packets would only keep the bottleneck's queue full, and the key frame the receiver
  waits for, itself a burst, would lose its tail in that queue; a frozen picture until the key frame (a round trip
  and an encode) is shorter than the freeze a congested switch causes;
* at the switch: next sequence number = last sent + 1; timestamp = last sent + the wall time elapsed since that
  packet, in clock units (at least 1); picture id and TL0PICIDX = last + 1;
* packets of the new layer older than the key frame (reordered) and every packet of other layers are dropped.

The caller supplies what the packet says (layer, seq, timestamp, key frame start, VP8 ids: ``core.video.payload``)
and ``now_ms``; this module reads no clock and touches no bytes, so the same rules can be mirrored in the native
step (``adapters/media/native/layer_switch.h``) and checked against it, as the forwarder's are (ADR 0009).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["LayerPacket", "Rewritten", "LayerSwitcher"]


@dataclass(frozen=True, slots=True, kw_only=True)
class LayerPacket:
    """What the switch needs of one packet of layer ``layer`` (0 = lowest)."""

    layer: int
    seq: int
    timestamp: int
    keyframe_start: bool
    now_ms: float
    picture_id: int | None = None
    picture_id_bits: int = 15  # 7 or 15 (VP8), ignored without a picture id
    tl0picidx: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Rewritten:
    """The receiver's numbering for a forwarded packet; ``switched``: this packet started a new layer."""

    seq: int
    timestamp: int
    picture_id: int | None
    tl0picidx: int | None
    switched: bool


def _newer(a: int, b: int, bits: int) -> bool:
    """``a`` comes after ``b`` in ``bits``-bit wrapping arithmetic."""
    half = 1 << (bits - 1)
    return 0 < (a - b) & ((1 << bits) - 1) < half


class LayerSwitcher:
    """See the module docstring. ``target`` is the layer the caller wants (e.g. from ``choose_layer``)."""

    __slots__ = ("clock_rate", "target", "current", "_seq_off", "_ts_off", "_pid_off", "_tl0_off", "_switch_seq",
                 "_last_seq", "_last_ts", "_last_pid", "_last_tl0", "_last_ms", "switches", "stop_current")

    def __init__(self, *, clock_rate: int = 90000, target: int = 0) -> None:
        self.clock_rate = clock_rate
        self.target = target
        self.current: int | None = None
        self._seq_off = self._ts_off = self._pid_off = self._tl0_off = 0
        self._switch_seq = 0
        self._last_seq: int | None = None
        self._last_ts = 0
        self._last_pid: int | None = None
        self._last_tl0: int | None = None
        self._last_ms = 0.0
        self.switches = 0
        self.stop_current = False  # the caller's: drop the current layer while waiting for the target's key frame

    @property
    def wants_keyframe(self) -> bool:
        """The target layer differs from the one flowing: a key frame of the target is needed to switch."""
        return self.current != self.target

    def source_seq(self, seq: int) -> int:
        """The current layer's sequence number that the receiver's ``seq`` stands for (to NACK the publisher)."""
        return (seq - self._seq_off) & 0xFFFF

    def on_packet(self, p: LayerPacket) -> Rewritten | None:
        """The receiver's numbering for ``p``, or None when ``p`` is not forwarded to this receiver."""
        switched = False
        if p.layer != self.current:
            if p.layer != self.target or not p.keyframe_start:
                return None
            self._rebase(p)
            switched = True
        elif _newer(self._switch_seq, p.seq, 16):
            return None  # older than the key frame this layer started with: the receiver never had its frame
        elif self.stop_current and self.target != self.current:
            return None  # moving down for want of capacity: nothing more of the layer that does not fit
        seq = (p.seq + self._seq_off) & 0xFFFF
        ts = (p.timestamp + self._ts_off) & 0xFFFFFFFF
        pid = None
        if p.picture_id is not None:
            pid = (p.picture_id + self._pid_off) & ((1 << p.picture_id_bits) - 1)
        tl0 = (p.tl0picidx + self._tl0_off) & 0xFF if p.tl0picidx is not None else None
        if self._last_seq is None or _newer(seq, self._last_seq, 16):
            self._last_seq, self._last_ms = seq, p.now_ms
            if _newer(ts, self._last_ts, 32) or switched:
                self._last_ts = ts
            if pid is not None:
                self._last_pid = pid
            if tl0 is not None:
                self._last_tl0 = tl0
        return Rewritten(seq=seq, timestamp=ts, picture_id=pid, tl0picidx=tl0, switched=switched)

    def _rebase(self, p: LayerPacket) -> None:
        self.switches += 1
        self.current = p.layer
        self._switch_seq = p.seq
        if self._last_seq is None:  # the first layer: its own numbering
            self._seq_off = self._ts_off = self._pid_off = self._tl0_off = 0
            return
        self._seq_off = (self._last_seq + 1 - p.seq) & 0xFFFF
        elapsed = max(1, round((p.now_ms - self._last_ms) * self.clock_rate / 1000))
        self._ts_off = (self._last_ts + elapsed - p.timestamp) & 0xFFFFFFFF
        if p.picture_id is not None and self._last_pid is not None:
            self._pid_off = self._last_pid + 1 - p.picture_id
        if p.tl0picidx is not None and self._last_tl0 is not None:
            self._tl0_off = self._last_tl0 + 1 - p.tl0picidx
