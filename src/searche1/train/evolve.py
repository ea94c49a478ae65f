"""`searche1 train`: self-evolution, rounds of GRPO -> OFSD, each phase followed by an evaluation.

RUN/
  phases/00-base/eval.json                      the starting policy, evaluated
  phases/01-grpo-r1/   (a GRPO run: checkpoints/, metrics.jsonl, curves.png) + eval.json
  phases/02-ofsd-r1/   (an OFSD phase: pool.jsonl, pairs.jsonl, final/) + eval.json
  ...
  summary.json, summary.md (the per-phase table), phases.png
A phase with its eval.json is done; `--resume` skips it, resumes an interrupted GRPO phase from its checkpoint,
and re-runs an interrupted OFSD phase (it is seeded, so it redoes the same work). Each phase starts from the
previous phase's model.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import shutil
import time
from pathlib import Path

from searche1.config import Config, ConfigError, save_config, to_dict
from searche1.fileio import atomic_write, write_json
from searche1.metrics import mean
from searche1.runtime import process_count, process_rank
from searche1.train.kit import refuse_existing_run


def plan_phases(cfg: Config) -> list[tuple[str, int, int]]:
    """[(kind, round, grpo steps)]: the base evaluation, then per round a GRPO and/or an OFSD phase. In grpo-only
    mode each round's GRPO phase also gets the steps that OFSD's pool rollouts would have cost (matched budget); in
    grpo-fixed mode it has grpo_steps alone."""
    e, g, o, r = cfg.evolve, cfg.grpo, cfg.ofsd, cfg.rollout
    steps = e.grpo_steps or g.steps
    if e.mode == "grpo-only":
        pool = (o.pool_questions or len_train(cfg)) * o.n_samples
        steps += math.ceil(pool / (g.prompts_per_step * r.n_samples))
    phases = [("base", 0, 0)]
    for n in range(1, e.rounds + 1):
        if e.mode != "ofsd-only":
            phases.append(("grpo", n, steps))
        if e.mode not in ("grpo-only", "grpo-fixed"):
            phases.append(("ofsd", n, 0))
    return phases


def grpo_streams(cfg: Config) -> list:
    """One StepStream per planned phase (None for the phases that are not GRPO): round n's GRPO phase continues the
    data stream after the GRPO steps of the rounds before it, and its learning rate follows one schedule over every
    round (evolve.lr_schedule=continuous) or its own (per_round)."""
    from searche1.train.grpo import StepStream

    phases = plan_phases(cfg)
    total = sum(steps for kind, _, steps in phases if kind == "grpo")
    continuous = cfg.evolve.lr_schedule == "continuous"
    streams, done = [], 0
    for kind, _, steps in phases:
        if kind != "grpo":
            streams.append(None)
            continue
        streams.append(StepStream(offset=done, schedule_offset=done if continuous else 0,
                                  schedule_steps=total if continuous else steps))
        done += steps
    return streams


# their effect on a phase is its kind, steps and stream (hashed with it)
_NOT_READ = ("evolve.mode", "evolve.rounds", "evolve.grpo_steps", "evolve.lr_schedule")
_NOT_READ_BY_KIND = {"base": _NOT_READ + ("grpo", "ofsd"), "grpo": _NOT_READ + ("ofsd",), "ofsd": _NOT_READ}
"""Config fields a phase never reads: two runs whose configs differ only there share that phase's result."""


def phase_keys(cfg: Config) -> list[str]:
    """One key per planned phase: a hash of the phase (kind, round, steps), the config fields it reads and the key
    of the phase before it (its start model). Equal keys mean the same work, so `searche1 ablate` lets arms share
    a phase (e.g. the base evaluation, and the first GRPO round of arms that differ only in ofsd.*)."""
    keys, before = [], cfg.grpo.model
    # the schedule's place matters only when the lr varies (a constant lr without warm-up: a 3-round run can still
    # share the first rounds of a 2-round one)
    flat = cfg.grpo.warmup_ratio == 0 and cfg.grpo.schedule == "constant"
    for (kind, round_, steps), stream in zip(plan_phases(cfg), grpo_streams(cfg)):
        read = to_dict(cfg)
        for dotted in _NOT_READ_BY_KIND[kind]:
            section, _, name = dotted.partition(".")
            (read[section].pop(name) if name else read.pop(section))
        where = ([stream.offset] + ([] if flat else [stream.schedule_offset, stream.schedule_steps])
                 if stream else None)
        blob = json.dumps([before, kind, round_, steps, where, read], sort_keys=True, default=str)
        before = hashlib.sha256(blob.encode()).hexdigest()[:16]
        keys.append(before)
    return keys


def phase_dirs(cfg: Config, out: Path) -> list[Path]:
    """RUN/phases/NN-name for each planned phase."""
    return [out / "phases" / (f"{i:02d}-base" if kind == "base" else f"{i:02d}-{kind}-r{round_}")
            for i, (kind, round_, _) in enumerate(plan_phases(cfg))]


def len_train(cfg: Config) -> int:
    from searche1.data.sources import training_questions

    return len(training_questions(cfg)[0])


def evaluate_model(cfg: Config, model_path: str, out: Path, device: str, sets: tuple) -> dict:
    """Greedy EM of `model_path` on the evaluation sets `sets` = (benchmarks, retrieval client) -> out/eval.json
    (+ trajectories)."""
    from searche1.eval import evaluate, failed_samples, write_eval_report
    from searche1.retrieval.client import check_failures
    from searche1.rollout.backends.select import generation_backend

    benchmarks, client = sets
    backend, tokenizer = generation_backend(cfg.rollout, model_path, device, "float32", cfg.seed)
    report, trajectories = evaluate(benchmarks, backend, tokenizer, client, cfg.rollout,
                                    batch_size=cfg.evolve.eval_batch, seed=cfg.seed,
                                    on_retrieval_failure=cfg.retrieval.on_failure)
    report.update(model=str(model_path))
    r = cfg.retrieval
    check_failures(*failed_samples(report), r.on_failure, r.max_failed_share, f"the evaluation of {model_path}")
    write_eval_report(out / "eval.json", report, trajectories)
    return report


def _run_phase(cfg: Config, kind: str, round_: int, steps: int, start_model: str, path: Path, device: str,
               log, stream=None) -> tuple[str, dict]:
    """Train one phase into `path` (a GRPO phase at its place `stream` in the rounds' data stream); (its output
    model, its cost figures)."""
    if kind == "base":
        return start_model, {}
    phase_cfg = copy.deepcopy(cfg)
    if kind == "grpo":
        from searche1.train.checkpoint import latest_checkpoint
        from searche1.train.grpo import train_grpo

        phase_cfg.grpo.model, phase_cfg.grpo.steps = start_model, steps
        phase_cfg.grpo.save_every = min(phase_cfg.grpo.save_every, steps)
        last = latest_checkpoint(path, verify=True, log=log)  # a damaged last checkpoint: the one before it
        if last is None or last.name != f"step-{steps}":  # a phase that trained to the end (then died in its
            # evaluation) is not started again; one killed before its first checkpoint starts afresh
            if last is None and (path / "metrics.jsonl").exists() and process_rank() == 0:
                (path / "metrics.jsonl").unlink()
            train_grpo(phase_cfg, path, resume=last is not None, device=device, log=log, stream=stream)
        from searche1.plots import read_steps

        steps_logged = read_steps(path / "metrics.jsonl", "grpo")  # (a resumed phase re-logs some steps)
        cost = {"train_tokens": round(sum(r["generated_tokens_per_second"] * r["rollout_seconds"]
                                          for r in steps_logged)),
                "rollouts": steps * cfg.grpo.prompts_per_step * cfg.rollout.n_samples,
                # the steps' own seconds, whichever process ran them (a resumed phase's wall time misses them)
                "train_seconds": sum(r["rollout_seconds"] + r["train_seconds"] for r in steps_logged)}
        return str(latest_checkpoint(path)), cost
    from searche1.train.ofsd import train_ofsd

    if path.exists() and not (path / "final").exists():
        shutil.rmtree(path)  # an interrupted OFSD phase: seeded, so it is simply redone
    phase_cfg.seed = cfg.seed * 1000 + round_  # a new pool each round
    trained_before = (path / "final").exists()
    summary = train_ofsd(phase_cfg, path, model_path=start_model, device=device, log=log) \
        if not trained_before else json.loads((path / "summary.json").read_text())
    from searche1.rollout.trajectory import load_trajectories

    pool = load_trajectories(path / "pool.jsonl")
    cost = {"train_tokens": sum(t.n_generated for t in pool), "rollouts": len(pool),
            "pairs": summary["pairs"]["pairs"]}
    cost["train_seconds"] = summary["seconds"]  # its own measured seconds, also when resumed after training
    return str(path / "final"), cost


def run_evolve(cfg: Config, out: str | Path, resume: bool = False, device: str = "cpu", log=print) -> list[dict]:
    """All phases of cfg.evolve into `out`; returns the per-phase rows (also in out/summary.json)."""
    out = Path(out)
    # Under torchrun / accelerate launch every process trains the GRPO phases together; the main process alone
    # runs OFSD phases and evaluations while the others wait for its phase record (on the filesystem: no
    # collective is left pending for an hour, and a failed main process ends the launch).
    main = process_rank() == 0
    if main and not resume:  # (the others would see the main process's first phase)
        refuse_existing_run(out, "phases")
    log = log if main else (lambda *_: None)  # as train_grpo silences its other processes
    if process_count() > 1:
        log("evolve: GRPO phases on every process; OFSD phases and evaluations on the main process")
    if cfg.rollout.backend == "vllm" and process_count() > 1:
        from accelerate import PartialState

        from searche1.rollout.backends.select import vllm_engine

        PartialState()  # the launcher's process group first: vLLM's external launcher joins it, not its own
        vllm_engine(cfg.grpo.model, cfg.rollout, cfg.seed)  # every process at once: engines start collectively
    if main:
        save_config(cfg, out / "config.yaml")
    model = cfg.grpo.model
    rows: list[dict] = []
    phases = plan_phases(cfg)
    sets = None
    dirs = phase_dirs(cfg, out)
    for i, ((kind, round_, steps), path, key, stream) in enumerate(zip(phases, dirs, phase_keys(cfg),
                                                                      grpo_streams(cfg))):
        name = path.name[3:]
        if (path / "eval.json").exists() and (path / "phase.json").exists():
            record = json.loads((path / "phase.json").read_text())
            if record.get("key") != key:
                raise ConfigError(f"{path} was made with other settings, or by an older searche1 (its phase key "
                                  f"differs): resume {out} with the config it was made with ({out / 'config.yaml'}), "
                                  f"or choose another --out (or delete {out} to start over)")
            log(f"[{i + 1}/{len(phases)}] {name}: done earlier (average EM {record['average_em']:.3f})")
        elif not main:
            if kind == "grpo":
                _run_phase(cfg, kind, round_, steps, model, path, device, log, stream)
            record = _wait_for_record(path / "phase.json")
        else:
            log(f"[{i + 1}/{len(phases)}] {name}: from {model}")
            t0 = time.perf_counter()
            path.mkdir(parents=True, exist_ok=True)
            model_out, cost = _run_phase(cfg, kind, round_, steps, model, path, device, log, stream)
            t_train = time.perf_counter() - t0
            if sets is None:  # built once, for the first phase that needs an evaluation
                from searche1.data.sources import eval_benchmarks

                sets = eval_benchmarks(cfg)
            report = evaluate_model(cfg, model_out, path, device, sets)
            record = {"phase": name, "kind": kind, "round": round_, "model": model_out, "key": key,
                      "em": {b: v["em"] for b, v in report["benchmarks"].items()}, "average_em": report["average_em"],
                      "searches": mean(v["mean_searches"] for v in report["benchmarks"].values()),
                      "generated_tokens": mean(v["mean_generated_tokens"]
                                               for v in report["benchmarks"].values()),
                      "train_seconds": t_train, "eval_seconds": time.perf_counter() - t0 - t_train, **cost}
            if i:  # how far the phase moved the policy, even where EM did not move
                record["answers_changed"] = answers_changed(dirs[i - 1], path)
            write_json(path / "phase.json", record)
            log(f"[{i + 1}/{len(phases)}] {name}: average EM {record['average_em']:.3f}")
        model = record["model"]
        rows.append(record)
    if main:
        write_summary(out, rows, cfg)
    return rows


def _wait_for_record(path: Path, poll_seconds: float = 5.0) -> dict:
    """A non-main process: wait until the main process has written a phase's record."""
    while not path.exists():
        time.sleep(poll_seconds)
    return json.loads(path.read_text())


def answers_changed(before: Path, after: Path) -> float:
    """The fraction of evaluation questions whose greedy response differs between two phases' evaluations."""
    from searche1.rollout.trajectory import trajectories_by_question

    a, b = (trajectories_by_question(phase / "eval.trajectories.jsonl") for phase in (before, after))
    both = a.keys() & b.keys()
    return sum(a[q].response_text != b[q].response_text for q in both) / len(both) if both else 0.0


def phase_table(rows: list[dict]) -> str:
    """Markdown: EM per benchmark and the average per phase, with searches, tokens per answer, how many answers the
    phase changed, and its cost (train seconds, rollouts sampled and the tokens they generated)."""
    names = list(rows[0]["em"])
    head = ("| phase | " + " | ".join(names) + " | average | searches | tokens/answer | answers changed | train s "
            "| rollouts | tokens generated |\n" + "|---" * (len(names) + 8) + "|\n")
    body = "".join(f"| {r['phase']} | " + " | ".join(f"{r['em'][n]:.3f}" for n in names)
                   + f" | **{r['average_em']:.3f}** | {r['searches']:.2f} | {r['generated_tokens']:.0f} | "
                   + (f"{r['answers_changed']:.0%} | " if "answers_changed" in r else "- | ")
                   + f"{r['train_seconds']:.0f} | {r.get('rollouts', 0)} | {r.get('train_tokens', 0)} |\n"
                   for r in rows)
    return head + body


def what_changed(rows: list[dict]) -> str:
    """One line: the first phase (the base) against the last, in average EM, searches and tokens per answer."""
    a, b = rows[0], rows[-1]
    return (f"{a['phase']} -> {b['phase']}: average EM {a['average_em']:.3f} -> {b['average_em']:.3f} "
            f"({b['average_em'] - a['average_em']:+.3f}), searches {a['searches']:.2f} -> {b['searches']:.2f}, "
            f"tokens per answer {a['generated_tokens']:.0f} -> {b['generated_tokens']:.0f}")


def write_summary(out: Path, rows: list[dict], cfg: Config) -> None:
    """summary.json, summary.md and phases.png (average and per-benchmark EM by phase)."""
    write_json(out / "summary.json", {"phases": rows, "config": to_dict(cfg)})
    with atomic_write(out / "summary.md") as f:
        f.write(f"# searche1 train ({cfg.evolve.mode}, {cfg.evolve.rounds} rounds)\n\n" + phase_table(rows)
                + f"\n{what_changed(rows)}\n")
    from searche1.plots import plot_phases

    plot_phases(rows, out / "phases.png")
