"""Self-evolution: the phase plan (matched rollout budget for the GRPO-only arm), and `searche1 train` end to end
on toy-base at toy size: per-phase evaluations, the table and figure, and --resume skipping finished phases (and
refusing other settings); every phase starting from the weights the previous one ended with; the GRPO rounds as
one data stream and one learning-rate schedule."""

import json

import pytest

from searche1.config import load_config
from test_grpo_recipe import tiny_policy  # noqa: F401  (a fixture)


def test_plan_phases_and_the_matched_budget_of_grpo_only():
    from searche1.train.evolve import plan_phases

    base = ["evolve.rounds=2", "evolve.grpo_steps=10", "grpo.prompts_per_step=16", "rollout.n_samples=5",
            "ofsd.pool_questions=200", "ofsd.n_samples=5"]
    assert plan_phases(load_config("toy", base)) == [("base", 0, 0), ("grpo", 1, 10), ("ofsd", 1, 0),
                                                      ("grpo", 2, 10), ("ofsd", 2, 0)]
    # OFSD's pool is 200 x 5 = 1000 rollouts = 12.5 GRPO steps of 16 x 5: the baseline gets 13 more per round
    assert plan_phases(load_config("toy", [*base, "evolve.mode=grpo-only"])) == [
        ("base", 0, 0), ("grpo", 1, 23), ("grpo", 2, 23)]
    assert plan_phases(load_config("toy", [*base, "evolve.mode=grpo-fixed"])) == [  # nothing added: ablate's time match
        ("base", 0, 0), ("grpo", 1, 10), ("grpo", 2, 10)]
    assert plan_phases(load_config("toy", [*base, "evolve.mode=ofsd-only"])) == [
        ("base", 0, 0), ("ofsd", 1, 0), ("ofsd", 2, 0)]


def test_answers_changed_compares_greedy_responses_question_by_question(tmp_path):
    from searche1.rollout.trajectory import Trajectory, save_trajectories
    from searche1.train.evolve import answers_changed

    for name, responses in {"a": ["x", "y", "z", "w"], "b": ["x", "Y", "z"]}.items():
        save_trajectories(tmp_path / name / "eval.trajectories.jsonl", [
            Trajectory(f"q{i}", 0, [], [], [], [], response_text=r) for i, r in enumerate(responses)])
    assert answers_changed(tmp_path / "a", tmp_path / "b") == pytest.approx(1 / 3)  # q3 is in one only
    assert answers_changed(tmp_path / "a", tmp_path / "a") == 0


def test_searche1_train_runs_rounds_with_evaluations_and_resumes(tmp_path, capsys):
    from searche1.cli import main

    out = tmp_path / "run"
    args = ["--threads", "1", "train", "--out", str(out), "evolve.rounds=1", "evolve.grpo_steps=2",
            "evolve.eval_limit=6", "grpo.prompts_per_step=4", "grpo.mini_batch_prompts=4", "grpo.micro_batch=8",
            "rollout.n_samples=3", "rollout.max_response_length=48", "ofsd.pool_questions=30", "ofsd.n_samples=3"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    phases = sorted(p.name for p in (out / "phases").iterdir())
    assert phases == ["00-base", "01-grpo-r1", "02-ofsd-r1"]
    summary = json.loads((out / "summary.json").read_text())["phases"]
    assert [r["phase"] for r in summary] == ["base", "grpo-r1", "ofsd-r1"]
    assert all(len(r["em"]) == 7 and 0 <= r["average_em"] <= 1 for r in summary)
    assert summary[1]["rollouts"] == 2 * 4 * 3 and summary[2]["rollouts"] == 30 * 3
    logged = [json.loads(line) for line in (out / "phases" / "01-grpo-r1" / "metrics.jsonl").read_text().splitlines()]
    assert summary[1]["train_seconds"] == pytest.approx(sum(  # the GRPO steps' own seconds: they survive a resume
        r["grpo/rollout_seconds"] + r["grpo/train_seconds"] for r in logged if "grpo/rollout_seconds" in r))
    assert summary[1]["model"].endswith("step-2") and summary[2]["model"].endswith("final")
    assert "| grpo-r1 |" in printed and "| tokens generated |" in printed
    assert (out / "phases.png").read_bytes()[:4] == b"\x89PNG"
    assert "answers_changed" not in summary[0] and all(0 <= r["answers_changed"] <= 1 for r in summary[1:])
    assert (out / "phases" / "01-grpo-r1" / "curves.png").is_file()

    # a run whose last phase did not finish: --resume keeps the finished ones and redoes the last, identically
    (out / "phases" / "02-ofsd-r1" / "phase.json").unlink()
    grpo_record = (out / "phases" / "01-grpo-r1" / "phase.json").read_text()
    assert main(args) == 2  # without --resume: refused
    capsys.readouterr()
    assert main([*args[:3], "--resume", *args[3:]]) == 0
    assert "grpo-r1: done earlier" in capsys.readouterr().out
    again = json.loads((out / "summary.json").read_text())["phases"]
    assert (out / "phases" / "01-grpo-r1" / "phase.json").read_text() == grpo_record
    assert again[2]["em"] == summary[2]["em"] and again[2]["pairs"] == summary[2]["pairs"]
    # its cost is the training it did before, not the moment this call spent reading its summary
    trained = json.loads((out / "phases" / "02-ofsd-r1" / "summary.json").read_text())["seconds"]
    assert again[2]["train_seconds"] == trained > 0
    # resuming with other settings is refused: the finished GRPO phase was trained with the old ones
    assert main([*args[:3], "--resume", *args[3:], "grpo.lr=5e-4"]) == 2
    assert "01-grpo-r1 was made with other settings" in capsys.readouterr().err


@pytest.mark.slow  # 90 s on the 2-core CI machine; GRPO under torchrun stays in the essential set
# (test_grpo_recipe.py::test_two_processes_under_torchrun_equal_one_process)
def test_evolve_under_torchrun_trains_grpo_on_both_processes_and_ofsd_once(tmp_path):
    """`searche1 train` under torchrun (2 CPU processes, gloo): the GRPO phase is shared by both processes, the
    OFSD phase and the evaluations run on the main process only, and the phases equal those of one process."""
    import os
    import socket
    import subprocess
    import sys

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    overrides = ["evolve.rounds=1", "evolve.grpo_steps=1", "evolve.eval_limit=3", "grpo.prompts_per_step=4",
                 "grpo.mini_batch_prompts=2", "grpo.micro_batch=2", "rollout.n_samples=2",
                 "rollout.max_response_length=24", "ofsd.pool_questions=8", "ofsd.n_samples=2"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cli = ["-m", "searche1.cli", "--threads", "1", "train"]
    one = subprocess.run([sys.executable, *cli, "--out", str(tmp_path / "one"), *overrides], capture_output=True,
                         text=True, env=env, timeout=600)
    assert one.returncode == 0, one.stderr[-2000:]
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr",
                          "127.0.0.1", "--master_port", str(port), *cli, "--out", str(tmp_path / "two"), *overrides],
                         capture_output=True, text=True, env=env, timeout=600)
    assert two.returncode == 0, two.stderr[-3000:]
    assert two.stdout.count("OFSD pairs:") == 1 and two.stdout.count("] ofsd-r1: average EM") == 1
    a, b = (json.loads((tmp_path / run / "summary.json").read_text())["phases"] for run in ("one", "two"))
    assert [r["phase"] for r in b] == ["base", "grpo-r1", "ofsd-r1"]
    for ra, rb in zip(a, b):
        assert rb["em"] == ra["em"], rb["phase"]  # fp32 on CPU: the same rollouts, updates and evaluations


@pytest.mark.parametrize("lora_rank", [4, pytest.param(0, marks=pytest.mark.slow)])
def test_every_phase_starts_from_the_weights_the_previous_phase_ended_with(lora_rank, tmp_path, monkeypatch):
    """GRPO (with a LoRA adapter, or full fine-tuning) -> OFSD -> GRPO: at each boundary the next phase's starting
    logits, its reference (GRPO: the adapter disabled, or the frozen copy) and OFSD's teacher (the adapter off)
    equal the previous phase's final logits."""
    import peft
    import torch
    from peft.tuners.lora import LoraModel

    import searche1.train.checkpoint as checkpoint
    import searche1.train.grpo as grpo_recipe
    from searche1.data.toyworld.tokenizer import build_toy_tokenizer
    from searche1.train.evolve import run_evolve

    probe = torch.tensor([build_toy_tokenizer()("Where was Tiron born? <search> Tiron </search>").input_ids])
    seen: list[tuple[str, torch.Tensor]] = []

    def logits(model):
        with torch.no_grad():
            return model(input_ids=probe).logits[0].float().clone()

    def load_policy(*args, **kwargs):
        model, tokenizer, reference = load_policy.original(*args, **kwargs)
        seen.append(("grpo start", logits(model)))
        if reference is None:
            with model.disable_adapter():
                seen.append(("grpo reference", logits(model)))
        else:
            seen.append(("grpo reference", logits(reference)))
        return model, tokenizer, reference

    def save(run, step, model, *args, **kwargs):
        seen.append(("grpo end", logits(model)))
        return save.original(run, step, model, *args, **kwargs)

    def get_peft_model(model, config, *args, **kwargs):
        if config.r != 16:  # GRPO's own adapter (rank 4) is seen through load_policy
            return get_peft_model.original(model, config, *args, **kwargs)
        seen.append(("ofsd start", logits(model)))
        wrapped = get_peft_model.original(model, config, *args, **kwargs)
        with wrapped.disable_adapter():
            seen.append(("ofsd teacher", logits(wrapped)))
        return wrapped

    def merge_and_unload(self, *args, **kwargs):
        if self.peft_config["default"].r == 16:
            seen.append(("ofsd end", logits(self)))
        return merge_and_unload.original(self, *args, **kwargs)

    load_policy.original, save.original = grpo_recipe._load_policy, checkpoint.save_checkpoint
    get_peft_model.original, merge_and_unload.original = peft.get_peft_model, LoraModel.merge_and_unload
    monkeypatch.setattr(grpo_recipe, "_load_policy", load_policy)
    monkeypatch.setattr(checkpoint, "save_checkpoint", save)
    monkeypatch.setattr(peft, "get_peft_model", get_peft_model)
    monkeypatch.setattr(LoraModel, "merge_and_unload", merge_and_unload)

    cfg = load_config("toy", ["evolve.rounds=2", "evolve.grpo_steps=1", "evolve.eval_limit=1",
                              f"grpo.lora_rank={lora_rank}", f"grpo.lr={1e-3 if lora_rank else 1e-5}",
                              "grpo.entropy_coef=0.01",
                              "grpo.prompts_per_step=4",
                              "grpo.mini_batch_prompts=4", "grpo.micro_batch=12", "rollout.n_samples=3",
                              "rollout.max_response_length=48", "ofsd.pool_questions=40", "ofsd.n_samples=4",
                              "ofsd.lr=1e-2"])
    run_evolve(cfg, tmp_path / "run", log=lambda *_: None)
    pairs = json.loads((tmp_path / "run" / "phases" / "02-ofsd-r1" / "summary.json").read_text())["pairs"]["pairs"]
    assert pairs > 0, "round 1's OFSD pool gave no pair: the OFSD boundary below would not be tested"
    events = [name for name, _ in seen]
    assert events == ["grpo start", "grpo reference", "grpo end", "ofsd start", "ofsd teacher", "ofsd end"] * 2
    values = [v for _, v in seen]

    def same(a, b):
        return torch.allclose(values[a], values[b], atol=1e-4)

    for r in (0, 6):  # round 1, round 2
        grpo_start, grpo_ref, grpo_end, ofsd_start, ofsd_teacher = r, r + 1, r + 2, r + 3, r + 4
        assert same(grpo_start, grpo_ref) and not same(grpo_start, grpo_end)  # GRPO moved the policy
        assert same(grpo_end, ofsd_start) and same(grpo_end, ofsd_teacher)
    assert not same(3, 5)  # round 1's OFSD moved the policy (its pool had pairs) ...
    assert same(5, 6) and same(5, 7)  # ... and round 2's GRPO starts from there, its reference too


def test_grpo_streams_continue_the_data_and_the_schedule_over_rounds():
    from searche1.train.evolve import grpo_streams
    from searche1.train.grpo import StepStream

    base = ["evolve.rounds=3", "evolve.grpo_steps=5"]
    assert grpo_streams(load_config("toy", base)) == [None, StepStream(0, 0, 15), None, StepStream(5, 5, 15), None,
                                                      StepStream(10, 10, 15), None]
    assert grpo_streams(load_config("toy", [*base, "evolve.lr_schedule=per_round"])) == [
        None, StepStream(0, 0, 5), None, StepStream(5, 0, 5), None, StepStream(10, 0, 5), None]


@pytest.mark.parametrize("lr_schedule", ["continuous", "per_round"])
def test_grpo_rounds_continue_the_question_stream_and_the_lr_schedule(lr_schedule, tiny_policy,  # noqa: F811
                                                                      tmp_path, monkeypatch):
    """Round 2's GRPO phase reads the questions and sampling seeds after round 1's (not round 1's again); its
    learning rate continues one warm-up-then-constant schedule over both rounds, or restarts it (per_round)."""
    import searche1.train.grpo as grpo_recipe
    from searche1.train.evolve import run_evolve
    from searche1.train.kit import lr_factor

    calls = {"prompts": [], "seeds": set()}

    def step_prompts(n, step, per_step, seed):
        calls["prompts"].append(step)
        return step_prompts.original(n, step, per_step, seed)

    def sample_seed(seed, step, position, sibling):
        calls["seeds"].add(step)
        return sample_seed.original(seed, step, position, sibling)

    step_prompts.original, sample_seed.original = grpo_recipe.step_prompts, grpo_recipe.sample_seed
    monkeypatch.setattr(grpo_recipe, "step_prompts", step_prompts)
    monkeypatch.setattr(grpo_recipe, "sample_seed", sample_seed)
    cfg = load_config("toy", [f"grpo.model={tiny_policy}", "evolve.mode=grpo-only", "evolve.rounds=2",
                              "evolve.grpo_steps=2", "ofsd.pool_questions=1", "ofsd.n_samples=2",
                              f"evolve.lr_schedule={lr_schedule}", "evolve.eval_limit=1", "grpo.warmup_ratio=0.7",
                              "grpo.prompts_per_step=2", "grpo.mini_batch_prompts=2", "grpo.micro_batch=4",
                              "grpo.entropy_coef=0.01", "rollout.n_samples=2", "rollout.max_turns=1",
                              "rollout.max_response_length=8"])
    run_evolve(cfg, tmp_path / "run", log=lambda *_: None)
    assert calls["prompts"] == [0, 1, 2, 3, 4, 5] and calls["seeds"] == {0, 1, 2, 3, 4, 5}  # 3 steps a round
    lrs = [r["grpo/lr"] for phase in ("01-grpo-r1", "02-grpo-r2")
           for r in map(json.loads, (tmp_path / "run" / "phases" / phase / "metrics.jsonl").read_text().splitlines())
           if "grpo/lr" in r]
    expected = ([lr_factor(k, 6, 0.7, "constant") for k in range(6)] if lr_schedule == "continuous"
                else [lr_factor(k % 3, 3, 0.7, "constant") for k in range(6)])
    assert lrs == pytest.approx([cfg.grpo.lr * f for f in expected])
    assert (expected[3] < 1) == (lr_schedule == "per_round")  # round 2 warms up again only per round
