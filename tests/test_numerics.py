"""Numerics: a NaN/inf loss or gradient skips the update and is counted; a run that keeps
producing them stops with a message (exit code 2 from the CLI); OFSD with no pairs, or a student with no sampled
token, is a no-op, not a crash."""

import json

import pytest
import torch

from test_grpo_recipe import _config, tiny_policy  # noqa: F401  (a fixture)
from test_ofsd_recipe import _pair
from test_ofsd_recipe import tokenizer as toy_tokenizer  # noqa: F401  (a fixture)


def test_grpo_stops_after_three_skipped_steps_in_a_row(tiny_policy, tmp_path, monkeypatch):  # noqa: F811
    from searche1.runtime import TrainingDiverged
    from searche1.train import grpo as grpo_recipe

    calls = []

    def nan_update(*args, **kwargs):
        calls.append(1)
        return {"policy_loss": float("nan"), "kl": float("nan"), "grad_norm": float("nan"), "skipped": 1}

    monkeypatch.setattr(grpo_recipe, "policy_update", nan_update)
    with pytest.raises(TrainingDiverged, match="NaN/inf in 3 steps in a row"):
        grpo_recipe.train_grpo(_config(tiny_policy, steps=6), tmp_path / "run", log=lambda *_: None)
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["grpo/skipped"] for r in records if "grpo/skipped" in r] == [1, 1, 1]  # each one counted
    assert len(calls) == 3 * 2  # 2 updates per step (mini_batch_prompts=1 of 2 prompts), then the stop


def test_a_diverged_run_exits_2_with_the_message(tiny_policy, tmp_path, monkeypatch, capsys):  # noqa: F811
    from searche1.cli import main
    from searche1.train import grpo as grpo_recipe

    monkeypatch.setattr(grpo_recipe, "policy_update", lambda *a, **k: {"grad_norm": float("nan"), "skipped": 1})
    args = ["--threads", "1", "train", "grpo", "--out", str(tmp_path / "run"), f"grpo.model={tiny_policy}",
            "grpo.steps=4", "grpo.prompts_per_step=2", "grpo.mini_batch_prompts=2", "rollout.n_samples=2",
            "rollout.max_turns=1", "rollout.max_response_length=8"]
    assert main(args) == 2
    assert "NaN/inf in 3 steps in a row" in capsys.readouterr().err


def _ofsd_args(out, extra=()):
    return ["--threads", "1", "train", "ofsd", "--out", str(out), "--model", "toy-base", "ofsd.pool_questions=6",
            "ofsd.n_samples=2", "ofsd.pairs_per_step=1", "rollout.max_response_length=48", *extra]


def test_ofsd_with_no_pairs_is_a_no_op(tmp_path, monkeypatch):
    from searche1.cli import main
    from searche1.models import load_model
    from searche1.train import ofsd as ofsd_recipe

    monkeypatch.setattr(ofsd_recipe, "mine_pairs", lambda *a, **k: [])
    assert main(_ofsd_args(tmp_path / "o")) == 0
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert summary["steps"] == 0 and summary["pairs"]["pairs"] == 0
    final, _ = load_model(str(tmp_path / "o" / "final"))
    start, _ = load_model("toy-base")
    assert all(torch.equal(a, b) for a, b in zip(final.state_dict().values(), start.state_dict().values()))


def test_ofsd_nan_gradients_are_skipped_counted_and_then_stop(tmp_path, monkeypatch, capsys):
    from searche1.cli import main
    from searche1.train import ofsd as ofsd_recipe
    from searche1.train.pairs import Pair

    def three_pairs(pool, *args, **kwargs):  # any two siblings of three questions: their content does not matter
        by_group = {}
        for t in pool:
            by_group.setdefault(t.group_id, []).append(t)
        return [Pair(ts[0], ts[1]) for ts in list(by_group.values())[:3]]

    monkeypatch.setattr(ofsd_recipe, "mine_pairs", three_pairs)
    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", lambda *a, **k: torch.tensor(float("nan")))
    assert main(_ofsd_args(tmp_path / "o")) == 2
    assert "OFSD step 3: the loss or gradient was NaN/inf in 3 steps in a row" in capsys.readouterr().err
    records = [json.loads(line) for line in (tmp_path / "o" / "metrics.jsonl").read_text().splitlines()]
    assert [r["ofsd/skipped"] for r in records if "ofsd/skipped" in r] == [1, 1, 1]
    assert not (tmp_path / "o" / "final").exists()  # no model is published from a diverged phase


def test_a_student_without_sampled_tokens_gives_a_zero_loss(toy_tokenizer):  # noqa: F811
    import dataclasses

    from peft import LoraConfig, get_peft_model

    from conftest import tiny_qwen2
    from searche1.config import load_config
    from searche1.train.ofsd import pair_loss
    from searche1.train.pairs import Pair

    model = get_peft_model(tiny_qwen2(len(toy_tokenizer)), LoraConfig(r=4, lora_alpha=8, target_modules="all-linear"))
    pair = _pair(toy_tokenizer)
    empty = dataclasses.replace(pair.student, response_mask=[0] * len(pair.student.response_mask))
    loss, stats = pair_loss(model, toy_tokenizer, "Where was Zorvak born?", Pair(pair.reference, empty),
                            load_config("toy"), per_token=True)
    loss.backward()
    assert loss.item() == 0.0 and stats["per_token"] == [] and stats["kl"] == 0.0
