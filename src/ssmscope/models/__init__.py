"""Models: the S4D layer, the feature blocks, the residual S4D block and the six detectors."""

from .blocks import DepthwiseSeparableConv1d, ResidualS4DBlock, SamePadConv1d, StateMemoryReplay
from .classifier import ARCHITECTURES, VARIANTS, DetectorModel, build_model, model_name, resolve_arch
from .s4d import S4D

__all__ = ["ARCHITECTURES", "DepthwiseSeparableConv1d", "DetectorModel", "ResidualS4DBlock", "S4D", "SamePadConv1d", "StateMemoryReplay", "VARIANTS", "build_model", "model_name", "resolve_arch"]
