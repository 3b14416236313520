"""The six single-layer detectors of the study, and the registry that builds them.

Every model follows one path (Ravikumar et al., 2026, Sec. 2):

    tokens (B, L) → embedding (B, E, L) → feature block per branch (B, C, L) → ReLU
      → max over the valid positions (B, C) → concatenate branches → dropout → linear → logit (B,)

Architectures differ only in their branches:

    cnn            one SamePadConv1d(E→F, k) per kernel size k (Kim, 2014)
    depthwise      one DepthwiseSeparableConv1d(E→F, k) per kernel size
    s4d            one S4D(E) over the embeddings
    conv_s4d       per kernel size: SamePadConv1d(E→F, k) → S4D(F)
    depthwise_s4d  per kernel size: DepthwiseSeparableConv1d(E→F, k) → S4D(F)
    smr_s4d        StateMemoryReplay(E) → S4D(E)

Variants for the SMR fusion ablation: ``smr_s4d-add`` (u + conv(u)) and ``smr_s4d-none`` (conv(u)).

Branches live in a ModuleDict named by what they are (``conv3``, ``s4d``, ``smr``), so every S4D
has a readable place, e.g. ``branches.conv5.s4d``; :meth:`DetectorModel.s4d_layers` lists them.
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict

import torch
from torch import nn

from ..config import ModelConfig
from ..errors import SsmscopeError
from .blocks import DepthwiseSeparableConv1d, SamePadConv1d, StateMemoryReplay
from .s4d import S4D


class DetectorModel(nn.Module):
    """Embedding, named feature branches, masked max-pool, dropout, one-logit head."""

    def __init__(self, vocab_size: int, embed_dim: int, branches: dict[str, nn.Module], branch_width: dict[str, int], dropout: float):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=0)
        self.branches = nn.ModuleDict(branches)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(sum(branch_width.values()), 1)

    def features(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Pooled features (B, ΣC) before dropout and the head.

        Max over positions < length only. After ReLU every value is >= 0, so filling the padded
        positions with 0 before the max gives exactly the max over the valid positions (a function
        has at least one token).
        """
        x = self.embedding(tokens).transpose(1, 2)  # (B, E, L)
        valid = torch.arange(tokens.shape[1], device=tokens.device) < lengths[:, None]  # (B, L)
        pooled = []
        for branch in self.branches.values():
            h = torch.relu(branch(x))  # (B, C, L)
            pooled.append(h.masked_fill(~valid[:, None, :], 0.0).amax(dim=-1))  # (B, C)
        return torch.cat(pooled, dim=-1)  # (B, ΣC)

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """tokens (B, L) int64, lengths (B,) → logits (B,)."""
        return self.head(self.dropout(self.features(tokens, lengths))).squeeze(-1)

    def s4d_layers(self) -> list[tuple[str, S4D]]:
        """Every S4D in the model with its dotted name, e.g. ('branches.smr.s4d', S4D(...))."""
        return [(name, m) for name, m in self.named_modules() if isinstance(m, S4D)]


def _s4d(d_model: int, cfg: ModelConfig) -> S4D:
    return S4D(d_model, cfg.d_state, cfg.s4d_init, cfg.discretization, cfg.dt_min, cfg.dt_max)


def _then(**parts: nn.Module) -> nn.Sequential:
    return nn.Sequential(OrderedDict(parts))


def _cnn(cfg):
    return {f"conv{k}": SamePadConv1d(cfg.embed_dim, cfg.num_filters, k) for k in cfg.kernel_sizes}


def _depthwise(cfg):
    return {f"dwconv{k}": DepthwiseSeparableConv1d(cfg.embed_dim, cfg.num_filters, k) for k in cfg.kernel_sizes}


def _s4d_only(cfg):
    return {"s4d": _s4d(cfg.embed_dim, cfg)}


def _conv_s4d(cfg):
    return {
        f"conv{k}": _then(conv=SamePadConv1d(cfg.embed_dim, cfg.num_filters, k), s4d=_s4d(cfg.num_filters, cfg))
        for k in cfg.kernel_sizes
    }


def _depthwise_s4d(cfg):
    return {
        f"dwconv{k}": _then(conv=DepthwiseSeparableConv1d(cfg.embed_dim, cfg.num_filters, k), s4d=_s4d(cfg.num_filters, cfg))
        for k in cfg.kernel_sizes
    }


def _smr_s4d(cfg):
    return {"smr": _then(smr=StateMemoryReplay(cfg.embed_dim, cfg.smr_kernel_size, cfg.smr_fusion), s4d=_s4d(cfg.embed_dim, cfg))}


ARCHITECTURES = {
    "cnn": _cnn,
    "depthwise": _depthwise,
    "s4d": _s4d_only,
    "conv_s4d": _conv_s4d,
    "depthwise_s4d": _depthwise_s4d,
    "smr_s4d": _smr_s4d,
}


# Variants of the six for ablations: name → (base architecture, ModelConfig fields it fixes).
VARIANTS = {
    "smr_s4d-add": ("smr_s4d", {"smr_fusion": "add"}),
    "smr_s4d-none": ("smr_s4d", {"smr_fusion": "none"}),
}


def resolve_arch(arch: str, cfg: ModelConfig) -> tuple[str, ModelConfig]:
    """The base architecture of ``arch`` and the ModelConfig with the variant's fields applied."""
    if arch in ARCHITECTURES:
        return arch, cfg
    if arch in VARIANTS:
        base, fields = VARIANTS[arch]
        return base, dataclasses.replace(cfg, **fields)
    raise SsmscopeError(f"arch: unknown architecture {arch!r}; known: {', '.join([*ARCHITECTURES, *VARIANTS])}")


def _out_channels(block: nn.Module) -> int:
    last = block[-1] if isinstance(block, nn.Sequential) else block
    if isinstance(last, S4D):
        return last.d_model
    if isinstance(last, DepthwiseSeparableConv1d):
        return last.pointwise.out_channels
    return last.out_channels


def build_model(arch: str, vocab_size: int, cfg: ModelConfig | None = None, **overrides) -> DetectorModel:
    """Build a detector by registry name (one of the six, or a variant such as ``smr_s4d-add``);
    ``overrides`` replace ModelConfig fields."""
    cfg = dataclasses.replace(cfg or ModelConfig(), **overrides)
    arch, cfg = resolve_arch(arch, cfg)
    branches = ARCHITECTURES[arch](cfg)
    widths = {name: _out_channels(block) for name, block in branches.items()}
    return DetectorModel(vocab_size, cfg.embed_dim, branches, widths, cfg.dropout)
