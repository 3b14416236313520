"""Models: the S4D layer, the feature blocks and the six detectors."""

from .blocks import DepthwiseSeparableConv1d, SamePadConv1d, StateMemoryReplay
from .classifier import ARCHITECTURES, VARIANTS, DetectorModel, build_model, resolve_arch
from .s4d import S4D

__all__ = ["ARCHITECTURES", "DepthwiseSeparableConv1d", "DetectorModel", "S4D", "SamePadConv1d", "StateMemoryReplay", "VARIANTS", "build_model", "resolve_arch"]
