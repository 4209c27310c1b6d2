"""callsd.core.video: pure decisions for video: a receiver's bandwidth estimate (GCC) and its simulcast layer.

Nothing here reads a clock: times are arguments (docs/adr/0019).
"""

from .delay_based import BandwidthUsage
from .estimator import BandwidthEstimator, EstimatorSettings, PacketResult
from .layers import Layer, LayerChoice, LayerPolicy, choose_layer

__all__ = [
    "BandwidthUsage",
    "BandwidthEstimator",
    "EstimatorSettings",
    "PacketResult",
    "Layer",
    "LayerChoice",
    "LayerPolicy",
    "choose_layer",
]
