"""The feature blocks that sit between the embedding and the pooling, and the residual blocks of deep models.

All blocks map (B, C_in, L) to (B, C_out, L): convolutions are padded so that the output keeps
the input's length. Padding uses zeros, which is also what a padded batch holds beyond a
function's end (the padding token's embedding is zero), so a function's outputs at its own
positions do not depend on what it is batched with.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .mamba import Mamba
from .s4d import S4D


def channel_norm(norm: nn.LayerNorm, x: torch.Tensor) -> torch.Tensor:
    """LayerNorm of each position over its channels: x (B, H, L) → (B, H, L)."""
    return norm(x.transpose(1, 2)).transpose(1, 2)


class SamePadConv1d(nn.Conv1d):
    """Conv1d whose output has the input's length.

    ``causal=False``: (k-1)//2 zeros before and k//2 after each position (centred window).
    ``causal=True``: k-1 zeros before, none after (position t sees t-k+1 .. t only).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, groups: int = 1, causal: bool = False):
        super().__init__(in_channels, out_channels, kernel_size, groups=groups)
        self.causal = causal
        self.pad = (kernel_size - 1, 0) if causal else ((kernel_size - 1) // 2, kernel_size // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C_in, L) -> (B, C_out, L)
        return super().forward(F.pad(x, self.pad))


class DepthwiseSeparableConv1d(nn.Module):
    """A per-channel (depthwise) convolution followed by a 1x1 (pointwise) channel mix."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int):
        super().__init__()
        self.depthwise = SamePadConv1d(in_channels, in_channels, kernel_size, groups=in_channels)
        self.pointwise = nn.Conv1d(in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C_in, L) -> (B, C_out, L)
        return self.pointwise(self.depthwise(x))


SMR_FUSIONS = ("mul", "add", "none")


class StateMemoryReplay(nn.Module):
    """SMR: u ⊙ Conv1d(u), a short causal convolution of the input multiplied element-wise with it.

    The convolution mixes channels (d_model → d_model) over the last ``kernel_size`` positions.
    ``fusion`` selects how it meets the input, for the ablation the study suggests:
    "mul" u ⊙ conv(u) (SMR proper), "add" u + conv(u), "none" conv(u) alone.
    """

    def __init__(self, d_model: int, kernel_size: int = 3, fusion: str = "mul"):
        super().__init__()
        if fusion not in SMR_FUSIONS:
            raise ValueError(f"SMR fusion must be one of {SMR_FUSIONS}, got {fusion!r}")
        self.fusion = fusion
        self.conv = SamePadConv1d(d_model, d_model, kernel_size, causal=True)

    def forward(self, u: torch.Tensor) -> torch.Tensor:  # (B, H, L) -> (B, H, L)
        c = self.conv(u)
        if self.fusion == "mul":
            return u * c
        if self.fusion == "add":
            return u + c
        return c


class ResidualS4DBlock(nn.Module):
    """One block of a deep S4D stack, the layer of state-spaces' S4D example with the norm first:

        x + Dropout(GLU(Conv1x1(Dropout(GELU(S4D(LayerNorm(x)))))))        x (B, H, L) → (B, H, L)

    LayerNorm normalises each position over its H channels; the 1×1 convolution maps H → 2H and
    GLU (a ⊙ σ(b)) halves it back, so the block keeps its width. Dropout drops whole channels of a
    function (one mask (B, H) for all positions, ``nn.Dropout1d``), as the S4D example's does.
    Pre-norm (docs/METHODS.md,
    "Depth"): the residual path is the identity from the first S4D to the pooling, which trains
    stably with Adam at a fixed learning rate and no warm-up. Every part except the S4D works
    position by position and the S4D is causal, so no position sees a later (or padded) one.
    """

    def __init__(self, s4d: S4D, dropout: float):
        super().__init__()
        self.norm = nn.LayerNorm(s4d.d_model)
        self.s4d = s4d
        self.dropout = nn.Dropout1d(dropout)  # (B, H, L): a channel is dropped at every position
        self.output = nn.Conv1d(s4d.d_model, 2 * s4d.d_model, 1)

    @property
    def d_model(self) -> int:
        return self.s4d.d_model

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, H, L) -> (B, H, L)
        z = channel_norm(self.norm, x)  # (B, H, L), each position over H
        z = self.dropout(F.gelu(self.s4d(z)))  # (B, H, L)
        z = F.glu(self.output(z), dim=1)  # (B, 2H, L) -> (B, H, L)
        return x + self.dropout(z)


class ResidualMambaBlock(nn.Module):
    """One block of a Mamba stack, pre-norm as in Mamba's own: x + Mamba(LayerNorm(x)), x (B, H, L) → (B, H, L)."""

    def __init__(self, mamba: Mamba):
        super().__init__()
        self.norm = nn.LayerNorm(mamba.d_model)
        self.mamba = mamba

    @property
    def d_model(self) -> int:
        return self.mamba.d_model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.mamba(channel_norm(self.norm, x))


class MambaStack(nn.Module):
    """N residual Mamba blocks and a final LayerNorm (Mamba's backbone): (B, H, L) → (B, H, L).

    The blocks are ``blocks.0`` .. ``blocks.N−1`` (so the layers read as ``branches.mamba.blocks.k.mamba``).
    Each output projection starts scaled by 1/√N, Mamba's "prenorm residual" rescaling, so the
    residual stream's variance does not grow with the depth at initialisation.
    """

    def __init__(self, blocks: list[ResidualMambaBlock]):
        super().__init__()
        self.blocks = nn.Sequential(*blocks)
        self.norm = nn.LayerNorm(blocks[0].d_model)
        with torch.no_grad():
            for block in blocks:
                block.mamba.out_proj.weight /= len(blocks) ** 0.5

    @property
    def d_model(self) -> int:
        return self.norm.normalized_shape[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return channel_norm(self.norm, self.blocks(x))
