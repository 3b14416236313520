"""Every SSM layer of a study's models, over seeds: readings, their place among untrained layers, probed ranges.

`ssmscope report` lists each run's layers one run at a time; this script puts the seeds of one
architecture side by side, layer by layer in depth order, for docs/RESULTS.md. Per layer and reading
(channel medians of analysis/summary.json: dominant frequency, spectral entropy, energy length,
dependency range, share of band-pass channels): mean ± sample std over seeds, and in how many seeds the
reading lies outside the central 95% of the untrained null (``analyze``'s placement). Then the probed
range of the layer truncated alone (probes/test-split.json ``layers``; F1 / AUC criterion, one value
per seed), and for selective layers (mamba) the median effective range of the hidden attention on the
analysed test functions, then in brackets the same reading on the null's inputs (the first test
functions), its percentile among fresh layers read on those inputs (pNN) and their central 95%.
The "model" row pools every layer (readings) and truncates every layer at once (probes).

    .venv/bin/python experiments/layer_readings.py runs/study12 s4d-2layers smr_s4d-2layers [--seeds 0 1 2]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from ssmscope.analysis.kernels import layer_depth
from ssmscope.analysis.null import ATTENTION_RANGE, layer_readings

READINGS = {"dominant_frequency": ("dominant frequency", "{:.4f}"), "spectral_entropy_bits": ("entropy (bits)", "{:.2f}"),
            "energy_length_90": ("energy length", "{:.0f}"), "dependency_range_tokens": ("dependency range", "{:.1f}"),
            "band_pass_share": ("band-pass share", "{:.2f}")}
MODEL = "model"


def layer_values(summary: dict, probes: dict) -> dict[str, dict]:
    """{layer name or MODEL: {"depth", reading: (value, outside the null or None), "probed": (F1, AUC), "attention"}}"""
    rows = {}
    pooled = [{"name": MODEL, "summary": summary["model"]["summary"], "null": summary["model"].get("null")}]
    entries = [*summary["layers"], *(pooled if len(summary["layers"]) > 1 else [])]  # one layer: its row is the model's
    for entry in entries:
        values = layer_readings(entry["summary"])
        null = entry.get("null") or {}
        one_layer = entry["name"] == MODEL or len(summary["layers"]) == 1  # the layer alone is the model
        alone = probes if one_layer else probes.get("layers", {}).get(entry["name"], {})
        attention = entry.get("attention")
        rows[entry["name"]] = {
            "depth": None if entry["name"] == MODEL else layer_depth(entry["name"]),  # older analyses lack "depth"
            **{key: (value, null[key]["outside"] if key in null else None) for key, value in values.items()},
            "probed": (alone.get("used_range_tokens"), alone.get("used_range_auc_tokens")),
            "attention": attention["effective_range"]["median"] if attention else None,
            "attention_null": null.get(ATTENTION_RANGE),  # its reading on the null's inputs, placed among fresh layers
        }
    return rows


def attention_placement(placed: dict | None) -> str:
    """' (pNN: R vs LO–HI)': the layer's attention range on the null's inputs (R), the central interval of
    fresh layers' ranges on those inputs (LO–HI) and R's percentile among them; '' without a null."""
    if placed is None:
        return ""
    low, high = placed["null_central"]
    return f" (p{placed['percentile']:.0f}: {placed['value']:.0f} vs {low:.0f}–{high:.0f})"


def table(study: Path, arch: str, seeds: list[int]) -> list[str]:
    runs = []
    for seed in seeds:
        run = study / "runs" / f"{arch}-seed{seed}"
        summary = json.loads((run / "analysis" / "summary.json").read_text())
        if not summary["layers"]:
            raise SystemExit(f"{run}: {arch} has no SSM layer to read")
        probes = json.loads((run / "probes" / "test-split.json").read_text())
        runs.append(layer_values(summary, probes))
    names = list(runs[0])
    header = ["layer", "depth", *(label for label, _ in READINGS.values()), "probed range alone (F1 / AUC), per seed", "attention range (pNN: on the null's inputs vs fresh layers' central 95%), per seed"]
    lines = [f"{arch}, seeds {', '.join(map(str, seeds))}: mean ± std over seeds; [k out] = outside the untrained null in k seeds", "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name in names:
        per_seed = [r[name] for r in runs]
        cells = [name, "all" if name == MODEL else str(per_seed[0]["depth"])]
        for key, (_, fmt) in READINGS.items():
            values = np.array([p[key][0] for p in per_seed], dtype=float)
            outside = [p[key][1] for p in per_seed if p[key][1] is not None]
            spread = f" ± {fmt.format(values.std(ddof=1))}" if len(values) > 1 else ""
            cells.append(f"{fmt.format(values.mean())}{spread}" + (f" [{sum(outside)} out]" if outside else ""))
        cells.append(", ".join(f"{p['probed'][0]} / {p['probed'][1]}" for p in per_seed))
        cells.append(", ".join(f"{p['attention']:.0f}" + attention_placement(p["attention_null"]) for p in per_seed if p["attention"] is not None) or "–")
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("study", type=Path)
    parser.add_argument("archs", nargs="+")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()
    for arch in args.archs:
        print("\n".join(table(args.study, arch, args.seeds)) + "\n")


if __name__ == "__main__":
    main()
