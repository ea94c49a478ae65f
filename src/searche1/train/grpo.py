"""GRPO losses, as pure tensor functions (vanilla GRPO of the paper = Search-R1's GRPO, verl semantics).

Shapes: B trajectories, T response tokens. `mask` [B, T] is the response mask (1 = sampled by the model,
0 = inserted observation or padding): every term below ignores masked tokens. Each function is tested against a
brute-force per-token loop in tests/test_grpo.py, gradients included.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch

Aggregation = Literal["token-mean", "seq-mean-token-mean"]
KLKind = Literal["k1", "k2", "k3", "low_var_kl"]


def group_advantages(rewards: torch.Tensor, group_ids: list, scale_by_std: bool = True,
                     eps: float = 1e-6, valid: list[bool] | None = None) -> torch.Tensor:
    """Outcome advantage per trajectory: (r - mean of its group) / (std of its group + eps).

    As verl computes it, the std is the unbiased one (torch.std). A group whose siblings all have the same reward
    gets 0 for every member: it contributes no gradient. Rows not `valid` (samples whose retrieval failed) get 0
    and are left out of their group's mean and std: their reward 0 says nothing about the policy. A group with
    fewer than 2 valid members gets 0 too: with nothing to compare against there is no relative signal (verl
    would hand a lone sample its raw reward as advantage)."""
    rewards = rewards.float()
    advantages = torch.zeros_like(rewards)
    members: dict = {}
    for i, g in enumerate(group_ids):
        if valid is None or valid[i]:
            members.setdefault(g, []).append(i)
    for index in members.values():
        if len(index) < 2:
            continue
        idx = torch.tensor(index)
        r = rewards[idx]
        advantages[idx] = (r - r.mean()) / (r.std() + eps) if scale_by_std else r - r.mean()
    return advantages


def aggregate(values: torch.Tensor, mask: torch.Tensor, mode: Aggregation = "token-mean") -> torch.Tensor:
    """Reduce per-token values [B, T] to a scalar over unmasked tokens.

    token-mean: every token of the batch weighs the same (long answers weigh more, as in DAPO/verl's default).
    seq-mean-token-mean: mean over each trajectory's tokens, then over trajectories (the original GRPO)."""
    mask = mask.to(values.dtype)
    if mode == "token-mean":
        return (values * mask).sum() / mask.sum().clamp(min=1)
    if mode == "seq-mean-token-mean":
        per_seq = (values * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1)
        has_tokens = (mask.sum(dim=1) > 0).to(values.dtype)
        return (per_seq * has_tokens).sum() / has_tokens.sum().clamp(min=1)
    raise ValueError(f"unknown aggregation {mode!r}: token-mean | seq-mean-token-mean")


def kl_penalty(logprobs: torch.Tensor, ref_logprobs: torch.Tensor, kind: KLKind = "low_var_kl") -> torch.Tensor:
    """Per-token estimate of KL(policy || reference) from the sampled tokens' log-probs (Schulman's k1/k2/k3).

    k3 = low_var_kl: exp(ref - logp) - (ref - logp) - 1, unbiased and always >= 0; clamped to [-10, 10] as verl
    does, so one token whose reference log-prob collapsed cannot dominate the batch."""
    delta = logprobs - ref_logprobs
    if kind == "k1":
        return delta
    if kind == "k2":
        return 0.5 * delta.square()
    if kind in ("k3", "low_var_kl"):
        return (torch.exp(-delta) + delta - 1).clamp(min=-10, max=10)
    raise ValueError(f"unknown KL estimator {kind!r}: k1 | k2 | k3 (low_var_kl)")


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Entropy of softmax(logits) over the last dimension: [B, T, V] -> [B, T]."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    return -(logp.exp() * logp).sum(dim=-1)


def clipped_policy_loss(logprobs: torch.Tensor, old_logprobs: torch.Tensor, advantages: torch.Tensor,
                        clip_low: float = 0.2, clip_high: float | None = None
                        ) -> tuple[torch.Tensor, torch.Tensor]:
    """PPO's clipped surrogate per token: max(-A r, -A clip(r, 1 - clip_low, 1 + clip_high)) with
    r = exp(logp - old_logp); advantages [B] broadcast over tokens. Returns (loss [B, T], clipped [B, T] bool:
    tokens where the clipped branch was taken). clip_high None = symmetric (clip_low)."""
    clip_high = clip_low if clip_high is None else clip_high
    ratio = torch.exp(logprobs - old_logprobs)
    adv = advantages[:, None].to(ratio.dtype)
    unclipped = -adv * ratio
    clipped = -adv * ratio.clamp(1 - clip_low, 1 + clip_high)
    return torch.maximum(unclipped, clipped), clipped > unclipped


@dataclass
class GRPOLossConfig:
    clip_low: float = 0.2
    clip_high: float | None = None
    """Upper clip (DAPO's clip-higher); None = clip_low."""
    kl_coef: float = 0.001
    kl_kind: KLKind = "low_var_kl"
    entropy_coef: float = 0.0
    aggregation: Aggregation = "token-mean"


def grpo_loss(logprobs: torch.Tensor, old_logprobs: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor,
              cfg: GRPOLossConfig, ref_logprobs: torch.Tensor | None = None,
              entropy: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, float]]:
    """policy loss + kl_coef * KL(policy || ref) - entropy_coef * entropy, each aggregated over unmasked tokens.

    logprobs [B, T] carries the gradient; old_logprobs (rollout-time) and ref_logprobs are constants. Returns the
    scalar loss and its parts for logging."""
    policy, clipped = clipped_policy_loss(logprobs, old_logprobs.detach(), advantages.detach(), cfg.clip_low,
                                          cfg.clip_high)
    loss = aggregate(policy, mask, cfg.aggregation)
    stats = {"policy_loss": loss.item(), "clip_fraction": aggregate(clipped.float(), mask, "token-mean").item()}
    if cfg.kl_coef and ref_logprobs is not None:
        kl = aggregate(kl_penalty(logprobs, ref_logprobs.detach(), cfg.kl_kind), mask, cfg.aggregation)
        loss = loss + cfg.kl_coef * kl
        stats["kl"] = kl.item()
    if entropy is not None:
        ent = aggregate(entropy, mask, cfg.aggregation)
        stats["entropy"] = ent.item()
        if cfg.entropy_coef:
            loss = loss - cfg.entropy_coef * ent
    return loss, stats


def reference_logprobs(model, ref_model, batch: dict, temperature: float) -> torch.Tensor | None:
    """Log-probs under the reference policy: `ref_model` (full fine-tuning: a frozen copy), or `model` with its
    LoRA adapter disabled (no second copy), or None when there is neither (no KL term)."""
    from searche1.train.scoring import response_logprobs

    with torch.no_grad():
        if ref_model is not None:
            return response_logprobs(ref_model, batch, temperature)[0]
        if hasattr(model, "disable_adapter"):
            with model.disable_adapter():
                return response_logprobs(model, batch, temperature)[0]
    return None


def rescore_old_logprobs(model, trajectories: list, pad_id: int, micro_batch: int, temperature: float = 1.0,
                         accelerator=None) -> float:
    """Replace each trajectory's rollout log-probs by the trainer's own (the same model, teacher-forced), in
    place; returns the mean absolute difference over sampled tokens, a check that the rollout backend generated
    with the trainer's weights. (Call under no_grad.)"""
    from contextlib import nullcontext

    from searche1.rollout.trajectory import collate
    from searche1.train.scoring import response_logprobs

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


def policy_update(model, optimizer, trajectories: list, advantages: torch.Tensor, cfg: GRPOLossConfig,
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

    from searche1.rollout.trajectory import collate
    from searche1.train.scoring import response_logprobs

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
