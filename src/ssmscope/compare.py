"""``ssmscope compare``: is run A's detector better than run B's, on the same test functions?

Reads finished run directories (predictions.csv, metrics.json, config.json) and applies the paired
tests of :mod:`ssmscope.stats`:

    compare_runs(a, b)            one run against another: both must hold the same test functions
                                  (same data, seed and split settings); pairs them by record index
    compare_groups([a..], [b..])  runs of two architectures over several seeds, paired by seed; pools the
                                  seeds one way when each seed has its own test split (random split) and
                                  another when all seeds share one test set (group or given split)
    study_groups(study, x, y)     the runs of two architectures in a `reproduce` folder
    format_comparison(result)     the terminal table of either result

Metrics (COMPARED_METRICS): f1, f1_weighted and mcc decide "vulnerable when p > 0.5"; roc_auc,
pr_auc and vd_score use the probabilities; f1_tuned decides "vulnerable when p >= t" at each run's
own threshold t tuned on its validation split. The bootstrap keeps those thresholds fixed and
recomputes F1 on each resample; re-tuning would need validation resamples, and the tuned threshold
is part of the trained detector being compared. The formulas are in docs/METHODS.md.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .config import DECISION_THRESHOLD, RunConfig
from .errors import SsmscopeError
from .models import model_name
from .stats import RESAMPLED_METRICS, SHARED_TEST_METHOD, across_seeds, delong_test, f1_resampled, mcnemar_exact, paired_bootstrap
from .train.loop import PREDICTIONS_FILE, read_predictions
from .train.metrics import tuned_threshold

COMPARED_METRICS = ("f1", "f1_weighted", "mcc", "roc_auc", "pr_auc", "vd_score", "f1_tuned")
LOWER_IS_BETTER = ("vd_score",)
CONFIDENCE = 0.95
THRESHOLD_RULES = {
    "default": f"vulnerable when p > {DECISION_THRESHOLD} (f1, f1_weighted, mcc, McNemar 'default')",
    "tuned": "vulnerable when p >= the run's validation-tuned threshold (f1_tuned, McNemar 'tuned')",
}
SEED_METRIC_KEYS = ("a", "b", "difference", "ci_low", "ci_high", "p_value", "method", "std_difference", "within_seed_sd",
                    "between_seed_sd", "shared_test_sd", "per_seed")
PER_SEED_KEYS = ("a", "b", "difference", "ci_low", "ci_high", "p_value", "std_error")


def _combination(n_seeds: int, shared_test: bool = False) -> str:
    """How compare_groups combined its seeds, for the JSON and the table."""
    if n_seeds == 1:
        return ("one seed: the pooled ci/p are that seed's paired bootstrap (method bootstrap_one_seed); they hold the "
                "test-sample variance only, not the variance between training seeds: give runs of several seeds")
    if shared_test:
        return ("per-seed differences A - B, all on the one test set the seeds share (group or given split), so their test-sample "
                "errors are correlated and their sd holds the training-seed variance but little of the test-sample variance; "
                f"pooled ci/p (method {SHARED_TEST_METHOD}): mean ± √(t({n_seeds - 1})²·sd²/{n_seeds} + z²·shared²), shared = "
                "the bootstrap sd of the mean difference, each resample drawing the shared functions once for every seed "
                "and for A and B (Banerjee's interval; slightly conservative: sd² also holds the test noise that differs "
                "between seeds); p: the smallest α whose interval excludes 0; within = √(mean of the per-seed bootstrap "
                "variances), between = √max(0, sd² - the part of the test-sample variance that differs between seeds); "
                "per-seed ci/p: paired bootstrap on the shared resamples (docs/METHODS.md)")
    return ("per-seed differences A - B, each paired on its seed's own test functions; every seed trains its own model on its "
            "own split, so the differences are independent and their sd holds both the training-seed and the test-sample "
            f"variance; pooled ci/p (method student_t): mean ± t({n_seeds - 1})·sd/√{n_seeds} and the one-sample t-test over the "
            f"{n_seeds} differences; sd² ≈ within² + between², within = √(mean of the per-seed bootstrap variances), "
            "between = √max(0, sd² - within²); per-seed ci/p: paired bootstrap (docs/METHODS.md)")


@dataclass(frozen=True)
class RunPredictions:
    path: Path
    arch: str
    seed: int  # the training seed (config.json train.seed)
    index: np.ndarray  # (n,) record indices of the test functions, ascending
    labels: np.ndarray  # (n,) in the order of ``index``
    probabilities: np.ndarray  # (n,) in the order of ``index``
    threshold: float | None  # validation-tuned threshold (None: no vulnerable function in valid)

    def summary(self) -> dict:
        return {"path": str(self.path), "arch": self.arch, "seed": self.seed, "tuned_threshold": self.threshold}


def _read_json(path: Path) -> dict:
    if not path.is_file():
        raise SsmscopeError(f"{path}: missing; give a finished run directory (written by `ssmscope train` or `reproduce`)")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise SsmscopeError(f"{path}:{e.lineno}: not valid JSON ({e.msg}); the run directory is damaged, retrain the run") from None


def _read_config(run_dir: Path) -> RunConfig:
    path = run_dir / "config.json"
    written = _read_json(path)
    try:
        return RunConfig.from_dict(written)
    except SsmscopeError as e:
        raise SsmscopeError(f"{path}: {e}") from None


def load_run_predictions(run_dir) -> RunPredictions:
    """A finished run's test predictions sorted by record index, its arch, seed and tuned threshold."""
    run_dir = Path(run_dir)
    config = _read_config(run_dir)
    metrics = _read_json(run_dir / "metrics.json")
    predictions = read_predictions(run_dir / PREDICTIONS_FILE)
    if "test" not in predictions:
        raise SsmscopeError(f"{run_dir / PREDICTIONS_FILE}: no rows of split 'test'; retrain the run or give another run directory")
    test = predictions["test"]
    order = np.argsort(test["index"], kind="mergesort")
    index = test["index"][order]
    repeated = index[1:][np.diff(index) == 0]
    if repeated.size:
        raise SsmscopeError(f"{run_dir / PREDICTIONS_FILE}: test function index {int(repeated[0])} appears twice; the file is damaged, retrain the run")
    if "tuned_threshold" in metrics:
        threshold = metrics["tuned_threshold"]
    elif "valid" in predictions:  # runs from before metrics.json held the threshold
        threshold = tuned_threshold(predictions["valid"]["label"], predictions["valid"]["probability"])
    else:
        threshold = None
    return RunPredictions(run_dir, model_name(config.arch, config.model), config.train.seed, index, test["label"][order], test["probability"][order], threshold)


def _loaded(run) -> RunPredictions:
    """A run directory read, or a RunPredictions already read (the report reads each run once)."""
    return run if isinstance(run, RunPredictions) else load_run_predictions(run)


def _check_same_test(a: RunPredictions, b: RunPredictions) -> None:
    """Both runs must list the same test functions with the same labels (then, sorted by index, row i is one function)."""
    if not np.array_equal(a.index, b.index):
        differ = len(np.setxor1d(a.index, b.index))
        total = len(np.union1d(a.index, b.index))
        raise SsmscopeError(
            f"{a.path} and {b.path} do not share their test functions ({differ} of {total} are in only one of them); "
            "compare runs trained with the same data, seed and split settings"
        )
    mismatched = int(np.sum(a.labels != b.labels))
    if mismatched:
        raise SsmscopeError(f"{a.path} and {b.path}: {mismatched} test functions have different labels; compare runs trained on the same data file")


def _metric_inputs(name: str, a: RunPredictions, b: RunPredictions):
    """(resampled metric, scores of A, scores of B) for ``name``; None when f1_tuned lacks a threshold.
    f1_tuned is F1 of the 0/1 decisions [p >= t], which f1_resampled reads as scores (1 > 0.5, 0 is not)."""
    if name != "f1_tuned":
        return RESAMPLED_METRICS[name], a.probabilities, b.probabilities
    if a.threshold is None or b.threshold is None:
        return None
    return f1_resampled, (a.probabilities >= a.threshold).astype(np.float64), (b.probabilities >= b.threshold).astype(np.float64)


def _bootstrap_settings(n_boot: int, seed: int) -> dict:
    if n_boot < 1:
        raise SsmscopeError(f"--n-boot: must be at least 1, got {n_boot} (2000 is the usual choice)")
    return {"n_boot": n_boot, "seed": seed, "confidence": CONFIDENCE}


def compare_runs(run_a, run_b, n_boot: int = 2000, seed: int = 0) -> dict:
    """Paired comparison of two runs on their shared test functions (the JSON of ``ssmscope compare``).

    {"runs": {"a", "b"}, "n_test", "n_vulnerable", "bootstrap": {n_boot, seed, confidence, dropped},
     "threshold": the decision rules, "metrics": {name: {"a", "b", "difference", "ci_low", "ci_high", "p_value"}},
     "delong": ROC-AUC test (None with fewer than 2 functions of a class),
     "mcnemar": {"default": decisions at p > 0.5, "tuned": at the tuned thresholds (None without them)}}.
    "dropped" counts, per metric, the resamples left out because the metric was undefined on them."""
    settings = _bootstrap_settings(n_boot, seed)
    a, b = _loaded(run_a), _loaded(run_b)
    _check_same_test(a, b)
    labels = a.labels
    metrics, dropped = {}, {}
    for name in COMPARED_METRICS:
        inputs = _metric_inputs(name, a, b)
        result = paired_bootstrap(labels, inputs[1], inputs[2], inputs[0], n_boot, seed, CONFIDENCE) if inputs else None
        metrics[name] = {k: getattr(result, k) if result else None for k in ("a", "b", "difference", "ci_low", "ci_high", "p_value")}
        dropped[name] = n_boot - result.n_used if result and result.difference is not None else None
    n_pos, n_neg = int(np.sum(labels == 1)), int(np.sum(labels == 0))
    tuned = a.threshold is not None and b.threshold is not None
    return {
        "runs": {"a": a.summary(), "b": b.summary()},
        "n_test": len(labels),
        "n_vulnerable": n_pos,
        "bootstrap": {**settings, "dropped": dropped},
        "threshold": THRESHOLD_RULES,
        "metrics": metrics,
        "delong": dataclasses.asdict(delong_test(labels, a.probabilities, b.probabilities, CONFIDENCE)) if min(n_pos, n_neg) >= 2 else None,
        "mcnemar": {
            "default": dataclasses.asdict(mcnemar_exact(labels, a.probabilities > DECISION_THRESHOLD, b.probabilities > DECISION_THRESHOLD)),
            "tuned": dataclasses.asdict(mcnemar_exact(labels, a.probabilities >= a.threshold, b.probabilities >= b.threshold)) if tuned else None,
        },
    }


def _by_seed(runs: list[RunPredictions], group: str) -> dict[int, RunPredictions]:
    out: dict[int, RunPredictions] = {}
    for run in runs:
        if run.seed in out:
            raise SsmscopeError(f"group {group}: {out[run.seed].path} and {run.path} both have training seed {run.seed}; give one run per seed")
        out[run.seed] = run
    return out


def shared_test_set(pairs: list[tuple[RunPredictions, RunPredictions]]) -> bool | None:
    """Do the seeds share one test set? True: every seed's runs hold the same test functions with the same
    labels (a group split or a given split); False: every seed has its own (the random split, drawn per
    seed); None for one seed. Anything in between mixes split settings: a one-line SsmscopeError."""
    if len(pairs) < 2:
        return None
    classes: list[list[RunPredictions]] = []  # runs grouped by identical test set
    for a, _ in pairs:
        same = next((c for c in classes if np.array_equal(c[0].index, a.index) and np.array_equal(c[0].labels, a.labels)), None)
        if same is None:
            classes.append([a])
        else:
            same.append(a)
    if len(classes) in (1, len(pairs)):
        return len(classes) == 1
    described = " | ".join(", ".join(str(r.seed) for r in c) for c in classes)
    raise SsmscopeError(f"the runs mix split settings: some seeds share one test set and others do not (seeds by test set: {described}); "
                        "compare runs of one split setting (all random, or all the same --split-by/--test-group or split folder)")


def compare_groups(runs_a: list, runs_b: list, n_boot: int = 2000, seed: int = 0) -> dict:
    """Runs of A and B over several training seeds, paired by seed (config.json train.seed).

    Only runs at the same seed need to share test functions. With a random split each seed draws its
    own, so the seeds' test sets all differ; with a group split or a given split every seed has the
    same test set. compare_groups finds out which ("shared_test": True, False, or None for one seed)
    and refuses a mixture. Per metric (stats.across_seeds): {"a", "b": means over seeds, "difference":
    mean d̄ of the per-seed differences, "ci_low", "ci_high", "p_value": the pooled interval and p,
    "method": "student_t" (own test sets: t interval and one-sample t-test over the S >= 2
    differences), "student_t_shared_test" (one shared test set: Banerjee's interval combining the
    seeds' t part with the bootstrap variance of d̄ over that test set, stats.shared_test_interval) or
    "bootstrap_one_seed" (S = 1: the seed's paired bootstrap), "std_difference": sd of the differences
    (None for one seed), "within_seed_sd", "between_seed_sd": test-sample and training-seed parts,
    "shared_test_sd": the bootstrap sd of d̄ over the shared test set (None unless shared),
    "per_seed": {"a", "b", "difference", "ci_low", "ci_high", "p_value", "std_error"}, each a list in
    the order of "seeds", from each seed's paired bootstrap}; every value None when f1_tuned lacks a
    threshold. "bootstrap"."dropped" lists, per metric and seed, the resamples left out because the
    metric was undefined on them."""
    settings = _bootstrap_settings(n_boot, seed)
    if not runs_a or not runs_b:
        raise SsmscopeError("compare: each group needs at least one run directory")
    group_a = _by_seed([_loaded(r) for r in runs_a], "A")
    group_b = _by_seed([_loaded(r) for r in runs_b], "B")
    if group_a.keys() != group_b.keys():
        only_a, only_b = sorted(group_a.keys() - group_b.keys()), sorted(group_b.keys() - group_a.keys())
        raise SsmscopeError(f"the groups must hold the same training seeds to pair by seed: only A has {only_a}, only B has {only_b}; add or leave out runs")
    seeds = sorted(group_a)
    pairs = [(group_a[s], group_b[s]) for s in seeds]
    for a, b in pairs:
        _check_same_test(a, b)
    shared = shared_test_set(pairs)
    metrics, dropped = {}, {}
    for name in COMPARED_METRICS:
        inputs = [_metric_inputs(name, a, b) for a, b in pairs]
        if any(i is None for i in inputs):
            metrics[name] = dict.fromkeys(SEED_METRIC_KEYS)
            dropped[name] = None
            continue
        r = across_seeds([(a.labels, sa, sb) for (a, _), (_, sa, sb) in zip(pairs, inputs)], inputs[0][0], n_boot, seed, CONFIDENCE,
                         shared_test=bool(shared))
        metrics[name] = {"a": r.mean_a, "b": r.mean_b, "difference": r.mean_difference, "ci_low": r.ci_low, "ci_high": r.ci_high,
                         "p_value": r.p_value, "method": r.method, "std_difference": r.std_difference,
                         "within_seed_sd": r.within_seed_sd, "between_seed_sd": r.between_seed_sd, "shared_test_sd": r.shared_test_sd,
                         "per_seed": {k: [getattr(one, k) for one in r.per_seed] for k in PER_SEED_KEYS}}
        dropped[name] = [n_boot - one.n_used if one.difference is not None else None for one in r.per_seed]
    return {
        "runs": {"a": [a.summary() for a, _ in pairs], "b": [b.summary() for _, b in pairs]},
        "seeds": seeds,
        "n_test": [len(a.labels) for a, _ in pairs],
        "shared_test": shared,
        "bootstrap": {**settings, "dropped": dropped},
        "threshold": THRESHOLD_RULES,
        "combination": _combination(len(seeds), bool(shared)),
        "metrics": metrics,
    }


def study_groups(study_dir, arch_a: str, arch_b: str) -> tuple[list[Path], list[Path]]:
    """The finished runs of ``arch_a`` and ``arch_b`` in a `reproduce` folder (STUDY/runs/<arch>-seed<seed>/,
    pipeline.run_dir_for), each list sorted by seed. A run counts as finished when it has metrics.json;
    runs are named as the study table names them (models.model_name: "s4d-2layers" for depth 2)."""
    runs = Path(study_dir) / "runs"
    if not runs.is_dir():
        raise SsmscopeError(f"{study_dir}: no runs/ folder; give the --out folder of `ssmscope reproduce`")
    finished: dict[str, list[tuple[int, Path]]] = {}
    for run_dir in sorted(p.parent for p in runs.glob("*/metrics.json")):
        config = _read_config(run_dir)
        finished.setdefault(model_name(config.arch, config.model), []).append((config.train.seed, run_dir))
    for arch in (arch_a, arch_b):
        if arch not in finished:
            raise SsmscopeError(f"{runs}: no finished run of {arch!r}; finished runs exist for: {', '.join(sorted(finished)) or 'none'}")
    return tuple([d for _, d in sorted(finished[arch])] for arch in (arch_a, arch_b))


# --- the terminal table ----------------------------------------------------------------------------


def _number(x, signed: bool = False) -> str:
    return "n/a" if x is None else f"{x:+.4f}" if signed else f"{x:.4f}"


def format_p(x) -> str:
    return "n/a" if x is None else f"{x:.3f}" if x >= 0.001 else f"{x:.1e}"


def _interval(low, high) -> str:
    return "n/a" if low is None else f"[{low:+.4f}, {high:+.4f}]"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    """Columns padded to their widest cell: the first left-aligned, the others right-aligned."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    return ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))) for r in [header, *rows]]


def _title_lines(result: dict, level: str) -> list[str]:
    boot = result["bootstrap"]
    if "seeds" in result:
        archs = [", ".join(sorted({r["arch"] for r in result["runs"][g]})) for g in ("a", "b")]
        n_seeds = len(result["seeds"])
        pooled = ("the one seed's paired bootstrap (test-sample variance only)" if n_seeds == 1 else
                  f"one shared test set: t over the {n_seeds} per-seed differences ({n_seeds - 1} df) combined with the "
                  "bootstrap variance of the mean difference over the shared test set" if result.get("shared_test") else
                  f"t over the {n_seeds} per-seed differences ({n_seeds - 1} df)")
        return [f"A: {archs[0]}   B: {archs[1]}   paired by seed: {', '.join(map(str, result['seeds']))} "
                f"({', '.join(map(str, result['n_test']))} test functions)",
                f"A, B, A − B: means over seeds; pooled {level} CI and p: {pooled}; "
                f"per seed: paired bootstrap ({boot['n_boot']} resamples, seed {boot['seed']})"]
    a, b = result["runs"]["a"], result["runs"]["b"]
    return [f"A: {a['path']} ({a['arch']}, seed {a['seed']})", f"B: {b['path']} ({b['arch']}, seed {b['seed']})",
            f"{result['n_test']} shared test functions ({result['n_vulnerable']} vulnerable); "
            f"{level} CI and p: paired bootstrap ({boot['n_boot']} resamples, seed {boot['seed']})"]


def _metric_name(name: str) -> str:
    return f"{name} (lower is better)" if name in LOWER_IS_BETTER else name


def _metric_table(result: dict, level: str) -> list[str]:
    grouped = "seeds" in result
    spread_keys = ("std_difference", "within_seed_sd", "between_seed_sd", *(("shared_test_sd",) if result.get("shared_test") else ()))
    spread_names = ["sd (seeds)", "within sd", "between sd", "shared test sd"][:len(spread_keys)]
    header = ["metric", "A", "B", "A − B", *([*spread_names, f"pooled {level} CI"] if grouped else [f"{level} CI"]), "p"]
    rows = []
    for name, m in result["metrics"].items():
        spread = [_number(m[k]) for k in spread_keys] if grouped else []
        rows.append([_metric_name(name), _number(m["a"]), _number(m["b"]), _number(m["difference"], signed=True), *spread,
                     _interval(m["ci_low"], m["ci_high"]), format_p(m["p_value"])])
    return _table(header, rows)


def _per_seed_table(result: dict, level: str) -> list[str]:
    """One row per metric and seed of a compare_groups result: that seed's paired bootstrap."""
    rows = []
    for name, m in result["metrics"].items():
        one = m["per_seed"]
        for i, seed in enumerate(result["seeds"]):
            cells = ["n/a"] * 5 if one is None else [_number(one["a"][i]), _number(one["b"][i]), _number(one["difference"][i], signed=True),
                                                     _interval(one["ci_low"][i], one["ci_high"][i]), format_p(one["p_value"][i])]
            rows.append([_metric_name(name) if i == 0 else "", str(seed), *cells])
    own = ("the shared test functions, the same resamples for every seed" if result.get("shared_test") else
           "the seed's own test functions")
    return [f"per seed (paired bootstrap on {own}):",
            *_table(["metric", "seed", "A", "B", "A − B", f"{level} CI", "p"], rows)]


def _test_lines(result: dict, level: str) -> list[str]:
    """DeLong's and McNemar's tests of a compare_runs result, one line each."""
    d = result["delong"]
    lines = ["DeLong (ROC-AUC): n/a (needs 2 functions of each class)" if d is None else
             f"DeLong (ROC-AUC): {d['auc_a']:.4f} vs {d['auc_b']:.4f}, A − B {d['difference']:+.4f}, se {d['std_error']:.4f}, "
             f"z {'n/a' if d['z'] is None else format(d['z'], '.2f')}, p {format_p(d['p_value'])}, {level} CI {_interval(d['ci_low'], d['ci_high'])}"]
    ta, tb = result["runs"]["a"]["tuned_threshold"], result["runs"]["b"]["tuned_threshold"]
    tuned = "tuned thresholds " + ("n/a" if ta is None or tb is None else f"{ta:.4g} / {tb:.4g}")
    for key, rule in (("default", f"p > {DECISION_THRESHOLD}"), ("tuned", tuned)):
        m = result["mcnemar"][key]
        lines.append(f"McNemar ({rule}): n/a" if m is None else
                     f"McNemar ({rule}): A right & B wrong {m['a_right_b_wrong']}, A wrong & B right {m['a_wrong_b_right']}, "
                     f"exact p {format_p(m['p_value'])}")
    return lines


def format_comparison(result: dict) -> str:
    """The plain-text table of a compare_runs or compare_groups result: metric, A, B, A − B, interval, p
    (groups: also the sd of the per-seed differences and its within- and between-seed parts, with a
    shared test set also the bootstrap sd of the mean difference over it, the interval and p being
    the pooled ones); then DeLong and McNemar (one pair of runs), or each seed's
    bootstrap and how the seeds were combined (groups)."""
    level = f"{round(100 * result['bootstrap']['confidence'])}%"
    grouped = "seeds" in result
    after = [*_per_seed_table(result, level), "", f"seeds combined: {result['combination']}"] if grouped else _test_lines(result, level)
    return "\n".join([*_title_lines(result, level), "", *_metric_table(result, level), "", *after]) + "\n"
