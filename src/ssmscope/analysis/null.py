"""The untrained null: where a trained kernel's readings lie among freshly initialised ones.

A spectral reading of a trained S4D layer (its channels' median dominant frequency, say) means
something about training only if freshly initialised layers of the same configuration do not
give it too. The null of a reading is its distribution over ``n`` models built with
``build_model(arch, ·, model_config)`` under seeds NULL_SEED_BASE + i, i = 0 .. n-1, and read
exactly as ``analyze`` reads a trained model (``extract_kernels`` at the same length, then
``summarize_layer``). A trained reading v is placed by its mid-rank percentile among the null
values x_1 .. x_n,

    percentile(v) = 100 · (#{i: x_i < v} + ½ · #{i: x_i = v}) / n,

and lies outside the central 95% when percentile < 2.5 or > 97.5. For a draw of the null itself
(v exchangeable with the x_i) the mean percentile is exactly 50, ties included, and for a
continuous reading the chance of landing outside is α(n) = 2⌈n/40⌉ / (n + 1): exactly 5% when
n + 1 is a multiple of 40, hence DEFAULT_NULL_DRAWS = 39 (docs/METHODS.md, "The untrained null").

Nulls are cached per configuration: ``null_cache_dir()/null-<key>.json`` with key =
``null_cache_key(arch, model_config, length, n)``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
from pathlib import Path

import numpy as np
import torch

from ..config import ModelConfig
from ..errors import SsmscopeError
from ..files import write_json
from ..models import build_model
from .kernels import analyze_kernels, extract_kernels, summarize_model

# The readings placed in the null: channel medians of four KernelMetrics fields, and the share of
# a layer's channels whose filter type is band-pass.
CHANNEL_MEDIANS = ("dominant_frequency", "spectral_entropy_bits", "energy_length_90", "dependency_range_tokens")
READINGS = (*CHANNEL_MEDIANS, "band_pass_share")

# n = 39 is the smallest n >= 20 at which a draw of the null lands outside the central 95% with
# probability exactly 5% (α(n) = 2⌈n/40⌉/(n+1); 20 would give 9.5%). At ReVeal's defaults
# (H = 128, N = 64, L = 1024) drawing it took 2-6 s for s4d and 11-25 s for the three layers of
# depthwise_s4d on a shared 2-core machine, once per configuration (then it is cached); the next
# exact size, 79, would double that for edges two draws deep instead of one.
DEFAULT_NULL_DRAWS = 39
MIN_NULL_DRAWS = 20
CENTRAL_LEVEL = 0.95
# Null draw i is built under torch.manual_seed(NULL_SEED_BASE + i). Training seeds are small
# integers and build_model draws the kernel layers first, so a null seeded 0, 1, ... would contain
# the very initialisation that a run with train.seed 0 started from; this base keeps them apart.
NULL_SEED_BASE = 1_000_000
NULL_FORMAT = 2  # bump when the readings or the way they are drawn change: old cache files stop matching (2: MODEL_KEY added)
# The null of the model-level reading (every channel of every kernel layer pooled, as
# ``summarize_model`` reads a trained model) is stored beside the layers' under this key; the
# parentheses keep it apart from layer names, which are dotted module paths.
MODEL_KEY = "(model)"
ATTENTION_RANGE = "attention_range"  # selective layers: the median effective range of the hidden attention's rows


def layer_readings(summary: dict) -> dict[str, float]:
    """The READINGS of one kernel layer from its ``summarize_layer`` summary."""
    values = {name: summary["channels"][name]["median"] for name in CHANNEL_MEDIANS}
    values["band_pass_share"] = summary["filter_type_share"]["band-pass"]
    return values


def null_cache_dir() -> Path:
    """$SSMSCOPE_CACHE_DIR if set, else $XDG_CACHE_HOME/ssmscope, else ~/.cache/ssmscope."""
    if os.environ.get("SSMSCOPE_CACHE_DIR"):
        return Path(os.environ["SSMSCOPE_CACHE_DIR"])
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "ssmscope"


def null_identity(arch: str, model_config: ModelConfig, length: int, n: int) -> dict:
    """Everything a null depends on: architecture, every ModelConfig field, kernel length, number
    of draws, their seeds and the null format."""
    return {"arch": arch, "model": dataclasses.asdict(model_config), "length": length, "n": n, "seed_base": NULL_SEED_BASE, "format": NULL_FORMAT}


def null_cache_key(arch: str, model_config: ModelConfig, length: int, n: int) -> str:
    """sha256 (hex) of ``null_identity`` as canonical JSON: the name of the configuration's cache file."""
    identity = null_identity(arch, model_config, length, n)
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()


def null_readings(arch: str, model_config: ModelConfig, length: int, n: int = DEFAULT_NULL_DRAWS) -> dict[str, dict[str, np.ndarray]]:
    """{kernel layer name: {reading: its values (n,) over n freshly initialised models}}.

    The layers are those ``analyze`` finds in a model of ``arch`` (every module with
    ``kernel(L)``, so several per model where the architecture has several), plus MODEL_KEY for
    the model-level reading (all channels pooled); an architecture without kernel layers (cnn)
    gives {}. Read from the cache when a valid file for this
    configuration is there, else computed and cached (a damaged cache file is recomputed).
    The global torch RNG is left as it was.
    """
    if n < MIN_NULL_DRAWS:
        raise SsmscopeError(f"the untrained null needs at least {MIN_NULL_DRAWS} draws, got {n}; {DEFAULT_NULL_DRAWS} is the default")
    path = null_cache_dir() / f"null-{null_cache_key(arch, model_config, length, n)}.json"
    cached = _read_cache(path, n)
    if cached is not None:
        return cached
    null = _draw(arch, model_config, length, n)
    if null:
        _write_cache(path, null_identity(arch, model_config, length, n), null)
    return null


def _draw(arch: str, model_config: ModelConfig, length: int, n: int) -> dict[str, dict[str, np.ndarray]]:
    """The null computed afresh: n models built under seeds NULL_SEED_BASE + i and read as ``analyze`` reads."""
    values: dict[str, dict[str, list[float]]] = {}
    with torch.random.fork_rng(devices=[]):  # manual_seed below must not change the caller's RNG
        for i in range(n):
            torch.manual_seed(NULL_SEED_BASE + i)
            # Vocabulary size 2 (padding + one token): the vocabulary sizes only the embedding,
            # which is no kernel layer. Whatever the embedding draws can at most shift which
            # random numbers the kernel layers get, never their distribution (today it draws
            # nothing before them: build_model builds the branches first).
            kernels = extract_kernels(build_model(arch, 2, model_config), length)  # {name: (H, length)}
            if not kernels:
                return {}
            _collect(values, kernels)
    return _as_arrays(values)


def selective_null_readings(arch: str, model_config: ModelConfig, inputs: dict[str, list[torch.Tensor]], length: int,
                            n: int = DEFAULT_NULL_DRAWS) -> dict[str, dict[str, np.ndarray]]:
    """The null of selective layers: {layer name (and MODEL_KEY): {reading: values (n,)}}; each layer
    also has ATTENTION_RANGE, the median effective range of its hidden attention's rows.

    A selective layer's kernel depends on its input, so its null holds the input fixed:
    ``inputs`` = {layer name: the inputs u (1, H, L_f) the *trained* model gives that layer on
    some functions}; draw i builds a fresh model under seed NULL_SEED_BASE + i and reads each of
    its selective layers on those same inputs, as ``analysis.selective`` reads a trained one. A
    reading outside this null is one the layer's trained parameters produce and fresh ones do not,
    on the same data. Not cached: it depends on the trained model through its inputs.
    """
    from .selective import read_layer_on_inputs

    if n < MIN_NULL_DRAWS:
        raise SsmscopeError(f"the untrained null needs at least {MIN_NULL_DRAWS} draws, got {n}; {DEFAULT_NULL_DRAWS} is the default")
    values: dict[str, dict[str, list[float]]] = {}
    with torch.random.fork_rng(devices=[]):
        for i in range(n):
            torch.manual_seed(NULL_SEED_BASE + i)
            modules = dict(build_model(arch, 2, model_config).named_modules())
            read = {name: read_layer_on_inputs(modules[name], us, length) for name, us in inputs.items()}
            _collect(values, {name: kernel for name, (kernel, _) in read.items()})
            for name, (_, attention) in read.items():  # the layer's own reading: median effective range of its rows
                values[name].setdefault(ATTENTION_RANGE, []).append(attention["effective_range"]["median"])
    return _as_arrays(values)


def _collect(values: dict[str, dict[str, list[float]]], kernels: dict[str, np.ndarray]) -> None:
    """Append one draw's readings of every layer and of the model (all channels pooled) to ``values``."""
    summaries = {layer["name"]: layer["summary"] for layer in analyze_kernels(kernels)}  # read as analyze_run reads
    summaries[MODEL_KEY] = summarize_model(kernels)["summary"]
    for name, summary in summaries.items():
        for reading, value in layer_readings(summary).items():
            values.setdefault(name, {}).setdefault(reading, []).append(value)


def _as_arrays(values: dict[str, dict[str, list[float]]]) -> dict[str, dict[str, np.ndarray]]:
    return {name: {r: np.array(v) for r, v in by_reading.items()} for name, by_reading in values.items()}


def _read_cache(path: Path, n: int) -> dict[str, dict[str, np.ndarray]] | None:
    """The cached null, or None if the file is missing or is not a complete null of n draws."""
    try:
        layers = json.loads(path.read_text())["layers"]
        null = {name: {r: np.array(by_reading[r], dtype=np.float64) for r in READINGS} for name, by_reading in layers.items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):  # missing, not JSON, wrong shape
        return None
    complete = all(v.shape == (n,) and np.all(np.isfinite(v)) for by_reading in null.values() for v in by_reading.values())
    return null if null and complete else None


def _write_cache(path: Path, identity: dict, null: dict[str, dict[str, np.ndarray]]) -> None:
    """{"identity": what the null was drawn for (for a person reading the file), "layers": the null}."""
    layers = {name: {r: v.tolist() for r, v in by_reading.items()} for name, by_reading in null.items()}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json(path, {"identity": identity, "layers": layers})
    except OSError as e:
        raise SsmscopeError(f"cannot write the null cache {path} ({e.strerror}); set SSMSCOPE_CACHE_DIR to a writable folder") from None


def percentile_in_null(value: float, null_values) -> float:
    """Mid-rank percentile of ``value`` among the null values x (n,), in [0, 100]:

        100 · (#{x < value} + ½ · #{x = value}) / n

    (scipy.stats.percentileofscore with kind="mean"). Ties count half, so a draw of the null
    itself has mean percentile exactly 50.
    """
    x = np.asarray(null_values, dtype=np.float64)
    if x.ndim != 1 or x.size == 0:
        raise ValueError(f"null_values must be a non-empty 1-d array, got shape {x.shape}")
    below, equal = np.sum(x < value), np.sum(x == value)
    return float(100.0 * (below + 0.5 * equal) / x.size)


def _tail_percent(level: float) -> float:
    """100·(1 - level)/2, the percentile below which a value is outside (2.5 for 95%); rounded so
    that it is exact where the decimal is (1 - 0.95 is 0.050000000000000044 in binary)."""
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    return round(50.0 * (1 - level), 9)


def outside_central(value: float, null_values, level: float = CENTRAL_LEVEL) -> bool:
    """Whether ``value`` lies outside the central ``level`` of the null: its percentile is below
    100·(1 - level)/2 or above 100·(1 + level)/2 (2.5 and 97.5 for 95%).

    With n null draws the percentile moves in steps of 100/n, so for n < 40 only a value at or
    beyond the null's minimum or maximum can be outside; a continuous reading drawn from the null
    itself is outside with probability 2⌈n(1 - level)/2⌉ / (n + 1) (for 95%: 5% at n = 39, 79, ...).
    """
    tail = _tail_percent(level)
    percentile = percentile_in_null(value, null_values)
    return percentile < tail or percentile > 100.0 - tail


def central_interval(null_values, level: float = CENTRAL_LEVEL) -> tuple[float, float]:
    """The order statistics (x_(k), x_(n+1-k)), k = ⌈n(1 - level)/2⌉, at which ``outside_central``
    switches: a value below the first or above the second is outside, one strictly between them
    inside (one equal to either is decided by its mid-rank percentile). For 95% and n = 39 they
    are the null's minimum and maximum."""
    x = np.sort(np.asarray(null_values, dtype=np.float64))  # (n,)
    k = math.ceil(round(x.size * _tail_percent(level) / 100, 9))  # ⌈n(1 - level)/2⌉
    return float(x[k - 1]), float(x[x.size - k])


def place_in_null(summary_layers: list[dict], null: dict[str, dict[str, np.ndarray]], level: float = CENTRAL_LEVEL) -> dict[str, dict[str, dict]]:
    """{layer name: {reading: placement}} for the layers of ``analyze_kernels`` ([{"name", "summary"}, ...]).

    placement = {"value": the trained reading, "null_median", "null_central": [low, high] from
    ``central_interval``, "percentile": ``percentile_in_null``, "outside": ``outside_central``}.
    """
    placed = {}
    for layer in summary_layers:
        if layer["name"] not in null:
            raise SsmscopeError(f"layer {layer['name']} has no untrained null (the null holds {sorted(null)}); it was drawn for another "
                                f"model structure: delete the null-*.json files in {null_cache_dir()} and analyse again")
        placed[layer["name"]] = {reading: placement(value, null[layer["name"]][reading], level) for reading, value in layer_readings(layer["summary"]).items()}
    return placed


def placement(value: float, x: np.ndarray, level: float = CENTRAL_LEVEL) -> dict:
    """One reading against its null draws x (n,): value, null median, central interval, percentile, outside."""
    return {
        "value": value,
        "null_median": float(np.median(x)),
        "null_central": list(central_interval(x, level)),
        "percentile": percentile_in_null(value, x),
        "outside": outside_central(value, x, level),
    }
