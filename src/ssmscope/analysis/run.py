"""The ``analyze`` step of a run: load it, read every SSM layer, place the readings in the untrained null, write files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..errors import SsmscopeError
from ..files import write_json
from ..train.loop import load_run
from .kernels import analyze_kernels, extract_kernels, summarize_model
from .null import CENTRAL_LEVEL, DEFAULT_NULL_DRAWS, MODEL_KEY, null_cache_key, null_readings, place_in_null


def analyze_run(
    run_dir: str | Path, length: int | None = None, figures: bool = True, out: str | Path | None = None,
    null_draws: int | None = DEFAULT_NULL_DRAWS,
) -> dict:
    """Extract, measure and plot every kernel of a finished run into RUN_DIR/analysis/ (or ``out``).

    Writes kernels.npz (one (H, L) array per layer, named by its place in the model),
    summary.json and, with ``figures``, PNG and SVG figures. Returns the summary.

    Each kernel layer's readings are placed in the untrained null of ``null_draws`` freshly
    initialised models of the run's configuration (``analysis.null``): layer["null"] =
    {reading: placement}, summary["model"]["null"] likewise for the model-level reading, and
    summary["null"] = {"n", "level", "cache_key"}. ``null_draws=None``
    leaves the null out (summary["null"] is None, as for a model without kernels).
    """
    run_dir = Path(run_dir)
    if not (run_dir / "metrics.json").is_file():
        raise SsmscopeError(f"{run_dir}: the run has not finished (no metrics.json); finish or resume training before analysing it")
    config, _, model = load_run(run_dir)
    length = config.data.max_len if length is None else length
    if length < 2:
        raise SsmscopeError(f"--length must be at least 2 taps, got {length}")
    kernels = extract_kernels(model, length)
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
    summary["null"] = None
    if kernels and null_draws is not None:
        model_layer = {"name": MODEL_KEY, "summary": summary["model"]["summary"]}
        placed = place_in_null([*summary["layers"], model_layer], null_readings(config.arch, config.model, length, null_draws))
        for layer in summary["layers"]:
            layer["null"] = placed[layer["name"]]
        summary["model"]["null"] = placed[MODEL_KEY]
        summary["null"] = {"n": null_draws, "level": CENTRAL_LEVEL, "cache_key": null_cache_key(config.arch, config.model, length, null_draws)}
    tracked = _tracked_epochs(run_dir)
    if tracked:
        summary["epochs"] = tracked
    np.savez(out / "kernels.npz", **kernels)
    write_json(out / "summary.json", summary)
    if figures and kernels:
        from ..report.plots import plot_layer, plot_training_spectra

        for name, bank in kernels.items():
            layer = next(l for l in summary["layers"] if l["name"] == name)
            plot_layer(bank, layer, out, title=f"{config.arch}: {name}")
        if tracked:
            plot_training_spectra(tracked, out)
    return summary


def _tracked_epochs(run_dir: Path) -> list[dict]:
    """Per-epoch kernel summaries recorded by ``train --track-kernels`` (empty if none)."""
    path = run_dir / "kernels.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
