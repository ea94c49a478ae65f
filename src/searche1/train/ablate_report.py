"""`searche1 ablate`'s figures: each arm over its seeds, and the paired comparisons with the first arm (question by
question, and seed by seed). The files they go to: train/ablate_tables.py.

Per arm (mean and std over seeds where a spread means something): final greedy EM per benchmark, on average and
on the multi-hop sets; the best phase's EM; EM after each round; how the final policies answer, pooled over seeds
(searches and generated tokens per test question and per solved question, the share of test questions answered
without any search); cost
(rollouts, training seconds and generated tokens) and the seconds each arm needed to reach grpo-only's final EM
(`equal_em_cost`); when OFSD fails: what each OFSD phase found and changed (`ofsd_phase_figures`), and the questions
an arm lost to grpo-only by why its answer is wrong (`lost_breakdown`).
"""

from __future__ import annotations

import json
import re
import statistics
from pathlib import Path

MULTI_HOP = ("hotpotqa", "2wikimultihopqa", "musique", "bamboogle")
"""Benchmarks that need more than one search (bridge, comparison, 3-hop), as the paper's columns."""


def multi_hop(benchmark: str) -> bool:
    return benchmark.removeprefix("toy-") in MULTI_HOP


def _spread(values: list[float]) -> tuple[float, float]:
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def _mean(values) -> float:
    values = list(values)
    return statistics.mean(values) if values else float("nan")


def answer_figures(trajectories) -> dict[str, float]:
    """How a policy answers: searches and generated tokens per test question (answered or not) and per solved (EM 1)
    question, and the share of test questions answered without any search (a run that ended without an answer
    and without a search counts here too)."""
    solved = [t for t in trajectories if t.em == 1.0]
    per = lambda ts, f: _mean(f(t) for t in ts)  # noqa: E731
    return {"searches_per_answer": per(trajectories, lambda t: t.n_searches),
            "tokens_per_answer": per(trajectories, lambda t: t.n_generated),
            "searches_per_solved": per(solved, lambda t: t.n_searches),
            "tokens_per_solved": per(solved, lambda t: t.n_generated),
            "no_search_share": per(trajectories, lambda t: float(t.n_searches == 0))}


def summarize_arms(runs: dict[str, list[list[dict]]], finals: dict[str, list[Path]] | None = None) -> dict:
    """Per arm, from every seed's per-phase rows (and, with `finals`, each seed's final-phase trajectories): see
    the module docstring."""
    from searche1.rollout.trajectory import load_trajectories

    out = {}
    for arm, seed_rows in runs.items():
        finals_em = [rows[-1]["average_em"] for rows in seed_rows]
        by_round: dict[int, list[float]] = {}
        for rows in seed_rows:
            end_of_round = {row["round"]: row["average_em"] for row in rows}  # a round's last phase wins
            for r, em in end_of_round.items():
                by_round.setdefault(r, []).append(em)
        benchmarks = list(seed_rows[0][-1].get("em", {}))
        multi = [b for b in benchmarks if multi_hop(b)]
        mean, std = _spread(finals_em)
        arm_out = {
            "final_em_mean": mean, "final_em_std": std, "final_em": finals_em,
            "em_by_round": {r: statistics.mean(v) for r, v in sorted(by_round.items()) if v},
            "em_by_phase": [statistics.mean(em) for em in zip(*([r["average_em"] for r in rows]
                                                                for rows in seed_rows))],
            "best_phase_em": _spread([max(r["average_em"] for r in rows) for rows in seed_rows]),
            "em_by_benchmark": {b: _spread([rows[-1]["em"][b] for rows in seed_rows]) for b in benchmarks},
            "rollouts": statistics.mean(sum(row.get("rollouts", 0) for row in rows) for rows in seed_rows),
            "train_seconds": statistics.mean(sum(row["train_seconds"] for row in rows) for rows in seed_rows),
            "train_tokens": statistics.mean(sum(row.get("train_tokens", 0) for row in rows) for rows in seed_rows),
            "seconds_by_phase": [statistics.mean(s) for s in zip(*([r["train_seconds"] for r in rows]
                                                                   for rows in seed_rows))],
            "seeds": len(seed_rows),
        }
        if multi:
            arm_out["multi_hop_em"] = _spread([statistics.mean(rows[-1]["em"][b] for b in multi) for rows in seed_rows])
        if finals and finals.get(arm):  # pooled over seeds: a seed that solved little weighs little
            arm_out["answers"] = answer_figures([t for p in finals[arm] for t in load_trajectories(p)])
            phases = [ofsd_phase_figures(p.parents[2], rows) for p, rows in zip(finals[arm], seed_rows)]
            arm_out["ofsd_phases"] = [_mean_over_seeds(same) for same in zip(*phases)]
        out[arm] = arm_out
    return out


PAIR_SIZES = ("reference_tokens", "student_tokens", "reference_searches", "student_searches")


def _mean_over_seeds(figures: tuple[dict, ...]) -> dict[str, float]:
    """One OFSD phase's figures over seeds: pair sizes weighted by the seed's pairs (nan without any), the rest a
    plain mean (nan where a seed lacks them: its pool's folder is gone)."""
    out = {k: statistics.mean(f[k] for f in figures) for k in figures[0] if k not in PAIR_SIZES}
    known = [f for f in figures if f["pairs"] > 0]  # nan > 0 is False: a seed without its pool adds nothing
    pairs = sum(f["pairs"] for f in known)
    for k in PAIR_SIZES:
        out[k] = sum(f[k] * f["pairs"] for f in known) / pairs if pairs else float("nan")
    return out


def reaches(em: float, target: float) -> bool:
    """EM `em` meets `target` (means over seeds: float rounding is not a shortfall)."""
    return em >= target - 1e-9


def equal_em_cost(report: dict, target_arm: str) -> dict[str, float | None]:
    """Per arm: the training seconds (mean over seeds, summed phase by phase) until its mean EM first reaches the
    final mean EM of `target_arm`; None where it never does."""
    target = report[target_arm]["final_em_mean"]
    out = {}
    for arm, r in report.items():
        spent, out[arm] = 0.0, None
        for em, seconds in zip(r["em_by_phase"], r["seconds_by_phase"]):
            spent += seconds
            if reaches(em, target):
                out[arm] = spent
                break
    return out


def ofsd_phase_figures(run: Path, rows: list[dict]) -> list[dict]:
    """Per OFSD phase of one run: its pool (questions with a correct sibling, with only correct ones; the pairs and
    the reference / student size) and what it changed against the phase before it on the test questions (answers
    changed, questions it made right and wrong; before -> after: searches per answer, answers without a search,
    answers that repeat a query, answers never given). `rows` are the run's phase records, in order (run_evolve's):
    phase folders of an earlier, longer run in the same place are not read."""
    from searche1.rollout.trajectory import trajectories_by_question

    out = []
    phases = [run / "phases" / f"{i:02d}-{row['phase']}" for i, row in enumerate(rows)]
    for before, after, record in zip(phases, phases[1:], rows[1:]):
        if record["kind"] != "ofsd":
            continue
        a, b = (trajectories_by_question(p / "eval.trajectories.jsonl") for p in (before, after))
        common = [q for q in b if q in a]
        was, now = (answer_figures([side[q] for q in common]) for side in (a, b))
        out.append({
            "round": record["round"],
            **_pool_figures(Path(record.get("shared_from") or after)),
            "answers_changed": record.get("answers_changed", float("nan")),
            "made_right": sum(b[q].em > a[q].em for q in common), "made_wrong": sum(b[q].em < a[q].em for q in common),
            "more_searches": sum(b[q].n_searches > a[q].n_searches for q in common),
            "fewer_searches": sum(b[q].n_searches < a[q].n_searches for q in common),
            "searches_before": was["searches_per_answer"], "searches_after": now["searches_per_answer"],
            "no_search_before": was["no_search_share"], "no_search_after": now["no_search_share"],
            "repeated_before": _mean(_repeats_a_query(a[q]) for q in common),
            "repeated_after": _mean(_repeats_a_query(b[q]) for q in common),
            "no_answer_before": _mean(not a[q].answer for q in common),
            "no_answer_after": _mean(not b[q].answer for q in common),
        })
    return out


def _pool_figures(phase: Path) -> dict[str, float]:
    """An OFSD phase's pool (in the folder where the phase was trained; nan when that folder is gone): the share of
    its questions with a correct sibling and with only correct ones, as pair mining counts correct (reward > 0), the
    pairs and their mean sizes."""
    from searche1.rollout.trajectory import load_trajectories
    from searche1.train.pairs import answered_samples, group_by_question

    if not (phase / "pool.jsonl").exists() or not (phase / "summary.json").exists():
        return {"pool_with_correct": float("nan"), "pool_all_correct": float("nan"), "pairs": float("nan"),
                **dict.fromkeys(PAIR_SIZES, float("nan"))}
    # mining leaves out a sample whose retrieval failed, and so do these shares
    groups = group_by_question(answered_samples(load_trajectories(phase / "pool.jsonl"))).values()
    pairs = json.loads((phase / "summary.json").read_text())["pairs"]
    return {"pool_with_correct": _mean(any(t.reward > 0 for t in g) for g in groups),
            "pool_all_correct": _mean(all(t.reward > 0 for t in g) for g in groups),
            "pairs": pairs["pairs"], **{k: pairs[k] if pairs["pairs"] else float("nan") for k in PAIR_SIZES}}


def _repeats_a_query(t) -> bool:
    queries = [turn.query for turn in t.turns if turn.action == "search"]
    return len(queries) != len(set(queries))


FAILURES = ("no answer", "no search", "gold never retrieved", "gold retrieved, other answer")


def failure_kind(t) -> str:
    """Why a wrong answer is wrong: no answer at all, an answer without any search, searches that never brought
    a passage holding the gold answer, or a passage holding it retrieved and another answer given (a misread)."""
    from searche1.reward import normalize_answer

    if not t.answer:
        return FAILURES[0]
    if t.n_searches == 0:
        return FAILURES[1]
    # an observation ends at its closing tag, or where the model's next turn starts when truncation cut the tag
    blocks = re.findall(r"<information>(.*?)(?:</information>|<think>|<search>|<answer>|$)", t.response_text, re.S)
    seen = normalize_answer(" ".join(blocks))
    golds = [normalize_answer(g) for g in t.golden_answers]
    return FAILURES[3] if any(g and f" {g} " in f" {seen} " for g in golds) else FAILURES[2]


def lost_breakdown(mine: list[Path], theirs: list[Path]) -> dict:
    """The questions an arm's final model gets wrong where the other arm's (same seed) gets them right: counted by
    benchmark and by `failure_kind` of the arm's own trajectory, over all seeds."""
    by_benchmark: dict[str, int] = {}
    by_kind = dict.fromkeys(FAILURES, 0)
    for t, other in changed_questions(mine, theirs):
        if t.em < other.em:
            name = t.group_id.split("/")[0].removeprefix("toy-")
            by_benchmark[name] = by_benchmark.get(name, 0) + 1
            by_kind[failure_kind(t)] += 1
    return {"by_benchmark": by_benchmark, "by_kind": by_kind}


def changed_questions(mine: list[Path], theirs: list[Path]):
    """(my trajectory, theirs) for every question whose EM differs between two arms' final evaluations, seed by
    seed (paths in seed order)."""
    from searche1.rollout.trajectory import trajectories_by_question

    for a_path, b_path in zip(mine, theirs):
        a, b = trajectories_by_question(a_path), trajectories_by_question(b_path)
        yield from ((a[q], b[q]) for q in a if q in b and a[q].em != b[q].em)


def paired_against(finals: dict[str, list[Path]], reference: str) -> dict[str, dict]:
    """Each arm's final greedy answers against the reference arm's, question by question and seed by seed: the
    questions it gets right that the reference gets wrong (won), the reverse (lost), and a two-sided sign test's p.
    Averages hide this; at toy EM levels a few questions decide the difference."""
    out = {}
    for arm, paths in finals.items():
        if arm == reference:
            continue
        changed = [t.em > other.em for t, other in changed_questions(paths, finals[reference])]
        won, lost = sum(changed), len(changed) - sum(changed)
        out[arm] = {"vs": reference, "won": won, "lost": lost, "p": sign_test(won, lost)}
    return out


def sign_test(won: int, lost: int) -> float:
    """Two-sided exact sign test: P(a split at least this uneven | each changed question is a fair coin)."""
    from scipy.stats import binomtest

    return float(binomtest(won, won + lost, 0.5).pvalue) if won + lost else 1.0


def seed_paired(mine: list[float], theirs: list[float]) -> dict[str, float]:
    """Final EM seed by seed against the reference arm's run of the same seed: the differences' mean and std, the
    seeds better and worse, and a paired t-test's two-sided p over seeds. This is the test of training noise (each
    seed trains its own models); the sign test over questions measures only the test set's noise, given the trained
    models, and pools questions of all seeds as if they were independent."""
    from scipy.stats import ttest_1samp

    diffs = [a - b for a, b in zip(mine, theirs)]
    mean, std = _spread(diffs)
    # equal differences (up to float rounding) leave t undefined
    p = float(ttest_1samp(diffs, 0.0).pvalue) if len(diffs) > 1 and std > 1e-12 else float("nan")
    return {"seed_diff_mean": mean, "seed_diff_std": std, "seeds_better": sum(d > 0 for d in diffs),
            "seeds_worse": sum(d < 0 for d in diffs), "seed_p": p}


def pool_reports(reports: list[dict], arm: str, vs: str) -> dict:
    """ARM against VS over several ablations' report.json (e.g. one command a seed, or an arm run after the reference):
    seeds are matched by number (the report's base seed onwards), the first report naming an arm's seed gives its EM,
    and the paired t-test runs over the seeds both arms have. The questions won and lost are summed over the reports
    that compared ARM with VS directly; a report whose seeds are already counted adds nothing, one that overlaps
    them in part is refused (its totals cannot be split by seed)."""
    def seeds_of(report: dict, figures: dict) -> range:  # `searche1 ablate` runs cfg.seed, seed + 1, ...
        base = int(report["config"]["seed"])
        return range(base, base + len(figures["final_em"]))

    def by_seed(name: str) -> dict[int, float]:
        ems: dict[int, float] = {}
        for report in reports:
            figures = report["arms"].get(name)
            for seed, em in zip(seeds_of(report, figures), figures["final_em"]) if figures else ():
                ems.setdefault(seed, em)
        return ems

    mine, theirs = by_seed(arm), by_seed(vs)
    seeds = sorted(set(mine) & set(theirs))
    if not seeds:
        raise ValueError(f"no seed has both {arm!r} ({sorted(mine)}) and {vs!r} ({sorted(theirs)}) in these reports")
    won = lost = 0
    counted: set[int] = set()
    for i, report in enumerate(reports):
        figures = report["arms"].get(arm) or {}
        if figures.get("paired", {}).get("vs") != vs:
            continue
        own = set(seeds_of(report, figures))
        if own <= counted:
            continue
        if own & counted:
            raise ValueError(f"report {i + 1} compares {arm!r} with {vs!r} on seeds {sorted(own)}, some of them "
                             f"counted from an earlier report ({sorted(own & counted)})")
        counted |= own
        won, lost = won + figures["paired"]["won"], lost + figures["paired"]["lost"]
    return {"seeds": seeds, **seed_paired([mine[s] for s in seeds], [theirs[s] for s in seeds]),
            "won": won, "lost": lost, "p": sign_test(won, lost) if counted else float("nan"),
            "questions_from_seeds": sorted(counted)}
