"""The study report: detection and kernel tables over runs, pairwise significance, overlaid spectra, figures.

``write_report(run_dirs, out_dir)`` reads only files that ``train``, ``analyze`` and ``probe`` wrote
(config.json, metrics.json, predictions.csv, analysis/summary.json, probes/*.json and figures),
never live models, and writes ``report.md`` and a self-contained ``report.html`` (figures embedded
as base64; every text that came from data or paths is HTML-escaped).

Per architecture: mean ± sample std over its runs (seeds) and the 95% test-set bootstrap interval
of that mean (each run's test functions resampled, ``stats.bootstrap_mean_interval``); a model whose
ROC-AUC interval includes 0.5 is marked as not having learned the task. Kernel readings carry their
place in the untrained null (``analysis.null``): "≈ init" marks a reading that lies inside the
central 95% of freshly initialised models in every run. Pairs of architectures that share their
test functions get a row of paired differences with intervals and p-values (``ssmscope.compare``).
"""

from __future__ import annotations

import base64
import html
import json
import shutil
import statistics
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from ..analysis.kernels import layer_depth  # noqa: E402
from ..analysis.null import ATTENTION_RANGE, layer_readings  # noqa: E402
from ..config import RunConfig  # noqa: E402
from ..errors import SsmscopeError  # noqa: E402
from ..stats import RESAMPLED_METRICS, bootstrap_mean_interval  # noqa: E402
from ..compare import RunPredictions, compare_groups, compare_runs, format_p, load_run_predictions, shared_test_set  # noqa: E402
from ..models import model_name  # noqa: E402
from ..train.loop import PREDICTIONS_FILE  # noqa: E402
from .plots import slug  # noqa: E402

DETECTION_COLUMNS = ("architecture", "runs", "learned the task", "F1", "F1 95% CI", "F1 (tuned)", "weighted F1", "MCC", "ROC-AUC", "ROC-AUC 95% CI", "VD-S")
KERNEL_COLUMNS = ("architecture", "dominant frequency", "spectral entropy", "filter type", "dependency range", "energy length")
PROBE_COLUMNS = ("probed range", "probed range (AUC)")
FIGURE_KINDS = ("time", "spectrum", "heatmap", "histograms")
PAIRWISE_METRICS = ("f1", "mcc", "roc_auc")  # the significance table's columns
PAIRWISE_COLUMNS = ("A", "B", "seeds", *PAIRWISE_METRICS, "McNemar p")
N_BOOT = 2000  # bootstrap resamples of the report's intervals and paired tests
INSIDE_NULL = "≈ init"


@dataclass
class RunRecord:
    path: Path
    arch: str
    seed: int
    metrics: dict
    analysis: dict | None
    figures: list[Path] = field(default_factory=list)
    probes: list[dict] = field(default_factory=list)  # probes/*.json written by `ssmscope probe`
    test: RunPredictions | None = None  # the test split of predictions.csv, sorted by record index; None for older runs


def probed(probe: dict) -> bool:
    """Whether a probes/*.json file holds probe results (key "has_kernels" in files written before selective layers)."""
    return bool(probe.get("has_ssm_layers", probe.get("has_kernels")))


def load_run_record(run_dir: str | Path) -> RunRecord:
    run_dir = Path(run_dir)
    for name in ("config.json", "metrics.json"):
        if not (run_dir / name).is_file():
            raise SsmscopeError(f"{run_dir}: no {name}; pass run directories of finished runs (ssmscope train ... --out DIR)")
    config = RunConfig.from_dict(json.loads((run_dir / "config.json").read_text()))
    summary_path = run_dir / "analysis" / "summary.json"
    analysis = json.loads(summary_path.read_text()) if summary_path.is_file() else None
    layer_order = {slug(layer["name"]): i for i, layer in enumerate(analysis["layers"])} if analysis else {}
    figures = sorted((run_dir / "analysis").glob("*.png"), key=lambda path: _figure_order(path, layer_order)) if analysis else []
    probe_files = sorted((run_dir / "probes").glob("*.json"))
    probes = [json.loads(p.read_text()) for p in probe_files]
    figures += [p.with_suffix(".png") for p, r in zip(probe_files, probes) if probed(r) and p.with_suffix(".png").is_file()]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    test = load_run_predictions(run_dir) if (run_dir / PREDICTIONS_FILE).is_file() else None
    return RunRecord(run_dir, _display_name(config), config.train.seed, metrics, analysis, figures, probes, test)


def _display_name(config: RunConfig) -> str:
    """models.model_name (the arch with its depth); an arch this version does not know is shown as written."""
    try:
        return model_name(config.arch, config.model)
    except SsmscopeError:
        return config.arch


def _figure_order(path: Path, layer_order: dict[str, int]) -> tuple:
    """Layer by layer in the model's order (a branch's first S4D, then its blocks by depth), each in
    the order time, spectrum, heat map, histograms; other figures (training spectra) last."""
    layer, _, kind = path.stem.rpartition("_")
    return (layer not in layer_order, layer_order.get(layer, 0), layer, FIGURE_KINDS.index(kind) if kind in FIGURE_KINDS else len(FIGURE_KINDS))


def _mean_std(values: list[float | None], digits: int) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def _by_arch(records: list[RunRecord]) -> dict[str, list[RunRecord]]:
    by_arch: dict[str, list[RunRecord]] = {}
    for r in records:
        by_arch.setdefault(r.arch, []).append(r)
    return by_arch


def _test_interval(runs: list[RunRecord], metric: str, scale: float, digits: int) -> tuple[str, tuple[float, float] | None]:
    """"[low, high]" of the 95% test-set bootstrap interval of the metric's mean over ``runs`` ("–" when a run has no predictions).
    Runs that share one test set (group or given split; compare.shared_test_set) are resampled jointly."""
    if not runs or any(r.test is None for r in runs):
        return "–", None
    tested = [r.test for r in runs]  # each sorted by record index: shared test sets line up row by row
    shared = shared_test_set([(t, t) for t in tested]) is True
    interval = bootstrap_mean_interval([(t.labels, t.probabilities) for t in tested], RESAMPLED_METRICS[metric], N_BOOT, shared_test=shared)
    if interval is None:
        return "–", None
    return f"[{scale * interval[0]:.{digits}f}, {scale * interval[1]:.{digits}f}]", interval


def _learned(auc_interval: tuple[float, float] | None) -> str:
    """From the ROC-AUC interval: "yes" above 0.5, "no" when it holds 0.5, "no: worse than chance" below."""
    if auc_interval is None:
        return "–"
    low, high = auc_interval
    if low > 0.5:
        return "yes"
    return "no: ROC-AUC interval includes 0.5" if high >= 0.5 else "no: worse than chance (ROC-AUC interval below 0.5)"


def _null_mark(runs: list[RunRecord], reading: str) -> str:
    """INSIDE_NULL when the model-level reading lies inside the untrained null's central 95% in every
    analysed run, "≈ init k/S" when in k of S, "" when in none (or no run was placed in a null)."""
    placed = [r.analysis["model"]["null"][reading] for r in runs if r.analysis and r.analysis.get("model") and r.analysis["model"].get("null")]
    inside = sum(not p["outside"] for p in placed)
    if not placed or inside == 0:
        return ""
    return f" {INSIDE_NULL}" if inside == len(placed) else f" {INSIDE_NULL} {inside}/{len(placed)}"


def table_rows(records: list[RunRecord]) -> list[dict]:
    """One row per architecture: mean ± sample std over its runs (seeds), test-set intervals, null marks."""
    rows = []
    for arch, runs in _by_arch(records).items():
        models = [r.analysis["model"]["summary"] for r in runs if r.analysis and r.analysis.get("model")]
        medians = [{name: q["median"] for name, q in m["channels"].items()} for m in models]
        types = Counter(m["mean_spectrum"]["filter_type"] for m in models)
        band_pass = [100 * m["filter_type_share"]["band-pass"] for m in models]
        f1_interval, _ = _test_interval(runs, "f1", 100, 2)
        auc_text, auc_interval = _test_interval(runs, "roc_auc", 1, 3)
        rows.append({
            "architecture": arch,
            "runs": str(len(runs)),
            "learned the task": _learned(auc_interval),
            "F1": _mean_std([100 * r.metrics["f1"] for r in runs], 2),
            "F1 95% CI": f1_interval,
            "F1 (tuned)": _mean_std([100 * r.metrics["f1_tuned"] if r.metrics.get("f1_tuned") is not None else None for r in runs], 2),
            "weighted F1": _mean_std([100 * r.metrics["f1_weighted"] for r in runs], 2),
            "MCC": _mean_std([r.metrics["mcc"] for r in runs], 3),
            "ROC-AUC": _mean_std([r.metrics["roc_auc"] for r in runs], 3),
            "ROC-AUC 95% CI": auc_text,
            "VD-S": _mean_std([r.metrics.get("vd_score") for r in runs], 3),
            "dominant frequency": _mean_std([m["dominant_frequency"] for m in medians], 4) + _null_mark(runs, "dominant_frequency"),
            "spectral entropy": _mean_std([m["spectral_entropy_bits"] for m in medians], 3) + _null_mark(runs, "spectral_entropy_bits"),
            "filter type": (", ".join(f"{t} ({n}/{len(models)})" for t, n in types.most_common())
                            + f"; band-pass channels {_mean_std(band_pass, 0)}%" + _null_mark(runs, "band_pass_share")) if models else "no SSM kernel",
            "dependency range": _mean_std([m["dependency_range_tokens"] for m in medians], 1) + _null_mark(runs, "dependency_range_tokens"),
            "energy length": _mean_std([m["energy_length_90"] for m in medians], 1) + _null_mark(runs, "energy_length_90"),
            "probed range": _mean_std([p["used_range_tokens"] for r in runs for p in r.probes[:1] if probed(p)], 1),
            "probed range (AUC)": _mean_std([p.get("used_range_auc_tokens") for r in runs for p in r.probes[:1] if probed(p)], 1),
        })
    return rows


DETECTION_NOTE = (
    "Test metrics of the best validation epoch (F1 of the vulnerable class at p > 0.5; F1 (tuned) at the "
    "threshold tuned on validation; VD-S: the false-negative rate at ≤ 0.5% false alarms, lower is better). "
    "Mean ± sample std over seeds; 95% CI: the test-set bootstrap interval of that mean (each run's test "
    "functions resampled, 2000 times, jointly when the runs share one test set; it does not hold the spread between seeds). A model whose ROC-AUC "
    "interval includes 0.5 did not learn the task: its kernels were not shaped by it."
)
KERNEL_NOTE = (
    "Every SSM channel of a model pooled (S4D kernels; for mamba, the mean effective kernels of its hidden attention on test "
    "functions, docs/METHODS.md \"Selective layers\"): dominant frequency (cycles/sample), spectral entropy (bits), "
    "dependency range (tokens) and energy length (taps) are medians over channels; the filter type is that of "
    "the channel-averaged spectrum (k/S: in k of S runs), followed by the share of band-pass channels (mean ± std over runs). "
    f"{INSIDE_NULL}: the reading lies inside the central 95% of the same reading over freshly initialised "
    f"models of the same configuration in every run (k/S: in k of S runs), i.e. it does not differ from "
    "initialisation (beside the filter type: the share of band-pass channels). Each run's section lists every "
    "layer's readings with their percentile among the untrained ones. Probed range: the fewest kernel taps (mamba: tokens of state memory) that keep 90% of the model's F1; (AUC): the fewest "
    "that recover 90% of the ROC-AUC the kernel adds over none (ssmscope probe, first probe dataset of each run)."
)
LAYER_NOTE = (
    "Layer by layer, in depth order (depth 0: a branch's first S4D; k: the S4D of residual block k), then all "
    "layers pooled. Each reading is the channel median (band-pass share: of channels), with pNN its percentile among "
    f"freshly initialised models of the same configuration and {INSIDE_NULL} where it lies inside their central 95%. "
    "Probed range: the fewest taps of this layer alone (the others intact) that keep 90% of the model's F1; for the "
    "pooled row, of every layer at once (the model's range). Selective layers (mamba) are read through their mean "
    "effective kernel on test functions; their percentiles compare the layer with fresh ones on the same inputs "
    "(a few functions, so the value beside pNN is the reading on those); attention range: the fewest lags holding "
    "90% of a row's hidden-attention mass, median (quartiles) over rows, and pNN that of the median on the null's "
    "functions; their probed range truncates the state's memory to m tokens."
)
PAIRWISE_NOTE = (
    "Paired differences A − B on the same test functions (ssmscope compare): the difference, its 95% interval "
    "and p-value. One run each: paired bootstrap over test functions (ROC-AUC: DeLong's test); several seeds: "
    "the mean of the per-seed differences with the t interval and t-test over seeds, or Banerjee's interval "
    "when the seeds share one test set (docs/METHODS.md). "
    "* marks p < 0.05. Pairs that do not share their test functions are left out."
)


def kernel_columns(rows: list[dict]) -> tuple[str, ...]:
    """The kernel table's columns; the probed ranges (`ssmscope probe`) only when some run has probes."""
    probed = any(r["probed range"] != "–" or r["probed range (AUC)"] != "–" for r in rows)
    return KERNEL_COLUMNS + (PROBE_COLUMNS if probed else ())


def _markdown_table(rows: list[dict], columns) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(row[c].replace("|", "\\|") for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def pairwise_rows(records: list[RunRecord]) -> list[dict]:
    """One row per pair of architectures that share their test functions (same data, split and seeds):
    {"A", "B", "seeds", metric: "difference [low, high] p"} for PAIRWISE_METRICS, and "McNemar p"
    (one run each) at the 0.5 decisions."""
    by_arch = {arch: runs for arch, runs in _by_arch(records).items() if all(r.test is not None for r in runs)}
    archs = list(by_arch)
    rows = []
    for i, a in enumerate(archs):
        for b in archs[i + 1:]:
            runs_a, runs_b = [r.test for r in by_arch[a]], [r.test for r in by_arch[b]]  # read once, in load_run_record
            try:
                single = len(runs_a) == len(runs_b) == 1
                result = compare_runs(runs_a[0], runs_b[0], N_BOOT) if single else compare_groups(runs_a, runs_b, N_BOOT)
            except SsmscopeError:  # other test functions or other seeds: not a paired comparison
                continue
            row = {"A": a, "B": b, "seeds": str(len(runs_a))}
            for metric in PAIRWISE_METRICS:
                m = result["metrics"][metric]
                if single and metric == "roc_auc" and result["delong"]:  # DeLong's interval with DeLong's p
                    m = result["delong"]
                row[metric] = "–" if m["difference"] is None else (
                    f"{m['difference']:+.3f} [{m['ci_low']:+.3f}, {m['ci_high']:+.3f}] p {format_p(m['p_value'])}{' *' if m['p_value'] < 0.05 else ''}")
            row["McNemar p"] = format_p(result["mcnemar"]["default"]["p_value"]) if single else "–"
            rows.append(row)
    return rows


LAYER_READINGS = {"dominant_frequency": ("dominant frequency", 4), "spectral_entropy_bits": ("spectral entropy", 3),
                  "energy_length_90": ("energy length", 1), "dependency_range_tokens": ("dependency range", 1), "band_pass_share": ("band-pass share", 2)}
LAYER_COLUMNS = ("layer", "depth", *(label for label, _ in LAYER_READINGS.values()), "probed range", "probed range (AUC)")
ATTENTION_COLUMN = "attention range"  # selective layers: effective range of the hidden attention, median (quartiles) over rows


def layer_columns(layers: list[dict]) -> tuple[str, ...]:
    """LAYER_COLUMNS, and the attention range when some layer is selective."""
    return LAYER_COLUMNS + ((ATTENTION_COLUMN,) if any(ATTENTION_COLUMN in row for row in layers) else ())
ALL_LAYERS = "model (all layers)"


def layer_rows(record: RunRecord) -> list[dict]:
    """One row per kernel layer of an analysed run, in the model's order (each branch from its first
    S4D, depth 0, down its residual blocks), then the pooled model: each reading as "value
    (percentile among the untrained)" with INSIDE_NULL where it lies inside the central 95% (the
    value alone without a null), and the range the first probe found with that layer alone
    truncated (the model row: every layer at once)."""
    if not record.analysis or not record.analysis.get("layers"):
        return []
    probe = next((p for p in record.probes if probed(p)), None)
    alone = (probe or {}).get("layers", {})
    model = record.analysis["model"]
    entries = [(l["name"], str(layer_depth(l["name"])), l["summary"], l.get("null"), alone.get(l["name"])) for l in record.analysis["layers"]]
    if model:  # None only for kernels of different lengths read from a file (analysis.external)
        entries.append((ALL_LAYERS, "", model["summary"], model.get("null"), probe))
    rows = []
    for name, depth, summary, placed, layer_probe in entries:
        row = {"layer": name, "depth": depth}
        values = None if placed else layer_readings(summary)
        for reading, (label, digits) in LAYER_READINGS.items():
            if placed:
                p = placed[reading]
                row[label] = f"{p['value']:.{digits}f} (p{p['percentile']:.0f})" + ("" if p["outside"] else f" {INSIDE_NULL}")
            else:
                row[label] = f"{values[reading]:.{digits}f}"
        row["probed range"] = "–" if layer_probe is None or layer_probe["used_range_tokens"] is None else str(layer_probe["used_range_tokens"])
        row["probed range (AUC)"] = "–" if layer_probe is None or layer_probe.get("used_range_auc_tokens") is None else str(layer_probe["used_range_auc_tokens"])
        rows.append(row)
    attention = {l["name"]: (l["attention"]["effective_range"], (l.get("null") or {}).get(ATTENTION_RANGE))
                 for l in record.analysis["layers"] if l.get("attention")}
    if attention:
        for row in rows:
            span, placed = attention.get(row["layer"], (None, None))
            mark = "" if placed is None else f", p{placed['percentile']:.0f}" + ("" if placed["outside"] else f" {INSIDE_NULL}")
            row[ATTENTION_COLUMN] = f"{span['median']:.0f} ({span['q1']:.0f}–{span['q3']:.0f}){mark}" if span else "–"
    return rows


def _overlay(records: list[RunRecord], path: Path) -> Path | None:
    """Mean normalised power spectrum of every analysed model (first seed of each architecture)."""
    firsts = {}
    for r in records:
        if r.analysis and r.analysis.get("model") and r.arch not in firsts:
            firsts[r.arch] = r.analysis["model"]["spectrum"]
    if not firsts:
        return None
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for arch, spectrum in firsts.items():
        ax.plot(spectrum["frequency"], spectrum["power"], lw=1.2, label=arch)
    ax.set_yscale("log")
    ax.set_xlabel("frequency (cycles/sample)")
    ax.set_ylabel("mean normalised power")
    ax.set_title("SSM kernel spectra of all models (mamba: mean effective kernels)")
    ax.legend(fontsize=8)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path


RUN_LINE = "Run: `{}`"  # heads each run's section of report.md; runs_named_in reads them back


def runs_named_in(report_md: Path) -> list[str]:
    """The run directories a report.md was written for, in its order ([] for no such file)."""
    if not report_md.is_file():
        return []
    prefix, suffix = RUN_LINE.split("{}")
    return [line[len(prefix):-len(suffix)] for line in report_md.read_text().splitlines() if line.startswith(prefix) and line.endswith(suffix)]


def write_report(run_dirs: list[str | Path], out_dir: str | Path, title: str = "ssmscope study report") -> Path:
    """Write report.md and report.html into ``out_dir``; returns the HTML path."""
    if not run_dirs:
        raise SsmscopeError("report: no run directories given")
    records = [load_run_record(d) for d in run_dirs]
    out_dir = Path(out_dir)
    figures_dir = out_dir / "figures"
    figures_dir.mkdir(parents=True, exist_ok=True)
    rows = table_rows(records)
    pairs = pairwise_rows(records)
    overlay = _overlay(records, figures_dir / "spectra_overlay.png")

    sections = []  # (heading, [figure paths inside out_dir], note)
    for number, r in enumerate(records):
        copied = []
        for fig in r.figures:  # numbered: two runs of the same arch and seed must not overwrite each other
            target = figures_dir / f"{number:02d}-{slug(r.arch)}-{fig.parent.name}-{fig.name}"
            shutil.copyfile(fig, target)
            copied.append(target)
        note = r.analysis.get("note") if r.analysis else "not analysed (run ssmscope analyze --run DIR)"
        sections.append((f"{r.arch} (seed {r.seed})", str(r.path), copied, note, layer_rows(r)))

    md = [f"# {title}", "", "## Detection", "", DETECTION_NOTE, "", _markdown_table(rows, DETECTION_COLUMNS), ""]
    md += ["## Kernels", "", KERNEL_NOTE, "", _markdown_table(rows, kernel_columns(rows)), ""]
    if pairs:
        md += ["## Pairwise comparisons", "", PAIRWISE_NOTE, "", _markdown_table(pairs, PAIRWISE_COLUMNS), ""]
    if overlay:
        md += ["## Spectra of all models", "", f"![spectra](figures/{overlay.name})", ""]
    for heading, path, figs, note, layers in sections:
        md += [f"## {heading}", "", RUN_LINE.format(path), ""]
        if note:
            md += [note, ""]
        if layers:
            md += [LAYER_NOTE, "", _markdown_table(layers, layer_columns(layers)), ""]
        md += [f"![{f.stem}](figures/{f.name})" for f in figs] + [""]
    (out_dir / "report.md").write_text("\n".join(md))

    html_path = out_dir / "report.html"
    html_path.write_text(_html(title, rows, pairs, overlay, sections))
    return html_path


def _img(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img alt="{html.escape(path.stem)}" src="data:image/png;base64,{data}">'


def _html_table(rows: list[dict], columns) -> str:
    e = html.escape

    def cell(value: str) -> str:  # readings that do not differ from initialisation and models that learned nothing are greyed
        quiet = INSIDE_NULL in value or value.startswith("no:")
        text = e(value).replace("; ", ";<br>")  # a two-part cell (filter type; band-pass share) on two lines, not one wide one
        return f"<td class='quiet'>{text}</td>" if quiet else f"<td>{text}</td>"

    head = "".join(f"<th>{e(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(cell(row[c]) for c in columns) + "</tr>" for row in rows)
    return f"<div class='wide'><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>"


def _html_head(title: str) -> list[str]:
    e = html.escape
    return [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>{e(title)}</title>",
        "<style>body{font-family:sans-serif;max-width:1200px;margin:2em auto;padding:0 1em}"
        "table{border-collapse:collapse;font-size:90%}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}td{white-space:nowrap}"
        "td:first-child,th:first-child{text-align:left}td.quiet{color:#888;background:#f4f4f4}.wide{overflow-x:auto}"
        "img{max-width:100%;display:block;margin:1em 0}</style>",
        "</head><body>",
        f"<h1>{e(title)}</h1>",
    ]


def write_analysis_report(summary: dict, figures: list[Path], out_dir: str | Path, title: str) -> Path:
    """report.md and a self-contained report.html for one analysis without a run (``analyze --kernels``):
    the layer table and the figures, which lie in ``out_dir``. Returns the HTML path."""
    out_dir = Path(out_dir)
    record = RunRecord(out_dir, title, 0, {}, summary, figures)
    layers = layer_rows(record)
    note = f"Kernels from `{summary['source']}`. {summary['note']}."
    md = [f"# {title}", "", note, "", LAYER_NOTE, "", _markdown_table(layers, layer_columns(layers)), ""]
    md += [f"![{f.stem}]({f.name})" for f in figures] + [""]
    (out_dir / "report.md").write_text("\n".join(md))
    e = html.escape
    parts = [*_html_head(title), f"<p>{e(note)}</p>", f"<p>{e(LAYER_NOTE)}</p>", _html_table(layers, layer_columns(layers))]
    parts += [_img(f) for f in figures] + ["</body></html>"]
    html_path = out_dir / "report.html"
    html_path.write_text("\n".join(parts))
    return html_path


def _html(title: str, rows: list[dict], pairs: list[dict], overlay: Path | None, sections) -> str:
    e = html.escape
    parts = [
        *_html_head(title),
        "<h2>Detection</h2>",
        f"<p>{e(DETECTION_NOTE)}</p>",
        _html_table(rows, DETECTION_COLUMNS),
        "<h2>Kernels</h2>",
        f"<p>{e(KERNEL_NOTE)}</p>",
        _html_table(rows, kernel_columns(rows)),
    ]
    if pairs:
        parts += ["<h2>Pairwise comparisons</h2>", f"<p>{e(PAIRWISE_NOTE)}</p>", _html_table(pairs, PAIRWISE_COLUMNS)]
    if overlay:
        parts += ["<h2>Spectra of all models</h2>", _img(overlay)]
    for heading, path, figs, note, layers in sections:
        parts += [f"<h2>{e(heading)}</h2>", f"<p>Run: <code>{e(path)}</code></p>"]
        if note:
            parts.append(f"<p>{e(note)}</p>")
        if layers:
            parts += [f"<p>{e(LAYER_NOTE)}</p>", _html_table(layers, layer_columns(layers))]
        parts += [_img(f) for f in figs]
    parts.append("</body></html>")
    return "\n".join(parts)
