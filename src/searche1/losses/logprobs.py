"""Teacher-forced scoring of trajectories: per-token log-probs (and entropy) of the response under a model.

GRPO needs them for the policy being trained and for its reference. One forward over prompt + response in
verl's layout (prompt left-padded, response right-padded; see rollout.trajectory.collate). (OFSD scores hidden
states, not log-probs, so that it never holds a [T, V] tensor: losses/ofsd.py.)
"""

from __future__ import annotations

import torch


def response_logprobs(model, batch: dict, temperature: float = 1.0, with_entropy: bool = False,
                      entropy_grad: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
    """log p(response token t | everything before it) for every response position, [B, R] (0 where the response is
    padding), under softmax(logits / temperature) as the rollout sampled; with_entropy adds that distribution's
    entropy per position. Gradients flow when called outside no_grad."""
    device = next(model.parameters()).device
    prompt, response = batch["prompt_ids"].to(device), batch["response_ids"].to(device)
    attention = torch.cat([batch["prompt_attention_mask"], batch["response_attention_mask"]], dim=1).to(device)
    positions = (attention.cumsum(dim=1) - 1).clamp(min=0)  # left padding must not shift positions
    ids = torch.cat([prompt, response], dim=1)
    # Only the last R + 1 positions' logits are needed (the logit at i predicts token i + 1, and the response
    # starts at column P): logits_to_keep skips the LM head over the prompt.
    logits = model(input_ids=ids, attention_mask=attention, position_ids=positions,
                   logits_to_keep=response.shape[1] + 1).logits
    logits = logits[:, :-1].float() / temperature
    logp_all = torch.log_softmax(logits, dim=-1)
    logp = logp_all.gather(-1, response[..., None])[..., 0] * batch["response_attention_mask"].to(device)
    entropy = None
    if with_entropy:  # entropy_grad=False: for logging only, without keeping a [B, R, V] graph for it
        with torch.set_grad_enabled(torch.is_grad_enabled() and entropy_grad):
            entropy = -(logp_all.exp() * logp_all).sum(-1)
    return logp, entropy


def reference_logprobs(model, ref_model, batch: dict, temperature: float) -> torch.Tensor | None:
    """Log-probs under the reference policy: `ref_model` (full fine-tuning: a frozen copy), or `model` with its
    LoRA adapter disabled (no second copy), or None when there is neither (no KL term)."""
    with torch.no_grad():
        if ref_model is not None:
            return response_logprobs(ref_model, batch, temperature)[0]
        if hasattr(model, "disable_adapter"):
            with model.disable_adapter():
                return response_logprobs(model, batch, temperature)[0]
    return None
