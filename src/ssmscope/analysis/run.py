"""The ``analyze`` step of a run: load it, read every SSM layer, place the readings in the untrained null, write files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from ..errors import SsmscopeError
from ..files import write_json
from ..train.loop import encode_for_run, load_run, test_split_records
from .kernels import analyze_kernels, extract_kernels, summarize_model
from .null import ATTENTION_RANGE, CENTRAL_LEVEL, DEFAULT_NULL_DRAWS, MODEL_KEY, null_cache_key, null_readings, place_in_null, placement, selective_null_readings
from .selective import DEFAULT_FUNCTIONS, NULL_FUNCTIONS, read_layer_on_inputs, selective_layer_inputs, selective_modules


def analyze_run(
    run_dir: str | Path, length: int | None = None, figures: bool = True, out: str | Path | None = None,
    null_draws: int | None = DEFAULT_NULL_DRAWS, limit: int = DEFAULT_FUNCTIONS,
) -> dict:
    """Extract, measure and plot every SSM layer of a finished run into RUN_DIR/analysis/ (or ``out``).

    Writes kernels.npz (one (H, L) array per layer, named by its place in the model),
    summary.json and, with ``figures``, PNG and SVG figures. Returns the summary.

    Time-invariant layers (``kernel(L)``) are read from their kernels. Selective layers
    (``selective_inputs(u)``, Mamba) are read on up to ``limit`` functions of the run's test split
    (a fixed random sample): their mean effective kernel goes through the same readings, and
    layer["attention"] holds the lag profile and effective ranges (``analysis.selective``);
    summary["functions"] says which functions.

    Each layer's readings are placed in the untrained null of ``null_draws`` freshly initialised
    models of the run's configuration (``analysis.null``): layer["null"] = {reading: placement},
    summary["model"]["null"] likewise for the model-level reading, and summary["null"] = {"n",
    "level", "cache_key", "functions"}. For selective layers the null reads fresh layers on the
    inputs the trained model gives them on the first NULL_FUNCTIONS sampled functions, and the
    trained readings placed in it are taken on those same functions. ``null_draws=None`` leaves
    the null out (summary["null"] is None, as for a model without SSM layers).
    """
    run_dir = Path(run_dir)
    if not (run_dir / "metrics.json").is_file():
        raise SsmscopeError(f"{run_dir}: the run has not finished (no metrics.json); finish or resume training before analysing it")
    config, vocab, model = load_run(run_dir)
    length = config.data.max_len if length is None else length
    if length < 2:
        raise SsmscopeError(f"--length must be at least 2 taps, got {length}")
    if limit < 1:
        raise SsmscopeError(f"--limit must be at least 1 function, got {limit}")
    kernels = extract_kernels(model, length)
    selective, functions, inputs = {}, [], {}
    if selective_modules(model):
        functions = _sample_test_functions(run_dir, config, vocab, limit)
        inputs = selective_layer_inputs(model, [tokens for _, tokens in functions], length)  # {layer: [u (1, H, L_f)]}, once
        modules = dict(model.named_modules())
        selective = {name: read_layer_on_inputs(modules[name], us, length) for name, us in inputs.items()}
        kernels.update({name: kernel for name, (kernel, _) in selective.items()})
    out = Path(out) if out else run_dir / "analysis"
    out.mkdir(parents=True, exist_ok=True)
    summary = {
        "run": str(run_dir),
        "arch": config.arch,
        "length": length,
        "layers": analyze_kernels(kernels),
        "model": summarize_model(kernels),
        "note": None if kernels else f"{config.arch} has no SSM layer: there is no kernel to analyse",
    }
    for layer in summary["layers"]:
        layer["kind"] = "selective" if layer["name"] in selective else "kernel"
        if layer["name"] in selective:
            layer["attention"] = selective[layer["name"]][1]
    if functions:
        summary["functions"] = {"split": "test", "n": len(functions), "indices": [index for index, _ in functions]}
    summary["null"] = None
    if kernels and null_draws is not None:
        placed, null_functions = _place_in_untrained_null(config, model, summary, inputs, length, null_draws)
        for layer in summary["layers"]:
            layer["null"] = placed[layer["name"]]
        summary["model"]["null"] = placed[MODEL_KEY]
        summary["null"] = {
            "n": null_draws, "level": CENTRAL_LEVEL, "functions": null_functions,
            "cache_key": None if selective else null_cache_key(config.arch, config.model, length, null_draws),
        }
    tracked = _tracked_epochs(run_dir)
    if tracked:
        summary["epochs"] = tracked
    np.savez(out / "kernels.npz", **kernels)
    write_json(out / "summary.json", summary)
    if figures and kernels:
        from ..report.plots import plot_lag_profile, plot_layer, plot_training_spectra

        for name, bank in kernels.items():
            layer = next(l for l in summary["layers"] if l["name"] == name)
            plot_layer(bank, layer, out, title=f"{config.arch}: {name}" + (" (mean effective kernel)" if name in selective else ""))
            if name in selective:
                plot_lag_profile(layer, out, title=f"{config.arch}: {name}")
        if tracked:
            plot_training_spectra(tracked, out)
    return summary


def _sample_test_functions(run_dir: Path, config, vocab, limit: int) -> list[tuple[int, torch.Tensor]]:
    """Up to ``limit`` functions of the run's test split, drawn at random under a fixed seed (0) and
    kept in file order: [(record index, tokens (L_f,))]."""
    records = test_split_records(run_dir, config)
    if len(records) > limit:
        chosen = np.sort(np.random.default_rng(0).choice(len(records), size=limit, replace=False))
        records = [records[i] for i in chosen]
    split = encode_for_run(config, vocab, records)
    return [(record.index, torch.from_numpy(tokens)) for record, tokens in zip(records, split.sequences)]


def _place_in_untrained_null(config, model, summary: dict, inputs: dict[str, list[torch.Tensor]], length: int, n: int) -> tuple[dict, int | None]:
    """{layer name and MODEL_KEY: placements}, and how many functions the selective null read (None without
    selective layers). ``inputs``: the selective layers' inputs on the sampled functions ({} for kernel layers)."""
    layers = [*summary["layers"], {"name": MODEL_KEY, "summary": summary["model"]["summary"]}]
    if not inputs:
        return place_in_null(layers, null_readings(config.arch, config.model, length, n)), None
    subset = {name: us[:NULL_FUNCTIONS] for name, us in inputs.items()}
    null = selective_null_readings(config.arch, config.model, subset, length, n)
    # The trained readings on the same functions as the null's. (A model's SSM layers are all of one
    # kind today; a model mixing kernel and selective layers would need both nulls here.)
    modules = dict(model.named_modules())
    read = {name: read_layer_on_inputs(modules[name], us, length) for name, us in subset.items()}
    on_subset = {name: kernel for name, (kernel, _) in read.items()}
    subset_layers = [*analyze_kernels(on_subset), {"name": MODEL_KEY, "summary": summarize_model(on_subset)["summary"]}]
    placed = place_in_null(subset_layers, null)
    for name, (_, attention) in read.items():  # and each layer's attention range, read on the same functions
        placed[name][ATTENTION_RANGE] = placement(attention["effective_range"]["median"], null[name][ATTENTION_RANGE])
    return placed, len(next(iter(subset.values())))


def _tracked_epochs(run_dir: Path) -> list[dict]:
    """Per-epoch kernel summaries recorded by ``train --track-kernels`` (empty if none, or if the model
    has no kernel layers to track: a selective layer is read on inputs, after training)."""
    path = run_dir / "kernels.jsonl"
    if not path.is_file():
        return []
    epochs = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return epochs if any(epoch["layers"] for epoch in epochs) else []
