"""Crash safety: a damaged checkpoint is never loaded (checksums; the previous good one is used
and the choice logged), a kill's half-written checkpoint folders are cleaned up, and a `searche1 train` run killed
with SIGKILL at seeded random moments, then resumed, ends with the same per-phase results as an uninterrupted one."""

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch

from test_grpo_recipe import _config, _records, _weights, tiny_policy  # noqa: F401  (a fixture)


def test_checksums_find_a_changed_missing_or_added_file(tiny_policy, tmp_path):  # noqa: F811
    from searche1.models import load_model
    from searche1.train.checkpoint import checkpoint_problem, latest_checkpoint, save_checkpoint

    model, tokenizer = load_model(str(tiny_policy))
    optimizer = torch.optim.AdamW(model.parameters())
    for step in (1, 2):
        save_checkpoint(tmp_path, step, model, tokenizer, optimizer, {})
    last = tmp_path / "checkpoints" / "step-2"
    assert checkpoint_problem(last) is None
    weights = last / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte, the size unchanged
    weights.write_bytes(bytes(data))
    assert checkpoint_problem(last) == "model.safetensors fails its checksum"
    said = []
    assert latest_checkpoint(tmp_path, verify=True, log=said.append) == tmp_path / "checkpoints" / "step-1"
    assert "step-2 is damaged (model.safetensors fails its checksum)" in said[0]
    assert latest_checkpoint(tmp_path) == last  # (unverified: what the rename alone guarantees)
    (tmp_path / "checkpoints" / "step-1" / "optimizer.pt").unlink()
    assert checkpoint_problem(tmp_path / "checkpoints" / "step-1") == "optimizer.pt is missing"
    (last / "extra.bin").write_bytes(b"x")
    assert "extra.bin was not part of it" in (checkpoint_problem(last) or "")


def test_resume_passes_over_a_damaged_checkpoint_and_ends_as_uninterrupted(tiny_policy, tmp_path):  # noqa: F811
    from searche1.train.grpo import train_grpo

    torch.set_num_threads(1)
    full = tmp_path / "full"
    train_grpo(_config(tiny_policy), full, log=lambda *_: None)
    damaged = tmp_path / "damaged"
    shutil.copytree(full, damaged)
    (damaged / "checkpoints" / "step-3" / "optimizer.pt").write_bytes(b"cut short")
    (damaged / "checkpoints" / ".step-3.abc.tmp").mkdir()  # what a kill mid-write leaves
    said = []
    train_grpo(_config(tiny_policy), damaged, resume=True, log=said.append)
    assert any("step-3 is damaged (optimizer.pt fails its checksum)" in line for line in said)
    assert any("resumed from" in line and line.rstrip(")").endswith("step-2") for line in said)
    assert not (damaged / "checkpoints" / ".step-3.abc.tmp").exists()
    assert _records(damaged) == _records(full)
    again, uninterrupted = _weights(damaged / "checkpoints" / "step-3"), _weights(full / "checkpoints" / "step-3")
    assert all(torch.equal(again[k], uninterrupted[k]) for k in uninterrupted)


def _phase_results(run):
    rows = json.loads((run / "summary.json").read_text())["phases"]
    return [{k: r.get(k) for k in ("phase", "em", "average_em", "searches", "rollouts", "pairs")} for r in rows]


# Where each kill lands: once the path exists (the phase has reached that point), after a seeded random delay.
KILL_POINTS = [("base evaluation", "phases/00-base", (0.5, 5)),
               ("GRPO rollout or update", "phases/01-grpo-r1/config.yaml", (0.2, 3)),
               ("GRPO evaluation", "phases/01-grpo-r1/checkpoints/step-1", (0.2, 3)),
               ("OFSD pool", "phases/02-ofsd-r1/config.yaml", (0.5, 5)),
               ("OFSD update or evaluation", "phases/02-ofsd-r1/pairs.jsonl", (0.1, 3))]


@pytest.mark.slow  # ~2 minutes; the fast SIGKILL-and-resume check is test_grpo_recipe's, phase resume test_evolve's
def test_sigkill_at_random_moments_then_resume_gives_the_uninterrupted_results(small_evolve_run, tmp_path):
    """`searche1 train` (base -> GRPO -> OFSD, each evaluated) as a subprocess, killed with SIGKILL at a seeded
    random moment of each phase, resumed each time, then left to finish: its phases equal those of the same run made
    in one go, and no half-written checkpoint is left."""
    out = tmp_path / "run"
    args = [sys.executable, "-m", "searche1.cli", "--threads", "1", "train", "--out", str(out), "evolve.rounds=1",
            "evolve.grpo_steps=1", "evolve.eval_limit=6", "grpo.prompts_per_step=4", "grpo.mini_batch_prompts=4",
            "grpo.micro_batch=8", "rollout.n_samples=3", "ofsd.pool_questions=40", "ofsd.n_samples=4"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    rng = random.Random(7)
    killed = []
    for attempt, point in enumerate(KILL_POINTS + [None]):
        command = args[:8] + (["--resume"] if attempt else []) + args[8:]  # after `train --out RUN`
        log_path = tmp_path / f"attempt-{attempt}.log"
        with open(log_path, "w") as log:
            proc = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
            if point is not None:
                name, marker, (low, high) = point
                deadline = time.monotonic() + 300
                while not (out / marker).exists() and proc.poll() is None and time.monotonic() < deadline:
                    time.sleep(0.05)
                time.sleep(rng.uniform(low, high))
                if proc.poll() is None:
                    proc.send_signal(signal.SIGKILL)
                    killed.append(name)
            proc.wait(timeout=600)
        if point is None or proc.returncode == 0:
            assert proc.returncode == 0, f"attempt {attempt} exited {proc.returncode}: {log_path.read_text()[-3000:]}"
        if point is None:
            break
    print("killed during:", killed)
    assert len(killed) >= 3, f"too few kills landed before the phases finished: {killed}"
    assert _phase_results(out) == _phase_results(small_evolve_run)
    assert not list((out / "phases").rglob(".step-*"))  # no half-written checkpoint left behind


def test_sigkill_during_a_checkpoint_write(tiny_policy, tmp_path):  # noqa: F811
    """The process kills itself (SIGKILL) while writing checkpoint 2, between the weights and the optimizer state:
    the half-written folder is never loaded, --resume removes it and ends as an uninterrupted run."""
    from searche1.train.grpo import train_grpo

    torch.set_num_threads(1)
    full = tmp_path / "full"
    train_grpo(_config(tiny_policy), full, log=lambda *_: None)
    cut = tmp_path / "cut"
    script = f"""
import os, signal, torch
from searche1.train import checkpoint
from searche1.train.grpo import train_grpo
from test_grpo_recipe import _config
saves = []
real_save = torch.save
def save(obj, path, *args, **kwargs):
    saves.append(path)
    if len(saves) == 2:  # checkpoint 2's optimizer state: its weights are written, the folder not yet renamed
        os.kill(os.getpid(), signal.SIGKILL)
    return real_save(obj, path, *args, **kwargs)
checkpoint.torch.save = save
torch.set_num_threads(1)
train_grpo(_config({str(tiny_policy)!r}), {str(cut)!r}, log=lambda *_: None)
"""
    proc = subprocess.run([sys.executable, "-c", script], cwd=os.path.dirname(__file__),
                          env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    assert [p.name for p in (cut / "checkpoints").iterdir() if not p.name.startswith(".")] == ["step-1"]
    assert list((cut / "checkpoints").glob(".step-2.*.tmp"))  # what the kill left
    said = []
    train_grpo(_config(tiny_policy), cut, resume=True, log=said.append)
    assert any("removing" in line and ".step-2." in line for line in said)
    assert not list((cut / "checkpoints").glob(".step-*"))
    assert _records(cut) == _records(full)
    again, uninterrupted = _weights(cut / "checkpoints" / "step-3"), _weights(full / "checkpoints" / "step-3")
    assert all(torch.equal(again[k], uninterrupted[k]) for k in uninterrupted)
