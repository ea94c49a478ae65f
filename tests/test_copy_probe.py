"""scripts/copy_probe.py, the measurement behind "the teacher does not copy the answer": its answer positions and
its teacher-forced check, with models whose predictions are known."""

import importlib.util
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from transformers import AutoTokenizer

from searche1.data.toyworld.generator import WorldConfig
from searche1.models import toy_base_path


@pytest.fixture(scope="module")
def copy_probe():
    spec = importlib.util.spec_from_file_location("copy_probe", Path(__file__).parents[1] / "scripts" / "copy_probe.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Oracle:
    """Teacher-forced, predicts each next token of its input (shift = 1), or repeats the current one (shift = 0)."""

    def __init__(self, vocab: int, shift: int):
        self.vocab, self.shift = vocab, shift

    def __call__(self, input_ids):
        ids = input_ids[0]
        target = torch.cat([ids[self.shift:], ids[:self.shift]])  # the last position's target does not matter
        return SimpleNamespace(logits=torch.nn.functional.one_hot(target, self.vocab).float()[None])


def test_copy_rates_score_an_oracle_1_and_a_model_one_token_late_0(copy_probe):
    tokenizer = AutoTokenizer.from_pretrained(toy_base_path())
    world = WorldConfig(seed=5, level=1)
    perfect = copy_probe.copy_rates(Oracle(len(tokenizer), 1), tokenizer, world, per_set=2)
    assert perfect["questions"] >= 6 and all(perfect[k] == 1.0 for k in copy_probe.CONTEXTS)
    late = copy_probe.copy_rates(Oracle(len(tokenizer), 0), tokenizer, world, per_set=2)
    assert late["questions"] == perfect["questions"] and all(late[k] == 0.0 for k in copy_probe.CONTEXTS)
