"""The toy base policy's parts: tokenizer, scripted searcher, masked loss, and a two-step training run."""

import json
import random

import pytest
import torch

from searche1 import protocol
from searche1.data.toyworld.names import NAME_POOL


@pytest.fixture(scope="module")
def toy_tokenizer():
    from searche1.data.toyworld.tokenizer import build_toy_tokenizer

    return build_toy_tokenizer()


def test_tokenizer_single_tokens_and_exact_decoding(toy_tokenizer):
    from searche1.data.toyworld.tokenizer import single_token_words

    for w in ["<search>", "</answer>", NAME_POOL[0], NAME_POOL[-1], "1873", "900", "2005", "painter"]:
        assert len(toy_tokenizer.encode(w, add_special_tokens=False)) == 1, w
    assert len(set(single_token_words())) == len(single_token_words())
    texts = [protocol.make_prompt_text(f"where was {NAME_POOL[3]} born"), protocol.INVALID_ACTION_TEXT,
             protocol.information_block([{"id": "1", "contents": f'"{NAME_POOL[5]}"\n{NAME_POOL[5]}\'s city, 1873.'}]),
             "<think> x </think>\n<search> q </search>", "unicode: café ☕"]
    for text in texts:
        assert toy_tokenizer.decode(toy_tokenizer.encode(text, add_special_tokens=False)) == text


def test_tokenizer_is_deterministic(toy_tokenizer):
    from searche1.data.toyworld.tokenizer import build_toy_tokenizer

    assert build_toy_tokenizer().get_vocab() == toy_tokenizer.get_vocab()


@pytest.fixture(scope="module")
def pretrain_world():
    from searche1.data.toyworld.generator import WorldConfig, generate_world
    from searche1.retrieval.bm25 import BM25Retriever
    from searche1.retrieval.client import InProcessClient

    world = generate_world(WorldConfig(seed=0, pretrain_index=1))
    return world, InProcessClient(BM25Retriever.build(world.docs))


def test_scripted_searcher_follows_the_protocol(pretrain_world):
    from searche1.data.toyworld.demos import Imperfections, demonstrate
    from searche1.reward import em

    world, client = pretrain_world
    facts, rng = world.fact_map(), random.Random(0)
    examples = world.train[:150] + [ex for exs in world.tests.values() for ex in exs[:20]]
    correct = 0
    for ex in examples:
        segments = demonstrate(ex, facts, client, rng)
        written = [t for t, w in segments if w]
        for text in written[:-1]:
            assert protocol.parse_action(text).kind is protocol.ActionKind.SEARCH and text.endswith("</search>")
        last = protocol.parse_action(written[-1])
        assert last.kind is protocol.ActionKind.ANSWER and written[-1].endswith("</answer>")
        assert len(written) - 1 <= protocol.DEFAULT_MAX_TURNS
        for text, w in segments:
            if not w:
                assert text.startswith("\n\n<information>") and text.endswith("</information>\n\n")
        correct += em(last.content, ex.golden_answers)
    # imperfect on purpose, but mostly right: it reads real retrieval results
    assert 0.5 < correct / len(examples) < 0.95
    perfect = Imperfections(0, 0, 0, 0)
    ex = world.train[0]
    assert protocol.parse_action(demonstrate(ex, facts, client, rng, perfect)[-1][0]).content == ex.golden_answers[0]


def test_masked_lm_loss_matches_brute_force():
    from searche1.train.warmstart import masked_lm_loss

    torch.manual_seed(0)
    logits = torch.randn(2, 5, 7)
    ids = torch.randint(0, 7, (2, 5))
    mask = torch.tensor([[0, 1, 1, 0, 1], [0, 0, 0, 0, 0]])
    total, n = 0.0, 0
    for b in range(2):
        for t in range(1, 5):
            if mask[b, t]:
                total += -torch.log_softmax(logits[b, t - 1], -1)[ids[b, t]].item()
                n += 1
    assert masked_lm_loss(logits, ids, mask).item() == pytest.approx(total / n, rel=1e-5)
    assert masked_lm_loss(logits, ids, torch.zeros_like(mask)).item() == 0.0  # all masked: no signal, no NaN


def test_encode_demo_masks(toy_tokenizer):
    from searche1.train.warmstart import encode_demo

    segs = [("<search> q </search>", True), ("\n\n<information>x</information>\n\n", False),
            ("<answer> a </answer>", True)]
    ids, mask = encode_demo([1, 2], segs, toy_tokenizer, max_obs_length=3)
    assert mask[:2] == [0, 0] and ids[-1] == toy_tokenizer.eos_token_id and mask[-1] == 1
    assert mask.count(0) == 2 + 3  # prompt + truncated observation
    _, mask = encode_demo([1, 2], segs, toy_tokenizer, max_obs_length=3, loss_on_observations=True)
    assert mask.count(0) == 2  # only the prompt stays untrained


def test_packed_rows():
    from searche1.train.warmstart import packed_rows

    episodes = [([1, 2, 3], [0, 1, 1]), ([4, 5], [1, 1]), ([6, 7, 8, 9], [0, 0, 1, 1])]
    assert list(packed_rows(iter(episodes), 4)) == [([1, 2, 3, 4], [0, 1, 1, 1]), ([5, 6, 7, 8], [1, 0, 0, 1])]


def test_warmstart_runs_and_saves(tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from searche1.train.warmstart import WarmstartConfig, warmstart

    cfg = WarmstartConfig(minutes=5, max_steps=2, hidden_size=32, num_layers=1, num_heads=2, num_kv_heads=1,
                          intermediate_size=64, batch_size=2, seq_len=256, questions_per_world=2)
    report = warmstart(tmp_path / "m", cfg, log=lambda *_: None)
    assert report["steps"] == 2 and report["trained_tokens"] > 0
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "m")
    tok = AutoTokenizer.from_pretrained(tmp_path / "m")
    assert model.config.vocab_size == len(tok) and tok.eos_token == "<|endoftext|>"
    assert json.loads((tmp_path / "m" / "warmstart.json").read_text())["steps"] == 2
