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
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from searche1.fileio import write_json

if TYPE_CHECKING:  # the CLI reads ARMS for its help before it sets the thread count: nothing here imports numpy
    from searche1.config import Config


class Arm(NamedTuple):
    overrides: list[str]
    meaning: str
    wall_clock_of: str = ""
    """An arm whose run of the same seed sets this one's GRPO steps per round: as many as fit in its training
    seconds at its own measured seconds per GRPO step (`time_matched_steps`)."""


ARMS: dict[str, Arm] = {
    "search-e1": Arm([], "GRPO -> OFSD with the preset's settings (default: kl student, shortest reference, tau 10)"),
    "grpo-only": Arm(["evolve.mode=grpo-only"], "no OFSD; its pool rollouts become GRPO steps (same rollout budget)"),
    "grpo-only-time": Arm(["evolve.mode=grpo-fixed"], "no OFSD; GRPO steps that fit in search-e1's training seconds "
                          "of the same seed (same wall-clock)", wall_clock_of="search-e1"),
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
"""The arms: name -> (overrides on top of the preset, a line for `searche1 ablate --help`, and for a same-wall-clock
arm the arm whose measured training seconds set its GRPO steps). Rounds 1..R are read from every arm's per-phase
rows."""


def arms_help() -> str:
    """One line per arm, name and meaning: `searche1 ablate --help` lists them."""
    width = max(map(len, ARMS))
    return "arms:\n" + "\n".join(f"  {name:<{width}}  {arm.meaning}" for name, arm in ARMS.items())


def arm_config(base: Config, arm: str, seed: int, extra: list[str] = ()) -> Config:
    from searche1.config import ConfigError, apply_overrides

    if arm not in ARMS:
        raise ConfigError(f"unknown arm {arm!r}; choose from {', '.join(ARMS)}")
    cfg = copy.deepcopy(base)
    apply_overrides(cfg, ARMS[arm].overrides + list(extra) + [f"seed={seed}"])
    return cfg


def time_matched_steps(cfg: Config, paired_rows: list[dict]) -> int:
    """GRPO steps per round that fit in a paired run's training seconds (every phase's, OFSD's pool and distillation
    included) at that run's own seconds per GRPO step. `paired_rows`: its phase records (run_evolve's), measured
    where and when that run trained: in one ablation on one machine, unless its phases came from `--reuse`."""
    from searche1.config import ConfigError

    grpo = [r for r in paired_rows if r["kind"] == "grpo"]
    steps = sum(r["rollouts"] for r in grpo) / (cfg.grpo.prompts_per_step * cfg.rollout.n_samples)
    seconds = sum(r["train_seconds"] for r in grpo)
    if not steps or seconds <= 0:
        raise ConfigError("the paired run has no GRPO phase with measured seconds to match the wall-clock of")
    total = sum(r["train_seconds"] for r in paired_rows if r["kind"] != "base")
    return max(1, round(total / (seconds / steps) / cfg.evolve.rounds))


def run_ablation(base: Config, out: str | Path, arms: list[str], seeds: int, device: str = "cpu",
                 reuse: list[str | Path] = (), log=print) -> dict:
    """Every arm x seed (finished ones are reused), then the report. Phases that another arm has done already in `out`
    (in this command or an earlier one) or in the ablation directories `reuse`, with the same phase key, are shared,
    not redone."""
    from searche1.config import ConfigError
    from searche1.train.ablate_report import lost_breakdown, paired_against, seed_paired, summarize_arms
    from searche1.train.ablate_tables import write_ablation_report
    from searche1.train.evolve import phase_dirs, run_evolve

    out = Path(out)
    for arm in arms:
        paired = ARMS[arm].wall_clock_of if arm in ARMS else ""
        if paired and (paired not in arms or arms.index(paired) > arms.index(arm)):
            raise ConfigError(f"arm {arm} takes its GRPO steps from arm {paired}'s run: list {paired} before it "
                              f"(--arms {paired},{arm})")
    runs: dict[str, list[list[dict]]] = {}
    seed_overrides: dict[str, list[list[str]]] = {}  # what an arm's run of each seed added (a measured step count)
    finals: dict[str, list[Path]] = {}  # each run's last evaluation, for the paired comparison
    for k in range(seeds):
        for arm in arms:
            cfg, extra = arm_config(base, arm, base.seed + k), []
            if ARMS[arm].wall_clock_of:  # that arm ran earlier in this seed's loop (checked above)
                extra = [f"evolve.grpo_steps={time_matched_steps(cfg, runs[ARMS[arm].wall_clock_of][k])}"]
                cfg = arm_config(base, arm, base.seed + k, extra)
                log(f"{arm}: {cfg.evolve.grpo_steps} GRPO steps per round fit in the training seconds of "
                    f"{ARMS[arm].wall_clock_of}'s seed {cfg.seed}")
            log(f"== {arm}, seed {cfg.seed} ==")
            run = out / arm / f"seed-{cfg.seed}"
            donors = [out / a / f"seed-{cfg.seed}" for a in ARMS if a != arm]  # also arms of earlier commands
            donors += [Path(r) / a / f"seed-{cfg.seed}" for r in reuse for a in ARMS]
            shared = adopt_shared_phases(cfg, run, donors)
            if shared:
                log(f"sharing {', '.join(shared)} with a run that did the same work (train/evolve.py phase_keys)")
            seed_overrides.setdefault(arm, []).append(extra)
            runs.setdefault(arm, []).append(run_evolve(cfg, run, resume=True, device=device, log=log))
            finals.setdefault(arm, []).append(phase_dirs(cfg, run)[-1] / "eval.trajectories.jsonl")
    report = summarize_arms(runs, finals)
    for arm, extras in seed_overrides.items():
        if any(extras):
            report[arm]["seed_overrides"] = extras
    for arm, paired in paired_against(finals, arms[0]).items():
        report[arm]["paired"] = {**paired, **seed_paired(report[arm]["final_em"], report[arms[0]]["final_em"])}
    if "grpo-only" in finals:  # what OFSD costs, question by question, and the reverse
        for arm in finals:
            vs = "grpo-only" if arm != "grpo-only" else arms[0]
            if vs != arm:
                report[arm]["lost"] = {"vs": vs, **lost_breakdown(finals[arm], finals[vs])}
    write_ablation_report(out, report, base, {a: ARMS[a].overrides for a in report})
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
