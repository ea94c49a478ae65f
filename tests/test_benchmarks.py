"""The benchmark scripts run end to end at toy sizes (their figures are measured, never asserted here)."""

import json
import subprocess
import sys

import pytest

from conftest import REPO


@pytest.mark.slow
def test_retrieval_benchmark_smoke(tmp_path):
    out = tmp_path / "r.json"
    res = subprocess.run([sys.executable, str(REPO / "benchmarks" / "retrieval.py"), "--n-docs", "2000",
                          "--queries", "200", "--clients", "8", "--no-dense", "--out", str(out)],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    rows = json.loads(out.read_text())["rows"]
    assert [r["corpus"] for r in rows] == ["toy", "synthetic-2k", "synthetic-2k"]
    assert all(r["errors"] == 0 and r["concurrent_results_differ"] == 0 for r in rows)
    assert "concurrent_vs_serial" in res.stdout


def test_rollout_benchmark_smoke(tmp_path):
    from searche1.toy.warmstart import WarmstartConfig, warmstart

    model = tmp_path / "tiny"  # an untrained-size toy model: the smoke test checks the plumbing, not quality
    warmstart(model, WarmstartConfig(max_steps=1, hidden_size=32, num_layers=1, num_heads=2, num_kv_heads=1,
                                     intermediate_size=64, batch_tokens=512, bucket_episodes=2,
                                     questions_per_world=1, drills_per_world=1, probe_every=0), log=lambda *_: None)
    out = tmp_path / "r.json"
    res = subprocess.run([sys.executable, str(REPO / "benchmarks" / "rollout.py"), "--model", str(model),
                          "--questions", "4", "--pool", "10", "--turn-tokens", "32", "--threads", "1", "--repeats", "2",
                          "--out", str(out)],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    figures = json.loads(out.read_text())
    assert figures["generated_tokens"] > 0 and set(figures["tokens_per_second"]) == {"engine", "single_pass", "naive"}
    assert "naive re-tokenize loop" in res.stdout
    assert figures["pool"]["questions"] == 10 and figures["pool"]["refill_vs_chunks"] > 0
    assert all(len(r) == 2 for r in figures["seconds_each_round"].values())  # medians of 2 timed rounds
    # the profile of the same batch: every generated token is fed back once by a decode step, and the prefills
    # carry the prompts and the observations (plus padding slots)
    res = subprocess.run([sys.executable, str(REPO / "benchmarks" / "rollout_profile.py"), "--model", str(model),
                          "--questions", "4", "--turn-tokens", "32", "--threads", "1", "--out", str(out)],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    profile = json.loads(out.read_text())
    slots = profile["token_slots"]
    assert slots["decode real"] == profile["generated_tokens"] <= slots["decode"]
    assert slots["prefill real"] == profile["prompt_tokens"] + profile["observation_tokens"] <= slots["prefill"]


def test_grpo_vs_trl_benchmark_smoke(tmp_path):
    """benchmarks/grpo_vs_trl.py at toy size with a 1-step warm-started model (plumbing, not quality): both sides
    run, and from the same weights with the same questions and per-sample seeds their first step generates the
    same tokens."""
    pytest.importorskip("trl")
    from searche1.toy.warmstart import WarmstartConfig, warmstart

    model = tmp_path / "tiny"
    warmstart(model, WarmstartConfig(max_steps=1, hidden_size=32, num_layers=1, num_heads=2, num_kv_heads=1,
                                     intermediate_size=64, batch_tokens=512, bucket_episodes=2,
                                     questions_per_world=1, drills_per_world=1, probe_every=0), log=lambda *_: None)
    out = tmp_path / "g.json"
    res = subprocess.run([sys.executable, str(REPO / "benchmarks" / "grpo_vs_trl.py"), f"grpo.model={model}",
                          "rollout.max_response_length=16", "rollout.max_turns=1", "--steps", "2", "--warmup", "0",
                          "--prompts", "2", "--micro-batch", "5", "--threads", "1", "--out", str(out)],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    figures = json.loads(out.read_text())
    assert len(figures["steps"]["searche1"]) == len(figures["steps"]["trl"]) == 2
    assert figures["steps"]["searche1"][0]["tokens"] == figures["steps"]["trl"][0]["tokens"] > 0
    assert figures["searche1_vs_trl"]["step"] > 0 and "searche1 / TRL step time" in res.stdout


def test_ofsd_memory_benchmark_smoke(tmp_path):
    out = tmp_path / "m.json"
    res = subprocess.run([sys.executable, str(REPO / "benchmarks" / "ofsd_memory.py"), "--tokens", "64", "--vocab",
                          "512", "--hidden", "32", "--chunk", "16", "--repeats", "1", "--threads", "1",
                          "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    figures = json.loads(out.read_text())
    assert figures["same_loss"] and set(figures["median"]) == {"naive", "chunked"}
    assert "chunked / naive: memory" in res.stdout


def test_viewer_benchmark_smoke(small_evolve_run, tmp_path):
    out = tmp_path / "v.json"
    res = subprocess.run([sys.executable, str(REPO / "benchmarks" / "viewer.py"), "--source",
                          str(small_evolve_run / "phases" / "02-ofsd-r1" / "pool.jsonl"), "--n", "3000",
                          "--out", str(out)], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    figures = json.loads(out.read_text())
    assert figures["n"] == 3000 and figures["open_seconds"] > 0 and figures["naive_parse_seconds"] > 0
    assert "naive / open" in res.stdout
