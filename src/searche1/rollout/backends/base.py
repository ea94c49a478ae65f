"""The interface a generation backend offers the rollout engine.

The engine owns the protocol; a backend owns sequences of token ids and their model state. Rows are the engine's
sample numbers. Sampled ids are returned as sampled (never decoded and re-encoded), with the log-prob of each under
the sampling distribution (temperature applied, no top-p/top-k truncation), as verl records old log-probs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, Union

import torch

Generators = Union[torch.Generator, Mapping[int, torch.Generator], None]
"""What a backend samples with: one generator for the batch, one per row (row -> generator), or none."""


@dataclass(frozen=True)
class SamplingParams:
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0  # 0 = off
    greedy: bool = False

    def __post_init__(self):
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0 (use greedy=True for argmax), got {self.temperature}")
        if not 0 < self.top_p <= 1 or self.top_k < 0:
            raise ValueError(f"top_p must be in (0, 1] and top_k >= 0, got {self.top_p}, {self.top_k}")


@dataclass
class TurnOutput:
    ids: list[int]
    logprobs: list[float]
    finish: str  # "stop" (a stop string), "eos", or "length" (the turn's token budget)


class Backend(Protocol):
    def start(self, prompts: list[list[int]]) -> None:
        """Begin a batch: one sequence per prompt; rows are numbered 0..len(prompts)-1."""

    def can_add(self) -> bool:
        """Whether add() works now (a backend may not be able to join rows into its current batch)."""

    def add(self, prompts: list[list[int]]) -> list[int]:
        """Join new sequences to the running batch; returns their row numbers (never reused in a batch)."""

    def generate(self, rows: list[int], max_new_tokens: int, sampling: SamplingParams,
                 generator: Generators = None) -> dict[int, TurnOutput]:
        """One turn for each row: sample until a stop string, EOS or max_new_tokens; the tokens stay appended.
        `generator`: one for the whole batch, or one per row (draws then do not depend on the batch's make-up)."""

    def extend(self, ids_by_row: dict[int, list[int]]) -> None:
        """Append inserted tokens (observations) to rows, without sampling."""

    def release(self, rows: list[int]) -> None:
        """Rows whose episodes ended: drop them from the batch."""


def sample_next(logits: torch.Tensor, sampling: SamplingParams,
                generator: torch.Generator | Sequence[torch.Generator] | None) -> tuple[torch.Tensor, torch.Tensor]:
    """logits [N, V] -> (token ids [N], their log-probs [N] under softmax(logits / temperature)).

    `generator` is one for the batch or a sequence of N, one per row: each row then draws its uniform from its own
    generator, so its token does not depend on which other rows share the batch."""
    logits = logits.float()
    if sampling.greedy:
        token = logits.argmax(dim=-1)
        logp = torch.log_softmax(logits, dim=-1)
        return token, logp.gather(-1, token[:, None])[:, 0]
    scaled = logits / sampling.temperature
    logp = torch.log_softmax(scaled, dim=-1)
    filtered = scaled.clone()
    if sampling.top_k:
        kth = torch.topk(filtered, min(sampling.top_k, filtered.shape[-1]), dim=-1).values[:, -1:]
        filtered[filtered < kth] = float("-inf")
    if sampling.top_p < 1.0:
        sorted_logits, order = torch.sort(filtered, descending=True, dim=-1)
        probs = torch.softmax(sorted_logits, dim=-1)
        # drop a token when the mass before it already reaches top_p (the top token always stays)
        drop = probs.cumsum(dim=-1) - probs >= sampling.top_p
        sorted_logits[drop] = float("-inf")
        filtered = torch.full_like(filtered, float("-inf")).scatter(-1, order, sorted_logits)
    probs = torch.softmax(filtered, dim=-1)
    cdf = probs.cumsum(dim=-1)
    if not torch.isfinite(cdf[:, -1]).all():
        raise ValueError("non-finite logits: cannot sample")
    # One uniform per row, then the inverse CDF (torch.multinomial draws the same distribution about 50x slower
    # on CPU for one token from a few thousand). Per-row generators make each row's draw its own.
    if generator is None or isinstance(generator, torch.Generator):
        u = torch.rand(len(probs), generator=generator,
                       device=generator.device if generator is not None else probs.device)
    else:
        if len(generator) != len(probs):
            raise ValueError(f"{len(generator)} generators for {len(probs)} rows")
        u = torch.stack([torch.rand((), generator=g) for g in generator])
    u = u.to(cdf) * cdf[:, -1]
    # the first token of non-zero mass whose cumulative mass exceeds u (u < cdf[-1], so one exists); the mass test
    # guards against a parallel scan (GPU) nudging the CDF across zero-mass tokens
    token = ((cdf > u[:, None]) & (probs > 0)).int().argmax(dim=-1)
    return token, logp.gather(-1, token[:, None])[:, 0]
