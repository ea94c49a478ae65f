"""The figures of a run, from RunDir.overview() and the phases' metrics: the viewer serves them as SVG, the report
writes them as PNG, so both show the same numbers.

  em_by_phase         greedy EM per benchmark and the average, phase by phase
  behaviour_by_phase  searches and generated tokens per answer, phase by phase (the greedy evaluations)
  cost_by_phase       seconds of training and of evaluation per phase, and rollouts generated
  grpo_curves         reward, KL, searches, response length, entropy and seconds per step over every GRPO phase
  ofsd_curves         loss, KL and clipped fraction per OFSD step
"""

from __future__ import annotations

from searche1.plots import _pyplot, phases_figure
from searche1.view.rundir import RunDir

GRPO_PANELS = (("reward_mean", "reward"), ("kl", "KL to the reference"), ("searches_mean", "searches"),
               ("response_tokens_mean", "response tokens"), ("entropy", "entropy"), ("seconds", "seconds per step"))
OFSD_PANELS = (("loss", "loss (clipped)"), ("kl", "teacher-student KL"), ("clipped_fraction", "clipped fraction"))
FIGURES = ("em_by_phase", "behaviour_by_phase", "cost_by_phase", "grpo_curves", "ofsd_curves")


def _evaluated(rows: list[dict]) -> list[dict]:
    return [r for r in rows if r["average_em"] is not None]


def em_by_phase(run: RunDir):
    rows = _evaluated(run.overview()["phases"])
    return phases_figure(rows) if rows else None


def behaviour_by_phase(run: RunDir):
    rows = _evaluated(run.overview()["phases"])
    if not rows:
        return None
    fig, axes = _pyplot().subplots(1, 2, figsize=(9, 3.2))
    for ax, (name, label) in zip(axes, (("searches", "searches per answer"),
                                        ("generated_tokens", "generated tokens per answer"))):
        ax.plot(range(len(rows)), [r[name] for r in rows], marker="o", color="tab:blue")
        ax.set_xticks(range(len(rows)), [r["phase"] for r in rows], rotation=30)
        ax.set_title(label, fontsize=10)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def cost_by_phase(run: RunDir):
    rows = [r for r in run.overview()["phases"] if r["train_seconds"] is not None]
    if not rows:
        return None
    fig, (ax, bx) = _pyplot().subplots(1, 2, figsize=(9, 3.2))
    x = range(len(rows))
    train = [r["train_seconds"] or 0 for r in rows]
    ax.bar(x, train, color="tab:blue", label="training")
    ax.bar(x, [r["eval_seconds"] or 0 for r in rows], bottom=train, color="tab:gray", label="evaluation")
    ax.set_title("seconds per phase", fontsize=10)
    ax.legend(fontsize=7)
    bx.bar(x, [r["rollouts"] or 0 for r in rows], color="tab:orange")
    bx.set_title("rollouts generated for training", fontsize=10)
    for a in (ax, bx):
        a.set_xticks(list(x), [r["phase"] for r in rows], rotation=30)
        a.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig


def _curves(run: RunDir, kind: str) -> list[tuple[str, list[dict]]]:
    return [(p.name, rows) for p in run.phases if p.kind == kind and (rows := run.metrics(p))]


def grpo_curves(run: RunDir):
    """Every GRPO phase's steps on one axis (steps counted across phases), one colour per phase."""
    phases = _curves(run, "grpo")
    if not phases:
        return None
    fig, axes = _pyplot().subplots(2, 3, figsize=(12, 5.5), squeeze=False)
    offset = 0
    for n, (name, rows) in enumerate(phases):
        steps = [offset + r["step"] for r in rows]
        for ax, (metric, label) in zip(axes.flat, GRPO_PANELS):
            values = [r.get("rollout_seconds", 0) + r.get("train_seconds", 0) if metric == "seconds"
                      else r.get(metric) for r in rows]
            points = [(s, v) for s, v in zip(steps, values) if v is not None]
            ax.plot([p[0] for p in points], [p[1] for p in points], marker=".", color=f"C{n}",
                    label=name if metric == GRPO_PANELS[0][0] else None)
            ax.set_title(label, fontsize=10)
        offset = steps[-1]
    return _finish(fig, axes, "GRPO step (all phases)")


def ofsd_curves(run: RunDir):
    phases = [(name, [r for r in rows if "loss" in r]) for name, rows in _curves(run, "ofsd")]
    phases = [(name, rows) for name, rows in phases if rows]
    if not phases:
        return None
    fig, axes = _pyplot().subplots(1, 3, figsize=(12, 3.2), squeeze=False)
    for n, (name, rows) in enumerate(phases):
        for ax, (metric, label) in zip(axes.flat, OFSD_PANELS):
            ax.plot([r["step"] for r in rows], [r[metric] for r in rows], marker="o", color=f"C{n}", label=name)
            ax.set_title(label, fontsize=10)
    return _finish(fig, axes, "OFSD step")


def _finish(fig, axes, xlabel: str):
    for ax in axes.flat:
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3)
    axes.flat[0].legend(fontsize=7)  # one line per phase
    fig.tight_layout()
    return fig


def make_figure(run: RunDir, name: str):
    """The named figure, or None when the run has nothing to draw in it (e.g. no GRPO phase)."""
    if name not in FIGURES:
        raise KeyError(f"unknown figure {name!r} ({', '.join(FIGURES)})")
    return globals()[name](run)
