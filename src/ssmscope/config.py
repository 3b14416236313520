"""Every setting of a run, with its default, in one place.

The reasons for the defaults are in docs/METHODS.md ("Defaults"); change a default here and there.
A run's configuration is a :class:`RunConfig`; it round-trips through JSON (``to_dict`` /
``from_dict``) so that ``config.json`` in a run directory rebuilds the run.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from .errors import SsmscopeError

NORMALIZE_MODES = ("none", "identifiers", "full")
RECOMPUTE_MODES = ("auto", "on", "off")
DECISION_THRESHOLD = 0.5  # probability above which a function is predicted vulnerable (logit > 0)


@dataclass(frozen=True)
class DataConfig:
    code_field: str = "code"
    label_field: str = "label"
    normalize: str = "identifiers"  # none | identifiers (VARn/FUNCn) | full (also literals)
    max_len: int = 1024  # tokens kept per function (the rest is cut and counted)
    min_count: int = 2  # a token enters the vocabulary if it occurs this often in train
    max_vocab: int = 20_000  # vocabulary cap, specials included
    limit: int | None = None  # stratified subsample of this many functions before splitting
    split: tuple[float, float, float] = (0.8, 0.1, 0.1)  # train / valid / test
    skip_bad_lines: bool = False  # leave out (and count) bad records instead of stopping at the first
    split_by: str | None = None  # field whose values group the functions (e.g. ReVeal's "project") ...
    test_groups: tuple[str, ...] = ()  # ... and the groups that form the test split (train/valid from the others)


@dataclass(frozen=True)
class ModelConfig:
    embed_dim: int = 128  # token embedding width; also H of a standalone S4D
    num_filters: int = 128  # output channels of each convolution branch
    kernel_sizes: tuple[int, ...] = (3, 5, 7)  # one branch per size (cnn, depthwise, *_s4d)
    smr_kernel_size: int = 3  # the short causal convolution of State Memory Replay
    smr_fusion: str = "mul"  # mul (SMR) | add | none: the ablation of SMR's fusion
    d_state: int = 64  # N of every S4D (N/2 complex conjugate-pair modes)
    s4d_init: str = "lin"  # lin | inv
    discretization: str = "zoh"  # zoh | bilinear
    dt_min: float = 1e-3
    dt_max: float = 1e-1
    dropout: float = 0.5  # before the head (the paper's)
    layers: int = 1  # S4D layers per S4D-bearing branch (the first as in the paper, then layers − 1 residual blocks); mamba: its blocks
    block_dropout: float = 0.1  # inside each residual block (layers > 1); state-spaces' S4D example uses 0.1
    mamba_d_state: int = 16  # N of each Mamba block (Mamba's default; A is real, so N states, not N/2 pairs)
    mamba_expand: int = 2  # inner width E = expand · embed_dim (Mamba's default)
    mamba_d_conv: int = 4  # taps of the causal depthwise convolution before the scan (Mamba's default)


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 10
    batch_size: int = 64
    lr: float = 1e-3
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda
    threads: int | None = None  # torch's intra-op CPU threads; None: torch's choice (results depend on it: docs/METHODS.md)
    bucket_chunk_batches: int = 50  # length grouping: sort within chunks of this many batches
    pad_to_multiple: int = 64  # batch widths rounded up to a multiple: few distinct shapes, flat memory
    track_kernels: bool = False  # record every S4D layer's spectral summary after each epoch
    checkpoint_every: int = 100  # optimiser steps between resume checkpoints (one more after every epoch)
    select_by: str = "f1"  # validation metric that picks the best epoch: f1 | mcc | roc_auc | pr_auc | accuracy
    recompute_branches: str = "auto"  # auto (models with several S4D branches) | on | off: memory for time, same bits


@dataclass(frozen=True)
class SyntheticConfig:
    """The synthetic corpus (ssmscope.data.synthetic); defaults of `ssmscope data synth`."""

    n: int = 1000
    distances: tuple[int, ...] = (16, 64, 256)  # tokens between the two places, one drawn per function
    kinds: tuple[str, ...] = ("buffer_overflow", "use_after_free", "null_check")
    positive_fraction: float = 0.5
    seed: int = 0


# `ssmscope reproduce` without --data: the corpus it generates and the settings that differ from the
# defaults (ModelConfig is defined above them), sized so that `make demo` finishes within 10 minutes on 2 cores (docs/METHODS.md).
EMBEDDED_CORPUS = SyntheticConfig(n=1200, distances=(8, 32, 128))
EMBEDDED_MAX_LEN = 640  # the longest embedded function is ≈ 3 · 128 + 180 tokens: nothing is cut
EMBEDDED_MODEL = ModelConfig(embed_dim=64, num_filters=64)  # a 195-token vocabulary needs no 128 wide model


@dataclass(frozen=True)
class RunConfig:
    arch: str
    data_path: str
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        return _jsonable(dataclasses.asdict(self))

    def with_train(self, **changes: Any) -> "RunConfig":
        """This config with some TrainConfig fields replaced."""
        return dataclasses.replace(self, train=dataclasses.replace(self.train, **changes))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RunConfig":
        try:
            return cls(
                arch=d["arch"],
                data_path=d["data_path"],
                data=_build(DataConfig, d.get("data", {})),
                model=_build(ModelConfig, d.get("model", {})),
                train=_build(TrainConfig, d.get("train", {})),
            )
        except KeyError as e:
            raise SsmscopeError(f"config: missing field {e}; the run's config.json is incomplete") from None


def _build(cls, d: dict[str, Any]):
    names = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - set(names))
    if unknown:
        raise SsmscopeError(f"config: unknown {cls.__name__} field(s) {unknown}; known: {sorted(names)}")
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}
    return cls(**values)


def _jsonable(x):
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    return x
