"""The ``ssmscope`` command: a thin layer over the library.

Each subcommand parses its flags, builds the library's objects and calls one library function.
A user error (:class:`SsmscopeError`) becomes one line on stderr and exit status 2; ``--debug``
shows the traceback instead.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from pathlib import Path

from .config import EMBEDDED_CORPUS, EMBEDDED_MAX_LEN, EMBEDDED_MODEL, NORMALIZE_MODES, RECOMPUTE_MODES, DataConfig, ModelConfig, RunConfig, SyntheticConfig, TrainConfig
from .allocator import keep_freed_memory, use_preferred_allocator
from .analysis.null import DEFAULT_NULL_DRAWS
from .analysis.selective import DEFAULT_FUNCTIONS
from .errors import SsmscopeError
from .host import threads_set_to
from .models import ARCHITECTURES, VARIANTS
from .train.metrics import SELECTION_METRICS
from .train.distributed import launched_rank, launched_ranks


def _add_data_fields(p: argparse.ArgumentParser, defaults: bool) -> None:
    d = DataConfig()
    p.add_argument("--code-field", default=d.code_field if defaults else None, help=f"field holding the function's code (default {d.code_field})")
    p.add_argument("--label-field", default=d.label_field if defaults else None, help=f"field holding the 0/1 label (default {d.label_field})")


def _add_threads(p: argparse.ArgumentParser) -> None:
    p.add_argument("--threads", type=int, default=None, help="torch's CPU threads (default: torch's choice); results are bit-identical only for the same CPU type and count")


def _add_split_by(p: argparse.ArgumentParser) -> None:
    p.add_argument("--split-by", default=None, metavar="FIELD", help="a field grouping the functions (e.g. project); with --test-group, test on whole groups")
    p.add_argument("--test-group", default=None, metavar="VALUE[,VALUE]", help="the group(s) of --split-by that form the test split; train and valid come from the others")


def _test_groups(args) -> tuple[str, ...]:
    return tuple(v.strip() for v in args.test_group.split(",") if v.strip()) if args.test_group else ()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ssmscope", description="Train S4D-family vulnerability detectors and read their kernels.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    sub = parser.add_subparsers(dest="command", required=True)

    d, m, t, syn = DataConfig(), ModelConfig(), TrainConfig(), SyntheticConfig()
    p = sub.add_parser("train", help="train one architecture and evaluate it on the test split")
    p.add_argument("--arch", required=True, help=f"one of: {', '.join([*ARCHITECTURES, *VARIANTS])}; a suffix -Nlayers (s4d-2layers) sets the depth")
    p.add_argument("--data", required=True, help="dataset file (.jsonl/.json/.csv/.parquet, optionally .gz), ReVeal folder, or folder with train/valid/test files (split as given)")
    p.add_argument("--out", required=True, help="run directory to write")
    _add_data_fields(p, defaults=True)
    p.add_argument("--epochs", type=int, default=t.epochs)
    p.add_argument("--batch-size", type=int, default=t.batch_size)
    p.add_argument("--lr", type=float, default=t.lr)
    p.add_argument("--max-len", type=int, default=d.max_len, help="tokens kept per function")
    p.add_argument("--seed", type=int, default=t.seed)
    p.add_argument("--limit", type=int, default=None, help="stratified subsample of N functions before splitting")
    _add_split_by(p)
    p.add_argument("--device", default=t.device, choices=("auto", "cpu", "cuda"))
    _add_threads(p)
    p.add_argument("--normalize", default=d.normalize, choices=NORMALIZE_MODES, help="identifier/literal normalisation")
    p.add_argument("--embed-dim", type=int, default=m.embed_dim)
    p.add_argument("--d-state", type=int, default=m.d_state, help="S4D state size N")
    p.add_argument("--s4d-init", default=m.s4d_init, choices=("lin", "inv"))
    p.add_argument("--discretization", default=m.discretization, choices=("zoh", "bilinear"))
    p.add_argument("--dropout", type=float, default=m.dropout, help=f"dropout before the head (default {m.dropout})")
    p.add_argument("--layers", type=int, default=m.layers, help=f"S4D layers per S4D-bearing branch (the first, then residual S4D blocks), or mamba's residual Mamba blocks (default {m.layers})")
    p.add_argument("--block-dropout", type=float, default=m.block_dropout, help=f"dropout inside each residual S4D block, --layers > 1 (Mamba blocks have none; default {m.block_dropout})")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run in --out")
    p.add_argument("--resume", action="store_true", help="continue a run in --out that was interrupted (same command otherwise)")
    p.add_argument("--skip-bad-lines", action="store_true", help="leave out and count bad records (malformed line, missing field, bad label, empty code) instead of stopping")
    p.add_argument("--checkpoint-every", type=int, default=t.checkpoint_every, help=f"optimiser steps between resume checkpoints (default {t.checkpoint_every})")
    p.add_argument("--track-kernels", action="store_true", help="record the S4D kernels' spectral summary after every epoch")
    p.add_argument("--recompute-branches", default=t.recompute_branches, choices=RECOMPUTE_MODES,
                   help="recompute each branch in backward instead of keeping its activations: less memory, more time, same results "
                        f"(default {t.recompute_branches}: on for models with several S4D branches)")
    p.add_argument("--select-by", default=t.select_by, choices=SELECTION_METRICS,
                   help=f"validation metric that picks the best epoch (default {t.select_by}; docs/METHODS.md says which suits which class balance)")

    p = sub.add_parser("evaluate", help="score a trained run on a dataset")
    p.add_argument("--run", required=True, help="run directory written by train")
    p.add_argument("--data", required=True)
    _add_data_fields(p, defaults=False)
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    _add_threads(p)
    p.add_argument("--out", default=None, help="JSON file for the metrics (default RUN/evaluations/<data name>.json; predictions in <name>.predictions.csv beside it)")

    p = sub.add_parser("analyze", help="extract and measure every SSM layer of a trained run (S4D kernels, Mamba's hidden attention)")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--run", help="run directory written by train")
    source.add_argument("--kernels", metavar="FILE.npz", help="kernel banks another project exported: one array per layer, (H, L) kernels "
                        "or (B, H, L, L) causal attention maps (needs --out)")
    p.add_argument("--length", type=int, default=None, help="kernel length in taps (default: the run's --max-len)")
    p.add_argument("--out", default=None, help="folder for the analysis (default RUN/analysis, which report reads)")
    p.add_argument("--null-draws", type=int, default=DEFAULT_NULL_DRAWS,
                   help=f"freshly initialised models of the run's configuration to place each reading among (default {DEFAULT_NULL_DRAWS}, cached; 0: no null)")
    p.add_argument("--limit", type=int, default=DEFAULT_FUNCTIONS,
                   help=f"selective layers (mamba): test functions to read them on, a fixed random sample (default {DEFAULT_FUNCTIONS})")

    p = sub.add_parser("probe", help="evaluate a trained run while truncating or band-limiting its kernels")
    p.add_argument("--run", required=True, help="run directory written by train")
    p.add_argument("--data", default=None, help="dataset to score (any format train reads; default: the run's test split)")
    p.add_argument("--out", default=None, help="JSON file (default RUN/probes/<data name>.json; a PNG/SVG figure beside it)")
    _add_data_fields(p, defaults=False)
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    _add_threads(p)
    p.add_argument("--no-per-layer", action="store_true", help="probe all kernel layers at once only, not also each layer alone (one probe set instead of one per layer + 1)")

    p = sub.add_parser("compare", help="paired comparison of two runs (or two groups of runs, paired by seed) on the same test functions")
    p.add_argument("runs", nargs="*", help="RUN_A RUN_B; with --study: ARCH_A ARCH_B")
    p.add_argument("--a", nargs="+", default=None, metavar="RUN", help="group A: runs of one model at several seeds")
    p.add_argument("--b", nargs="+", default=None, metavar="RUN", help="group B: runs of the other model at the same seeds")
    p.add_argument("--study", default=None, metavar="DIR", help="a reproduce directory: compare ARCH_A with ARCH_B over its seeds")
    p.add_argument("--n-boot", type=int, default=2000, help="bootstrap resamples of the test functions (default 2000)")
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap resampling")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the table")

    p = sub.add_parser("data", help="dataset utilities")
    data_sub = p.add_subparsers(dest="data_command", required=True)
    p = data_sub.add_parser("synth", help="generate the synthetic corpus with known dependency distances")
    p.add_argument("--out", required=True, help="JSONL file to write (.jsonl or .jsonl.gz)")
    p.add_argument("--n", type=int, default=syn.n, help="number of functions")
    p.add_argument("--distances", default=",".join(map(str, syn.distances)), help="token distances: a list 16,64,256 or a range 8-512")
    p.add_argument("--kinds", nargs="+", default=list(syn.kinds), help="any of: " + ", ".join(syn.kinds))
    p.add_argument("--positive-fraction", type=float, default=syn.positive_fraction, help="share of vulnerable functions")
    p.add_argument("--seed", type=int, default=syn.seed)

    p = sub.add_parser("report", help="tabulate and plot analysed runs into report.md and report.html")
    p.add_argument("runs", nargs="+", help="run directories (analysed with ssmscope analyze)")
    p.add_argument("--out", required=True, help="report directory")

    p = sub.add_parser("reproduce", help="the whole study: train → analyze → report for every architecture × seed")
    p.add_argument("--data", default=None, help="dataset file or ReVeal folder (default: generate the embedded synthetic corpus)")
    p.add_argument("--out", required=True, help="study directory (runs/ and report/ inside)")
    p.add_argument("--archs", nargs="+", default=None, help="architectures (default: the six and the SMR fusion variants, and mamba on the embedded corpus); -Nlayers adds depth, e.g. s4d s4d-2layers")
    p.add_argument("--seeds", nargs="+", type=int, default=[0])
    p.add_argument("--epochs", type=int, default=t.epochs)
    p.add_argument("--limit", type=int, default=None)
    _add_split_by(p)
    p.add_argument("--select-by", default=TrainConfig().select_by, choices=SELECTION_METRICS, help="validation metric that picks each run's best epoch")
    p.add_argument("--max-len", type=int, default=None, help=f"default {d.max_len}; {EMBEDDED_MAX_LEN} for the embedded corpus")
    p.add_argument("--device", default=t.device, choices=("auto", "cpu", "cuda"))
    _add_threads(p)
    _add_data_fields(p, defaults=True)
    return parser


def _train(args) -> None:
    from .train import train_run

    config = RunConfig(
        arch=args.arch,
        data_path=str(Path(args.data).resolve()),
        data=dataclasses.replace(DataConfig(), code_field=args.code_field, label_field=args.label_field, max_len=args.max_len, limit=args.limit, normalize=args.normalize,
                                 skip_bad_lines=args.skip_bad_lines, split_by=args.split_by, test_groups=_test_groups(args)),
        model=dataclasses.replace(
            ModelConfig(), embed_dim=args.embed_dim, d_state=args.d_state, s4d_init=args.s4d_init, discretization=args.discretization, dropout=args.dropout,
            layers=args.layers, block_dropout=args.block_dropout,
        ),
        train=dataclasses.replace(
            TrainConfig(), epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed, device=args.device, threads=args.threads,
            track_kernels=args.track_kernels, checkpoint_every=args.checkpoint_every, select_by=args.select_by,
            recompute_branches=args.recompute_branches,
        ),
    )
    metrics = train_run(config, args.out, overwrite=args.overwrite, resume=args.resume)
    if launched_rank() == 0:
        print(_metrics_line("test", metrics))
        print(f"run written to {args.out}")


def _evaluate(args) -> None:
    from .data.sources import dataset_stem
    from .train import evaluate_run
    from .files import write_json

    out = Path(args.out) if args.out else Path(args.run) / "evaluations" / f"{dataset_stem(args.data)}.json"
    predictions = out.with_name(out.name.removesuffix(".json") + ".predictions.csv")
    out.parent.mkdir(parents=True, exist_ok=True)
    with threads_set_to(args.threads):
        metrics = evaluate_run(args.run, args.data, args.code_field, args.label_field, args.device, predictions=predictions)
    write_json(out, metrics)
    print(json.dumps(metrics))
    print(_metrics_line("evaluation", metrics))
    print(f"metrics written to {out}, predictions to {predictions}")


def _analyze(args) -> None:
    if args.kernels:
        from .analysis.external import analyze_kernel_file

        if not args.out:
            raise SsmscopeError("analyze --kernels: give --out DIR, the folder for the summary, figures and report")
        summary = analyze_kernel_file(args.kernels, args.out)
    else:
        from .analysis.run import analyze_run

        summary = analyze_run(args.run, args.length, out=args.out, null_draws=args.null_draws or None, limit=args.limit)
    if summary["note"]:
        print(summary["note"])
    for layer in summary["layers"]:
        median = {k: v["median"] for k, v in layer["summary"]["channels"].items()}
        print(
            f"{layer['name']} (depth {layer['depth']}): channel medians: dominant frequency {median['dominant_frequency']:.4f} cycles/sample "
            f"(~{median['dependency_range_tokens']:.0f} tokens), entropy {median['spectral_entropy_bits']:.3f} bits, "
            f"energy length {median['energy_length_90']:.0f} taps; averaged spectrum {layer['summary']['mean_spectrum']['filter_type']}"
        )
        if "attention" in layer:
            span, between = layer["attention"]["effective_range"], layer["attention"]["between_functions"]
            print(f"  hidden attention over {layer['attention']['functions']} functions: effective range median {span['median']:.0f} lags "
                  f"(quartiles {span['q1']:.0f}-{span['q3']:.0f}); per-function medians {between['q1']:.0f}-{between['q3']:.0f} (quartiles)")
        if "null" in layer:
            print("  against the untrained null (percentile): " + ", ".join(
                f"{name} {p['percentile']:.0f}{' OUTSIDE' if p['outside'] else ''}" for name, p in layer["null"].items()))
    if summary["null"]:
        print(f"untrained null: {summary['null']['n']} fresh models; OUTSIDE = beyond the central {summary['null']['level']:.0%}, "
              f"every other reading does not differ from initialisation")
    print(f"analysis written to {args.out or Path(args.run) / 'analysis'}")


def _probe(args) -> None:
    from .analysis.probes import probe_run

    with threads_set_to(args.threads):
        results = probe_run(args.run, args.data, args.out, args.code_field, args.label_field, args.device, per_layer=not args.no_per_layer)
    if not results["has_ssm_layers"]:
        print("this model has no SSM layer to probe")
        return
    print(f"unmodified F1 {results['unmodified']['f1']:.4f}")
    for name, probe in {"all layers": results, **results.get("layers", {})}.items():
        print(f"{name}: used range {probe['used_range_tokens']} taps (AUC: {probe['used_range_auc_tokens']})")
        print("  truncation: " + "  ".join(f"{t['taps']}:{t['f1']:.3f}" for t in probe["truncation"]))
        if probe["bands"]:  # none for selective layers
            print("  bands: " + "  ".join(f"{band} {b['f1']:.3f}" for band, b in probe["bands"].items()))


def _data(args) -> None:
    from .data.synthetic import generate, parse_distances
    from .files import write_jsonl

    records = generate(args.n, parse_distances(args.distances), tuple(args.kinds), args.positive_fraction, args.seed)
    out = Path(args.out)
    if not out.parent.is_dir():
        raise SsmscopeError(f"--out: folder {out.parent} does not exist; create it first")
    write_jsonl(out, records)
    print(f"{len(records)} functions ({sum(r['label'] for r in records)} vulnerable) written to {out}")


def _compare(args) -> None:
    from .compare import compare_groups, compare_runs, format_comparison, study_groups

    if args.study is not None:
        if len(args.runs) != 2 or args.a or args.b:
            raise SsmscopeError("compare --study DIR takes two architecture names: ssmscope compare --study DIR ARCH_A ARCH_B")
        result = compare_groups(*study_groups(args.study, *args.runs), n_boot=args.n_boot, seed=args.seed)
    elif args.a or args.b:
        if not (args.a and args.b) or args.runs:
            raise SsmscopeError("compare --a RUN... --b RUN...: give both groups and no other run directories")
        result = compare_groups(args.a, args.b, n_boot=args.n_boot, seed=args.seed)
    elif len(args.runs) == 2:
        result = compare_runs(*args.runs, n_boot=args.n_boot, seed=args.seed)
    else:
        raise SsmscopeError(f"compare takes two run directories (got {len(args.runs)}); for groups use --a/--b or --study DIR ARCH_A ARCH_B")
    print(json.dumps(result, indent=2, allow_nan=False) if args.json else format_comparison(result), end="\n" if args.json else "")


def _report(args) -> None:
    from .report.render import write_report

    print(f"report written to {write_report(args.runs, args.out)}")


def _reproduce(args) -> None:
    from .pipeline import EMBEDDED_STUDY_ARCHS, STUDY_ARCHS, format_table, reproduce, write_embedded_corpus

    if args.data is None:
        data_path = write_embedded_corpus(Path(args.out))
        print(f"no --data: the embedded synthetic corpus ({EMBEDDED_CORPUS.n} functions, distances {EMBEDDED_CORPUS.distances}) is {data_path}")
    else:
        data_path = Path(args.data)
    max_len = args.max_len if args.max_len is not None else (EMBEDDED_MAX_LEN if args.data is None else DataConfig().max_len)
    base = RunConfig(
        arch="s4d",
        data_path=str(data_path.resolve()),
        data=dataclasses.replace(DataConfig(), code_field=args.code_field, label_field=args.label_field, max_len=max_len, limit=args.limit,
                                 split_by=args.split_by, test_groups=_test_groups(args)),
        model=EMBEDDED_MODEL if args.data is None else ModelConfig(),
        train=dataclasses.replace(TrainConfig(), epochs=args.epochs, device=args.device, threads=args.threads, track_kernels=True, select_by=args.select_by),
    )
    with threads_set_to(args.threads):  # training, analysis and probes alike
        default_archs = EMBEDDED_STUDY_ARCHS if args.data is None else STUDY_ARCHS
        rows, report = reproduce(base, args.out, args.archs or default_archs, args.seeds)
    print(format_table(rows))
    print(f"report: {report}")


def _metrics_line(label: str, m: dict) -> str:
    keys = ("accuracy", "precision", "recall", "f1", "f1_macro", "f1_weighted", "roc_auc", "pr_auc", "mcc", "vd_score", "brier")
    parts = [f"{k} {m[k]:.4f}" if m[k] is not None else f"{k} n/a" for k in keys]
    tuned = f"  at the validation-tuned threshold {m['tuned_threshold']:.4f}: f1 {m['f1_tuned']:.4f} mcc {m['mcc_tuned']:.4f}" if m.get("tuned_threshold") is not None else ""
    return f"{label}: " + "  ".join(parts) + f"  confusion [[tn fp] [fn tp]] {m['confusion_matrix']}" + tuned


COMMANDS = {"train": _train, "evaluate": _evaluate, "analyze": _analyze, "report": _report, "reproduce": _reproduce, "data": _data, "probe": _probe, "compare": _compare}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if argv is None:  # the `ssmscope` command itself (not a call from Python): run under mimalloc (allocator.py)
            use_preferred_allocator()
        keep_freed_memory()  # under glibc: large CPU tensors reused instead of faulted in anew (allocator.py)
        if args.command != "train" and launched_ranks() > 1:
            raise SsmscopeError(f"ssmscope {args.command} runs as one process; under torchrun only `ssmscope train` (DDP) runs")
        COMMANDS[args.command](args)
    except SsmscopeError as e:
        if args.debug:
            raise
        where = f" (rank {os.environ['RANK']})" if os.environ.get("RANK", "0") != "0" else ""
        sys.stderr.write(f"ssmscope: error{where}: {e}\n")  # one write: ranks under torchrun share the terminal
        return 2
    except KeyboardInterrupt:
        print("ssmscope: interrupted", file=sys.stderr)
        return 130
    return 0
