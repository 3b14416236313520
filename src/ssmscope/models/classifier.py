"""The six detectors of the study, their depth, and the registry that builds them.

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
    mamba          N pre-norm residual Mamba blocks (E) and a LayerNorm (the selective SSM; not in the paper)

Variants for the SMR fusion ablation: ``smr_s4d-add`` (u + conv(u)) and ``smr_s4d-none`` (conv(u)).

Depth (``ModelConfig.layers`` = N, default 1, the paper's models): every S4D-bearing branch
continues after its S4D with N − 1 pre-norm residual S4D blocks of the same width
(``ResidualS4DBlock``). A name may carry the depth, ``s4d-2layers`` or ``smr_s4d-add-4layers``,
so that one study holds models of several depths (``resolve_arch``, ``model_name``).

Branches live in a ModuleDict named by what they are (``conv3``, ``s4d``, ``smr``), so every S4D
has a readable place, e.g. ``branches.conv5.s4d``, and in a deep model ``branches.conv5.blocks.1.s4d``
(the blocks count on from the first S4D, layer 0); :meth:`DetectorModel.s4d_layers` lists them.
"""

from __future__ import annotations

import dataclasses
import re
from collections import OrderedDict

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from ..config import ModelConfig
from ..errors import SsmscopeError
from .blocks import DepthwiseSeparableConv1d, MambaStack, ResidualMambaBlock, ResidualS4DBlock, SamePadConv1d, StateMemoryReplay
from .mamba import Mamba
from .s4d import S4D


class DetectorModel(nn.Module):
    """Embedding, named feature branches, masked max-pool, dropout, one-logit head."""

    def __init__(self, vocab_size: int, embed_dim: int, branches: dict[str, nn.Module], branch_width: dict[str, int], dropout: float):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=0)
        self.branches = nn.ModuleDict(branches)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(sum(branch_width.values()), 1)
        self.recompute_branches = False  # see features(); train sets it (TrainConfig.recompute_branches)

    def features(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Pooled features (B, ΣC) before dropout and the head.

        Max over positions < length only. After ReLU every value is >= 0, so filling the padded
        positions with 0 before the max gives exactly the max over the valid positions (a function
        has at least one token).

        With ``recompute_branches`` (and gradients on) each branch keeps none of its activations
        for backward: backward runs the branch's forward again (torch.utils.checkpoint), one
        branch at a time, so a model's activation memory is that of its largest branch instead of
        the sum. The recomputed values are the same bits (same operations on the same inputs,
        dropout's random draws replayed), so the gradients are too.
        """
        x = self.embedding(tokens).transpose(1, 2)  # (B, E, L)
        valid = torch.arange(tokens.shape[1], device=tokens.device) < lengths[:, None]  # (B, L)
        recompute = self.recompute_branches and torch.is_grad_enabled()
        pooled = [
            checkpoint(_pooled_branch, branch, x, valid, use_reentrant=False) if recompute else _pooled_branch(branch, x, valid)
            for branch in self.branches.values()
        ]  # each (B, C)
        return torch.cat(pooled, dim=-1)  # (B, ΣC)

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """tokens (B, L) int64, lengths (B,) → logits (B,)."""
        return self.head(self.dropout(self.features(tokens, lengths))).squeeze(-1)

    def s4d_branches(self) -> list[str]:
        """Names of the branches that hold an S4D."""
        return [name for name, branch in self.branches.items() if any(isinstance(m, S4D) for m in branch.modules())]

    def s4d_layers(self) -> list[tuple[str, S4D]]:
        """Every S4D in the model with its dotted name, e.g. ('branches.smr.s4d', S4D(...))."""
        return [(name, m) for name, m in self.named_modules() if isinstance(m, S4D)]


def _pooled_branch(branch: nn.Module, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """ReLU of the branch's features, max over the valid positions: x (B, E, L), valid (B, L) → (B, C)."""
    h = torch.relu(branch(x))  # (B, C, L)
    return h.masked_fill(~valid[:, None, :], 0.0).amax(dim=-1)  # (B, C)


def _s4d(d_model: int, cfg: ModelConfig) -> S4D:
    return S4D(d_model, cfg.d_state, cfg.s4d_init, cfg.discretization, cfg.dt_min, cfg.dt_max)


def _then(**parts: nn.Module) -> nn.Sequential:
    return nn.Sequential(OrderedDict(parts))


def _deepen(branch: nn.Module, cfg: ModelConfig) -> nn.Module:
    """The one-layer ``branch`` (ending in its S4D) followed by cfg.layers − 1 residual S4D blocks.

    At one layer the branch is returned as it is, so parameters, their names and the random draws
    that initialise them are those of the paper's model.
    """
    if cfg.layers == 1:
        return branch
    width = _out_channels(branch)
    blocks = nn.Sequential(OrderedDict(
        (str(depth), ResidualS4DBlock(_s4d(width, cfg), cfg.block_dropout)) for depth in range(1, cfg.layers)
    ))
    parts = OrderedDict(branch.named_children()) if isinstance(branch, nn.Sequential) else OrderedDict(s4d=branch)
    return nn.Sequential(OrderedDict(**parts, blocks=blocks))


def _cnn(cfg):
    return {f"conv{k}": SamePadConv1d(cfg.embed_dim, cfg.num_filters, k) for k in cfg.kernel_sizes}


def _depthwise(cfg):
    return {f"dwconv{k}": DepthwiseSeparableConv1d(cfg.embed_dim, cfg.num_filters, k) for k in cfg.kernel_sizes}


def _s4d_only(cfg):
    return {"s4d": _deepen(_s4d(cfg.embed_dim, cfg), cfg)}


def _conv_s4d(cfg):
    return {
        f"conv{k}": _deepen(_then(conv=SamePadConv1d(cfg.embed_dim, cfg.num_filters, k), s4d=_s4d(cfg.num_filters, cfg)), cfg)
        for k in cfg.kernel_sizes
    }


def _depthwise_s4d(cfg):
    return {
        f"dwconv{k}": _deepen(_then(conv=DepthwiseSeparableConv1d(cfg.embed_dim, cfg.num_filters, k), s4d=_s4d(cfg.num_filters, cfg)), cfg)
        for k in cfg.kernel_sizes
    }


def _smr_s4d(cfg):
    return {"smr": _deepen(_then(smr=StateMemoryReplay(cfg.embed_dim, cfg.smr_kernel_size, cfg.smr_fusion), s4d=_s4d(cfg.embed_dim, cfg)), cfg)}


def _mamba(cfg):
    blocks = [
        ResidualMambaBlock(Mamba(cfg.embed_dim, cfg.mamba_d_state, cfg.mamba_expand, cfg.mamba_d_conv, cfg.dt_min, cfg.dt_max))
        for _ in range(cfg.layers)
    ]
    return {"mamba": MambaStack(blocks)}


ARCHITECTURES = {
    "cnn": _cnn,
    "depthwise": _depthwise,
    "s4d": _s4d_only,
    "conv_s4d": _conv_s4d,
    "depthwise_s4d": _depthwise_s4d,
    "smr_s4d": _smr_s4d,
    "mamba": _mamba,
}
PAPER_ARCHITECTURES = ("cnn", "depthwise", "s4d", "conv_s4d", "depthwise_s4d", "smr_s4d")  # the study's six


# Variants of the six for ablations: name → (base architecture, ModelConfig fields it fixes).
VARIANTS = {
    "smr_s4d-add": ("smr_s4d", {"smr_fusion": "add"}),
    "smr_s4d-none": ("smr_s4d", {"smr_fusion": "none"}),
}


WITHOUT_S4D = ("cnn", "depthwise")  # depth (layers > 1) applies to the others
DEPTH_SUFFIX = re.compile(r"-(\d+)layers?$")  # "s4d-2layers": the name fixes ModelConfig.layers


def resolve_arch(arch: str, cfg: ModelConfig) -> tuple[str, ModelConfig]:
    """The base architecture of ``arch`` and the ModelConfig with the variant's fields applied.

    A trailing ``-Nlayers`` sets ``layers`` = N (a contradicting cfg.layers other than 1 is an
    error); then the name must be one of the six or a variant.
    """
    depth = DEPTH_SUFFIX.search(arch)
    if depth:
        layers = int(depth.group(1))
        if cfg.layers not in (1, layers):
            raise SsmscopeError(f"arch: {arch!r} fixes layers = {layers}, but --layers {cfg.layers} was given; use one of them")
        arch, cfg = arch[: depth.start()], dataclasses.replace(cfg, layers=layers)
    if arch in VARIANTS:
        base, fields = VARIANTS[arch]
        arch, cfg = base, dataclasses.replace(cfg, **fields)
    elif arch not in ARCHITECTURES:
        raise SsmscopeError(f"arch: unknown architecture {arch!r}; known: {', '.join([*ARCHITECTURES, *VARIANTS])} (add -Nlayers for depth N)")
    if cfg.layers < 1:
        raise SsmscopeError(f"--layers must be at least 1, got {cfg.layers}")
    if cfg.layers > 1 and arch in WITHOUT_S4D:
        raise SsmscopeError(f"--layers {cfg.layers}: {arch} has no S4D layer to stack; depth applies to {', '.join(a for a in ARCHITECTURES if a not in WITHOUT_S4D)}")
    return arch, cfg


def model_name(arch: str, cfg: ModelConfig) -> str:
    """The name a study table shows: ``arch`` with its depth, e.g. ("s4d", layers 2) → "s4d-2layers"."""
    _, resolved = resolve_arch(arch, cfg)
    plain = DEPTH_SUFFIX.sub("", arch)
    return plain if resolved.layers == 1 else f"{plain}-{resolved.layers}layers"


def _out_channels(block: nn.Module) -> int:
    last = block[-1] if isinstance(block, nn.Sequential) else block
    if isinstance(last, nn.Sequential):  # a deep branch's blocks
        return _out_channels(last)
    if isinstance(last, (S4D, ResidualS4DBlock, MambaStack)):
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
