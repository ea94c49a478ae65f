"""GRPO losses, as pure tensor functions (vanilla GRPO of the paper = Search-R1's GRPO, verl semantics).

Shapes: B trajectories, T response tokens. `mask` [B, T] is the response mask (1 = sampled by the model,
0 = inserted observation or padding): every term below ignores masked tokens. Each function is tested against
a brute-force per-token loop in tests/test_grpo.py, gradients included. The optimizer step that uses them
(micro-batches, processes, the NaN skip) is train/grpo_update.py.
"""

from __future__ import annotations

from typing import Literal

import torch

from searche1.config import GRPOConfig

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


def grpo_loss(logprobs: torch.Tensor, old_logprobs: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor,
              cfg: GRPOConfig, ref_logprobs: torch.Tensor | None = None,
              entropy: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, float]]:
    """policy loss + kl_coef * KL(policy || ref) - entropy_coef * entropy, each aggregated over unmasked tokens;
    `cfg` gives clip_low, clip_high, kl_coef, kl_kind, entropy_coef and aggregation.

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
