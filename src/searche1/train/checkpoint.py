"""Checkpoint I/O, and only here: a training run's state as one folder per save, written atomically.

RUN/checkpoints/step-{N}/ holds the policy as an HF folder (safetensors; with LoRA, the adapter), the tokenizer,
the optimizer state (`optimizer.pt`) and `trainer_state.json` (step, config, figures). Everything else a step
needs is derived from the seed and the step number (data order, rollout sampling), so resuming from step N
continues exactly where an uninterrupted run would be.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch

from searche1.fileio import atomic_dir

STATE_FILE = "trainer_state.json"


def checkpoint_dir(run: str | Path, step: int) -> Path:
    return Path(run) / "checkpoints" / f"step-{step}"


def save_checkpoint(run: str | Path, step: int, model, tokenizer, optimizer, state: dict) -> Path:
    """Write checkpoint `step` of `run` atomically (a crash mid-write leaves the previous ones intact)."""
    path = checkpoint_dir(run, step)
    with atomic_dir(path, marker=STATE_FILE, what="checkpoint") as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        (tmp / STATE_FILE).write_text(json.dumps({**state, "step": step}, indent=2) + "\n")
    return path


def latest_checkpoint(run: str | Path) -> Path | None:
    """The complete checkpoint with the highest step, or None (folders being written are hidden .tmp siblings)."""
    found = []
    for path in (Path(run) / "checkpoints").glob("step-*"):
        match = re.fullmatch(r"step-(\d+)", path.name)
        if match and (path / STATE_FILE).is_file():
            found.append((int(match.group(1)), path))
    return max(found)[1] if found else None


def load_trainer_state(path: str | Path, optimizer) -> dict:
    """Restore the optimizer from checkpoint `path`; return its trainer state (the weights load with the model)."""
    path = Path(path)
    optimizer.load_state_dict(torch.load(path / "optimizer.pt", map_location="cpu", weights_only=True))
    return json.loads((path / STATE_FILE).read_text())
