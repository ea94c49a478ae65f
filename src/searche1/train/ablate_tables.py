"""`searche1 ablate`'s files: report.md (the tables of train/ablate_report.py's figures), report.json and
ablate.png."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

from searche1.fileio import atomic_write, write_json
from searche1.train.ablate_report import FAILURES, equal_em_cost, multi_hop, reaches

if TYPE_CHECKING:
    from searche1.config import Config


def _pm(pair) -> str:
    return f"{pair[0]:.3f} ± {pair[1]:.3f}"


def _paired_cells(paired: dict) -> str:
    # one seed (or identical differences) leaves the t-test undefined
    p = "no test" if math.isnan(paired["seed_p"]) else f"p={paired['seed_p']:.2g}"
    seeds = (f"{paired['seed_diff_mean']:+.3f} ± {paired['seed_diff_std']:.3f} ({paired['seeds_better']} / "
             f"{paired['seeds_worse']}, {p})")
    return f" | {seeds} | {paired['won']} / {paired['lost']} (p={paired['p']:.2g})"


def equal_em_seconds(report: dict) -> dict[str, dict[str, float | None]]:
    """Target arm -> equal_em_cost's seconds (None = never reached), against grpo-only's final EM and the first
    arm's; nothing when grpo-only did not run."""
    if "grpo-only" not in report:
        return {}
    targets = dict.fromkeys(["grpo-only", next(iter(report))])
    return {t: equal_em_cost(report, t) for t in targets}


def _reach(seconds: float | None, at_the_base: bool) -> str:
    """An equal-EM cell: a target the base already meets (an arm that ended below its start) says so."""
    return "not reached" if seconds is None else "0 (the base)" if at_the_base else f"{seconds:.0f}"


def report_markdown(report: dict, base: Config, equal_em: dict[str, dict]) -> str:
    """report.md's text; `equal_em` is equal_em_seconds(report)."""
    rounds = sorted({r for arm in report.values() for r in arm["em_by_round"]})
    lines = ["| arm | final average EM (mean ± std) | per seed | "
             + " | ".join("base" if r == 0 else f"after round {r}" for r in rounds)
             + " | vs the first arm, seed by seed: difference (better / worse seeds, paired t p) "
             "| won / lost questions (sign-test p) | rollouts | train s |",
             "|---" * (len(rounds) + 7) + "|"]
    for arm, r in report.items():
        lines.append(f"| {arm} | {_pm((r['final_em_mean'], r['final_em_std']))} | "
                     + " ".join(f"{x:.3f}" for x in r["final_em"]) + " | "
                     + " | ".join(f"{r['em_by_round'][k]:.3f}" if k in r["em_by_round"] else "-" for k in rounds)
                     + (_paired_cells(r["paired"]) if "paired" in r else " | (reference) | (reference)")
                     + f" | {r['rollouts']:.0f} | {r['train_seconds']:.0f} |")
    first = next(iter(report.values()))
    benchmarks = list(first.get("em_by_benchmark", {}))
    if benchmarks:
        lines += ["", "Final EM per benchmark (mean ± std over seeds; * multi-hop), the multi-hop average and the best "
                  "phase's average (the phase chosen on these test sets: an upper bound, not a result):", "",
                  "| arm | " + " | ".join(b + ("*" if multi_hop(b) else "") for b in benchmarks)
                  + " | multi-hop | best phase |", "|---" * (len(benchmarks) + 3) + "|"]
        for arm, r in report.items():
            lines.append(f"| {arm} | " + " | ".join(_pm(r["em_by_benchmark"][b]) for b in benchmarks)
                         + f" | {_pm(r['multi_hop_em']) if 'multi_hop_em' in r else '-'} | {_pm(r['best_phase_em'])} |")
    if all("answers" in r for r in report.values()):
        lines += ["", "How the final policies answer (every seed's answers pooled):", "",
                  "| arm | searches / question | tokens / question | searches / solved | tokens / solved | "
                  "answered without a search |", "|---|---|---|---|---|---|"]
        for arm, r in report.items():
            a = r["answers"]
            lines.append(f"| {arm} | {a['searches_per_answer']:.2f} | {a['tokens_per_answer']:.1f} | "
                         f"{a['searches_per_solved']:.2f} | {a['tokens_per_solved']:.1f} | "
                         f"{a['no_search_share']:.1%} |")
    ofsd = [(arm, f) for arm, r in report.items() for f in r.get("ofsd_phases", [])]
    if ofsd:
        lines += ["", "OFSD phases (mean over seeds; pair sizes weighted by each seed's pairs): the pool's questions "
                  "with a correct sibling (and with only correct ones), the pairs, reference / student tokens and "
                  "searches; then, on the test questions, "
                  "what the phase changed against the phase before it:", "",
                  "| arm | round | pool: a correct sibling | all correct | pairs | tokens ref / student | "
                  "searches ref / student | answers changed | made right / wrong | more / fewer searches | "
                  "searches per question | answered without a search | a query repeated | no answer |",
                  "|---" * 14 + "|"]
        for arm, f in ofsd:
            lines.append(f"| {arm} | {f['round']:.0f} | {f['pool_with_correct']:.1%} | {f['pool_all_correct']:.1%} | "
                         f"{f['pairs']:.0f} | {f['reference_tokens']:.1f} / {f['student_tokens']:.1f} | "
                         f"{f['reference_searches']:.2f} / {f['student_searches']:.2f} | {f['answers_changed']:.1%} | "
                         f"{f['made_right']:.1f} / {f['made_wrong']:.1f} | {f['more_searches']:.1f} / "
                         f"{f['fewer_searches']:.1f} | {f['searches_before']:.2f} -> {f['searches_after']:.2f} | "
                         f"{f['no_search_before']:.1%} -> {f['no_search_after']:.1%} | "
                         f"{f['repeated_before']:.1%} -> {f['repeated_after']:.1%} | "
                         f"{f['no_answer_before']:.1%} -> {f['no_answer_after']:.1%} |")
    lost = [(arm, r["lost"]) for arm, r in report.items() if "lost" in r]
    if lost:
        lines += ["", "Questions an arm's final model gets wrong where the other arm's (same seed) gets them right, "
                  "over all seeds, by why the arm's own answer is wrong and by benchmark:", "",
                  "| arm | lost to | in all | " + " | ".join(FAILURES) + " | by benchmark |", "|---" * 8 + "|"]
        for arm, d in lost:
            lines.append(f"| {arm} | {d['vs']} | {sum(d['by_kind'].values())} | "
                         + " | ".join(str(d["by_kind"][k]) for k in FAILURES) + " | "
                         + ", ".join(f"{b} {n}" for b, n in sorted(d["by_benchmark"].items(), key=lambda x: -x[1]))
                         + " |")
    targets = list(equal_em)
    if equal_em:
        lines += ["", "Cost (mean over seeds): training seconds and generated tokens, and the seconds until the mean "
                  "EM first reaches " + " and ".join(f"{t}'s final {report[t]['final_em_mean']:.3f}" for t in targets)
                  + " (equal-EM cost):", "",
                  "| arm | train s | generated tokens | rollouts | "
                  + " | ".join(f"seconds to {t}'s final EM" for t in targets) + " |", "|---" * (4 + len(targets)) + "|"]
        for arm, r in report.items():
            reach = [_reach(equal_em[t][arm], reaches(r["em_by_phase"][0], report[t]["final_em_mean"]))
                     for t in targets]
            lines.append(f"| {arm} | {r['train_seconds']:.0f} | {r['train_tokens']:.0f} | {r['rollouts']:.0f} | "
                         + " | ".join(reach) + " |")
    e = base.evolve
    return (f"# searche1 ablate: {e.rounds} rounds, {e.grpo_steps or base.grpo.steps} GRPO steps per round, OFSD "
            f"pool {base.ofsd.pool_questions} x {base.ofsd.n_samples}, {first['seeds']} "
            f"seeds\n\nEach arm changes one thing from `search-e1` (train/ablate.py ARMS). Seed by seed: the arm's "
            f"final EM minus the first arm's of the same seed, and a paired t-test over seeds (training noise). Won / "
            f"lost: questions that the arm's final model answers right and the first arm's wrong (and the reverse), "
            f"over all seeds; its sign test measures the test set's noise given the trained models, not the "
            f"seeds'.\n\n"
            + "\n".join(lines) + "\n")


def _nan_to_none(obj):
    """NaN (a figure with nothing to measure) as JSON null: bare NaN is not JSON to most readers."""
    if isinstance(obj, float) and math.isnan(obj):
        return None
    if isinstance(obj, dict):
        return {k: _nan_to_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_nan_to_none(v) for v in obj]
    return obj


def write_ablation_report(out: Path, report: dict, base: Config, overrides: dict[str, list[str]]) -> None:
    from searche1.config import to_dict
    from searche1.plots import plot_arms

    equal_em = equal_em_seconds(report)
    write_json(out / "report.json", _nan_to_none({"arms": report, "equal_em_seconds": equal_em,
                                                  "overrides": overrides, "config": to_dict(base)}))
    with atomic_write(out / "report.md") as f:
        f.write(report_markdown(report, base, equal_em))
    plot_arms(report, out / "ablate.png")
