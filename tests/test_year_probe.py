"""scripts/year_probe.py `copied`: the kinds of answer tokens and the teacher-forced rate per kind, with models whose
predictions are known."""

import pytest

from conftest import Oracle, load_script
from searche1.data.toyworld.tokenizer import build_toy_tokenizer


@pytest.fixture(scope="module")
def year_probe():
    return load_script("year_probe")


def test_answer_kinds(year_probe):
    kind = year_probe.answer_kind
    assert [kind(" Zorvak", 0), kind(" 1873", 0), kind(" 18", 0), kind("73", 1), kind(" 9", 0)] == [
        "value", "year", "century", "tail", "century"]
    assert [kind("1", 1), kind("8", 2), kind("3", 4)] == ["digit 1", "digit 2", "digit 4"]


@pytest.mark.parametrize("years", ["year_pairs", "digit_years"])
def test_copied_scores_an_oracle_1_and_a_model_one_token_late_0(year_probe, years):
    run = {"spaced_values": True, "question_only_prompt": True, years: True}
    tokenizer = build_toy_tokenizer(spaced_values=True, question_only_prompt=True, **{years: True})
    perfect = year_probe.copied_rates(Oracle(len(tokenizer), 1), tokenizer, run, episodes=40)
    late = year_probe.copied_rates(Oracle(len(tokenizer), 0), tokenizer, run, episodes=40)
    expected = {"century", "tail"} if years == "year_pairs" else {"digit 1", "digit 2", "digit 3"}
    assert expected <= set(perfect) and "value" in perfect
    assert all(a == b > 0 for a, b in perfect.values())
    assert late.keys() == perfect.keys()
    # one token late: never right where the token before is another kind; later digits only by a repeated digit
    assert all(late[k][0] == 0 for k in ("value", "century", "tail", "digit 1") if k in late)
    assert all(a < 0.5 * b for a, b in late.values())


def test_ordered_sorts_the_years_along_one_direction_and_keeps_their_norms(year_probe):
    import torch

    rows = torch.randn(50, 16, generator=torch.Generator().manual_seed(0)) * 3
    out = year_probe.ordered(rows, 10.0)
    assert torch.allclose(out.norm(dim=-1), rows.norm(dim=-1))
    direction = torch.nn.functional.normalize(torch.randn(16, generator=torch.Generator().manual_seed(1)), dim=0)
    along = out @ direction / out.norm(dim=-1)  # cosine with the direction: -1 -> 1 in year order
    rank = torch.arange(50.0)
    assert torch.corrcoef(torch.stack([along, rank]))[0, 1] > 0.85 and along[0] < -0.9 and along[-1] > 0.9
    before = rows @ direction / rows.norm(dim=-1)
    assert abs(torch.corrcoef(torch.stack([before, rank]))[0, 1]) < 0.5
    assert torch.allclose(year_probe.ordered(rows, 0.0), rows, atol=1e-6)
