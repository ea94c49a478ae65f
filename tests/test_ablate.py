"""`searche1 ablate`: arms are one change each from the default, runs are reused, the report compares arms."""

import json
import math
import re

import pytest

from searche1.config import ConfigError, load_config


def test_arms_change_one_thing_each():
    from searche1.train.ablate import ARMS, arm_config

    base = load_config("toy")
    assert ARMS["search-e1"].overrides == []
    for arm in ARMS:
        cfg = arm_config(base, arm, seed=7)
        assert cfg.seed == 7 and base.seed == 0  # the base is not touched
    assert arm_config(base, "tau-none", 0).ofsd.tau_clip is None
    assert arm_config(base, "grpo-only", 0).evolve.mode == "grpo-only"
    with pytest.raises(ConfigError, match="unknown arm"):
        arm_config(base, "nope", 0)


def _flat(tree: dict, at: str = "") -> dict:
    out = {}
    for k, v in tree.items():
        out.update(_flat(v, f"{at}{k}.") if isinstance(v, dict) else {f"{at}{k}": v})
    return out


def test_every_arm_sets_exactly_what_it_claims():
    """Each arm's overrides load on the toy preset and change the fields they name, to the values they name, and
    nothing else; the rounds-2 arm is the toy's own setting."""
    from searche1.config import to_dict
    from searche1.train.ablate import ARMS

    base = _flat(to_dict(load_config("toy")))
    unchanged = []
    for name, arm in ARMS.items():
        assert arm.meaning and "\n" not in arm.meaning
        cfg = _flat(to_dict(load_config("toy", arm.overrides)))
        claimed = dict(o.split("=", 1) for o in arm.overrides)
        changed = {k for k in cfg if cfg[k] != base[k]}
        assert changed <= claimed.keys(), name
        for key, text in claimed.items():
            want = {"null": None, "true": True}.get(text, text)
            got = cfg[key]
            assert (float(got) == float(want) if isinstance(got, (int, float)) and not isinstance(got, bool)
                    else got == want), (name, key)
        if not changed:
            unchanged.append(name)
    assert unchanged == ["search-e1", "rounds-2"]
    sdpo = load_config("toy", ARMS["sdpo"].overrides).ofsd
    assert (sdpo.student, sdpo.reference, sdpo.divergence, sdpo.tau_clip) == ("all", "first", "reverse", None)


def test_ablate_help_lists_every_arm_with_its_meaning(capsys):
    import subprocess
    import sys

    from searche1.cli import main
    from searche1.train.ablate import ARMS

    with pytest.raises(SystemExit) as done:
        main(["ablate", "--help"])
    assert done.value.code == 0
    lines = capsys.readouterr().out.splitlines()
    for name, arm in ARMS.items():
        assert any(line.split() == [name, *arm.meaning.split()] for line in lines), name
    # the parser reads the arm table before main sets the thread count, so building it must not load numpy
    loaded = subprocess.run([sys.executable, "-c", "import sys; from searche1.cli import build_parser; "
                             "build_parser(); print('numpy' in sys.modules)"], capture_output=True, text=True,
                            check=True).stdout
    assert loaded.strip() == "False"


def test_rounds_arms_reuse_the_shorter_runs_phases(tmp_path):
    """rounds-N+1 has rounds-N's phase keys as its first phases, so adopt_shared_phases hands a longer arm the
    rounds a shorter one has done (checked on fake finished phases: nothing trains)."""
    from searche1.fileio import write_json
    from searche1.train.ablate import adopt_shared_phases, arm_config
    from searche1.train.evolve import phase_dirs, phase_keys

    base = load_config("toy")
    cfgs = {n: arm_config(base, f"rounds-{n}", 0) for n in (1, 2, 3, 4)}
    keys = {n: phase_keys(cfg) for n, cfg in cfgs.items()}
    assert [len(k) for k in keys.values()] == [3, 5, 7, 9]
    for n in (2, 3, 4):
        assert keys[n][:-2] == keys[n - 1]
    assert keys[2] == phase_keys(arm_config(base, "search-e1", 0))  # the toy runs 2 rounds

    def finish(n: int, run, upto: int):  # a fake run of arm rounds-n whose first `upto` phases are done
        for path, key in list(zip(phase_dirs(cfgs[n], run), keys[n]))[:upto]:
            path.mkdir(parents=True, exist_ok=True)
            (path / "eval.json").write_text("{}")
            write_json(path / "phase.json", {"key": key, "model": str(path / "final")})

    one, two, three = (tmp_path / f"rounds-{n}" / "seed-0" for n in (1, 2, 3))
    finish(1, one, 3)
    assert adopt_shared_phases(cfgs[2], two, [one]) == ["00-base", "01-grpo-r1", "02-ofsd-r1"]
    adopted = json.loads((two / "phases" / "02-ofsd-r1" / "phase.json").read_text())
    assert adopted["shared_from"] == str((one / "phases" / "02-ofsd-r1").resolve())
    assert not (two / "phases" / "03-grpo-r2").exists()  # round 2 is rounds-2's own work
    finish(2, two, 5)
    assert adopt_shared_phases(cfgs[3], three, [one, two]) == [p.name for p in phase_dirs(cfgs[2], two)]
    assert adopt_shared_phases(cfgs[1], tmp_path / "other", [three])[-1] == "02-ofsd-r1"  # and the other way


def test_summarize_means_over_seeds_and_rounds():
    from searche1.train.ablate_report import summarize_arms

    def rows(base, r1, r2):
        return [{"round": 0, "average_em": base, "train_seconds": 0, "rollouts": 0},
                {"round": 1, "average_em": r1, "train_seconds": 10, "rollouts": 100},
                {"round": 2, "average_em": r2, "train_seconds": 10, "rollouts": 100}]

    report = summarize_arms({"a": [rows(0.1, 0.2, 0.3), rows(0.1, 0.2, 0.5)]})["a"]
    assert report["final_em_mean"] == pytest.approx(0.4) and report["final_em_std"] == pytest.approx(0.1414, 1e-3)
    assert report["em_by_round"] == pytest.approx({0: 0.1, 1: 0.2, 2: 0.4})
    assert report["rollouts"] == 200 and report["train_seconds"] == 20
    assert report["em_by_phase"] == pytest.approx([0.1, 0.2, 0.4]) and report["seconds_by_phase"] == [0, 10, 10]


def test_report_per_benchmark_best_phase_answers_and_equal_em_cost(tmp_path):
    """The report's other figures against hand counts: per-benchmark and multi-hop EM over seeds, the best phase
    (not the last), searches and tokens per answer and per solved question, answers without a search, and the
    seconds until an arm first reaches grpo-only's final EM."""
    from searche1.rollout.trajectory import Trajectory, Turn, save_trajectories
    from searche1.train.ablate_report import equal_em_cost, summarize_arms
    from searche1.train.ablate_tables import equal_em_seconds, report_markdown

    def rows(ems, seconds, final):  # phases with average EM `ems`; the last has per-benchmark EM `final`
        out = [{"phase": f"p{i}", "kind": "grpo" if i else "base", "round": i, "average_em": em, "train_seconds": s,
                "rollouts": 1} for i, (em, s) in enumerate(zip(ems, seconds))]
        out[-1]["em"] = final
        return out

    def traj(em, searches, generated):
        turns = [Turn(0, 1, "search") for _ in range(searches)] + [Turn(0, 1, "answer")]
        return Trajectory("b/q", 0, [1], [5] * generated, [1] * generated, [0.0] * generated, turns=turns, em=em)

    # a run's final phase, 3 answers: 2 searches and 10 tokens (right), 0 and 4, 1 and 7 (right); no OFSD phase
    finals = tmp_path / "run" / "phases" / "01-grpo-r1" / "eval.trajectories.jsonl"
    finals.parent.mkdir(parents=True)
    save_trajectories(finals, [traj(1.0, 2, 10), traj(0.0, 0, 4), traj(1.0, 1, 7)])
    one = tmp_path / "one.jsonl"  # another seed's single answer: 4 searches, 20 tokens, right
    save_trajectories(one, [traj(1.0, 4, 20)])
    runs = {"search-e1": [rows([0.1, 0.4, 0.3], [0, 10, 5], {"nq": 0.6, "hotpotqa": 0.2, "musique": 0.0}),
                          rows([0.1, 0.2, 0.5], [0, 20, 5], {"nq": 0.8, "hotpotqa": 0.4, "musique": 0.4})],
            "grpo-only": [rows([0.1, 0.45], [0, 30], {"nq": 1.0, "hotpotqa": 0.0, "musique": 0.0})] * 2}
    report = summarize_arms(runs, {"search-e1": [finals, one], "grpo-only": [finals, finals]})
    e1 = report["search-e1"]
    assert e1["em_by_benchmark"]["nq"] == pytest.approx((0.7, 0.1414), 1e-3)
    assert e1["multi_hop_em"] == pytest.approx((0.25, 0.2121), 1e-3)  # seeds: (0.2 + 0) / 2, (0.4 + 0.4) / 2
    assert e1["best_phase_em"] == pytest.approx((0.45, 0.0707), 1e-3)  # 0.4 (phase 1) and 0.5 (phase 2)
    # the 4 answers pooled (a mean of the seeds' means would give 2.5 searches an answer)
    assert e1["answers"] == pytest.approx({"searches_per_answer": 7 / 4, "tokens_per_answer": 41 / 4,
                                           "searches_per_solved": 7 / 3, "tokens_per_solved": 37 / 3,
                                           "no_search_share": 1 / 4})
    # mean EM by phase 0.1, 0.3, 0.4: grpo-only's final 0.45 is never reached; grpo-only reaches it after 30 s
    assert equal_em_cost(report, "grpo-only") == {"search-e1": None, "grpo-only": 30}
    report["search-e1"]["em_by_phase"] = [0.1, 0.45, 0.5]  # reached after the first phase's 15 s
    assert equal_em_cost(report, "grpo-only")["search-e1"] == 15
    # against the first arm's final EM, (0.3 + 0.5) / 2 = 0.4, as well: grpo-only reaches it with its only phase
    assert equal_em_cost(report, "search-e1") == {"search-e1": 15, "grpo-only": 30}
    text = report_markdown(report, load_config("toy"), equal_em_seconds(report))
    assert "seconds to grpo-only's final EM | seconds to search-e1's final EM |" in text
    assert "| 0.100 | 0.450 | - |" in text  # grpo-only ran one round of search-e1's two
    assert "| search-e1 | 0.700 ± 0.141 | 0.300 ± 0.141 | 0.200 ± 0.283 | 0.250 ± 0.212 | 0.450 ± 0.071 |" in text
    assert "| grpo-only | 1.00 | 7.0 | 1.50 | 8.5 | 33.3% |" in text and "| search-e1 | 20 | 0 | 3 | 15 | 15 |" in text
    report["grpo-only"]["final_em_mean"] = 0.05  # below the base's 0.1: every arm meets it before training
    text = report_markdown(report, load_config("toy"), equal_em_seconds(report))
    assert "| search-e1 | 20 | 0 | 3 | 0 (the base) | 15 |" in text


def test_time_matched_steps_fill_the_paired_runs_seconds(tmp_path):
    """Same wall-clock: the paired run's training seconds (GRPO, pool and distillation) over its own seconds per GRPO
    step, per round; the arm must come after the run it is matched to."""
    from searche1.train.ablate import run_ablation, time_matched_steps

    cfg = load_config("toy")  # 16 prompts x 5 samples = 80 rollouts a GRPO step
    rows = [{"kind": kind, "train_seconds": seconds, "rollouts": rollouts} for kind, seconds, rollouts in [
        ("base", 0.0, 0), ("grpo", 60.0, 960), ("ofsd", 20.0, 600), ("grpo", 60.0, 960), ("ofsd", 40.0, 600)]]
    # 24 GRPO steps in 120 s: 5 s a step; 180 s in all fit 36 steps, 18 a round
    assert time_matched_steps(cfg, rows) == 18
    assert time_matched_steps(load_config("toy", ["evolve.rounds=3"]), rows) == 12
    with pytest.raises(ConfigError, match="no GRPO phase with measured seconds"):
        time_matched_steps(cfg, [{**r, "train_seconds": 0.0} for r in rows])
    with pytest.raises(ConfigError, match="list search-e1 before it"):
        run_ablation(cfg, tmp_path / "abl", ["grpo-only-time", "search-e1"], seeds=1)


def test_ofsd_phase_figures_and_lost_questions_against_hand_counts(tmp_path):
    """An OFSD phase adopted from another run (its pool and summary only in the donor's folder), four test questions
    whose answers, searches, repeats and missing answers are set by hand; then the questions lost and won against
    another arm, which the paired comparison and the breakdown must count alike."""
    from searche1.rollout.trajectory import FinishReason, Trajectory, Turn, save_trajectories
    from searche1.train.ablate_report import _mean_over_seeds, lost_breakdown, ofsd_phase_figures, paired_against

    def traj(q, em, queries, answer="x", seen=""):
        turns = [Turn(0, 1, "search", query=x) for x in queries] + ([Turn(0, 1, "answer")] if answer else [])
        return Trajectory(q, 0, [1], [5], [1], [0.0], turns=turns, em=em, reward=em, answer=answer,
                          golden_answers=["Zorvak"], response_text=f"<information>{seen}</information>")

    run, donor = tmp_path / "run", tmp_path / "donor" / "02-ofsd-r1"
    evals = {"00-base": [], "01-grpo-r1": [traj("toy-nq/q0", 1, ["a"]), traj("toy-nq/q1", 0, ["a"]),
                                           traj("toy-hotpotqa/q2", 1, ["a", "b"]),
                                           traj("toy-hotpotqa/q3", 0, ["a"], answer=None)],
             "02-ofsd-r1": [traj("toy-nq/q0", 0, ["a", "a"], seen="Zorvak was born"), traj("toy-nq/q1", 1, ["a"]),
                            traj("toy-hotpotqa/q2", 1, ["a", "b"]),
                            traj("toy-hotpotqa/q3", 0, ["a", "b", "c"], answer=None)]}
    for name, trajectories in evals.items():
        (run / "phases" / name).mkdir(parents=True)
        save_trajectories(run / "phases" / name / "eval.trajectories.jsonl", trajectories)
    donor.mkdir(parents=True)  # 3 pool questions: one mixed, one all wrong, one all right
    failed = [traj(g, 0, ["a"]) for g in ("g2", "g3")]  # retrieval failed: neither right nor wrong, as in mining
    for t in failed:
        t.finish_reason = FinishReason.ERROR
    save_trajectories(donor / "pool.jsonl", [traj(f"g{g}", em, ["a"]) for g, em in
                                             [(0, 1), (0, 0), (1, 0), (1, 0), (2, 1), (2, 1)]] + failed)
    sizes = {"reference_tokens": 10.0, "student_tokens": 20.0, "reference_searches": 1.0, "student_searches": 2.0}
    (donor / "summary.json").write_text(json.dumps({"pairs": {"pairs": 2, **sizes}}))
    rows = [{"phase": "base", "kind": "base", "round": 0}, {"phase": "grpo-r1", "kind": "grpo", "round": 1},
            {"phase": "ofsd-r1", "kind": "ofsd", "round": 1, "shared_from": str(donor), "answers_changed": 0.5}]
    (figures,) = ofsd_phase_figures(run, rows)
    assert figures == pytest.approx({
        "round": 1, "pool_with_correct": 2 / 3, "pool_all_correct": 1 / 3, "pairs": 2, **sizes,
        "answers_changed": 0.5, "made_right": 1, "made_wrong": 1, "more_searches": 2, "fewer_searches": 0,
        "searches_before": 1.25, "searches_after": 2.0, "no_search_before": 0.0, "no_search_after": 0.0,
        "repeated_before": 0.0, "repeated_after": 0.25, "no_answer_before": 0.25, "no_answer_after": 0.25})
    # over seeds: pair sizes weighted by pairs, a seed without pairs left out of them
    empty = {**figures, "pairs": 0, "made_right": 0, **dict.fromkeys(sizes, float("nan"))}
    assert _mean_over_seeds((figures, empty))["reference_tokens"] == 10.0
    assert _mean_over_seeds((figures, empty))["made_right"] == 0.5
    # the donor's folder gone: its pool figures unknown (nan), not zero, and left out of the pair sizes
    gone = [*rows[:2], {**rows[2], "shared_from": str(tmp_path / "deleted")}]
    (missing,) = ofsd_phase_figures(run, gone)
    assert math.isnan(missing["pool_with_correct"]) and math.isnan(missing["pairs"]) and missing["made_right"] == 1
    assert _mean_over_seeds((figures, missing))["reference_tokens"] == 10.0

    other = tmp_path / "other.jsonl"  # right on q0 and q3, wrong on q1 and q2
    save_trajectories(other, [traj("toy-nq/q0", 1, ["a"]), traj("toy-nq/q1", 0, ["a"]),
                              traj("toy-hotpotqa/q2", 0, ["a"]), traj("toy-hotpotqa/q3", 1, ["a"])])
    mine = [run / "phases" / "02-ofsd-r1" / "eval.trajectories.jsonl"]
    assert paired_against({"a": mine, "b": [other]}, "b")["a"] | {"p": 0} == {"vs": "b", "won": 2, "lost": 2, "p": 0}
    assert lost_breakdown(mine, [other]) == {  # q0: read the gold and answered otherwise; q3: never answered
        "by_benchmark": {"nq": 1, "hotpotqa": 1},
        "by_kind": {"no answer": 1, "no search": 0, "gold never retrieved": 0, "gold retrieved, other answer": 1}}


def test_failure_kind_names_why_a_wrong_answer_is_wrong():
    from searche1.rollout.trajectory import Trajectory, Turn
    from searche1.train.ablate_report import failure_kind

    def wrong(answer, searches, seen):
        turns = [Turn(0, 1, "search") for _ in range(searches)] + [Turn(0, 1, "answer")]
        text = "".join(f"<information>Doc 1 {s}</information>" for s in seen) + "<answer> x </answer>"
        return Trajectory("b/q", 0, [1], [5], [1], [0.0], turns=turns, answer=answer, response_text=text,
                          golden_answers=["The Zorvak"])

    assert failure_kind(wrong(None, 1, ["Zorvak"])) == "no answer"
    assert failure_kind(wrong("Mordic", 0, [])) == "no search"
    assert failure_kind(wrong("Mordic", 2, ["Tiron was born in Zorvakia.", "other"])) == "gold never retrieved"
    assert failure_kind(wrong("Mordic", 1, ["Tiron was born in zorvak ."])) == "gold retrieved, other answer"
    truncated = wrong("Mordic", 1, [])  # a block cut before its closing tag, then the model's next turn
    truncated.response_text = "<information>Doc 1 Tiron was born in Zorvak<think> so </think><answer> x </answer>"
    assert failure_kind(truncated) == "gold retrieved, other answer"
    truncated.response_text = "<information>Doc 1 Tiron<think> Zorvak </think><answer> x </answer>"
    assert failure_kind(truncated) == "gold never retrieved"  # the model's own words are not a passage


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
    written = json.loads((out / "report.json").read_text())
    report = written["arms"]
    assert set(written["equal_em_seconds"]) == {"grpo-only", "search-e1"}
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
    # the questions search-e1 lost to grpo-only are grpo-only's wins over it, each given one reason
    lost = report["search-e1"]["lost"]
    assert lost["vs"] == "grpo-only" and sum(lost["by_kind"].values()) == sum(lost["by_benchmark"].values()) == \
        paired["won"]
    assert report["grpo-only"]["lost"]["vs"] == "search-e1"
    assert sum(report["grpo-only"]["lost"]["by_kind"].values()) == paired["lost"]
    ofsd = report["search-e1"]["ofsd_phases"]  # one OFSD phase a seed, its pool of 4 questions x 2
    assert [f["round"] for f in ofsd] == [1] and 0 <= ofsd[0]["pool_all_correct"] <= ofsd[0]["pool_with_correct"] <= 1
    assert ofsd[0]["made_right"] + ofsd[0]["made_wrong"] <= 14 and "ofsd_phases" in report["grpo-only"]
    assert all(0 <= ofsd[0][k] <= 1 for k in ("repeated_before", "repeated_after", "no_answer_after"))
    assert report["grpo-only"]["ofsd_phases"] == []
    from searche1.config import load_config as load
    from searche1.train.ablate import time_matched_steps

    # the same-wall-clock arm, one seed: GRPO alone, its steps from search-e1's measured seconds of that seed
    assert main([*args[:5], "--seeds", "1", "--arms", "search-e1,grpo-only-time", *args[9:]]) == 0
    timed = load(str(out / "grpo-only-time" / "seed-0" / "config.yaml"))
    assert timed.evolve.mode == "grpo-fixed"
    paired = json.loads((out / "search-e1" / "seed-0" / "summary.json").read_text())["phases"]
    assert timed.evolve.grpo_steps == time_matched_steps(timed, paired) >= 1  # the wiring (the sum: above)
    assert [p.name for p in sorted((out / "grpo-only-time" / "seed-0" / "phases").iterdir())] == [
        "00-base", "01-grpo-r1"]
    assert json.loads((out / "report.json").read_text())["arms"]["grpo-only-time"]["seed_overrides"] == [
        [f"evolve.grpo_steps={timed.evolve.grpo_steps}"]]
    assert re.search(r"\(\d / \d, no test\) \|", (out / "report.md").read_text())  # one seed: no t-test
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("phase.json")}
    assert main(args) == 0  # everything reused: no phase redone
    assert {p: p.stat().st_mtime_ns for p in out.rglob("phase.json")} == stamps
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
    # a later command's arm adopts the phases of an arm that an earlier command ran into the same --out
    assert main([*args[:3], "--out", str(more), "--seeds", "1", "--arms", "rounds-2", *args[9:]]) == 0
    rounds = [json.loads((more / "rounds-2" / "seed-0" / "phases" / p.name / "phase.json").read_text())
              .get("shared_from") for p in phases]
    assert rounds == shared[:3] + [str(p.resolve()) for p in phases[3:]]
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
    from searche1.train.ablate_report import paired_against, sign_test

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


def test_seed_paired_difference_and_t_test_over_seeds():
    """Seed by seed: differences 0.03, 0.01, 0.05 have mean 0.03 and std 0.02, t = 0.03 / (0.02 / sqrt 3); with 2
    degrees of freedom the two-sided p has a closed form, 1 - t / sqrt(2 + t^2)."""
    from searche1.train.ablate_report import seed_paired

    got = seed_paired([0.33, 0.21, 0.45], [0.30, 0.20, 0.40])
    t = 0.03 / (0.02 / math.sqrt(3))
    assert got == pytest.approx({"seed_diff_mean": 0.03, "seed_diff_std": 0.02, "seeds_better": 3, "seeds_worse": 0,
                                 "seed_p": 1 - t / math.sqrt(2 + t * t)})
    assert seed_paired([0.2, 0.3], [0.3, 0.2])["seeds_worse"] == 1
    assert math.isnan(seed_paired([0.3], [0.2])["seed_p"])  # one seed: no spread to test against
    assert math.isnan(seed_paired([0.3, 0.4], [0.2, 0.3])["seed_p"])  # identical differences: t undefined


def test_pool_reports_matches_seeds_by_number_and_counts_each_seeds_questions_once():
    """Seed 0-1 in one report, seed 2 in another; an arm run later against the reference's report. Seeds pair by
    number, a seed named twice keeps its first EM, a report whose won/lost covers seeds already counted adds
    nothing, and a partial overlap or no common seed is refused."""
    from searche1.train.ablate_report import pool_reports, seed_paired, sign_test

    def report(seed, arms):
        paired = {a: {"paired": {"vs": "ref", "won": won, "lost": lost}} if won is not None else {}
                  for a, (_, won, lost) in arms.items()}
        return {"config": {"seed": seed},
                "arms": {a: {"final_em": ems, "seeds": len(ems), **paired[a]} for a, (ems, _, _) in arms.items()}}

    first = report(0, {"ref": ([0.20, 0.30], None, None), "arm": ([0.25, 0.28], 5, 3)})
    second = report(2, {"ref": ([0.40], None, None), "arm": ([0.50], 4, 1)})
    got = pool_reports([first, second, report(0, {"arm": ([0.9, 0.9], 9, 9)})], "arm", "ref")
    assert got["seeds"] == [0, 1, 2] and got["questions_from_seeds"] == [0, 1, 2]
    want = {**seed_paired([0.25, 0.28, 0.50], [0.20, 0.30, 0.40]), "won": 9, "lost": 4, "p": sign_test(9, 4)}
    assert {k: got[k] for k in want} == pytest.approx(want)
    later = report(0, {"ref": ([0.21, 0.30, 0.40], None, None), "other": ([0.1, 0.2, 0.3], 1, 2)})
    alone = pool_reports([first, second, later], "other", "arm")  # compared only through the seeds
    assert alone["seeds"] == [0, 1, 2] and alone["questions_from_seeds"] == [] and math.isnan(alone["p"])
    with pytest.raises(ValueError, match="counted from an earlier report"):
        pool_reports([second, report(1, {"ref": ([0.3, 0.4], None, None), "arm": ([0.3, 0.4], 1, 1)})], "arm", "ref")
    with pytest.raises(ValueError, match="no seed has both 'arm'"):
        pool_reports([report(3, {"arm": ([0.3], None, None)}), first], "arm", "missing")


def test_pool_reports_script_prints_the_pooled_tests_and_names_a_bad_file(tmp_path):
    import subprocess
    import sys

    from conftest import REPO

    def run(*args):
        return subprocess.run([sys.executable, str(REPO / "scripts" / "pool_reports.py"), *args], capture_output=True,
                              text=True)

    for seed, ems in ((0, [0.2, 0.3]), (2, [0.1])):
        (tmp_path / f"r{seed}.json").write_text(json.dumps({"config": {"seed": seed}, "arms": {
            "ref": {"final_em": ems, "seeds": len(ems)},
            "arm": {"final_em": [em + 0.1 for em in ems], "seeds": len(ems), "paired": {"vs": "ref", "won": 6,
                                                                                         "lost": 1}}}}))
    got = run("--arm", "arm", "--vs", "ref", str(tmp_path / "r0.json"), str(tmp_path / "r2.json"))
    assert got.returncode == 0, got.stderr
    assert "seeds [0, 1, 2]: final EM +0.100" in got.stdout and "(3 better / 0 worse" in got.stdout
    assert "12 / 2 (sign test p = 0.013)" in got.stdout
    (tmp_path / "bad.json").write_text(json.dumps({"arms": {}}))
    got = run("--arm", "arm", "--vs", "ref", str(tmp_path / "bad.json"))
    assert got.returncode != 0 and "bad.json: not a report.json" in got.stderr


def test_same_wall_clock_arm_reads_the_paired_run_of_its_own_seed(tmp_path, monkeypatch):
    """With two seeds whose search-e1 runs took different seconds, each seed's grpo-only-time run gets the steps of
    its own seed's run (not the first seed's), and report.json records them per seed."""
    import searche1.train.evolve as evolve
    from searche1.rollout.trajectory import save_trajectories
    from searche1.train.ablate import run_ablation, time_matched_steps

    made = {}

    def fake_run_evolve(cfg, out, resume=False, device="cpu", log=print):
        slow = 2.0 if cfg.seed == 1 else 1.0  # seed 1's search-e1 trained twice as long per GRPO step
        rows = []
        for i, path in enumerate(evolve.phase_dirs(cfg, out)):
            kind, round_ = ("base", 0) if i == 0 else (path.name.split("-")[1], int(path.name[-1]))
            seconds = {"base": 0.0, "grpo": 60.0 * slow, "ofsd": 30.0}[kind]
            rows.append({"phase": path.name[3:], "kind": kind, "round": round_, "average_em": 0.2,
                         "train_seconds": seconds, "rollouts": 960 if kind == "grpo" else 0, "em": {"nq": 0.2}})
            path.mkdir(parents=True, exist_ok=True)
            save_trajectories(path / "eval.trajectories.jsonl", [])
        made[(out.parent.name, cfg.seed)] = cfg
        return rows

    monkeypatch.setattr(evolve, "run_evolve", fake_run_evolve)
    base = load_config("toy", ["evolve.rounds=1"])
    report = run_ablation(base, tmp_path / "abl", ["search-e1", "grpo-only-time"], seeds=2, log=lambda *a: None)
    steps = [made[("grpo-only-time", k)].evolve.grpo_steps for k in (0, 1)]
    rows = [fake_run_evolve(made[("search-e1", k)], tmp_path / "again" / f"s{k}") for k in (0, 1)]
    assert steps == [time_matched_steps(base, rows[0]), time_matched_steps(base, rows[1])] and steps[0] != steps[1]
    assert report["grpo-only-time"]["seed_overrides"] == [[f"evolve.grpo_steps={s}"] for s in steps]
    assert "seed_overrides" not in report["search-e1"]
