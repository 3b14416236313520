"""The study report: one table over runs (mean ± std over seeds), overlaid spectra, each model's figures.

``write_report(run_dirs, out_dir)`` reads only files that ``train`` and ``analyze`` wrote
(config.json, metrics.json, analysis/summary.json and figures), never live models, and writes
``report.md`` and a self-contained ``report.html`` (figures embedded as base64; every text that
came from data or paths is HTML-escaped).
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

from ..errors import SsmscopeError  # noqa: E402
from .plots import slug  # noqa: E402

COLUMNS = ("architecture", "runs", "F1", "weighted F1", "MCC", "dominant frequency", "spectral entropy", "filter type", "dependency range", "energy length")
FIGURE_KINDS = ("time", "spectrum", "heatmap", "histograms")


@dataclass
class RunRecord:
    path: Path
    arch: str
    seed: int
    metrics: dict
    analysis: dict | None
    figures: list[Path] = field(default_factory=list)
    probes: list[dict] = field(default_factory=list)  # probes/*.json written by `ssmscope probe`


def load_run_record(run_dir: str | Path) -> RunRecord:
    run_dir = Path(run_dir)
    for name in ("config.json", "metrics.json"):
        if not (run_dir / name).is_file():
            raise SsmscopeError(f"{run_dir}: no {name}; pass run directories of finished runs (ssmscope train ... --out DIR)")
    config = json.loads((run_dir / "config.json").read_text())
    summary_path = run_dir / "analysis" / "summary.json"
    analysis = json.loads(summary_path.read_text()) if summary_path.is_file() else None
    figures = sorted((run_dir / "analysis").glob("*.png"), key=_figure_order) if analysis else []
    probe_files = sorted((run_dir / "probes").glob("*.json"))
    probes = [json.loads(p.read_text()) for p in probe_files]
    figures += [p.with_suffix(".png") for p, r in zip(probe_files, probes) if r.get("has_kernels") and p.with_suffix(".png").is_file()]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    return RunRecord(run_dir, config["arch"], config["train"]["seed"], metrics, analysis, figures, probes)


def _figure_order(path: Path) -> tuple:
    """Layer by layer, each in the order time, spectrum, heat map, histograms; training curves last."""
    layer, _, kind = path.stem.rpartition("_")
    return (not layer, layer, FIGURE_KINDS.index(kind) if kind in FIGURE_KINDS else len(FIGURE_KINDS))


def _mean_std(values: list[float | None], digits: int) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def table_rows(records: list[RunRecord]) -> list[dict]:
    """One row per architecture: mean ± sample std over its runs (seeds)."""
    by_arch: dict[str, list[RunRecord]] = {}
    for r in records:
        by_arch.setdefault(r.arch, []).append(r)
    rows = []
    for arch, runs in by_arch.items():
        models = [r.analysis["model"]["summary"] for r in runs if r.analysis and r.analysis.get("model")]
        medians = [{name: q["median"] for name, q in m["channels"].items()} for m in models]
        types = Counter(_filter_reading(m) for m in models)
        rows.append({
            "architecture": arch,
            "runs": str(len(runs)),
            "F1": _mean_std([100 * r.metrics["f1"] for r in runs], 2),
            "weighted F1": _mean_std([100 * r.metrics["f1_weighted"] for r in runs], 2),
            "MCC": _mean_std([r.metrics["mcc"] for r in runs], 3),
            "dominant frequency": _mean_std([m["dominant_frequency"] for m in medians], 4),
            "spectral entropy": _mean_std([m["spectral_entropy_bits"] for m in medians], 3),
            "filter type": ", ".join(f"{t} ({n}/{len(models)})" for t, n in types.most_common()) if models else "no SSM kernel",
            "dependency range": _mean_std([m["dependency_range_tokens"] for m in medians], 1),
            "energy length": _mean_std([m["energy_length_90"] for m in medians], 1),
            "probed range": _mean_std([p["used_range_tokens"] for r in runs for p in r.probes[:1] if p.get("has_kernels")], 1),
            "probed range (AUC)": _mean_std([p.get("used_range_auc_tokens") for r in runs for p in r.probes[:1] if p.get("has_kernels")], 1),
        })
    return rows


def _filter_reading(model_summary: dict) -> str:
    """The mean spectrum's filter type, with the most common channel type when it differs."""
    mean_type = model_summary["mean_spectrum"]["filter_type"]
    share = model_summary["filter_type_share"]
    top = max(share, key=share.get)
    return mean_type if top == mean_type else f"{mean_type}; channels {share[top]:.0%} {top}"


TABLE_NOTE = (
    "Test metrics of the best validation epoch. Spectral columns pool every S4D channel of a model: dominant "
    "frequency (cycles/sample), spectral entropy (bits), dependency range (tokens) and energy length (taps) are "
    "medians over channels; the filter type is that of the channel-averaged spectrum (with the most common "
    "channel type when it differs). Probed range: the fewest kernel taps that keep 90% of the model's F1; "
    "(AUC): the fewest that recover 90% of the ROC-AUC the kernel adds over none (ssmscope probe, first "
    "probe dataset of each run). Mean ± sample std over seeds."
)


def table_columns(rows: list[dict]) -> tuple[str, ...]:
    """The report's columns; "probed range" (used range from `ssmscope probe`) only when some run has probes."""
    probed = any(r["probed range"] != "–" or r["probed range (AUC)"] != "–" for r in rows)
    return COLUMNS + ("probed range", "probed range (AUC)") if probed else COLUMNS


def _markdown_table(rows: list[dict]) -> str:
    columns = table_columns(rows)
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(row[c].replace("|", "\\|") for c in columns) + " |" for row in rows]
    return "\n".join(lines)


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
    ax.set_title("S4D kernel spectra of all models")
    ax.legend(fontsize=8)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path


def write_report(run_dirs: list[str | Path], out_dir: str | Path, title: str = "ssmscope study report") -> Path:
    """Write report.md and report.html into ``out_dir``; returns the HTML path."""
    if not run_dirs:
        raise SsmscopeError("report: no run directories given")
    records = [load_run_record(d) for d in run_dirs]
    out_dir = Path(out_dir)
    figures_dir = out_dir / "figures"
    figures_dir.mkdir(parents=True, exist_ok=True)
    rows = table_rows(records)
    overlay = _overlay(records, figures_dir / "spectra_overlay.png")

    sections = []  # (heading, [figure paths inside out_dir], note)
    for number, r in enumerate(records):
        copied = []
        for fig in r.figures:  # numbered: two runs of the same arch and seed must not overwrite each other
            target = figures_dir / f"{number:02d}-{slug(r.arch)}-{fig.parent.name}-{fig.name}"
            shutil.copyfile(fig, target)
            copied.append(target)
        note = r.analysis.get("note") if r.analysis else "not analysed (run ssmscope analyze --run DIR)"
        sections.append((f"{r.arch} (seed {r.seed})", str(r.path), copied, note))

    md = [f"# {title}", "", TABLE_NOTE, "", _markdown_table(rows), ""]
    if overlay:
        md += ["## Spectra of all models", "", f"![spectra](figures/{overlay.name})", ""]
    for heading, path, figs, note in sections:
        md += [f"## {heading}", "", f"Run: `{path}`", ""]
        if note:
            md += [note, ""]
        md += [f"![{f.stem}](figures/{f.name})" for f in figs] + [""]
    (out_dir / "report.md").write_text("\n".join(md))

    html_path = out_dir / "report.html"
    html_path.write_text(_html(title, rows, overlay, sections))
    return html_path


def _img(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img alt="{html.escape(path.stem)}" src="data:image/png;base64,{data}">'


def _html(title: str, rows: list[dict], overlay: Path | None, sections) -> str:
    e = html.escape
    columns = table_columns(rows)
    head = "".join(f"<th>{e(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{e(row[c])}</td>" for c in columns) + "</tr>" for row in rows)
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>{e(title)}</title>",
        "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}"
        "td:first-child,th:first-child{text-align:left}img{max-width:100%;display:block;margin:1em 0}</style>",
        "</head><body>",
        f"<h1>{e(title)}</h1>",
        f"<p>{e(TABLE_NOTE)}</p>",
        f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>",
    ]
    if overlay:
        parts += ["<h2>Spectra of all models</h2>", _img(overlay)]
    for heading, path, figs, note in sections:
        parts += [f"<h2>{e(heading)}</h2>", f"<p>Run: <code>{e(path)}</code></p>"]
        if note:
            parts.append(f"<p>{e(note)}</p>")
        parts += [_img(f) for f in figs]
    parts.append("</body></html>")
    return "\n".join(parts)
