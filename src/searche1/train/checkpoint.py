"""Checkpoint I/O, and only here: a training run's state as one folder per save, written atomically; and the
clean-up of what a kill left behind before a resume (half-written folders, metrics logged after the checkpoint).

RUN/checkpoints/step-{N}/ holds the policy as an HF folder (safetensors; with LoRA, the adapter), the tokenizer,
the optimizer state (`optimizer.pt`), `trainer_state.json` (step, config, the step's metrics record) and
`checksums.json` (the sha256 of every other file). Everything else a step needs is derived from the seed and the
step number (data order, rollout sampling), so resuming from step N continues exactly where an uninterrupted run
would be.

A checkpoint is written into a hidden sibling folder and renamed when complete, so a kill mid-write leaves the
previous ones intact. A file damaged afterwards (a disk error, a copy cut short) fails its checksum when the
checkpoint is chosen: the previous good checkpoint is used instead, and the choice is logged.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import torch

from searche1.fileio import atomic_dir

STATE_FILE = "trainer_state.json"
CHECKSUMS_FILE = "checksums.json"


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
        (tmp / CHECKSUMS_FILE).write_text(json.dumps(_checksums(tmp), indent=2) + "\n")
    return path


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def _checksums(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): _sha256(p) for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != CHECKSUMS_FILE}


def checkpoint_problem(path: str | Path) -> str | None:
    """Why checkpoint `path` must not be loaded (a file missing, changed or added since it was written), or None.
    A checkpoint from before checksums existed is accepted as it is."""
    path = Path(path)
    if not (path / STATE_FILE).is_file():
        return f"no {STATE_FILE}"
    if not (path / CHECKSUMS_FILE).is_file():
        return None
    try:
        expected = json.loads((path / CHECKSUMS_FILE).read_text())
    except json.JSONDecodeError:
        return f"{CHECKSUMS_FILE} is not JSON"
    actual = _checksums(path)
    for name in sorted(set(expected) | set(actual)):
        if name not in actual:
            return f"{name} is missing"
        if name not in expected:
            return f"{name} was not part of it"
        if actual[name] != expected[name]:
            return f"{name} fails its checksum"
    return None


def latest_checkpoint(run: str | Path, verify: bool = False, log=print) -> Path | None:
    """The complete checkpoint with the highest step, or None (folders being written are hidden .tmp siblings).
    With `verify`, the highest one whose files match their checksums: each one passed over is logged."""
    found = []
    for path in (Path(run) / "checkpoints").glob("step-*"):
        match = re.fullmatch(r"step-(\d+)", path.name)
        if match and (path / STATE_FILE).is_file():
            found.append((int(match.group(1)), path))
    for _, path in sorted(found, reverse=True):
        problem = checkpoint_problem(path) if verify else None
        if problem is None:
            return path
        log(f"checkpoint {path} is damaged ({problem}): not loading it; trying the one before")
    return None


def load_trainer_state(path: str | Path, optimizer) -> dict:
    """Restore the optimizer from checkpoint `path`; return its trainer state (the weights load with the model)."""
    path = Path(path)
    optimizer.load_state_dict(torch.load(path / "optimizer.pt", map_location="cpu", weights_only=True))
    return json.loads((path / STATE_FILE).read_text())


def remove_partial_checkpoints(run: str | Path, log=print) -> None:
    """Delete the hidden folders a kill left mid-write (`.step-N.*.tmp`, `.step-N.old`): never loaded, only
    taking disk space (1.6 GB each for SmolLM2 with its optimizer state)."""
    import shutil

    for path in sorted((Path(run) / "checkpoints").glob(".step-*")):
        if path.is_dir() and (path.name.endswith(".tmp") or path.name.endswith(".old")):
            log(f"removing {path}, a checkpoint a kill left half-written")
            shutil.rmtree(path, ignore_errors=True)


def drop_metrics_after(path: Path, step: int) -> None:
    """Keep the records of metrics file `path` up to `step` (a resumed run logs the later ones again); a line torn
    by a kill is dropped too."""
    from searche1.fileio import atomic_write

    if not path.exists():
        return
    kept = []
    for line in path.read_text().splitlines(keepends=True):
        try:
            if json.loads(line)["step"] <= step:
                kept.append(line if line.endswith("\n") else line + "\n")
        except json.JSONDecodeError:  # a line torn by the kill
            continue
    with atomic_write(path) as f:
        f.writelines(kept)
