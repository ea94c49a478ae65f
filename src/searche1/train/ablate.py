"""`searche1 ablate`: the experiments the paper lacks, as one command over seeds.

Each arm is a `searche1 train` run (train/evolve.py) with a few overrides on top of the preset; every arm runs for
every seed (cfg.seed: data order and sampling; the world stays fixed), into RUN/<arm>/seed-<k>/, resumable. The
report (RUN/report.md, RUN/report.json, RUN/ablate.png) compares the arms' final average EM (mean and spread over
seeds), their gain per round, and their cost (rollouts, training seconds).

The default arm (`search-e1`) is GRPO -> OFSD with the defaults of docs/ofsd.md; each other arm changes one thing,
except `sdpo`, which sets what the closest public method (TRL's SDPOTrainer) does.
"""

from __future__ import annotations

import copy
import json
import math
import shutil
import statistics
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from searche1.fileio import atomic_write, write_json

if TYPE_CHECKING:  # the CLI reads ARMS for its help before it sets the thread count: nothing here imports numpy
    from searche1.config import Config


class Arm(NamedTuple):
    overrides: list[str]
    meaning: str


ARMS: dict[str, Arm] = {
    "search-e1": Arm([], "GRPO -> OFSD with the preset's settings (default: kl student, shortest reference, tau 10)"),
    "grpo-only": Arm(["evolve.mode=grpo-only"], "no OFSD; its pool rollouts become GRPO steps (same rollout budget)"),
    "ofsd-only": Arm(["evolve.mode=ofsd-only"], "no GRPO: OFSD phases only"),
    "student-longest": Arm(["ofsd.student=longest"], "student: the longest sibling"),
    "student-lexical": Arm(["ofsd.student=lexical"], "student: the sibling whose searches and answer differ most"),
    "student-random": Arm(["ofsd.student=random"], "student: a random sibling"),
    "student-all": Arm(["ofsd.student=all"], "students: every other sibling, correct ones included"),
    "student-failed": Arm(["ofsd.student=failed"], "students: every failed (wrong-answer) sibling"),
    "reference-any": Arm(["ofsd.reference=any"], "reference: any correct sibling instead of the shortest"),
    "reference-longest": Arm(["ofsd.reference=longest"], "reference: the longest correct sibling"),
    "tau-1": Arm(["ofsd.tau_clip=1"], "each token's divergence clipped at 1 instead of 10"),
    "tau-none": Arm(["ofsd.tau_clip=null"], "no clip of the token divergence"),
    "kl-reverse": Arm(["ofsd.divergence=reverse"], "divergence: reverse KL (student || teacher)"),
    "kl-jsd": Arm(["ofsd.divergence=jsd"], "divergence: Jensen-Shannon"),
    "teacher-retrieved": Arm(["ofsd.with_retrieved=true"], "the teacher also sees the reference's retrieved text"),
    # a bracket around the toy preset's OFSD strength (lr 3e-4, 2 epochs)
    "ofsd-lr-1e-4": Arm(["ofsd.lr=1e-4"], "OFSD learning rate 1e-4"),
    "ofsd-lr-1e-3": Arm(["ofsd.lr=1e-3"], "OFSD learning rate 1e-3"),
    "ofsd-epochs-1": Arm(["ofsd.epochs=1"], "one OFSD pass over the pairs"),
    "ofsd-epochs-4": Arm(["ofsd.epochs=4"], "four OFSD passes over the pairs"),
    # rounds are not in a phase key: with a constant GRPO lr a longer run adopts a shorter one's rounds
    "rounds-1": Arm(["evolve.rounds=1"], "1 round of GRPO -> OFSD"),
    "rounds-2": Arm(["evolve.rounds=2"], "2 rounds of GRPO -> OFSD"),
    "rounds-3": Arm(["evolve.rounds=3"], "3 rounds of GRPO -> OFSD"),
    "rounds-4": Arm(["evolve.rounds=4"], "4 rounds of GRPO -> OFSD"),
    # TRL's SDPOTrainer in this harness (docs/ofsd.md, "SDPO in this harness")
    "sdpo": Arm(["ofsd.student=all", "ofsd.reference=first", "ofsd.divergence=reverse", "ofsd.tau_clip=null"],
                "TRL's SDPO: the first correct sibling shown to the teacher for each other one, reverse KL, no clip"),
}
"""The arms: name -> (overrides on top of the preset, a line for `searche1 ablate --help`). Rounds 1..R are read
from every arm's per-phase rows."""


def arms_help() -> str:
    """One line per arm, name and meaning: `searche1 ablate --help` lists them."""
    width = max(map(len, ARMS))
    return "arms:\n" + "\n".join(f"  {name:<{width}}  {arm.meaning}" for name, arm in ARMS.items())


def arm_config(base: Config, arm: str, seed: int) -> Config:
    from searche1.config import ConfigError, apply_overrides

    if arm not in ARMS:
        raise ConfigError(f"unknown arm {arm!r}; choose from {', '.join(ARMS)}")
    cfg = copy.deepcopy(base)
    apply_overrides(cfg, ARMS[arm].overrides + [f"seed={seed}"])
    return cfg


def run_ablation(base: Config, out: str | Path, arms: list[str], seeds: int, device: str = "cpu",
                 reuse: list[str | Path] = (), log=print) -> dict:
    """Every arm x seed (finished ones are reused), then the report. Phases that another arm of this ablation or of
    the ablation directories `reuse` has done already, with the same phase key, are shared, not redone."""
    from searche1.train.evolve import phase_dirs, run_evolve

    out = Path(out)
    runs: dict[str, list[list[dict]]] = {}
    finals: dict[str, list[Path]] = {}  # each run's last evaluation, for the paired comparison
    for k in range(seeds):
        for arm in arms:
            cfg = arm_config(base, arm, base.seed + k)
            log(f"== {arm}, seed {cfg.seed} ==")
            run = out / arm / f"seed-{cfg.seed}"
            donors = [out / a / f"seed-{cfg.seed}" for a in arms if a != arm]
            donors += [Path(r) / a / f"seed-{cfg.seed}" for r in reuse for a in ARMS]
            shared = adopt_shared_phases(cfg, run, donors)
            if shared:
                log(f"sharing {', '.join(shared)} with a run that did the same work (train/evolve.py phase_keys)")
            runs.setdefault(arm, []).append(run_evolve(cfg, run, resume=True, device=device, log=log))
            finals.setdefault(arm, []).append(phase_dirs(cfg, run)[-1] / "eval.trajectories.jsonl")
    report = summarize_arms(runs)
    for arm, paired in paired_against(finals, arms[0]).items():
        report[arm]["paired"] = paired
    write_ablation_report(out, report, base)
    return report


def adopt_shared_phases(cfg: Config, run: Path, donors: list[Path]) -> list[str]:
    """Copy into `run` the leading phases that a donor run has already done with the same phase key (their record
    and evaluation; the model stays where the donor wrote it). Returns the adopted phase names."""
    from searche1.train.evolve import phase_dirs, phase_keys

    adopted = []
    for i, (path, key) in enumerate(zip(phase_dirs(cfg, run), phase_keys(cfg))):
        if (path / "phase.json").exists():
            continue
        donor = next((d / "phases" / path.name for d in donors
                      if _done_key(d / "phases" / path.name) == key), None)
        if donor is None:
            break  # a later phase starts from this one's model: it cannot be shared either
        record = json.loads((donor / "phase.json").read_text())
        if Path(record["model"]).exists():
            record["model"] = str(Path(record["model"]).resolve())
        record["shared_from"] = record.get("shared_from") or str(donor.resolve())  # where the work was done
        path.mkdir(parents=True, exist_ok=True)
        for name in ("eval.json", "eval.trajectories.jsonl"):
            if (donor / name).exists():
                shutil.copyfile(donor / name, path / name)
        write_json(path / "phase.json", record)  # written last: a phase is done once its phase.json exists
        adopted.append(path.name)
    return adopted


def _done_key(phase: Path) -> str | None:
    try:
        return json.loads((phase / "phase.json").read_text()).get("key")
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def paired_against(finals: dict[str, list[Path]], reference: str) -> dict[str, dict]:
    """Each arm's final greedy answers against the reference arm's, question by question and seed by seed: the
    questions it gets right that the reference gets wrong (won), the reverse (lost), and a two-sided sign test's p.
    Averages hide this; at toy EM levels a few questions decide the difference."""
    out = {}
    for arm, paths in finals.items():
        if arm == reference:
            continue
        won = lost = 0
        for mine, theirs in zip(paths, finals[reference]):
            a, b = _em_by_question(mine), _em_by_question(theirs)
            won += sum(1 for q in a if q in b and a[q] > b[q])
            lost += sum(1 for q in a if q in b and a[q] < b[q])
        out[arm] = {"vs": reference, "won": won, "lost": lost, "p": sign_test(won, lost)}
    return out


def _em_by_question(path: Path) -> dict[str, float]:
    from searche1.rollout.trajectory import load_trajectories

    return {t.group_id: t.em for t in load_trajectories(path)}


def sign_test(won: int, lost: int) -> float:
    """Two-sided exact sign test: P(a split at least this uneven | each changed question is a fair coin)."""
    n, k = won + lost, min(won, lost)
    return min(1.0, 2 * sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n) if n else 1.0


def summarize_arms(runs: dict[str, list[list[dict]]]) -> dict:
    """Per arm: final average EM over seeds (mean, std, each), average EM after each round (mean over seeds), and
    cost (rollouts, training seconds; mean over seeds)."""
    out = {}
    for arm, seed_rows in runs.items():
        finals = [rows[-1]["average_em"] for rows in seed_rows]
        by_round: dict[int, list[float]] = {}
        for rows in seed_rows:
            end_of_round = {row["round"]: row["average_em"] for row in rows}  # a round's last phase wins
            for r, em in end_of_round.items():
                by_round.setdefault(r, []).append(em)
        out[arm] = {
            "final_em_mean": statistics.mean(finals),
            "final_em_std": statistics.stdev(finals) if len(finals) > 1 else 0.0,
            "final_em": finals,
            "em_by_round": {r: statistics.mean(v) for r, v in sorted(by_round.items()) if v},
            "rollouts": statistics.mean(sum(row.get("rollouts", 0) for row in rows) for rows in seed_rows),
            "train_seconds": statistics.mean(sum(row["train_seconds"] for row in rows) for rows in seed_rows),
            "seeds": len(seed_rows),
        }
    return out


def report_markdown(report: dict, base: Config) -> str:
    rounds = sorted({r for arm in report.values() for r in arm["em_by_round"]})
    head = ("| arm | final average EM (mean ± std) | per seed | "
            + " | ".join("base" if r == 0 else f"after round {r}" for r in rounds)
            + " | won / lost vs the first arm (sign-test p) | rollouts | train s |\n"
            + "|---" * (len(rounds) + 6) + "|\n")
    body = ""
    for arm, r in report.items():
        body += (f"| {arm} | {r['final_em_mean']:.3f} ± {r['final_em_std']:.3f} | "
                 + " ".join(f"{x:.3f}" for x in r["final_em"]) + " | "
                 + " | ".join(f"{r['em_by_round'].get(k, float('nan')):.3f}" for k in rounds)
                 + (f" | {r['paired']['won']} / {r['paired']['lost']} (p={r['paired']['p']:.2g})" if "paired" in r
                    else " | (reference)")
                 + f" | {r['rollouts']:.0f} | {r['train_seconds']:.0f} |\n")
    e = base.evolve
    return (f"# searche1 ablate: {e.rounds} rounds, {e.grpo_steps or base.grpo.steps} GRPO steps per round, OFSD "
            f"pool {base.ofsd.pool_questions} x {base.ofsd.n_samples}, {next(iter(report.values()))['seeds']} "
            f"seeds\n\nEach arm changes one thing from `search-e1` (train/ablate.py ARMS). Won / lost: questions that "
            f"the arm's final model answers right and the first arm's wrong (and the reverse), over all seeds.\n\n"
            + head + body)


def write_ablation_report(out: Path, report: dict, base: Config) -> None:
    from searche1.config import to_dict

    write_json(out / "report.json", {"arms": report, "overrides": {a: ARMS[a].overrides for a in report},
                                     "config": to_dict(base)})
    with atomic_write(out / "report.md") as f:
        f.write(report_markdown(report, base))
    from searche1.plots import plot_arms

    plot_arms(report, out / "ablate.png")
