"""Which simulcast layer a receiver gets, from its bandwidth estimate, with hysteresis (pure).

A receiver whose estimate falls below the bitrate of the layer it gets must move down at once: every second on a
too-large layer builds a queue, then loss, then freezes. Moving up is the risky direction: an estimate that
crosses a layer's bitrate for a moment (a burst of good feedback) would flap between layers, and each switch
costs a key frame from the publisher. So ``choose_layer`` moves up only when the estimate has exceeded the next
layer's bitrate times ``up_margin`` continuously for ``hold_ms``, and then to the highest layer that fits so. And
it moves up on what the path has *shown* it carries (``proven``), not on an estimate that grew while the receiver
was sent less than it (GCC's increase runs ahead of the rate the path saw; core/video/estimator.py).

The state of the hysteresis (since when an upgrade has looked possible) is returned in the ``LayerChoice`` and
passed back in on the next call, so the function stays pure: time is an argument.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["Layer", "LayerChoice", "LayerPolicy", "choose_layer"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Layer:
    """One encoding of a publisher's track: its ``rid``, the bitrate (bit/s) it needs, and ``peak``, the most it
    needed lately (0: its bitrate), what a move up to it must cover: a screen share's layer doubles from one second
    to the next, and a receiver moved up in a quiet second gets the next busy one through its link. A move down
    reads ``bitrate``: a receiver is not moved off a layer it carries for that layer's busiest second."""

    rid: str
    bitrate: int
    peak: int = 0

    @property
    def up_bitrate(self) -> int:
        """What a move up to this layer must cover (times the margin)."""
        return max(self.bitrate, self.peak)


@dataclass(frozen=True, slots=True, kw_only=True)
class LayerChoice:
    """The layer a receiver gets (an index into the layers, lowest bitrate first) and, while an upgrade is
    pending, the time (ms) since which the estimate has supported it."""

    index: int
    up_since_ms: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class LayerPolicy:
    """``up_margin``: how far the estimate must exceed a higher layer's bitrate; ``hold_ms``: for how long."""

    up_margin: float = 1.2
    hold_ms: float = 3000.0

    def __post_init__(self) -> None:
        if self.up_margin < 1.0 or self.hold_ms < 0:
            raise ValueError(f"up_margin must be >= 1 and hold_ms >= 0, got {self.up_margin}, {self.hold_ms}")


def _fitting(estimate: float, layers: Sequence[Layer], margin: float, *, up: bool = False) -> int:
    """The highest layer whose bitrate (``up``: its ``up_bitrate``) times ``margin`` the estimate covers; the
    lowest layer if none does."""
    best = 0
    for i, layer in enumerate(layers):
        if (layer.up_bitrate if up else layer.bitrate) * margin <= estimate:
            best = i
    return best


def choose_layer(estimate: float, layers: Sequence[Layer], current: LayerChoice | None, now_ms: float,
                 policy: LayerPolicy = LayerPolicy(), *, proven: float | None = None) -> LayerChoice:
    """The layer for a receiver with this ``estimate`` (bit/s) at ``now_ms``, given its ``current`` choice.

    ``layers`` are ordered by bitrate, lowest first. With no current choice, the highest layer that fits (no
    margin, no hold: there is nothing to flap from). Down at once to the highest layer that fits; up only after
    ``proven`` (the part of the estimate the path has shown it carries, ``BandwidthEstimator.proven``; the
    estimate itself when None) has covered a higher layer's bitrate times the margin for ``hold_ms``."""
    if not layers:
        raise ValueError("choose_layer needs at least one layer")
    if any(a.bitrate > b.bitrate for a, b in zip(layers, layers[1:], strict=False)):
        raise ValueError("layers must be ordered by bitrate, lowest first")
    fits = _fitting(estimate, layers, 1.0)
    if current is None:
        return LayerChoice(index=fits)
    index = min(max(current.index, 0), len(layers) - 1)
    if fits < index:
        return LayerChoice(index=fits)
    target = _fitting(min(estimate, proven) if proven is not None else estimate, layers, policy.up_margin, up=True)
    if target <= index:
        return LayerChoice(index=index)
    since = current.up_since_ms if current.up_since_ms is not None else now_ms
    if now_ms - since >= policy.hold_ms:
        return LayerChoice(index=target)
    return LayerChoice(index=index, up_since_ms=since)
