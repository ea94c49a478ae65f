"""The metrics writer: the JSONL record, and its optional TensorBoard / Weights & Biases mirrors."""

import json
import sys
import types

import pytest

from searche1.metrics import MetricsWriter


def test_jsonl_records_and_non_finite_values(tmp_path):
    with MetricsWriter(tmp_path / "m.jsonl") as m:
        m.log({"a": 1.5, "b": float("nan"), "name": "x"}, step=1, prefix="grpo")
    with MetricsWriter(tmp_path / "m.jsonl", append=True) as m:
        m.log({"a": 2.0}, step=2, prefix="grpo")
    records = [json.loads(line) for line in (tmp_path / "m.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2]
    assert records[0]["grpo/a"] == 1.5 and records[0]["grpo/b"] is None and records[0]["grpo/name"] == "x"


def test_tensorboard_mirror_holds_the_numeric_values(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    with MetricsWriter(tmp_path / "m.jsonl", report_to=["tensorboard"]) as m:
        for step in (1, 2):
            m.log({"reward_mean": 0.25 * step, "skipped": 0, "note": "text is not a scalar"}, step=step,
                  prefix="grpo")
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    assert sorted(events.Tags()["scalars"]) == ["grpo/reward_mean", "grpo/skipped"]
    assert [(e.step, e.value) for e in events.Scalars("grpo/reward_mean")] == [(1, 0.25), (2, 0.5)]
    # resumed after step 1's checkpoint: step 2 runs again and replaces what the killed run wrote
    with MetricsWriter(tmp_path / "m.jsonl", append=True, report_to=["tensorboard"], first_step=2) as m:
        m.log({"reward_mean": 0.75}, step=2, prefix="grpo")
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    assert [(e.step, e.value) for e in events.Scalars("grpo/reward_mean")] == [(1, 0.25), (2, 0.75)]


def test_wandb_mirror_logs_every_record_and_finishes(tmp_path, monkeypatch):
    """A stand-in `wandb` module records the calls (the real package needs an account or a large install); what
    is checked is our side of the API: one init named after the run, a log per record at its step, a finish."""
    calls = []

    class Run:
        def define_metric(self, name, step_metric):
            calls.append(("define", name, step_metric))

        def log(self, values):
            calls.append(("log", values))

        def finish(self):
            calls.append(("finish",))

    fake = types.ModuleType("wandb")
    fake.init = lambda **kw: calls.append(("init", kw)) or Run()
    monkeypatch.setitem(sys.modules, "wandb", fake)
    with MetricsWriter(tmp_path / "run" / "m.jsonl", report_to=["wandb"], config={"seed": 3}) as m:
        m.log({"kl": 0.01}, step=7, prefix="grpo")
    assert calls[0][0] == "init" and calls[0][1]["name"] == "run" and calls[0][1]["config"] == {"seed": 3}
    assert calls[0][1]["resume"] == "allow" and calls[1] == ("define", "*", "step")
    assert calls[2] == ("log", {"grpo/kl": 0.01, "step": 7}) and calls[3] == ("finish",)
    first_id = calls[0][1]["id"]
    calls.clear()
    MetricsWriter(tmp_path / "run" / "m.jsonl", append=True, report_to=["wandb"]).close()  # resumed: same W&B run
    assert calls[0][1]["id"] == first_id
    calls.clear()
    MetricsWriter(tmp_path / "run" / "m.jsonl", report_to=["wandb"]).close()  # a new run in the same place: new id
    assert calls[0][1]["id"] != first_id


def test_a_mirror_that_is_not_installed_is_a_clear_error(tmp_path, monkeypatch):
    from searche1.config import ConfigError, load_config

    monkeypatch.setitem(sys.modules, "wandb", None)  # import fails
    with pytest.raises(ImportError, match="pip install wandb"):
        MetricsWriter(tmp_path / "m.jsonl", report_to=["wandb"])
    assert not (tmp_path / "m.jsonl").exists()  # nothing half-made
    with pytest.raises(ConfigError, match="report_to: unknown"):
        load_config("toy", ["report_to=[mlflow]"])


def test_moving_average_and_grpo_report(tmp_path):
    from searche1.plots import moving_average, write_grpo_report

    assert moving_average([1.0, 3.0, 5.0, 7.0], 2) == [1.0, 2.0, 4.0, 6.0]
    with MetricsWriter(tmp_path / "metrics.jsonl") as m:
        for step in range(1, 13):
            m.log({"reward_mean": step / 100, "kl": 0.01, "rollout_seconds": 1.0, "train_seconds": 2.0}, step=step,
                  prefix="grpo")
    png, summary = write_grpo_report(tmp_path)
    assert png.read_bytes()[:4] == b"\x89PNG"
    text = summary.read_text()
    assert "12 steps" in text and "| reward_mean | 0.055 | 0.075 |" in text  # means of steps 1-10 and 3-12
    (tmp_path / "metrics.jsonl").write_text('{"step": 1, "eval/x": 1}\n')
    with pytest.raises(ValueError, match="no grpo/ records"):
        write_grpo_report(tmp_path)


def test_read_steps_keeps_the_last_record_of_each_step_in_step_order(tmp_path):
    """A resumed run logs the steps after its checkpoint again: those records win, each step once."""
    from searche1.plots import read_steps

    lines = [{"step": 1, "grpo/x": 1}, {"step": 2, "grpo/x": 2}, {"step": 3, "grpo/x": 3},
             {"step": 2, "grpo/x": 20}, {"step": 3, "grpo/x": 30}, {"step": 4, "grpo/x": 40},
             {"step": 4, "ofsd/x": 0}]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    assert read_steps(tmp_path / "metrics.jsonl", "grpo") == [{"step": 1, "x": 1}, {"step": 2, "x": 20},
                                                               {"step": 3, "x": 30}, {"step": 4, "x": 40}]
