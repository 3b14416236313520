"""The whole study in one call: train every architecture × seed, analyse and probe each run, write the report.

Runs live in ``OUT/runs/<arch>-seed<seed>/``, the report in ``OUT/report/``. Re-running skips every
run whose metrics.json exists with the same configuration (and every analysis already written),
so an interrupted study continues where it stopped.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Callable

from .analysis.run import analyze_run
from .analysis.probes import probe_run
from .config import EMBEDDED_CORPUS, RunConfig
from .errors import SsmscopeError
from .models import VARIANTS
from .models.classifier import PAPER_ARCHITECTURES
from .report.render import DETECTION_COLUMNS, kernel_columns, load_run_record, table_rows, write_report
from .train.loop import RESUME_FILE, train_run

STUDY_ARCHS = (*PAPER_ARCHITECTURES, *VARIANTS)  # the six + the SMR fusion ablation
# The embedded study adds the selective SSM (issue 14): about 3 extra minutes at one thread there, where a 1-layer mamba
# ReVeal run costs ~7 s4d runs (docs/PERFORMANCE.md "Mamba"), so on --data it is asked for by name.
EMBEDDED_STUDY_ARCHS = (*STUDY_ARCHS, "mamba")


def run_dir_for(out: Path, arch: str, seed: int) -> Path:
    return Path(out) / "runs" / f"{arch}-seed{seed}"


def _same_experiment(a: RunConfig, b: RunConfig) -> bool:
    """Equal up to settings that do not change what is trained: where and on how many threads it ran,
    whether kernels were tracked, how often it checkpointed, whether branches were recomputed in
    backward, and how far batches were padded (the models' outputs do not depend on padding)."""
    def key(c: RunConfig) -> RunConfig:
        return c.with_train(device="auto", threads=None, track_kernels=False, pad_to_multiple=1, checkpoint_every=0, recompute_branches="auto")

    return key(a) == key(b)


def _finished_with(run_dir: Path, config: RunConfig) -> bool:
    """True if run_dir holds a finished run of ``config``; a different finished run is an error."""
    if not (run_dir / "metrics.json").is_file():
        return False
    stored = RunConfig.from_dict(json.loads((run_dir / "config.json").read_text()))
    if not _same_experiment(stored, config):
        raise SsmscopeError(f"{run_dir}: holds a finished run with other settings; use another --out for a different study")
    return True


def reproduce(
    base: RunConfig, out: str | Path, archs=STUDY_ARCHS, seeds=(0,), log: Callable[[str], None] = print,
    report: bool = True,
) -> tuple[list[dict], Path | None]:
    """Train, analyse and report every arch × seed of ``base``; returns the table rows and report.html
    (None with ``report=False``: the runs are finished but OUT/report is left as it was)."""
    out = Path(out)
    run_dirs = []
    for arch in archs:
        for seed in seeds:
            config = dataclasses.replace(base, arch=arch).with_train(seed=seed)
            run_dir = run_dir_for(out, arch, seed)
            if _finished_with(run_dir, config):
                log(f"{arch} seed {seed}: finished before, skipped")
            else:
                resume = (run_dir / RESUME_FILE).is_file()  # interrupted before: continue where it stopped
                log(f"{arch} seed {seed}: {'resuming' if resume else 'training'} → {run_dir}")
                train_run(config, run_dir, overwrite=not resume, resume=resume, log=lambda s: log("  " + s))
            if not (run_dir / "analysis" / "summary.json").is_file():
                analyze_run(run_dir)
            if not (run_dir / "probes" / "test-split.json").is_file():
                probe_run(run_dir, device=config.train.device)
            run_dirs.append(run_dir)
    html = write_report(run_dirs, out / "report") if report else None
    return table_rows([load_run_record(d) for d in run_dirs]), html


def write_embedded_corpus(out: Path) -> Path:
    """Generate the embedded synthetic corpus into OUT/data/ (same bytes every time) and return its path."""
    from .data.synthetic import generate
    from .files import write_jsonl

    path = Path(out) / "data" / "synthetic.jsonl.gz"
    path.parent.mkdir(parents=True, exist_ok=True)
    c = EMBEDDED_CORPUS
    write_jsonl(path, generate(c.n, c.distances, c.kinds, c.positive_fraction, c.seed))
    return path


def format_table(rows: list[dict]) -> str:
    """The report's two tables (detection, kernels) as aligned plain text for a terminal."""
    tables = []
    for columns in (DETECTION_COLUMNS, kernel_columns(rows)):
        widths = {c: max(len(c), *(len(r[c]) for r in rows)) for c in columns}
        lines = ["  ".join(c.ljust(widths[c]) for c in columns)]
        lines += ["  ".join(r[c].ljust(widths[c]) for c in columns) for r in rows]
        tables.append("\n".join(lines))
    return "\n\n".join(tables)
