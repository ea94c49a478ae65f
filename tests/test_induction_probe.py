"""scripts/induction_probe.py: a fresh model of the warm start's shape is at chance on the copied half, and learns
to continue the copy from pure repeat rows within a hundred steps (docs/warmstart.md, "Continuing a copy")."""

import json

import pytest

from conftest import load_script


def run_probe(monkeypatch, tmp_path, *flags: str) -> list[dict]:
    probe = load_script("induction_probe")
    out = tmp_path / "probe.json"
    monkeypatch.setattr("sys.argv", ["induction_probe.py", "--out", str(out), *flags])
    probe.main()
    return json.loads(out.read_text())["log"]


def test_an_untrained_model_is_at_chance(monkeypatch, tmp_path):
    log = run_probe(monkeypatch, tmp_path, "--max-steps", "0")
    assert [entry["step"] for entry in log] == [0] and log[0]["accuracy"] < 0.05  # chance: 1 in 300 names


@pytest.mark.slow
def test_pure_repeat_rows_teach_the_copy_in_a_hundred_steps(monkeypatch, tmp_path):
    log = run_probe(monkeypatch, tmp_path, "--max-steps", "100")
    assert log[-1]["step"] == 100 and log[-1]["accuracy"] >= 0.9


@pytest.mark.parametrize("words,digit_years", [("names", False), ("years", True)])
def test_drill_accuracy_scores_an_oracle_1_and_a_model_one_token_late_0(monkeypatch, words, digit_years):
    from conftest import Oracle
    from searche1 import models
    from searche1.data.toyworld.tokenizer import build_toy_tokenizer

    probe = load_script("induction_probe")
    tokenizer = build_toy_tokenizer(spaced_values=True, digit_years=digit_years)
    scores = {}
    for shift in (1, 0):
        monkeypatch.setattr(models, "load_model", lambda *a, s=shift: (Oracle(len(tokenizer), s), tokenizer))
        scores[shift] = probe.drill_accuracy("m", words, drills=5)
    assert scores[1] == 1.0 and scores[0] < 0.1  # one token late is right only where a digit repeats ("1188")
