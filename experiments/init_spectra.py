"""The null distribution: spectral readings of S4D kernels that were never trained.

Builds S4D(H, N) layers at the project's defaults with seeds 0..S-1, evaluates their kernels at
length L, and prints quantiles over seeds of the readings the report uses (channel medians of
dominant frequency, entropy, energy length; the averaged spectrum's entropy and filter type).
A trained model's reading means something only where it leaves this distribution.

    .venv/bin/python experiments/init_spectra.py [--seeds 100] [--length 1024] [--init lin]
"""

from __future__ import annotations

import argparse
from collections import Counter

import numpy as np
import torch

from ssmscope.analysis import summarize_layer
from ssmscope.config import ModelConfig
from ssmscope.models import S4D


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=100)
    parser.add_argument("--length", type=int, default=1024)
    parser.add_argument("--init", default=ModelConfig().s4d_init, choices=("lin", "inv"))
    args = parser.parse_args()
    cfg = ModelConfig()
    readings = {"dominant_frequency": [], "spectral_entropy_bits": [], "energy_length_90": [], "mean_spectrum_entropy": [], "band_pass_share": []}
    types = Counter()
    for seed in range(args.seeds):
        torch.manual_seed(seed)
        layer = S4D(cfg.embed_dim, cfg.d_state, args.init, cfg.discretization, cfg.dt_min, cfg.dt_max)
        with torch.no_grad():
            summary, _ = summarize_layer(layer.kernel(args.length).double().numpy())
        for key in ("dominant_frequency", "spectral_entropy_bits", "energy_length_90"):
            readings[key].append(summary["channels"][key]["median"])
        readings["mean_spectrum_entropy"].append(summary["mean_spectrum"]["spectral_entropy_bits"])
        readings["band_pass_share"].append(summary["filter_type_share"]["band-pass"])
        types[summary["mean_spectrum"]["filter_type"]] += 1
    print(f"untrained S4D(H={cfg.embed_dim}, N={cfg.d_state}, init={args.init}), L={args.length}, {args.seeds} seeds")
    print(f"{'reading':<34}{'min':>9}{'q05':>9}{'median':>9}{'q95':>9}{'max':>9}")
    for key, values in readings.items():
        q = np.percentile(values, [0, 5, 50, 95, 100])
        print(f"{key:<34}" + "".join(f"{v:>9.4f}" for v in q))
    print("averaged-spectrum filter type:", dict(types))


if __name__ == "__main__":
    main()
