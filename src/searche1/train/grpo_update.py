"""GRPO's optimizer step over a mini-batch of trajectories: micro-batches weighted to the mini-batch's
gradient, processes summed once per update, a non-finite loss or gradient skipped; the accelerator the processes
train through; and the rescoring of rollout log-probs that another backend produced. The loss it minimises is
losses/grpo.py.
"""

from __future__ import annotations

import math
import os

import torch

from searche1.config import ConfigError, GRPOConfig
from searche1.losses.grpo import grpo_loss


def make_accelerator(device: str, micro_batches: int, resume: bool):
    """The accelerator every process of a GRPO run trains through, accumulating `micro_batches` per update; raises
    when the launch does not match the environment, or shards the weights (ZeRO-3, FSDP), or resumes under
    DeepSpeed."""
    from accelerate import Accelerator
    from accelerate.utils import DistributedType

    from searche1.runtime import process_count, process_rank

    # bf16 autocast on GPU unless `accelerate launch` set mixed_precision (its config file, or --mixed_precision)
    precision = None if "ACCELERATE_MIXED_PRECISION" in os.environ else (
        "bf16" if device.startswith("cuda") else "no")
    accelerator = Accelerator(cpu=device == "cpu", mixed_precision=precision,
                              gradient_accumulation_steps=micro_batches)  # DeepSpeed's "auto" reads it from here
    # and set again: accelerate keeps one process-wide gradient state, which a previous run may have set
    accelerator.gradient_accumulation_steps = micro_batches
    world = process_count()
    if (accelerator.num_processes, accelerator.process_index) != (world, process_rank()):
        raise RuntimeError(f"accelerate sees process {accelerator.process_index} of {accelerator.num_processes}, the "
                           f"environment says RANK={os.environ.get('RANK')} of WORLD_SIZE={world}: launch with "
                           "torchrun or accelerate launch")
    if accelerator.distributed_type == DistributedType.DEEPSPEED and resume:
        raise ConfigError("--resume under DeepSpeed is not supported yet: ZeRO partitions the optimizer state, and "
                          "checkpoints hold the main process's view only; restart from a checkpoint's weights "
                          "(grpo.model=RUN/checkpoints/step-N) in a new run")
    _check_whole_weights(accelerator)
    return accelerator


def _check_whole_weights(accelerator) -> None:
    """The HF rollout backend generates with this process's copy of the policy, so every process must hold the
    whole weights: DDP and ZeRO-1/2 do, FSDP and ZeRO-3 shard them (each process's forwards would then be
    collectives that processes generating different lengths cannot match)."""
    from accelerate.utils import DistributedType

    kind = accelerator.distributed_type
    stage = (accelerator.state.deepspeed_plugin.zero_stage if kind == DistributedType.DEEPSPEED else 0)
    if kind == DistributedType.FSDP or stage == 3:
        raise ConfigError(f"{'FSDP' if kind == DistributedType.FSDP else 'DeepSpeed ZeRO-3'} shards the policy's "
                          "weights, and GRPO's HF rollouts need them whole on every process: launch with "
                          "configs/accelerate/ddp_8gpu.yaml or zero2_8gpu.yaml (LoRA for the largest models); "
                          "sharded training with vLLM rollouts is docs/distributed.md's next step")


def rescore_old_logprobs(model, trajectories: list, pad_id: int, micro_batch: int, temperature: float = 1.0,
                         accelerator=None) -> float:
    """Replace each trajectory's rollout log-probs by the trainer's own (the same model, teacher-forced), in
    place; returns the mean absolute difference over sampled tokens, a check that the rollout backend generated
    with the trainer's weights. (Call under no_grad.)"""
    from contextlib import nullcontext

    from searche1.losses.logprobs import response_logprobs
    from searche1.rollout.trajectory import collate

    gap, tokens = 0.0, 0
    for start in range(0, len(trajectories), micro_batch):
        part = trajectories[start:start + micro_batch]
        batch = collate(part, pad_id)
        with accelerator.autocast() if accelerator is not None else nullcontext():
            logp = response_logprobs(model, batch, temperature)[0].float().cpu()
        mask = batch["response_mask"]
        gap += float((logp - batch["logprobs"]).abs()[mask].sum())
        tokens += int(mask.sum())
        for i, t in enumerate(part):
            t.logprobs = [lp if m else 0.0 for lp, m in zip(logp[i, :len(t.response_ids)].tolist(), t.response_mask)]
    return gap / max(tokens, 1)


def policy_update(model, optimizer, trajectories: list, advantages: torch.Tensor, cfg: GRPOConfig,
                  pad_id: int, micro_batch: int, ref_model=None, temperature: float = 1.0,
                  grad_clip: float = 1.0, accelerator=None) -> dict[str, float]:
    """One optimizer step over `trajectories` (a mini-batch), accumulated over micro-batches.

    Each micro-batch's loss is weighted by its share of the mini-batch (tokens for token-mean, trajectories with
    sampled tokens for seq-mean-token-mean), so the accumulated gradient equals that of the whole mini-batch at
    once, whatever the micro-batch size (tests/test_grpo.py). (verl instead averages the micro-batches' own
    means, which gives the same gradient only when micro-batches hold equal token counts.) A non-finite loss or
    gradient norm skips the step (reported as skipped = 1).

    With an `accelerator` (several processes), each process passes its own part of the mini-batch: shares are
    taken of the global mini-batch, the processes' gradients are summed once per update (the last micro-batch
    syncs), and the step is skipped on every process when any of them saw a non-finite loss."""
    from contextlib import nullcontext

    from searche1.losses.logprobs import reference_logprobs, response_logprobs
    from searche1.rollout.trajectory import collate

    def share(traj_slice) -> float:
        if cfg.aggregation == "token-mean":
            return float(sum(sum(t.response_mask) for t in traj_slice))
        return float(sum(any(t.response_mask) for t in traj_slice))

    plain = accelerator.unwrap_model(model) if accelerator is not None else model
    if cfg.kl_coef and ref_model is None and not hasattr(plain, "disable_adapter"):
        raise ValueError("kl_coef > 0 needs a reference policy: pass ref_model (full fine-tuning) or train a LoRA "
                         "adapter (the reference is the adapter disabled), or set kl_coef to 0")
    device = next(model.parameters()).device
    starts = range(0, len(trajectories), micro_batch)
    # Backward scale: accelerate divides each micro-batch's loss by its accumulation steps, and DDP averages the
    # processes' gradients; the weights below already make the sum over both the mini-batch's gradient.
    scale = 1.0
    if accelerator is not None:
        if accelerator.gradient_accumulation_steps != len(starts):
            raise ValueError(f"the accelerator accumulates {accelerator.gradient_accumulation_steps} micro-batches "
                             f"but this update has {len(starts)}")
        scale = float(accelerator.num_processes * len(starts))
    total = max(_global_sum(torch.tensor([share(trajectories)]), accelerator).item(), 1.0)
    optimizer.zero_grad(set_to_none=True)
    sums: dict[str, float] = {}
    finite = True
    # Micro-batches of similar lengths: each is padded to its longest prompt and response, and in a probe half the
    # slots of a random 16-trajectory micro-batch were padding. The weights below make the order irrelevant.
    order = sorted(range(len(trajectories)), key=lambda i: len(trajectories[i].prompt_ids) +
                   len(trajectories[i].response_ids))
    trajectories, advantages = [trajectories[i] for i in order], advantages[torch.tensor(order, dtype=torch.long)]
    for start in starts:  # every process runs the same number of micro-batches (collectives stay matched)
        part = trajectories[start:start + micro_batch]
        weight = share(part) / total
        with accelerator.accumulate(model) if accelerator is not None else nullcontext():
            batch = collate(part, pad_id)
            with accelerator.autocast() if accelerator is not None else nullcontext():  # the policy's precision
                ref = reference_logprobs(plain, ref_model, batch, temperature) if cfg.kl_coef else None
            logp, entropy = response_logprobs(model, batch, temperature, with_entropy=True,
                                              entropy_grad=bool(cfg.entropy_coef))
            loss, stats = grpo_loss(logp, batch["logprobs"].to(device),
                                    advantages[start:start + micro_batch].to(device),
                                    batch["response_mask"].to(device), cfg, ref_logprobs=ref, entropy=entropy)
            finite = finite and bool(torch.isfinite(loss))
            if accelerator is None:
                (loss * weight).backward()
            else:
                accelerator.backward(loss * (weight * scale))
        for k, v in stats.items():
            sums[k] = sums.get(k, 0.0) + v * weight
    keys = sorted(sums)
    reduced = _global_sum(torch.tensor([sums[k] for k in keys] + [float(not finite)], dtype=torch.float64),
                          accelerator).tolist()
    sums, finite = dict(zip(keys, reduced[:-1])), reduced[-1] == 0
    params = [p for p in model.parameters() if p.requires_grad]
    grad_norm = (accelerator.clip_grad_norm_(params, grad_clip) if accelerator is not None
                 else torch.nn.utils.clip_grad_norm_(params, grad_clip))
    grad_norm = float(grad_norm) if grad_norm is not None else float("nan")
    # DeepSpeed already stepped inside backward: nothing can be skipped there, so no skip is reported
    deepspeed = accelerator is not None and accelerator.distributed_type.value == "DEEPSPEED"
    if deepspeed or (finite and math.isfinite(grad_norm)):
        optimizer.step()
        skipped = 0
    else:
        optimizer.zero_grad(set_to_none=True)
        skipped = 1
    return {**sums, "grad_norm": grad_norm if finite else float("nan"), "skipped": skipped}


def _global_sum(values: torch.Tensor, accelerator) -> torch.Tensor:
    """Sum over processes (a no-op in one process)."""
    if accelerator is None or accelerator.num_processes == 1:
        return values
    return accelerator.reduce(values.to(accelerator.device), reduction="sum").cpu()
