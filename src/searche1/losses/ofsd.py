"""OFSD losses, as pure tensor functions: token-level divergence between a privileged teacher and the student.

Per scored token t (a token the student sampled; observation tokens and padding are masked out):
    forward (default): kl_t = sum_v p_T(v) (log p_T(v) - log p_S(v))          KL(teacher || student)
    reverse:           kl_t = sum_v p_S(v) (log p_S(v) - log p_T(v))          KL(student || teacher)
    jsd:               beta KL(T || M) + (1 - beta) KL(S || M), M = beta p_T + (1 - beta) p_S   (generalized JSD)
each clipped pointwise, min(kl_t, tau_clip), then averaged over unmasked tokens. The teacher is a constant
(no gradient). With top_k, the teacher's distribution is cut to its k most likely tokens and renormalised (the
student keeps its full softmax), an approximation for ablation.

`distill_loss` takes full logits [N, V] (the reference, and fine for small vocabularies). `chunked_distill_loss`
takes last hidden states and the LM-head weights instead and never holds more than `chunk` rows of logits: at
T=2048 and SmolLM2's V=49152 one [T, V] float32 tensor is 400 MB, and the naive loss keeps several. The forward
KL computes its gradient chunk by chunk during the forward pass (no logits kept for backward, none recomputed);
the other kinds recompute each chunk's logits in backward (activation checkpointing).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

Divergence = Literal["forward", "reverse", "jsd"]


def token_divergence(student_logp: torch.Tensor, teacher_logp: torch.Tensor, kind: Divergence = "forward",
                     beta: float = 0.5) -> torch.Tensor:
    """Per-row divergence [N] between two log-distributions [N, V] (see the module docstring)."""
    if kind == "forward":
        return (teacher_logp.exp() * (teacher_logp - student_logp)).sum(-1)
    if kind == "reverse":
        return (student_logp.exp() * (student_logp - teacher_logp)).sum(-1)
    if kind == "jsd":
        if not 0 < beta < 1:
            raise ValueError(f"jsd beta must be in (0, 1), got {beta}")
        mixture = torch.logsumexp(torch.stack([teacher_logp + math.log(beta), student_logp + math.log(1 - beta)]),
                                  dim=0)
        kl_t = (teacher_logp.exp() * (teacher_logp - mixture)).sum(-1)
        kl_s = (student_logp.exp() * (student_logp - mixture)).sum(-1)
        return beta * kl_t + (1 - beta) * kl_s
    raise ValueError(f"unknown divergence {kind!r}: forward | reverse | jsd")


def _up(x: torch.Tensor) -> torch.Tensor:
    """At least float32 for the softmax (bf16 logits lose the small probabilities); float64 stays float64."""
    return x if x.dtype in (torch.float32, torch.float64) else x.float()


def teacher_log_probs(teacher_logits: torch.Tensor, top_k: int | None = None) -> torch.Tensor:
    """log-softmax of the teacher's logits; with top_k, -inf outside its k best tokens (renormalised over them)."""
    logits = _up(teacher_logits)
    if top_k:
        kth = torch.topk(logits, min(top_k, logits.shape[-1]), dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    return torch.log_softmax(logits, dim=-1)


def _safe(logp: torch.Tensor) -> torch.Tensor:
    """-inf (tokens cut by top_k) -> a large negative number, so that 0 * log 0 terms are 0, not NaN."""
    return logp.clamp(min=torch.finfo(logp.dtype).min / 4)


def clipped_mean(per_token: torch.Tensor, mask: torch.Tensor, tau_clip: float | None) -> torch.Tensor:
    """mean over unmasked rows of min(per_token, tau_clip) (no clip when tau_clip is None)."""
    if tau_clip is not None:
        per_token = per_token.clamp(max=tau_clip)
    mask = mask.to(per_token.dtype)
    return (per_token * mask).sum() / mask.sum().clamp(min=1)


def distill_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, mask: torch.Tensor,
                 kind: Divergence = "forward", tau_clip: float | None = 10.0, top_k: int | None = None,
                 beta: float = 0.5) -> tuple[torch.Tensor, dict[str, float]]:
    """The OFSD loss from full logits [N, V] (any leading shape flattened by the caller); mask [N].
    Returns (loss, {"kl": mean unclipped divergence, "clipped_fraction": share of tokens at the clip})."""
    _check(kind, top_k)
    teacher = _safe(teacher_log_probs(teacher_logits.detach(), top_k))
    student = torch.log_softmax(_up(student_logits), dim=-1)
    per_token = token_divergence(student, teacher, kind, beta)
    return clipped_mean(per_token, mask, tau_clip), _stats(per_token.detach(), mask, tau_clip)


def _check(kind: str, top_k: int | None) -> None:
    if top_k and kind == "reverse":  # log p_T = -inf outside the top k, where the student still has mass
        raise ValueError("top_k cuts the teacher's support, which makes the reverse KL infinite: use forward or jsd")


def _stats(per_token: torch.Tensor, mask: torch.Tensor, tau_clip: float | None, keep_rows: bool = False) -> dict:
    m = mask.to(per_token.dtype)
    n = m.sum().clamp(min=1)
    clipped = (per_token > tau_clip).to(m.dtype) if tau_clip is not None else torch.zeros_like(m)
    stats = {"kl": float((per_token * m).sum() / n), "clipped_fraction": float((clipped * m).sum() / n)}
    if keep_rows:
        stats["per_token"] = per_token.detach().float().cpu().tolist()
    return stats


class _ChunkedForwardKL(torch.autograd.Function):
    """Clipped forward KL, mean over unmasked rows, with its gradient taken chunk by chunk in the forward pass.

    d kl_t / d student_logits_t = p_S - p_T (the teacher's entropy term is constant), zero where kl_t > tau_clip
    (the clip's flat side), so each chunk's gradient w.r.t. the hidden states (and the head, when it trains) is
    known before the next chunk's logits exist. Returns (loss, unclipped per-token KL for logging)."""

    @staticmethod
    def forward(ctx, hidden, weight, teacher_hidden, teacher_weight, mask, tau_clip, chunk, top_k):
        n = mask.sum().clamp(min=1)
        grad_hidden = torch.zeros_like(hidden) if hidden.requires_grad else None
        grad_weight = torch.zeros_like(weight) if weight.requires_grad else None
        dtype = _up(hidden[:0]).dtype
        total = torch.zeros((), dtype=dtype, device=hidden.device)
        per_token = torch.empty(hidden.shape[0], dtype=dtype, device=hidden.device)
        for start in range(0, hidden.shape[0], chunk):
            rows = slice(start, start + chunk)
            h = hidden[rows]
            teacher = _safe(teacher_log_probs(teacher_hidden[rows] @ teacher_weight.T, top_k))
            student = torch.log_softmax(_up(h @ weight.T), dim=-1)
            kl = (teacher.exp() * (teacher - student)).sum(-1)
            per_token[rows] = kl
            w = mask[rows].to(dtype) / n
            if tau_clip is not None:
                w = w * (kl <= tau_clip).to(dtype)  # past the clip the loss is flat
                kl = kl.clamp(max=tau_clip)
            total += (kl * mask[rows].to(dtype)).sum() / n
            grad_logits = (student.exp() - teacher.exp()) * w[:, None]
            if grad_hidden is not None:
                grad_hidden[rows] = (grad_logits @ weight.to(dtype)).to(hidden.dtype)
            if grad_weight is not None:
                grad_weight += (grad_logits.T @ h.to(dtype)).to(weight.dtype)
        ctx.save_for_backward(grad_hidden, grad_weight)
        ctx.mark_non_differentiable(per_token)
        return total, per_token

    @staticmethod
    def backward(ctx, grad_out, _grad_per_token):
        grad_hidden, grad_weight = ctx.saved_tensors
        return (grad_hidden * grad_out if grad_hidden is not None else None,
                grad_weight * grad_out if grad_weight is not None else None,
                None, None, None, None, None, None)


def chunked_distill_loss(hidden: torch.Tensor, weight: torch.Tensor, teacher_hidden: torch.Tensor,
                         teacher_weight: torch.Tensor, mask: torch.Tensor, kind: Divergence = "forward",
                         tau_clip: float | None = 10.0, top_k: int | None = None, beta: float = 0.5,
                         chunk: int = 256, per_token: bool = False) -> tuple[torch.Tensor, dict]:
    """The OFSD loss from last hidden states [N, H] (student, with gradient; teacher, constant) and LM-head
    weights [V, H], `chunk` rows of logits at a time. Equals distill_loss(hidden @ weight.T, teacher_hidden @
    teacher_weight.T, ...) in value and gradient (tests/test_ofsd.py). With `per_token`, the stats also hold
    "per_token": each row's unclipped divergence as a list (what the viewer colours a student's tokens by)."""
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    _check(kind, top_k)
    teacher_hidden, teacher_weight = teacher_hidden.detach(), teacher_weight.detach()
    if kind == "forward":
        loss, rows = _ChunkedForwardKL.apply(hidden, weight, teacher_hidden, teacher_weight, mask, tau_clip, chunk,
                                             top_k)
        return loss, _stats(rows, mask, tau_clip, per_token)
    n = mask.float().sum().clamp(min=1)

    def chunk_sum(h, w, th, m):
        teacher = _safe(teacher_log_probs(th @ teacher_weight.T, top_k))
        student = torch.log_softmax(_up(F.linear(h, w)), dim=-1)
        kl = token_divergence(student, teacher, kind, beta)
        return (kl.clamp(max=tau_clip) if tau_clip is not None else kl).mul(m.to(kl.dtype)).sum(), kl.detach()

    parts = [checkpoint(chunk_sum, hidden[s:s + chunk], weight, teacher_hidden[s:s + chunk], mask[s:s + chunk],
                        use_reentrant=False) for s in range(0, hidden.shape[0], chunk)]
    loss = sum(p[0] for p in parts) / n if parts else hidden.sum() * 0
    rows = torch.cat([p[1] for p in parts]) if parts else hidden.new_zeros(0)
    return loss, _stats(rows, mask, tau_clip, per_token)


# The teacher/student forward: one trajectory teacher-forced under two contexts of one LoRA model. These take
# a model (the functions above take tensors only) and hand the loss last hidden states, never [T, V] logits.


def decoder_and_head(model):
    """The transformer body (last hidden states, final norm applied) and the LM-head weight of an HF causal LM,
    through a peft wrapper if there is one (its LoRA layers live inside the body)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return base.get_decoder(), base.get_output_embeddings().weight


def scored_hidden(model, prefix_ids: list[int], trajectory) -> torch.Tensor:
    """Last hidden states [N, H] that predict the trajectory's N sampled tokens (mask 1), with `prefix_ids` as the
    context before its response: the plain prompt for the student, the privileged one for the teacher."""
    decoder, _ = decoder_and_head(model)
    device = next(model.parameters()).device
    ids = torch.tensor([prefix_ids + trajectory.response_ids], device=device)
    hidden = decoder(input_ids=ids).last_hidden_state[0]
    # the hidden state at position i predicts token i + 1
    positions = [len(prefix_ids) - 1 + j for j, m in enumerate(trajectory.response_mask) if m]
    return hidden[torch.tensor(positions, dtype=torch.long, device=device)]


def teacher_student_loss(model, teacher_prefix: list[int], student, o, grad: bool = True,
                         per_token: bool = False) -> tuple[torch.Tensor, dict]:
    """(loss, stats) of one student trajectory: its sampled tokens under the teacher (the model with its LoRA
    adapter off, reading `teacher_prefix`, under no_grad) against the student (adapter on, reading the
    trajectory's own plain prompt), by chunked_distill_loss with the settings of the `ofsd:` section `o`."""
    with torch.no_grad(), model.disable_adapter():
        teacher = scored_hidden(model, teacher_prefix, student)
    with torch.set_grad_enabled(grad):
        hidden = scored_hidden(model, student.prompt_ids, student)
        _, head = decoder_and_head(model)
        return chunked_distill_loss(hidden, head, teacher, head.detach(), torch.ones(len(hidden)),
                                    o.divergence, o.tau_clip, o.top_k or None, o.jsd_beta, o.chunk, per_token)
