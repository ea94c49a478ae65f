"""Curves and a readable summary of a run, from its metrics.jsonl (PNG via matplotlib's file backend)."""

from __future__ import annotations

import json
from pathlib import Path

from searche1.fileio import atomic_write

GRPO_CURVES = ("reward_mean", "same_reward_fraction", "searches_mean", "response_tokens_mean", "kl", "entropy",
               "clip_fraction", "grad_norm")


def read_metrics(path: str | Path, prefix: str) -> list[dict]:
    """The records of `path` that carry `prefix/` values, as {name without prefix: value, "step": n}."""
    rows = []
    for line in Path(path).read_text().splitlines():
        record = json.loads(line)
        values = {k[len(prefix) + 1:]: v for k, v in record.items() if k.startswith(prefix + "/")}
        if values:
            rows.append({"step": record["step"], **values})
    return rows


def moving_average(values: list[float], window: int) -> list[float]:
    """Mean of the last `window` values at each point (fewer at the start)."""
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


def plot_curves(rows: list[dict], names: tuple[str, ...], out: str | Path, title: str, window: int = 10) -> Path:
    """One panel per metric: each step as a faint dot, and its moving average over `window` steps."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed
    import matplotlib.pyplot as plt

    names = tuple(n for n in names if any(r.get(n) is not None for r in rows))
    cols = 4
    fig, axes = plt.subplots((len(names) + cols - 1) // cols, cols, figsize=(4 * cols, 3 * ((len(names) + 3) // 4)),
                             squeeze=False)
    for ax, name in zip(axes.flat, names):
        points = [(r["step"], r[name]) for r in rows if r.get(name) is not None]
        steps, values = [p[0] for p in points], [p[1] for p in points]
        ax.plot(steps, values, ".", alpha=0.3, color="tab:blue")
        ax.plot(steps, moving_average(values, window), color="tab:blue", label=f"mean of {window}")
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    fig.suptitle(title)
    fig.tight_layout()
    out = Path(out)
    with atomic_write(out, "wb") as f:
        fig.savefig(f, format="png", dpi=90)
    plt.close(fig)
    return out


def grpo_summary(rows: list[dict], window: int = 10) -> str:
    """Markdown: steps, time and tokens, and each curve's mean over the first and the last `window` steps."""
    def mean(part, name):
        vals = [r[name] for r in part if r.get(name) is not None]
        return sum(vals) / len(vals) if vals else float("nan")

    first, last = rows[:window], rows[-window:]
    seconds = sum(r.get("rollout_seconds", 0) + r.get("train_seconds", 0) for r in rows)
    span = lambda part: f"steps {part[0]['step']}-{part[-1]['step']}"  # noqa: E731
    lines = [f"# GRPO run: {len(rows)} steps, {seconds / 60:.1f} min of rollout + update", "",
             f"| metric | {span(first)} | {span(last)} |", "|---|---|---|"]
    lines += [f"| {n} | {mean(first, n):.4g} | {mean(last, n):.4g} |" for n in GRPO_CURVES + (
        "rollout_seconds", "train_seconds")]
    return "\n".join(lines) + "\n"


def write_grpo_report(run: str | Path) -> tuple[Path, Path]:
    """RUN/curves.png and RUN/summary.md from RUN/metrics.jsonl."""
    run = Path(run)
    rows = read_metrics(run / "metrics.jsonl", "grpo")
    if not rows:
        raise ValueError(f"{run / 'metrics.jsonl'} holds no grpo/ records")
    png = plot_curves(rows, GRPO_CURVES, run / "curves.png", f"GRPO: {run.name}")
    summary = run / "summary.md"
    with atomic_write(summary) as f:
        f.write(grpo_summary(rows))
    return png, summary
