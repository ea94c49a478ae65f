"""scripts/comparison_probe.py, the measurement behind "comparisons are memorised, not copied": its answer
positions and rates with models whose predictions are known, and its fit on a real model."""

import pytest
from transformers import AutoTokenizer

from conftest import Oracle, load_script
from searche1.data.toyworld.generator import WorldConfig
from searche1.models import load_model, toy_base_path


@pytest.fixture(scope="module")
def probe():
    return load_script("comparison_probe")


def test_rates_score_an_oracle_1_and_a_model_one_token_late_0(probe):
    tokenizer = AutoTokenizer.from_pretrained(toy_base_path())
    episodes = probe.comparison_episodes(WorldConfig(seed=5, level=1), tokenizer, 6)
    assert len(episodes) == 6
    perfect = probe.subject_rates(Oracle(len(tokenizer), 1), episodes)
    assert perfect["questions"] == 6 and perfect["argmax_subject"] == perfect["argmax_right"] == 1.0
    late = probe.subject_rates(Oracle(len(tokenizer), 0), episodes)  # predicts "<answer>" itself
    assert late["argmax_subject"] == late["argmax_right"] == 0.0
    assert perfect["p_subject"] > late["p_subject"]  # one-hot logits: e / (e + V - 1) on the subject, not 1


def test_compare_style_measures_the_reasonings_choice(probe):
    """With quote style "compare" the position is the reasoning's "so the answer is", two tokens after the second
    value and before the <answer> that copies the choice."""
    tokenizer = AutoTokenizer.from_pretrained(toy_base_path())
    episodes = probe.comparison_episodes(WorldConfig(seed=5, level=1), tokenizer, 6, quote_style="compare")
    assert len(episodes) == 6
    for ids, _, at, subjects in episodes:
        assert ids[at + 1] in subjects and tokenizer.decode(ids[at - 3:at + 1]).split()[-3:] == ["the", "answer", "is"]
        assert ids.index(tokenizer.convert_tokens_to_ids("<answer>"), at) > at + 1


def test_fit_memorises_the_episodes_it_trains_on(probe):
    model, tokenizer = load_model("toy-base")
    train = probe.comparison_episodes(WorldConfig(seed=0, pretrain_index=999_000, level=1), tokenizer, 4)
    before = probe.subject_rates(model, train)
    probe.fit(model, tokenizer, train, steps=12, lr=1e-3)
    after = probe.subject_rates(model, train)
    assert before["argmax_right"] < 0.5 and after["argmax_right"] == 1.0


def test_answer_first_episodes_answer_with_the_first_subject(probe):
    tokenizer = AutoTokenizer.from_pretrained(toy_base_path())
    plain = probe.comparison_episodes(WorldConfig(seed=5, level=1), tokenizer, 12)
    first = probe.comparison_episodes(WorldConfig(seed=5, level=1), tokenizer, 12, answer_first=True)
    assert all(ids[at + 1] == subjects[0] for ids, _, at, subjects in first)
    assert not all(ids[at + 1] == subjects[0] for ids, _, at, subjects in plain)  # half are named second


def test_attention_finds_the_head_that_copies_the_first_name(probe):
    model, tokenizer = load_model("toy-base")
    model.set_attn_implementation("eager")
    episodes = probe.comparison_episodes(WorldConfig(seed=5, level=1), tokenizer, 3, answer_first=True)
    tables = probe.attention_to_first_name(model, episodes)
    shape = (model.config.num_hidden_layers, model.config.num_attention_heads)
    for table in tables.values():
        assert (len(table), len(table[0])) == shape and all(0 <= v <= 1 for row in table for v in row)
    assert max(max(row) for row in tables["from_before_first_copy"]) > 0.5  # the shipped base copies it
