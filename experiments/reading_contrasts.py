"""Paired t intervals over seeds for kernel readings and probed ranges of two architectures of a study.

Detection metrics have `ssmscope compare --study`; the paper's spectral claims compare readings
(channel-median dominant frequency, entropy, ...) and docs/RESULTS.md also compares probed ranges.
For each seed both runs read their own model; the per-seed differences A − B get the t interval and
t-test over seeds (stats.t_over_seeds, as `compare` pools seeds; docs/METHODS.md "Several seeds").
Each reading is the model-level one of analysis/summary.json (every S4D channel pooled), and the
probed ranges those of probes/test-split.json.

    .venv/bin/python experiments/reading_contrasts.py runs/study12 smr_s4d s4d [--seeds 0 1 2]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from ssmscope.analysis.null import layer_readings
from ssmscope.stats import t_over_seeds

PROBED = ("used_range_tokens", "used_range_auc_tokens")


def readings(run_dir: Path) -> dict[str, float]:
    summary = json.loads((run_dir / "analysis" / "summary.json").read_text())["model"]["summary"]
    probes = json.loads((run_dir / "probes" / "test-split.json").read_text())
    return layer_readings(summary) | {name: probes[name] for name in PROBED}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("study")
    parser.add_argument("a")
    parser.add_argument("b")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()
    runs = Path(args.study) / "runs"
    a = [readings(runs / f"{args.a}-seed{s}") for s in args.seeds]
    b = [readings(runs / f"{args.b}-seed{s}") for s in args.seeds]
    print(f"{args.a} − {args.b}, seeds {args.seeds}: per seed A / B, mean difference, 95% t interval ({len(args.seeds) - 1} df), p")
    for name in a[0]:
        x, y = np.array([r[name] for r in a], dtype=float), np.array([r[name] for r in b], dtype=float)
        low, high, p = t_over_seeds(x - y)
        pairs = ", ".join(f"{u:.4g} / {v:.4g}" for u, v in zip(x, y))
        print(f"{name:24s} {pairs:40s} {np.mean(x - y):+.4g} [{low:+.4g}, {high:+.4g}] p {p:.3f}")


if __name__ == "__main__":
    main()
