"""vLLM backend against the HF backend on the same saved model (GPU only; skipped with a reason elsewhere)."""

import pytest
import torch

from conftest import tiny_qwen2
from searche1.data.qa import QAExample
from searche1.retrieval.bm25 import BM25Retriever
from searche1.retrieval.client import InProcessClient
from searche1.rollout.backends.base import SamplingParams
from searche1.rollout.backends.hf import HFBackend
from searche1.rollout.backends.vllm import VLLMBackend, vllm_available
from searche1.rollout.engine import EngineLimits, rollout

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not vllm_available(), reason="needs vLLM and a CUDA GPU (pip install searche1[vllm])")]


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
    limits = EngineLimits(max_turns=2, max_response_length=24)
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
