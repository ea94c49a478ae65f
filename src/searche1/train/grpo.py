"""`searche1 train grpo`: vanilla GRPO (the paper's baseline and Search-R1's recipe), one plain loop.

`setup` builds the pieces in order: questions and retriever, policy and reference, optimizer, rollout generator.
`train_grpo` then runs `grpo_step` (prompts -> G rollouts each -> rewards -> group advantages -> one optimizer
update per mini-batch -> one metrics record) and `save` every `save_every` steps. The losses are pure functions
in losses/grpo.py, the optimizer step is train/grpo_update.py.

Exact resume: the data order and the rollout sampling of step k are functions of (seed, k) alone, and the
checkpoint holds weights and optimizer state, so a run resumed from step k repeats what the uninterrupted run did.
A GRPO phase of `searche1 train` is a part of one longer stream (`StepStream`): round 2 reads the questions and
sampling seeds that follow round 1's, and its learning rate follows one schedule over all rounds or its own.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import random
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import torch

from searche1.config import Config, ConfigError, save_config, to_dict
from searche1.data.sources import training_questions
from searche1.losses.grpo import group_advantages
from searche1.retrieval.client import check_failures
from searche1.rollout.trajectory import FinishReason
from searche1.runtime import process_count, process_rank
from searche1.train.grpo_update import make_accelerator, policy_update, rescore_old_logprobs
from searche1.train.kit import SkipGuard, adamw, lora_wrap, lr_factor, progress_bar, refuse_existing_run, sample_seed


@dataclass(frozen=True)
class StepStream:
    """Where a GRPO run sits in a longer one (the rounds of `searche1 train`). Its step k (0-based) reads the data
    order and sampling seeds of step `offset + k`, and its learning rate is the schedule's value at step
    `schedule_offset + k` of a schedule `schedule_steps` long (None: this run's own steps)."""

    offset: int = 0
    schedule_offset: int = 0
    schedule_steps: int | None = None


def step_prompts(n_questions: int, step: int, per_step: int, seed: int) -> list[int]:
    """Question indices of step `step` (0-based): epochs of seeded permutations, read in order."""
    out, permutations = [], {}
    for position in range(step * per_step, (step + 1) * per_step):
        epoch, offset = divmod(position, n_questions)
        if epoch not in permutations:  # once per epoch the step touches (at most two), not once per prompt
            permutations[epoch] = random.Random(seed * 1_000_003 + epoch).sample(range(n_questions), n_questions)
        out.append(permutations[epoch][offset])
    return out


def process_positions(per_step: int, mini_batch: int, rank: int, world: int) -> list[int]:
    """Positions (in the step's prompt list) this process rolls out and trains on: its 1/world share of each
    mini-batch, so every optimizer update sees the whole mini-batch across processes."""
    if per_step % mini_batch or mini_batch % world:
        raise ConfigError(f"grpo.mini_batch_prompts={mini_batch} must divide grpo.prompts_per_step={per_step} and "
                          f"be a multiple of the number of processes ({world})")
    local = mini_batch // world
    return [u * mini_batch + rank * local + i for u in range(per_step // mini_batch) for i in range(local)]


@dataclass
class GRPORun:
    """What `setup` builds, in the order it builds it; `grpo_step` and `save` read it, the loop advances `step`."""

    cfg: Config
    out: Path
    accelerator: object
    positions: list[int]  # this process's positions in each step's prompt list
    per_update: int  # this process's trajectories per optimizer update
    questions: list
    client: object
    model: object  # as the accelerator prepared it (forwards and backwards go through it)
    policy: object  # the plain model (rollouts, weight sync, checkpoints)
    tokenizer: object
    reference: object  # None with LoRA (the reference is the adapter disabled)
    optimizer: torch.optim.Optimizer
    generator: object  # rollout backend, synced to the policy after every step
    start_from: Path | None
    step: int  # steps done

    @property
    def main(self) -> bool:
        return self.accelerator.is_main_process


def setup(cfg: Config, out: Path, resume: bool, device: str, log) -> GRPORun:
    """Check the run directory and the launch, then build questions, policy, optimizer and generator in order."""
    from searche1.rollout.backends.select import PolicyGenerator
    from searche1.train.checkpoint import (
        drop_metrics_after,
        latest_checkpoint,
        load_trainer_state,
        remove_partial_checkpoints,
    )

    g, r = cfg.grpo, cfg.rollout
    if r.n_samples < 2:
        raise ConfigError("GRPO needs rollout.n_samples >= 2 (advantages compare siblings); set rollout.n_samples=5")
    start_from = latest_checkpoint(out, verify=True, log=log) if resume else None
    if resume and process_rank() == 0:
        remove_partial_checkpoints(out, log)
    if resume and start_from is None:
        raise FileNotFoundError(f"--resume: no checkpoint under {out / 'checkpoints'}")
    if not resume and process_rank() == 0:
        refuse_existing_run(out, "metrics.jsonl")
    world = process_count()
    positions = process_positions(g.prompts_per_step, g.mini_batch_prompts, process_rank(), world)
    per_update = len(positions) // (g.prompts_per_step // g.mini_batch_prompts) * r.n_samples
    n_micro = math.ceil(per_update / g.micro_batch)  # micro-batches per update on each process
    accelerator = make_accelerator(device, n_micro, resume)
    accelerator.wait_for_everyone()  # every process has checked `out` before the main one writes into it
    questions, client = training_questions(cfg)
    model, tokenizer, reference = _load_policy(cfg, start_from, str(accelerator.device))
    if g.gradient_checkpointing:  # (it applies in train mode only: rollouts in eval mode keep the KV cache)
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    optimizer, _ = adamw(model, g.lr, g.weight_decay)
    step = load_trainer_state(start_from, optimizer)["step"] if start_from is not None else 0
    model, optimizer = accelerator.prepare(model, optimizer)
    policy = accelerator.unwrap_model(model)
    generator = PolicyGenerator(r, tokenizer, g.model, cfg.seed)
    if start_from is not None:
        generator.sync(policy)  # a resumed policy is not the start model the engine was built from
    if accelerator.is_main_process:
        if start_from is not None:  # a killed run may have logged steps after its last checkpoint: they run again
            drop_metrics_after(out / "metrics.jsonl", step)
        save_config(cfg, out / "config.yaml")
    return GRPORun(cfg, out, accelerator, positions, per_update, questions, client, model, policy, tokenizer,
                   reference, optimizer, generator, start_from, step)


def _load_policy(cfg: Config, resume_from: Path | None, device: str):
    """(policy, tokenizer, reference). Full fine-tuning keeps a frozen copy of the start as the reference; LoRA
    uses the policy with its adapter disabled (reference None)."""
    from searche1.models import load_model

    g = cfg.grpo
    if g.lora_rank:
        from peft import PeftModel

        base, tokenizer = load_model(g.model, device, "float32")
        if resume_from is not None:
            model = PeftModel.from_pretrained(base, resume_from, is_trainable=True)
        else:
            model = lora_wrap(base, g.lora_rank, g.lora_alpha)
        return model, tokenizer, None
    model, tokenizer = load_model(str(resume_from) if resume_from is not None else g.model, device, "float32")
    if device.startswith("cuda"):  # it only runs forwards under bf16 autocast: half the memory of a second copy,
        reference = load_model(g.model, device, "bfloat16")[0]  # read as bf16 (no fp32 copy on the GPU first)
    else:
        reference = load_model(g.model, device, "float32")[0] if resume_from is not None else copy.deepcopy(model)
    for p in reference.parameters():
        p.requires_grad_(False)
    return model, tokenizer, reference.eval()


def train_grpo(cfg: Config, out: str | Path, resume: bool = False, device: str = "cpu", log=print,
               stream: StepStream = StepStream()) -> dict:
    """Run (or resume) GRPO into `out`: metrics.jsonl, config.yaml, checkpoints/step-N, and at the end curves.png
    and summary.md; returns the last step's metrics record. Under torchrun / accelerate launch each process rolls
    out and trains on its share of every mini-batch; the main process logs and writes checkpoints. `stream` places
    the run inside a longer one (a round of `searche1 train`); steps and checkpoints are numbered from 1 either
    way."""
    from searche1.metrics import MetricsWriter

    g, r, out = cfg.grpo, cfg.rollout, Path(out)
    run = setup(cfg, out, resume, device, log)
    log = log if run.main else (lambda *_: None)
    record: dict = {}
    guard = SkipGuard("GRPO", "lower grpo.lr, check the model's dtype, or resume from the last checkpoint "
                      f"under {out / 'checkpoints'}")
    log(f"GRPO: {g.model} -> {out}, {len(run.questions)} questions, {g.prompts_per_step} prompts x {r.n_samples} "
        f"per step over {process_count()} process(es), steps {run.step + 1}..{g.steps}"
        + (f" (data stream steps {stream.offset + run.step + 1}..{stream.offset + g.steps})" if stream.offset else "")
        + (f" (resumed from {run.start_from})" if run.start_from else ""))
    with (MetricsWriter(out / "metrics.jsonl", append=run.start_from is not None, report_to=cfg.report_to,
                        config=to_dict(cfg), first_step=run.step + 1) if run.main else nullcontext()) as metrics, \
            progress_bar(disable=not run.main) as bar:
        task = bar.add_task("grpo", total=g.steps, completed=run.step, info="")
        while run.step < g.steps:
            record = grpo_step(run, stream)
            run.step += 1
            if run.main:
                metrics.log(record, step=run.step, prefix="grpo")
            guard.step(run.step, record["skipped"] == 1)
            bar.update(task, completed=run.step,
                       info=f"reward {record['reward_mean']:.3f} kl {record.get('kl', 0):.4f}")
            if run.step % g.save_every == 0 or run.step == g.steps:
                save(run, record)
    if run.main:
        from searche1.plots import write_grpo_report

        png, summary = write_grpo_report(out)
        log(f"wrote {png} and {summary}")
    return record


def grpo_step(run: GRPORun, stream: StepStream) -> dict:
    """Step `run.step` (0-based): this process's prompts, G rollouts each, group advantages, one optimizer update
    per mini-batch, weight sync; returns the step's metrics record (over every process)."""
    from accelerate.utils import gather_object

    from searche1.rollout.backends.base import SamplingParams
    from searche1.rollout.engine import rollout

    cfg, model, policy, tokenizer = run.cfg, run.model, run.policy, run.tokenizer
    g, r, step = cfg.grpo, cfg.rollout, stream.offset + run.step
    t0 = time.perf_counter()
    chosen = step_prompts(len(run.questions), step, g.prompts_per_step, cfg.seed)
    batch = [run.questions[chosen[p]] for p in run.positions]
    seeds = [sample_seed(cfg.seed, step, p, j) for p in run.positions for j in range(r.n_samples)]
    model.eval()
    with torch.no_grad():
        trajectories = rollout(batch, run.generator.backend(policy), tokenizer, run.client, r,
                               SamplingParams(r.temperature, r.top_p, r.top_k), r.n_samples, sample_seeds=seeds,
                               on_retrieval_failure=cfg.retrieval.on_failure)
        # vLLM's log-probs come from another kernel stack (and after top-p truncation): the ratio's old
        # log-probs are the trainer's own, as verl recomputes them; the gap is logged as a check
        logprob_gap = (rescore_old_logprobs(policy, trajectories, tokenizer.pad_token_id, g.micro_batch,
                                            r.temperature, run.accelerator) if r.backend == "vllm" else None)
    t_rollout = time.perf_counter() - t0
    rewards = torch.tensor([t.reward for t in trajectories], dtype=torch.float32)
    # groups by position in the step: a question drawn twice (an epoch boundary) makes two groups
    groups = [run.positions[i // r.n_samples] for i in range(len(trajectories))]
    # samples whose retrieval failed (retrieval.on_failure=skip) take no part in the loss
    valid = [t.finish_reason is not FinishReason.ERROR for t in trajectories]
    advantages = group_advantages(rewards, groups, g.scale_by_std, valid=valid)
    trained = [t if ok else dataclasses.replace(t, response_mask=[0] * len(t.response_mask))
               for t, ok in zip(trajectories, valid)]
    model.train()
    updates = g.prompts_per_step // g.mini_batch_prompts
    schedule_steps = stream.schedule_steps or g.steps
    update_stats = []
    for u in range(updates):
        for group in run.optimizer.param_groups:
            group["lr"] = g.lr * lr_factor((stream.schedule_offset + run.step) * updates + u,
                                           schedule_steps * updates, g.warmup_ratio, g.schedule)
        part = slice(u * run.per_update, (u + 1) * run.per_update)  # trajectories come grouped, in prompt order
        update_stats.append(policy_update(model, run.optimizer, trained[part], advantages[part], g,
                                          tokenizer.pad_token_id, g.micro_batch, run.reference, r.temperature,
                                          g.grad_clip, accelerator=run.accelerator))
    sync_seconds = run.generator.sync(policy)
    mine = [_summary(t, group) for t, group in zip(trajectories, groups)]
    summaries = gather_object(mine) if process_count() > 1 else mine
    record = _step_record(summaries, update_stats, run.optimizer, t_rollout, time.perf_counter() - t0)
    check_failures(record["failed_samples"], len(summaries), cfg.retrieval.on_failure, cfg.retrieval.max_failed_share,
                   f"GRPO step {run.step + 1} (resume from the last checkpoint with --resume)")
    if r.backend == "vllm":
        record.update(sync_seconds=sync_seconds, rollout_logprob_gap=logprob_gap)
    return record


def save(run: GRPORun, record: dict) -> None:
    """Checkpoint step `run.step` (the main process writes: every process holds the whole weights, sharded ones
    are refused at start); the others wait for it."""
    from searche1.train.checkpoint import save_checkpoint

    if run.main:
        save_checkpoint(run.out, run.step, run.policy, run.tokenizer, run.optimizer,
                        {"config": to_dict(run.cfg), "metrics": record, "processes": process_count()})
    run.accelerator.wait_for_everyone()


def _summary(t, group: int) -> SimpleNamespace:
    """What the step's metrics need of a trajectory (small enough to gather from every process)."""
    return SimpleNamespace(reward=t.reward, em=t.em, n_searches=t.n_searches, n_response=len(t.response_ids),
                           n_generated=t.n_generated, group_id=group, failed=t.finish_reason is FinishReason.ERROR)


def _step_record(trajectories, update_stats: list[dict], optimizer, t_rollout: float, t_step: float) -> dict:
    """One metrics record: rollout statistics, the updates' loss parts (mean), timing."""
    n = len(trajectories)
    groups: dict = {}
    for t in trajectories:
        groups.setdefault(t.group_id, [])
        if not t.failed:
            groups[t.group_id].append(t.reward)
    record = {
        "reward_mean": sum(t.reward for t in trajectories) / n, "em_mean": sum(t.em for t in trajectories) / n,
        "searches_mean": sum(t.n_searches for t in trajectories) / n,
        "response_tokens_mean": sum(t.n_response for t in trajectories) / n,
        # questions whose valid siblings all got the same reward, or that have fewer than 2: zero advantage
        "same_reward_fraction": sum(len(v) < 2 or len(set(v)) == 1 for v in groups.values()) / len(groups),
        "lr": optimizer.param_groups[0]["lr"], "rollout_seconds": t_rollout, "train_seconds": t_step - t_rollout,
        "generated_tokens_per_second": sum(t.n_generated for t in trajectories) / max(t_rollout, 1e-9),
        # samples whose retrieval failed (retrieval.on_failure=skip): reward 0, outside the loss
        "failed_samples": sum(t.failed for t in trajectories),
    }
    for key in update_stats[0]:
        record[key] = sum(s[key] for s in update_stats) / len(update_stats)
    return record
