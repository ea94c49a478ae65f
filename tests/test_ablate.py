"""`searche1 ablate`: arms are one change each from the default, runs are reused, the report compares arms."""

import json

import pytest

from searche1.config import ConfigError, load_config


def test_arms_change_one_thing_each():
    from searche1.train.ablate import ARMS, arm_config

    base = load_config("toy")
    assert ARMS["search-e1"] == []
    for arm in ARMS:
        cfg = arm_config(base, arm, seed=7)
        assert cfg.seed == 7 and base.seed == 0  # the base is not touched
    assert arm_config(base, "tau-none", 0).ofsd.tau_clip is None
    assert arm_config(base, "grpo-only", 0).evolve.mode == "grpo-only"
    with pytest.raises(ConfigError, match="unknown arm"):
        arm_config(base, "nope", 0)


def test_summarize_means_over_seeds_and_rounds():
    from searche1.train.ablate import summarize

    def rows(base, r1, r2):
        return [{"round": 0, "average_em": base, "train_seconds": 0, "rollouts": 0},
                {"round": 1, "average_em": r1, "train_seconds": 10, "rollouts": 100},
                {"round": 2, "average_em": r2, "train_seconds": 10, "rollouts": 100}]

    report = summarize({"a": [rows(0.1, 0.2, 0.3), rows(0.1, 0.2, 0.5)]})["a"]
    assert report["final_em_mean"] == pytest.approx(0.4) and report["final_em_std"] == pytest.approx(0.1414, 1e-3)
    assert report["em_by_round"] == pytest.approx({0: 0.1, 1: 0.2, 2: 0.4})
    assert report["rollouts"] == 200 and report["train_seconds"] == 20


def test_ablate_cli_runs_arms_and_seeds_then_reports(tmp_path, capsys):
    from searche1.cli import main

    out = tmp_path / "abl"
    args = ["--threads", "1", "ablate", "--out", str(out), "--seeds", "2", "--arms", "search-e1,grpo-only",
            "evolve.rounds=1", "evolve.grpo_steps=1", "evolve.eval_limit=2", "grpo.prompts_per_step=2",
            "grpo.mini_batch_prompts=2", "rollout.n_samples=2", "rollout.max_response_length=16",
            "ofsd.pool_questions=4", "ofsd.n_samples=2"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "| search-e1 |" in printed and "| grpo-only |" in printed
    assert sorted(p.name for p in (out / "search-e1").iterdir()) == ["seed-0", "seed-1"]
    report = json.loads((out / "report.json").read_text())["arms"]
    # grpo-only gets OFSD's 4 x 2 pool rollouts as 2 more GRPO steps of 2 x 2: the same budget
    assert report["grpo-only"]["rollouts"] == report["search-e1"]["rollouts"] == 4 + 8
    assert (out / "ablate.png").read_bytes()[:4] == b"\x89PNG" and "± " in (out / "report.md").read_text()
    assert main(args) == 0  # everything reused
    assert main([*args[:3], "--out", str(out), "--arms", "bogus"]) == 2
