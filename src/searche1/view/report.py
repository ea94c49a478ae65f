"""`searche1 report RUN`: the run as a markdown file with PNG figures (the viewer's tables and figures, on disk).

RUN/report/report.md + RUN/report/<figure>.png by default; every file written atomically.
"""

from __future__ import annotations

from pathlib import Path

from searche1.fileio import atomic_write
from searche1.plots import figure_bytes
from searche1.view import figures, tables
from searche1.view.rundir import RunDir

CAPTIONS = {
    "em_by_phase": "Greedy EM per benchmark (faint) and the average (bold), phase by phase.",
    "behaviour_by_phase": "What the greedy policy does: searches and generated tokens per answer.",
    "cost_by_phase": "Where the time went: training and evaluation seconds, and rollouts generated per phase.",
    "grpo_curves": "GRPO training curves, every GRPO phase on one step axis.",
    "ofsd_curves": "OFSD training curves, per optimizer step.",
}


def write_run_report(run_path: str | Path, out: str | Path | None = None) -> Path:
    """Write the report of the run at `run_path` into `out` (default RUN/report); returns report.md's path."""
    run = RunDir(run_path)
    out = Path(out) if out is not None else run.path / "report"
    out.mkdir(parents=True, exist_ok=True)
    overview = run.overview()
    done = sum(r["finished"] for r in overview["phases"])
    lines = [f"# Run report: {run.name}", "",
             f"`{run.path}`: {len(overview['phases'])} phases, {done} finished. Greedy EM is exact match over the "
             "evaluation sets; seconds are wall-clock on the machine that ran the phase.", ""]
    for table in tables.run_tables(run):
        lines += [f"## {table['title']}", "", tables.markdown(table)]
    lines.append("## Figures\n")
    for name in figures.FIGURES:
        fig = figures.make_figure(run, name)
        if fig is None:
            continue
        with atomic_write(out / f"{name}.png", "wb") as f:
            f.write(figure_bytes(fig, "png"))
        lines += [f"![{name}]({name}.png)", "", CAPTIONS[name], ""]
    path = out / "report.md"
    with atomic_write(path) as f:
        f.write("\n".join(lines))
    return path
