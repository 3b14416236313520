"""Paired t intervals over seeds for the three-seed ReVeal contrasts in docs/RESULTS.md.

The per-seed test metrics of cnn, s4d and smr_s4d (seeds 0-2, random split; each seed its own
split) are those RESULTS.md lists ("Three seeds for the paper's central contrast"); their runs
predate predictions.csv, so the pooled interval is the one that needs only per-seed values: the
t interval and t-test over the per-seed differences (stats.t_over_seeds, docs/METHODS.md "Several
seeds"), which holds both training-seed and test-sample variance because every seed drew its own
split. Per-function bootstrap intervals need the runs' predictions.csv (`ssmscope compare --study`).

    .venv/bin/python experiments/seed_contrasts.py
"""

from __future__ import annotations

import numpy as np

from ssmscope.stats import t_over_seeds

# docs/RESULTS.md, per seed 0, 1, 2: vulnerable-class F1 (%), MCC, ROC-AUC
PER_SEED = {
    "cnn": {"F1": (35.90, 39.14, 38.68), "MCC": (0.294, 0.330, 0.327), "ROC-AUC": (0.769, 0.772, 0.787)},
    "s4d": {"F1": (30.43, 27.84, 26.84), "MCC": (0.239, 0.209, 0.188), "ROC-AUC": (0.748, 0.733, 0.701)},
    "smr_s4d": {"F1": (35.39, 34.16, 35.12), "MCC": (0.297, 0.277, 0.293), "ROC-AUC": (0.773, 0.755, 0.782)},
}
CONTRASTS = (("cnn", "smr_s4d"), ("smr_s4d", "s4d"), ("cnn", "s4d"))


def main() -> None:
    print("contrast            metric   per-seed A - B            mean     95% t interval (2 df)   p")
    for a, b in CONTRASTS:
        for metric in ("F1", "MCC", "ROC-AUC"):
            d = np.subtract(PER_SEED[a][metric], PER_SEED[b][metric])
            low, high, p = t_over_seeds(d)
            per_seed = ", ".join(f"{x:+.3f}" for x in d)
            print(f"{a + ' - ' + b:18s}  {metric:7s}  {per_seed:24s}  {d.mean():+.3f}  [{low:+.3f}, {high:+.3f}]{'':8s}{p:.3f}")


if __name__ == "__main__":
    main()
