"""GRPO step time: searche1's `train_grpo` against TRL's `GRPOTrainer`, same work, measured in one run.

    python benchmarks/grpo_vs_trl.py [--steps 4] [--warmup 1] [--prompts 8] [--threads 2] [KEY=VALUE ...]

Both sides start from the same weights (grpo.model of the toy preset: the shipped toy-base) and train on the same
toy-world questions (train split, in-process BM25 over the toy corpus), G = rollout.n_samples completions each,
up to rollout.max_turns searches and rollout.max_response_length tokens per turn, exact-match reward, lr, PPO clip,
k3 KL to a frozen reference (beta = grpo.kl_coef), token-mean loss (TRL's loss_type "dapo"), grad clip, constant
lr, float32, no gradient checkpointing. One step = --prompts questions x G rollouts + one optimizer update
(accumulated over micro-batches of --micro-batch trajectories). KEY=VALUE overrides apply to both sides.

TRL side: a `rollout_func` (TRL's multi-turn hook; called without vLLM) returns prompt_ids, completion_ids,
logprobs and `env_mask` (0 on the inserted <information> blocks, so TRL masks them out of every loss term, as
searche1's response_mask does). Its episodes are searche1's own engine (`rollout()` with the HF backend on TRL's
policy): TRL has no multi-turn search loop of its own, and using the same one makes the rollouts the same work.
They even draw the same samples: step k rolls out the questions and per-sample seeds searche1's step k uses, so
the two runs generate (near-)identical trajectories and their tokens per step are printed side by side. What
differs is what a trainer adds around the rollout: TRL's scoring, batching (it pads every micro-batch to the
longest completion of the whole step) and Trainer loop, against searche1's.

Timing: searche1's step = rollout_seconds + train_seconds from its metrics.jsonl; TRL's = on_step_begin ->
on_step_end of a Trainer callback, its rollout part the time spent in rollout_func. Model loading, logging and
checkpoints are outside both. The sides run one after the other (searche1 first unless --trl-first), so a
machine busy with something else can favour one: run both orders. The first --warmup steps of each side are
discarded; the figure is the median of the other steps, and the ratio is searche1 / TRL (goal: <= 0.5).
TRL is a dev dependency: pip install -e .[dev]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def run_searche1(cfg, out: Path) -> list[dict]:
    """GRPO through the real entry point; per step (rollout s, update s, generated tokens)."""
    from searche1.train.grpo import train_grpo

    train_grpo(cfg, out, log=lambda *_: None)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    n = cfg.grpo.prompts_per_step * cfg.rollout.n_samples
    return [{"rollout": r["grpo/rollout_seconds"], "update": r["grpo/train_seconds"],
             "tokens": round(r["grpo/generated_tokens_per_second"] * r["grpo/rollout_seconds"]),
             "reward": r["grpo/reward_mean"], "trajectories": n} for r in rows]


def run_trl(cfg, out: Path) -> list[dict]:
    """The same steps through TRL's GRPOTrainer with a multi-turn rollout_func; same per-step figures."""
    import torch
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from searche1.data.sources import training_questions
    from searche1.models import load_model
    from searche1.rollout.backends.base import SamplingParams
    from searche1.rollout.backends.hf import HFBackend
    from searche1.rollout.engine import rollout
    from searche1.train.grpo import step_prompts
    from searche1.train.kit import sample_seed

    g, r = cfg.grpo, cfg.rollout
    questions, client = training_questions(cfg)  # the retriever searche1 builds, built the same way
    by_question = {ex.question: ex for ex in questions}
    if len(by_question) != len(questions):
        raise SystemExit("the train questions are not unique: rollout_func finds examples by their text")
    # The dataset lists searche1's step-by-step question order; TRL reads it unshuffled, so step k sees the same
    # questions on both sides.
    order = [i for step in range(g.steps) for i in step_prompts(len(questions), step, g.prompts_per_step, cfg.seed)]
    dataset = Dataset.from_list([{"prompt": questions[i].question, "golden_answers": questions[i].golden_answers}
                                 for i in order])
    limits, sampling = r, SamplingParams(r.temperature, r.top_p, r.top_k)
    log = {"rollout": [], "tokens": [], "reward": []}

    def rollout_func(prompts: list[str], trainer) -> dict:
        # TRL passes each question G times in a row (its RepeatSampler); the engine samples G per question itself,
        # with searche1's seeds for (step, position, sibling).
        start, step = time.perf_counter(), trainer.state.global_step
        unique = prompts[::r.n_samples]
        if prompts != [p for p in unique for _ in range(r.n_samples)]:
            raise RuntimeError("TRL no longer passes each prompt G times in a row: update rollout_func")
        examples = [by_question[p] for p in unique]
        seeds = [sample_seed(cfg.seed, step, p, j) for p in range(len(examples)) for j in range(r.n_samples)]
        policy = trainer.accelerator.unwrap_model(trainer.model)
        policy.eval()
        with torch.no_grad():
            trajs = rollout(examples, HFBackend(policy, trainer.processing_class), trainer.processing_class, client,
                            limits, sampling, r.n_samples, sample_seeds=seeds)
        policy.train()
        log["rollout"].append(time.perf_counter() - start)
        log["tokens"].append(sum(t.n_generated for t in trajs))
        log["reward"].append(sum(t.reward for t in trajs) / len(trajs))
        # logprobs: only read by TRL's vLLM importance-sampling correction; without it TRL takes the policy's own
        # log-probs of the update's forward as the old ones (ratio 1 on the first update, as searche1's).
        return {"prompt_ids": [t.prompt_ids for t in trajs], "completion_ids": [t.response_ids for t in trajs],
                "logprobs": [t.logprobs for t in trajs], "env_mask": [t.response_mask for t in trajs],
                "em": [t.em for t in trajs]}  # extra fields reach the reward functions

    def exact_match(completions, em, **_) -> list[float]:
        return list(em)  # searche1.reward.score, computed by the engine on what the model wrote (docs/protocol.md)

    class StepTimer(TrainerCallback):
        def __init__(self):
            self.seconds, self.start = [], 0.0

        def on_step_begin(self, args, state, control, **_):
            self.start = time.perf_counter()

        def on_step_end(self, args, state, control, **_):
            self.seconds.append(time.perf_counter() - self.start)

    model, tokenizer = load_model(g.model, "cpu", "float32")
    n = g.prompts_per_step * r.n_samples
    args = GRPOConfig(
        output_dir=str(out), use_cpu=True, bf16=False, gradient_checkpointing=False, report_to="none",
        save_strategy="no", logging_steps=g.steps, disable_tqdm=True, seed=cfg.seed, max_steps=g.steps,
        per_device_train_batch_size=g.micro_batch, gradient_accumulation_steps=n // g.micro_batch,
        num_generations=r.n_samples, shuffle_dataset=False, max_completion_length=r.max_response_length,
        learning_rate=g.lr, lr_scheduler_type="constant", warmup_steps=0, weight_decay=g.weight_decay,
        max_grad_norm=g.grad_clip, beta=g.kl_coef, epsilon=g.clip_low, epsilon_high=g.clip_high,
        entropy_coef=g.entropy_coef, temperature=r.temperature,
        # searche1's aggregations under TRL's names: token-mean over the whole step's tokens = "dapo"
        loss_type={"token-mean": "dapo", "seq-mean-token-mean": "grpo"}[g.aggregation],
        scale_rewards="group" if g.scale_by_std else "none")
    timer = StepTimer()
    trainer = GRPOTrainer(model=model, reward_funcs=exact_match, args=args, train_dataset=dataset,
                          processing_class=tokenizer, rollout_func=rollout_func, callbacks=[timer])
    trainer.train()
    return [{"rollout": ro, "update": s - ro, "tokens": tok, "reward": rw, "trajectories": n}
            for s, ro, tok, rw in zip(timer.seconds, log["rollout"], log["tokens"], log["reward"])]


def median(rows: list[dict], key: str) -> float:
    return statistics.median(row[key] for row in rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("overrides", nargs="*", help="KEY=VALUE config overrides for both sides (toy preset)")
    ap.add_argument("--steps", type=int, default=4, help="timed steps per side (median reported)")
    ap.add_argument("--warmup", type=int, default=1, help="steps run first on each side and discarded")
    ap.add_argument("--prompts", type=int, default=8, help="questions per step (x G rollouts each)")
    ap.add_argument("--micro-batch", type=int, default=8, help="trajectories per forward/backward")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--trl-first", action="store_true", help="run TRL's steps before searche1's (order check)")
    ap.add_argument("--out", default=str(HERE / "results" / "grpo_vs_trl.json"))
    args = ap.parse_args()

    from searche1.runtime import configure_threads, seed_everything

    configure_threads(args.threads)  # before torch is imported
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")  # rollout_func's "experimental" warning
    try:
        import trl
    except ImportError:
        raise SystemExit("TRL is not installed; it is a dev dependency: pip install -e .[dev]") from None
    import torch

    from searche1.config import load_config

    total = args.warmup + args.steps
    cfg = load_config("toy", [f"grpo.steps={total}", f"grpo.prompts_per_step={args.prompts}",
                              f"grpo.mini_batch_prompts={args.prompts}", f"grpo.micro_batch={args.micro_batch}",
                              f"grpo.save_every={total}", *args.overrides])
    n = cfg.grpo.prompts_per_step * cfg.rollout.n_samples
    if n % cfg.grpo.micro_batch:  # TRL accumulates whole micro-batches only
        raise SystemExit(f"--micro-batch ({cfg.grpo.micro_batch}) must divide the step's {n} trajectories")
    if cfg.grpo.kl_kind not in ("k3", "low_var_kl"):
        raise SystemExit("TRL's KL term is k3 (low_var_kl) only: leave grpo.kl_kind at its default")
    if cfg.grpo.lora_rank:
        raise SystemExit("this benchmark compares full fine-tuning: leave grpo.lora_rank at 0")

    runs = {"searche1": run_searche1, "trl": run_trl}
    measured = {}
    with tempfile.TemporaryDirectory() as tmp:
        for side in sorted(runs, reverse=args.trl_first):  # one side after the other, in one process
            seed_everything(cfg.seed)
            measured[side] = runs[side](cfg, Path(tmp) / side)[args.warmup:]
    ours, theirs = measured["searche1"], measured["trl"]

    print(f"\n{args.prompts} questions x G={cfg.rollout.n_samples} per step, up to {cfg.rollout.max_turns} searches "
          f"and {cfg.rollout.max_response_length} tokens per turn, micro-batch {cfg.grpo.micro_batch}, "
          f"{torch.get_num_threads()} torch threads, trl {trl.__version__}\n")
    print("| step | searche1 s (rollout + update) | TRL s (rollout + update) | generated tokens searche1 / TRL |")
    print("|---|---|---|---|")
    for k, (a, b) in enumerate(zip(ours, theirs), start=args.warmup + 1):
        print(f"| {k} | {a['rollout'] + a['update']:.2f} ({a['rollout']:.2f} + {a['update']:.2f}) | "
              f"{b['rollout'] + b['update']:.2f} ({b['rollout']:.2f} + {b['update']:.2f}) | "
              f"{a['tokens']} / {b['tokens']} |")
    for rows in (ours, theirs):
        for row in rows:
            row["step"] = row["rollout"] + row["update"]
    med = {side: {key: median(rows, key) for key in ("step", "rollout", "update")}
           for side, rows in (("searche1", ours), ("trl", theirs))}
    ratio = {key: med["searche1"][key] / med["trl"][key] for key in ("step", "rollout", "update")}
    print(f"\nmedian of {len(ours)} steps (after {args.warmup} warm-up): searche1 {med['searche1']['step']:.2f} s "
          f"(rollout {med['searche1']['rollout']:.2f}, update {med['searche1']['update']:.2f}), TRL "
          f"{med['trl']['step']:.2f} s (rollout {med['trl']['rollout']:.2f}, update {med['trl']['update']:.2f})")
    print(f"searche1 / TRL step time: {ratio['step']:.2f}x (rollout {ratio['rollout']:.2f}x, update "
          f"{ratio['update']:.2f}x; goal <= 0.5x)")

    figures = {"machine": f"{platform.machine()} {torch.get_num_threads()} torch threads", "trl": trl.__version__,
               "prompts": args.prompts, "G": cfg.rollout.n_samples, "micro_batch": cfg.grpo.micro_batch,
               "max_turns": cfg.rollout.max_turns, "turn_tokens": cfg.rollout.max_response_length,
               "warmup": args.warmup, "trl_first": args.trl_first, "overrides": args.overrides, "median_seconds": med,
               "searche1_vs_trl": ratio, "steps": {"searche1": ours, "trl": theirs}}
    from searche1.fileio import write_json

    write_json(args.out, figures)
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
