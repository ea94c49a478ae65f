"""scripts/copy_probe.py, the measurement behind "the teacher does not copy the answer": its answer positions and
its teacher-forced check, with models whose predictions are known."""

import pytest
from transformers import AutoTokenizer

from conftest import Oracle, load_script
from searche1.data.toyworld.generator import WorldConfig
from searche1.models import toy_base_path


@pytest.fixture(scope="module")
def copy_probe():
    return load_script("copy_probe")


def test_copy_rates_score_an_oracle_1_and_a_model_one_token_late_0(copy_probe):
    tokenizer = AutoTokenizer.from_pretrained(toy_base_path())
    world = WorldConfig(seed=5, level=1)
    perfect = copy_probe.copy_rates(Oracle(len(tokenizer), 1), tokenizer, world, per_set=2)
    assert perfect["questions"] >= 6 and all(perfect[k] == 1.0 for k in copy_probe.CONTEXTS)
    late = copy_probe.copy_rates(Oracle(len(tokenizer), 0), tokenizer, world, per_set=2)
    assert late["questions"] == perfect["questions"] and all(late[k] == 0.0 for k in copy_probe.CONTEXTS)
