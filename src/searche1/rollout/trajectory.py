"""One sampled episode of the search agent, in verl's `prompt_ids / response_ids / response_mask` shape.

`response_ids` interleaves what the model sampled (mask 1) with the text the engine inserted (mask 0: information
blocks, invalid-action text). Sampled ids are kept as sampled, never decoded and re-encoded. Saved as JSONL with
human-readable text beside the ids; `collate` pads a batch into tensors for the losses.
"""

from __future__ import annotations

import dataclasses
import enum
import os
from dataclasses import dataclass, field
from typing import Iterable, Sequence

from searche1.fileio import InputError, read_jsonl, write_jsonl


class FinishReason(str, enum.Enum):
    ANSWER = "answer"  # the episode ended with <answer>
    NO_ANSWER = "no_answer"  # the last (search-disabled) turn did not answer
    BUDGET = "budget"  # the context / token budget ran out first
    ERROR = "error"  # the retriever or the backend failed for this sample


@dataclass
class Turn:
    """One generation turn: response_ids[start:end] were sampled; then the engine acted on them."""

    start: int
    end: int
    action: str  # search | answer | invalid | end_no_answer (protocol.Step values)
    query: str | None = None
    doc_ids: list[str] = field(default_factory=list)
    observation: tuple[int, int] | None = None  # response_ids span the engine inserted after this turn


@dataclass
class Trajectory:
    group_id: str  # GRPO group: every sample of one question shares it (QAExample.group_id)
    sample_index: int  # 0..G-1 within the group
    prompt_ids: list[int]
    response_ids: list[int]
    response_mask: list[int]  # 1 = sampled by the model, 0 = inserted by the engine
    logprobs: list[float]  # log-prob of each response token under the sampling policy; 0.0 where mask is 0
    turns: list[Turn] = field(default_factory=list)
    finish_reason: FinishReason = FinishReason.ANSWER
    answer: str | None = None
    reward: float = 0.0
    em: float = 0.0
    sub_em: float = 0.0
    f1: float = 0.0
    golden_answers: list[str] = field(default_factory=list)
    prompt_text: str = ""
    response_text: str = ""

    def __post_init__(self):
        self.finish_reason = FinishReason(self.finish_reason)
        self.validate()

    def validate(self) -> None:
        n = len(self.response_ids)
        if len(self.response_mask) != n or len(self.logprobs) != n:
            raise ValueError(f"trajectory {self.group_id}#{self.sample_index}: response_ids ({n}), response_mask "
                             f"({len(self.response_mask)}) and logprobs ({len(self.logprobs)}) differ in length")
        if any(m not in (0, 1) for m in self.response_mask):
            raise ValueError(f"trajectory {self.group_id}#{self.sample_index}: response_mask must hold 0/1 only")
        for t in self.turns:
            spans = [(t.start, t.end)] + ([tuple(t.observation)] if t.observation else [])
            if any(not 0 <= a <= b <= n for a, b in spans):
                raise ValueError(f"trajectory {self.group_id}#{self.sample_index}: turn span {spans} outside the "
                                 f"{n} response tokens")

    @property
    def n_searches(self) -> int:
        return sum(t.action == "search" for t in self.turns)

    @property
    def n_generated(self) -> int:
        """Tokens the model wrote (the 'length' used to pick the shortest correct sibling)."""
        return sum(self.response_mask)

    def masked_spans(self) -> list[tuple[int, int]]:
        """Maximal runs of mask 0: the inserted text, span by span."""
        spans, start = [], None
        for i, m in enumerate(self.response_mask + [1]):
            if m == 0 and start is None:
                start = i
            elif m == 1 and start is not None:
                spans.append((start, i))
                start = None
        return spans

    def to_json(self) -> dict:
        row = dataclasses.asdict(self)
        row["finish_reason"] = self.finish_reason.value
        row["n_searches"] = self.n_searches  # derived, for people reading the file
        return row

    @classmethod
    def from_json(cls, row: dict) -> "Trajectory":
        row = dict(row)
        row.pop("n_searches", None)
        turns = []
        for t in row.pop("turns", []):
            t = dict(t)
            if t.get("observation") is not None:
                t["observation"] = tuple(t["observation"])
            turns.append(Turn(**t))
        return cls(**row, turns=turns)


def save_trajectories(path: str | os.PathLike, trajectories: Iterable[Trajectory]) -> int:
    return write_jsonl(path, (t.to_json() for t in trajectories))


def load_trajectories(path: str | os.PathLike) -> list[Trajectory]:
    out = []
    for lineno, row in read_jsonl(path):
        try:
            out.append(Trajectory.from_json(row))
        except (TypeError, ValueError) as e:
            raise InputError(path, f"not a trajectory ({e})", lineno) from None
    return out


def trajectories_by_question(path: str | os.PathLike) -> dict[str, Trajectory]:
    """A file of one trajectory per question (a greedy evaluation's) keyed by question (group id)."""
    return {t.group_id: t for t in load_trajectories(path)}


def collate(trajectories: Sequence[Trajectory], pad_id: int) -> dict:
    """Pad a batch for the losses: prompts left-padded, responses right-padded (verl's layout).

    Returns prompt_ids / prompt_attention_mask [B, P], response_ids / response_mask / logprobs [B, R] (padding has
    mask 0), response_attention_mask [B, R] (1 on every real response token, observations included), and
    rewards [B]."""
    import torch

    if not trajectories:
        raise ValueError("collate needs at least one trajectory")
    b = len(trajectories)
    p = max(len(t.prompt_ids) for t in trajectories)
    r = max(max(len(t.response_ids) for t in trajectories), 1)
    prompt_ids = torch.full((b, p), pad_id, dtype=torch.long)
    prompt_attention = torch.zeros((b, p), dtype=torch.long)
    response_ids = torch.full((b, r), pad_id, dtype=torch.long)
    response_mask = torch.zeros((b, r), dtype=torch.bool)
    response_attention = torch.zeros((b, r), dtype=torch.long)
    logprobs = torch.zeros((b, r), dtype=torch.float32)
    for i, t in enumerate(trajectories):
        n, m = len(t.prompt_ids), len(t.response_ids)
        if n:
            prompt_ids[i, p - n:] = torch.tensor(t.prompt_ids)
            prompt_attention[i, p - n:] = 1
        if m:
            response_ids[i, :m] = torch.tensor(t.response_ids)
            response_mask[i, :m] = torch.tensor(t.response_mask, dtype=torch.bool)
            response_attention[i, :m] = 1
            logprobs[i, :m] = torch.tensor(t.logprobs)
    rewards = torch.tensor([t.reward for t in trajectories], dtype=torch.float32)
    return {"prompt_ids": prompt_ids, "prompt_attention_mask": prompt_attention, "response_ids": response_ids,
            "response_mask": response_mask, "response_attention_mask": response_attention, "logprobs": logprobs,
            "rewards": rewards}
