"""Every figure a run writes (PNG via matplotlib's file backend), and the GRPO run's readable summary."""

from __future__ import annotations

import json
from pathlib import Path

from searche1.fileio import atomic_write

GRPO_CURVES = ("reward_mean", "same_reward_fraction", "searches_mean", "response_tokens_mean", "kl", "entropy",
               "clip_fraction", "grad_norm")


def read_metrics(path: str | Path, prefix: str) -> list[dict]:
    """The records of `path` that carry `prefix/` values, as {name without prefix: value, "step": n}. A last line
    without its newline is a record still being written (or cut by a kill), and is left out."""
    from searche1.fileio import InputError

    rows = []
    lines = Path(path).read_text().split("\n")
    for lineno, line in enumerate(lines[:-1], start=1):  # lines[-1]: after the last newline ("" when complete)
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise InputError(path, f"not a JSON record ({e.msg})", lineno) from None
        values = {k[len(prefix) + 1:]: v for k, v in record.items() if k.startswith(prefix + "/")}
        if values:
            rows.append({"step": record["step"], **values})
    return rows


def read_steps(path: str | Path, prefix: str) -> list[dict]:
    """read_metrics with one record per step, in step order: the last one logged. A resumed run logs the steps
    after its checkpoint again, and those records replace the killed run's."""
    by_step = {r["step"]: r for r in read_metrics(path, prefix)}
    return [by_step[step] for step in sorted(by_step)]


def moving_average(values: list[float], window: int) -> list[float]:
    """Mean of the last `window` values at each point (fewer at the start)."""
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed
    import matplotlib.pyplot as plt

    return plt


def _save_png(fig, out: str | Path) -> Path:
    """Write `fig` to `out` atomically and free it."""
    out = Path(out)
    with atomic_write(out, "wb") as f:
        f.write(figure_bytes(fig, "png"))
    return out


def figure_bytes(fig, fmt: str = "png") -> bytes:
    """`fig` as PNG or SVG bytes (the viewer serves SVG; reports embed PNG); frees it."""
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format=fmt, dpi=90)
    _pyplot().close(fig)
    return buf.getvalue()


def plot_curves(rows: list[dict], names: tuple[str, ...], out: str | Path, title: str, window: int = 10) -> Path:
    """One panel per metric: each step as a faint dot, and its moving average over `window` steps."""
    plt = _pyplot()
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
    return _save_png(fig, out)


def phases_figure(rows: list[dict]):
    """Greedy EM by phase of a `searche1 train` run: each benchmark faint, the average bold. A phase without its
    evaluation yet (None) leaves a gap."""
    fig, ax = _pyplot().subplots(figsize=(8, 4))
    x = range(len(rows))
    nan = float("nan")
    for name in rows[0]["em"]:
        ax.plot(x, [nan if r["em"].get(name) is None else r["em"][name] for r in rows], alpha=0.4, marker=".",
                label=name)
    ax.plot(x, [nan if r["average_em"] is None else r["average_em"] for r in rows], color="black", linewidth=2,
            marker="o", label="average")
    ax.set_xticks(list(x), [r["phase"] for r in rows], rotation=30)
    ax.set_ylabel("greedy EM")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return fig


def plot_phases(rows: list[dict], out: str | Path) -> Path:
    return _save_png(phases_figure(rows), out)


def plot_arms(report: dict, out: str | Path) -> Path:
    """Final average EM per ablation arm: the mean over seeds as a bar with its std, each seed as a dot."""
    arms = list(report)
    fig, ax = _pyplot().subplots(figsize=(max(5, 0.8 * len(arms)), 3.5))
    ax.bar(range(len(arms)), [report[a]["final_em_mean"] for a in arms],
           yerr=[report[a]["final_em_std"] for a in arms], capsize=3, color="tab:blue", alpha=0.7)
    for i, a in enumerate(arms):
        ax.plot([i] * len(report[a]["final_em"]), report[a]["final_em"], "k.", markersize=4)
    ax.set_xticks(range(len(arms)), arms, rotation=40, ha="right", fontsize=8)
    ax.set_ylabel("final greedy average EM")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return _save_png(fig, out)


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
