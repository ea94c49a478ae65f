"""What every training recipe needs and none of them owns: seeds, the LR schedule, the optimizer, LoRA, the
NaN guard, the progress bar, and the refusal to overwrite a finished run.

Recipes (train/grpo.py, train/ofsd.py, toy/warmstart.py, train/evolve.py) import from here and never from one
another, so each one reads top to bottom and shares these pieces by name.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from searche1.runtime import TrainingDiverged

MAX_SKIPPED_IN_A_ROW = 3
"""A non-finite loss or gradient skips that update (logged); this many whole steps skipped in a row stop the
run."""


def sample_seed(seed: int, step: int, position: int, sibling: int) -> int:
    """The sampling seed of one rollout: a function of (run seed, step, the question's position in the step,
    its sibling number) alone, so a step split over several processes draws what one process would."""
    mixed = ((seed * 1_000_003 + step) * 65_537 + position) * 257 + sibling
    return mixed % (2**63 - 1)  # torch takes int64


def cosine_decay(progress: float) -> float:
    """1.0 at progress 0, half a cosine down to 0.1 at progress 1, then 0.1."""
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


def lr_factor(step: int, total: int, warmup_ratio: float, schedule: str) -> float:
    """Multiplier of the peak lr at optimizer step `step` (0-based): linear warmup over warmup_ratio of the
    run, then constant, or cosine down to 10%."""
    warmup = int(warmup_ratio * total)
    if step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    return cosine_decay((step - warmup) / max(1, total - warmup))


def adamw(model, lr: float, weight_decay: float, betas: tuple[float, float] = (0.9, 0.999),
          decay_matrices_only: bool = False) -> tuple[torch.optim.AdamW, list]:
    """(optimizer, its parameters): AdamW over the parameters that train. `decay_matrices_only`: weight decay
    on the matrices only (norms and biases are left alone, as in small LMs trained from scratch)."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    if not decay_matrices_only:
        return torch.optim.AdamW(trainable, lr=lr, weight_decay=weight_decay, betas=betas), trainable
    decay = [p for p in trainable if p.dim() >= 2]
    no_decay = [p for p in trainable if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr, betas=betas), trainable


def lora_wrap(model, rank: int, alpha: int):
    """`model` with a fresh LoRA adapter on every linear layer (its A matrices come from torch's global
    RNG)."""
    from peft import LoraConfig, get_peft_model  # looked up at call time: tests wrap get_peft_model

    return get_peft_model(model, LoraConfig(r=rank, lora_alpha=alpha, target_modules="all-linear",
                                            task_type="CAUSAL_LM"))


class SkipGuard:
    """Counts steps whose every update was skipped (a NaN/inf loss or gradient) and stops the run after
    MAX_SKIPPED_IN_A_ROW of them in a row, with `advice` (what to change) in the message."""

    def __init__(self, phase: str, advice: str):
        self.phase, self.advice, self.in_a_row = phase, advice, 0

    def step(self, step: int, skipped: bool) -> None:
        self.in_a_row = self.in_a_row + 1 if skipped else 0
        if self.in_a_row >= MAX_SKIPPED_IN_A_ROW:
            raise TrainingDiverged(f"{self.phase} step {step}: the loss or gradient was NaN/inf in "
                                   f"{self.in_a_row} steps in a row (every update skipped); {self.advice}")


def progress_bar(disable: bool = False, counts: bool = True):
    """The recipes' bar (searche1.progress) with a live `info` field (add tasks with info=...), e.g. the last
    loss; `counts`: show done/total (off when the total is a time budget)."""
    from searche1.progress import progress

    return progress(disable=disable, counts=counts, info=True)


def refuse_existing_run(out: Path, marker: str) -> None:
    """Raise when `out` already holds a run (its `marker` exists): a new run never writes over an old one."""
    if (Path(out) / marker).exists():
        raise FileExistsError(f"{out} already holds a run; pass --resume to continue it, or choose another "
                              "--out")
