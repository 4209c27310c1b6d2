"""callsd.core.video: pure decisions for video: a receiver's bandwidth estimate (GCC), its simulcast layer, and the
rules of a seamless layer switch (key frames, sequence/timestamp/picture-id re-basing).

Nothing here reads a clock: times are arguments (docs/adr/0019).
"""

from .delay_based import BandwidthUsage
from .estimator import BandwidthEstimator, EstimatorSettings, PacketResult
from .layers import Layer, LayerChoice, LayerPolicy, choose_layer
from .payload import Vp8Descriptor, is_keyframe_start, parse_vp8_descriptor, rewrite_vp8_ids
from .probe import ProbeClusters, ProbeOutcome, ProbePolicy, ProbeSchedule
from .simulcast import LayerPacket, LayerSwitcher, Rewritten

__all__ = [
    "BandwidthUsage",
    "BandwidthEstimator",
    "EstimatorSettings",
    "PacketResult",
    "Layer",
    "LayerChoice",
    "LayerPolicy",
    "choose_layer",
    "ProbeClusters",
    "ProbeOutcome",
    "ProbePolicy",
    "ProbeSchedule",
    "Vp8Descriptor",
    "is_keyframe_start",
    "parse_vp8_descriptor",
    "rewrite_vp8_ids",
    "LayerPacket",
    "LayerSwitcher",
    "Rewritten",
]
