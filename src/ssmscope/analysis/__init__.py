"""Analysis: spectral and temporal measurements of learned S4D kernels."""

from .metrics import KernelMetrics, analyze_bank, analyze_kernel, summarize_layer

__all__ = ["KernelMetrics", "analyze_bank", "analyze_kernel", "summarize_layer"]
