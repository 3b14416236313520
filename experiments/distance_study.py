"""Do the kernels' spectral readings track the true dependency distance?

For each distance d, generate the synthetic corpus with every function at distance d, run the
study (train → analyze → probe) for the chosen architectures, and tabulate per architecture and
distance: test F1 and MCC, the channel-median dependency_range_tokens and energy_length_90 (at the
run's max_len and at one common length, 2048), and the
probe's used ranges (F1 and ROC-AUC readings); then Spearman rank correlations of each reading
with the true distance. For models with several kernel layers (deep stacks, ``s4d-2layers``) a
second table reads every layer alone: its readings at the common length and the range the probe
found truncating that layer only; for selective layers (mamba) also the effective range of the
hidden attention (median over rows; analysis.selective). The model is the embedded study's 64-wide one (EMBEDDED_MODEL):
the corpus has a vocabulary of ~200 tokens.

    .venv/bin/python experiments/distance_study.py --out runs/distance [--distances 8 32 128 512]
        [--archs cnn s4d conv_s4d depthwise_s4d smr_s4d] [--n 2000] [--epochs 10] [--seeds 0]
    .venv/bin/python experiments/distance_study.py --out runs/depth-distance \
        --archs s4d s4d-2layers s4d-4layers smr_s4d smr_s4d-2layers smr_s4d-4layers

Writes OUT/distance_table.md, OUT/distance_results.json and OUT/dD/report/; re-running skips finished
runs and the reports that are newer than their runs (--rewrite-reports: all of them).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from scipy.stats import permutation_test, spearmanr

from ssmscope.allocator import keep_freed_memory, use_preferred_allocator
from ssmscope.analysis.run import analyze_run
from ssmscope.config import EMBEDDED_MODEL, DataConfig, RunConfig, TrainConfig
from ssmscope.data.synthetic import generate
from ssmscope.files import write_json, write_jsonl
from ssmscope.pipeline import reproduce, run_dir_for
from ssmscope.report.render import runs_named_in, write_report

READINGS = ("f1", "mcc", "roc_auc", "dependency_range_tokens", "energy_length_90", "dependency_range_common", "energy_length_common",
            "used_range_tokens", "used_range_auc_tokens", "attention_range")
DISTANCE_READINGS = READINGS[3:]  # the ones to rank-correlate with the true distance
LAYER_READINGS = ("dependency_range_common", "energy_length_common", "used_range_tokens", "used_range_auc_tokens", "attention_range")
COMMON_LENGTH = 2048  # kernels also measured at one length for all distances: max_len grows with d, and
                      # entropy, energy length and the frequency grid all depend on the analysis length


def kernel_readings(summary: dict) -> tuple[float, float]:
    channels = summary["model"]["summary"]["channels"]
    return channels["dependency_range_tokens"]["median"], channels["energy_length_90"]["median"]


def reading(run_dir: Path) -> dict:
    metrics = json.loads((run_dir / "metrics.json").read_text())
    summary = json.loads((run_dir / "analysis" / "summary.json").read_text())
    probes = json.loads((run_dir / "probes" / "test-split.json").read_text())
    row = dict.fromkeys(READINGS) | {"f1": metrics["f1"], "mcc": metrics["mcc"], "roc_auc": metrics["roc_auc"]}
    if summary.get("model"):
        row["dependency_range_tokens"], row["energy_length_90"] = kernel_readings(summary)
        common = run_dir / f"analysis-L{COMMON_LENGTH}" / "summary.json"
        if not common.is_file():
            analyze_run(run_dir, length=COMMON_LENGTH, figures=False, out=common.parent, null_draws=None)  # readings only
        row["dependency_range_common"], row["energy_length_common"] = kernel_readings(json.loads(common.read_text()))
        row["used_range_tokens"] = probes.get("used_range_tokens")
        row["used_range_auc_tokens"] = probes.get("used_range_auc_tokens")
        row["attention_range"] = attention_range(summary["layers"])
    return row


def attention_range(layers: list[dict]) -> float | None:
    """Selective layers (mamba): the median over the layers of each layer's median effective range of its
    hidden attention (one layer: that layer's); None for a model without selective layers."""
    medians = [layer["attention"]["effective_range"]["median"] for layer in layers if layer.get("attention")]
    return float(np.median(medians)) if medians else None


def layer_rows(run_dir: Path) -> list[dict]:
    """Every kernel layer of a model with more than one: its channel medians at the common length
    and the probed range with that layer alone truncated ([] for a model with one kernel layer)."""
    common = run_dir / f"analysis-L{COMMON_LENGTH}" / "summary.json"
    if not common.is_file():
        return []
    layers = json.loads(common.read_text())["layers"]
    alone = json.loads((run_dir / "probes" / "test-split.json").read_text()).get("layers", {})
    if len(layers) < 2:
        return []
    rows = []
    for layer in layers:
        probed = alone.get(layer["name"], {})
        rows.append({
            "layer": layer["name"], "depth": layer["depth"],
            "dependency_range_common": layer["summary"]["channels"]["dependency_range_tokens"]["median"],
            "energy_length_common": layer["summary"]["channels"]["energy_length_90"]["median"],
            "used_range_tokens": probed.get("used_range_tokens"), "used_range_auc_tokens": probed.get("used_range_auc_tokens"),
            "attention_range": attention_range([layer]),
        })
    return rows


def report_is_current(report_dir: Path, run_dirs: list[Path]) -> bool:
    """True when report_dir/report.md names exactly these runs (render.runs_named_in) and is newer
    than every run's metrics, analysis and probes; writing a distance's report takes minutes, so a
    re-run that only adds a model does not rewrite the other distances' reports."""
    report = report_dir / "report.md"
    if set(runs_named_in(report)) != {str(d) for d in run_dirs}:  # also: no report yet
        return False
    written = report.stat().st_mtime
    inputs = [d / name for d in run_dirs for name in ("metrics.json", "analysis/summary.json", "probes/test-split.json")]
    return all(f.is_file() and f.stat().st_mtime < written for f in inputs)


def permutation_p(distances, values) -> float:
    """Two-sided p of Spearman's ρ under H0 "values are exchangeable across distances": every pairing
    enumerated when n! ≤ 9,999 (n ≤ 7: exact; n = 4 gives multiples of 1/24), else 9,999 random ones
    (seeded). spearmanr's own p is a t approximation, which says 0 for ρ = ±1 at any n."""
    statistic = lambda shuffled: spearmanr(distances, shuffled)[0]  # noqa: E731
    return float(permutation_test((values,), statistic, permutation_type="pairings", n_resamples=9999, rng=0).pvalue)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--distances", nargs="+", type=int, default=[8, 32, 128, 512])
    parser.add_argument("--archs", nargs="+", default=["cnn", "s4d", "conv_s4d", "depthwise_s4d", "smr_s4d"])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--rewrite-reports", action="store_true",
                        help="rewrite every distance's report (default: only those older than their runs, e.g. after a code change)")
    args = parser.parse_args()
    use_preferred_allocator()  # as the ssmscope command runs (allocator.py)
    keep_freed_memory()

    out = Path(args.out)
    rows, per_layer = [], []
    for d in args.distances:
        study = out / f"d{d}"
        data = study / "data" / "synthetic.jsonl.gz"
        data.parent.mkdir(parents=True, exist_ok=True)
        write_jsonl(data, generate(args.n, [d], seed=d))
        max_len = 1 << int(np.ceil(np.log2(3 * d + 200)))  # every function whole (≈ 3d + 180 tokens at most)
        base = RunConfig("s4d", str(data.resolve()), DataConfig(max_len=max_len), model=EMBEDDED_MODEL,
                         train=TrainConfig(epochs=args.epochs, track_kernels=True))
        run_dirs = [run_dir_for(study, arch, seed) for arch in args.archs for seed in args.seeds]
        reproduce(base, study, args.archs, args.seeds, log=print, report=False)
        if args.rewrite_reports or not report_is_current(study / "report", run_dirs):
            write_report(run_dirs, study / "report")
        else:
            print(f"{study / 'report'}: newer than its runs, kept (--rewrite-reports rewrites it)")
        for arch in args.archs:
            for seed in args.seeds:
                rows.append({"distance": d, "arch": arch, "seed": seed, "max_len": max_len, **reading(run_dir_for(study, arch, seed))})
                per_layer += [{"distance": d, "arch": arch, "seed": seed, **r} for r in layer_rows(run_dir_for(study, arch, seed))]

    correlations = {}

    def correlate(name: str, pairs: list[tuple]) -> None:
        """Spearman's ρ of a reading with the distance; a reading constant over the distances has none."""
        if len(pairs) < 3:
            return
        distances, values = zip(*pairs)
        if len(set(values)) == 1:
            correlations[name] = {"spearman_rho": None, "p_value": None, "n": len(pairs), "note": "constant reading"}
            return
        rho, p = spearmanr(distances, values)
        correlations[name] = {"spearman_rho": float(rho), "p_value": float(p), "p_permutation": permutation_p(distances, values), "n": len(pairs)}

    for arch in args.archs:
        mine = [r for r in rows if r["arch"] == arch]
        for key in DISTANCE_READINGS:
            correlate(f"{arch}:{key}", [(r["distance"], r[key]) for r in mine if r[key] is not None])
        for depth in sorted({r["depth"] for r in per_layer if r["arch"] == arch}):
            layer = [r for r in per_layer if r["arch"] == arch and r["depth"] == depth]
            for key in LAYER_READINGS:
                correlate(f"{arch}:depth {depth}:{key}", [(r["distance"], r[key]) for r in layer if r[key] is not None])
    write_json(out / "distance_results.json", {"rows": rows, "layers": per_layer, "spearman": correlations})

    lines = [f"| arch | distance | max_len | F1 | MCC | ROC-AUC | dependency range | energy length 90 | dependency range @{COMMON_LENGTH} | energy length 90 @{COMMON_LENGTH} | probed range (F1) | probed range (AUC) | attention range |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    fmt = lambda x, f: "–" if x is None else f.format(x)  # noqa: E731
    for r in sorted(rows, key=lambda r: (r["arch"], r["distance"], r["seed"])):
        lines.append(f"| {r['arch']} | {r['distance']} | {r['max_len']} | {100 * r['f1']:.1f} | {r['mcc']:.3f} | {fmt(r['roc_auc'], '{:.3f}')} | {fmt(r['dependency_range_tokens'], '{:.1f}')} | "
                     f"{fmt(r['energy_length_90'], '{:.0f}')} | {fmt(r['dependency_range_common'], '{:.1f}')} | {fmt(r['energy_length_common'], '{:.0f}')} | "
                     f"{fmt(r['used_range_tokens'], '{}')} | {fmt(r['used_range_auc_tokens'], '{}')} | {fmt(r['attention_range'], '{:.0f}')} |")
    if per_layer:
        lines += ["", f"| arch | distance | layer | depth | dependency range @{COMMON_LENGTH} | energy length 90 @{COMMON_LENGTH} | probed range, this layer alone (F1) | (AUC) | attention range |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for r in sorted(per_layer, key=lambda r: (r["arch"], r["distance"], r["seed"], r["depth"])):
            lines.append(f"| {r['arch']} | {r['distance']} | {r['layer']} | {r['depth']} | {r['dependency_range_common']:.1f} | {r['energy_length_common']:.0f} | "
                         f"{fmt(r['used_range_tokens'], '{}')} | {fmt(r['used_range_auc_tokens'], '{}')} | {fmt(r.get('attention_range'), '{:.0f}')} |")
    lines += ["", "| arch:reading | Spearman ρ with the true distance | p (t approximation) | p (permutation) | n |", "|---|---|---|---|---|"]
    lines += [f"| {k} | {fmt(v['spearman_rho'], '{:.2f}') if v['spearman_rho'] is not None else '– (constant reading)'} | {fmt(v['p_value'], '{:.3f}')} | "
              f"{fmt(v.get('p_permutation'), '{:.3f}')} | {v['n']} |" for k, v in correlations.items()]
    (out / "distance_table.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
