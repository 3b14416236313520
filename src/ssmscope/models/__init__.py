"""Models: the S4D layer, the feature blocks and the six detectors."""

from .blocks import DepthwiseSeparableConv1d, SamePadConv1d, StateMemoryReplay
from .classifier import ARCHITECTURES, DetectorModel, build_model
from .s4d import S4D

__all__ = ["ARCHITECTURES", "DepthwiseSeparableConv1d", "DetectorModel", "S4D", "SamePadConv1d", "StateMemoryReplay", "build_model"]
