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
    from searche1.train.ablate import summarize_arms

    def rows(base, r1, r2):
        return [{"round": 0, "average_em": base, "train_seconds": 0, "rollouts": 0},
                {"round": 1, "average_em": r1, "train_seconds": 10, "rollouts": 100},
                {"round": 2, "average_em": r2, "train_seconds": 10, "rollouts": 100}]

    report = summarize_arms({"a": [rows(0.1, 0.2, 0.3), rows(0.1, 0.2, 0.5)]})["a"]
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
    paired = report["grpo-only"]["paired"]  # 2 seeds x 7 sets x 2 questions compared with search-e1
    assert paired["vs"] == "search-e1" and 0 <= paired["won"] + paired["lost"] <= 28 and 0 < paired["p"] <= 1
    assert "paired" not in report["search-e1"] and "| (reference) |" in (out / "report.md").read_text()
    assert (out / "ablate.png").read_bytes()[:4] == b"\x89PNG" and "± " in (out / "report.md").read_text()
    for k in (0, 1):  # the base evaluation is the same work in both arms: done once per seed
        shared = json.loads((out / "grpo-only" / f"seed-{k}" / "phases" / "00-base" / "phase.json").read_text())
        assert shared["shared_from"] == str((out / "search-e1" / f"seed-{k}" / "phases" / "00-base").resolve())
        assert not (out / "grpo-only" / f"seed-{k}" / "phases" / "01-grpo-r1" / "phase.json").read_text().count(
            "shared_from")
    assert main(args) == 0  # everything reused
    # a 2-round ablation reuses round 1 of the 1-round one and runs round 2 only
    more = tmp_path / "abl2"
    assert main([*args[:3], "--out", str(more), "--reuse", str(out), "--seeds", "1", "--arms", "search-e1",
                 *args[9:], "evolve.rounds=2"]) == 0
    phases = sorted((more / "search-e1" / "seed-0" / "phases").iterdir())
    assert [p.name for p in phases] == ["00-base", "01-grpo-r1", "02-ofsd-r1", "03-grpo-r2", "04-ofsd-r2"]
    shared = [json.loads((p / "phase.json").read_text()).get("shared_from") for p in phases]
    assert shared[:3] == [str((out / "search-e1" / "seed-0" / "phases" / p.name).resolve()) for p in phases[:3]]
    assert shared[3:] == [None, None]
    # an arm adopting a copy is pointed at the original: where the phase's model and metrics live
    assert main([*args[:3], "--out", str(more), "--reuse", str(out), "--seeds", "1", "--arms", "search-e1,tau-1",
                 *args[9:], "evolve.rounds=2"]) == 0
    tau = [json.loads((more / "tau-1" / "seed-0" / "phases" / p.name / "phase.json").read_text()).get("shared_from")
           for p in phases]
    assert tau[:2] == shared[:2] and tau[2:] == [None, None, None]
    assert main([*args[:3], "--out", str(more), "--reuse", str(tmp_path / "nope")]) == 2
    assert main([*args[:3], "--out", str(out), "--arms", "bogus"]) == 2


def test_phase_keys_tell_which_phases_arms_share():
    from searche1.train.ablate import arm_config
    from searche1.train.evolve import phase_keys

    base = load_config("toy", ["evolve.rounds=2"])
    e1, tau, grpo_only = (phase_keys(arm_config(base, arm, 0)) for arm in ("search-e1", "tau-1", "grpo-only"))
    assert len(e1) == 5 and len(set(e1)) == 5
    assert tau[:2] == e1[:2] and tau[2] != e1[2]  # base and GRPO round 1 do not read ofsd.*
    assert grpo_only[0] == e1[0] and grpo_only[1] != e1[1]  # more GRPO steps per round
    assert phase_keys(arm_config(base, "search-e1", 1))[0] != e1[0]  # another seed
    lr = phase_keys(load_config("toy", ["evolve.rounds=2", "grpo.lr=3e-4"]))
    assert lr[0] == e1[0] and all(a != b for a, b in zip(lr[1:], e1[1:]))  # every phase after a change differs


def test_paired_comparison_counts_questions_won_and_lost_per_seed(tmp_path):
    import itertools

    from searche1.rollout.trajectory import Trajectory, save_trajectories
    from searche1.train.ablate import paired_against, sign_test

    def finals(name, *ems_per_seed):
        paths = []
        for k, ems in enumerate(ems_per_seed):
            path = tmp_path / f"{name}-{k}.jsonl"
            save_trajectories(path, [Trajectory(f"b/q{i}", 0, [], [], [], [], em=em) for i, em in enumerate(ems)])
            paths.append(path)
        return paths

    runs = {"ref": finals("ref", [1, 0, 0, 1], [0, 0, 1, 1]), "arm": finals("arm", [1, 1, 1, 0], [1, 0, 0, 1])}
    paired = paired_against(runs, "ref")
    assert list(paired) == ["arm"]  # seed 0: won q1 q2, lost q3; seed 1: won q0, lost q2
    assert paired["arm"] == {"vs": "ref", "won": 3, "lost": 2, "p": sign_test(3, 2)}
    # the sign test against enumerating every way n changed questions could split
    for won, lost in [(19, 6), (3, 2), (0, 4), (7, 7), (0, 0)]:
        n = won + lost
        splits = [sum(s) for s in itertools.product((0, 1), repeat=n)]
        extreme = [w for w in splits if abs(w - n / 2) >= abs(won - n / 2)]
        assert sign_test(won, lost) == pytest.approx(len(extreme) / len(splits))
    assert sign_test(19, 6) == pytest.approx(0.0146, abs=1e-4)
