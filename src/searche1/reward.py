"""Exact-match reward (docs/protocol.md), plus sub-EM and token F1 as extra metrics.

Every EM figure a user sees is computed by `score` here.
"""

from __future__ import annotations

import collections
import enum
import re
import string
from dataclasses import dataclass
from typing import Sequence

ANSWER_PATTERN = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = set(string.punctuation)


class EMMode(str, enum.Enum):
    STRICT = "strict"  # last <answer> of the response; one match is enough
    SEARCHR1 = "searchr1"  # Search-R1: scan prompt + response, need >= 2 matches (the prompt's example is one)


def normalize_answer(s: str) -> str:
    """Lower-case, drop ASCII punctuation, replace a/an/the by a space, collapse whitespace (SQuAD rules)."""
    s = s.lower()
    s = "".join(ch for ch in s if ch not in _PUNCT)
    s = _ARTICLES.sub(" ", s)
    return " ".join(s.split())


def extract_answer(text: str, min_matches: int = 1) -> str | None:
    """The LAST `<answer>...</answer>` in `text`, stripped; None when fewer than `min_matches` matches."""
    matches = ANSWER_PATTERN.findall(text)
    if len(matches) < max(min_matches, 1):
        return None
    return matches[-1].strip()


def _normalized_golds(golden_answers: str | Sequence[str]) -> list[str]:
    """The golden answers normalised, without those that normalise to "" ("The The", "!!!"): an empty gold
    would match an empty answer by EM and be contained in every answer by sub-EM."""
    golds = [golden_answers] if isinstance(golden_answers, str) else golden_answers
    return [n for n in map(normalize_answer, golds) if n]


def _normalized_prediction(prediction: str | None) -> str:
    """"" for no answer and for one that normalises to nothing (`<answer> </answer>`, `<answer>the</answer>`):
    an empty prediction is never right (Search-R1 scored "the" against "a" as EM 1, a reward hack)."""
    return "" if prediction is None else normalize_answer(prediction)


def em(prediction: str | None, golden_answers: str | Sequence[str]) -> float:
    p = _normalized_prediction(prediction)
    return float(bool(p) and any(p == g for g in _normalized_golds(golden_answers)))


def sub_em(prediction: str | None, golden_answers: str | Sequence[str]) -> float:
    """1 when some normalised golden answer is contained in the normalised prediction."""
    p = _normalized_prediction(prediction)
    return float(bool(p) and any(g in p for g in _normalized_golds(golden_answers)))


def f1(prediction: str | None, golden_answers: str | Sequence[str]) -> float:
    """Max token-level F1 over the golden answers (bag of normalised tokens)."""
    pred = _normalized_prediction(prediction).split()
    if not pred:
        return 0.0
    best = 0.0
    for g in _normalized_golds(golden_answers):
        gold = g.split()
        common = sum((collections.Counter(pred) & collections.Counter(gold)).values())
        if common == 0:
            continue
        precision, recall = common / len(pred), common / len(gold)
        best = max(best, 2 * precision * recall / (precision + recall))
    return best


@dataclass(frozen=True)
class Score:
    answer: str | None
    em: float
    sub_em: float
    f1: float


def score(
    response: str,
    golden_answers: str | Sequence[str],
    mode: EMMode | str = EMMode.STRICT,
    prompt: str = "",
) -> Score:
    """Score one response. In `searchr1` mode the decoded prompt is prepended and two matches are required."""
    mode = EMMode(mode)
    if mode is EMMode.SEARCHR1:
        answer = extract_answer(prompt + response, min_matches=2)
    else:
        answer = extract_answer(response)
    return Score(answer, em(answer, golden_answers), sub_em(answer, golden_answers), f1(answer, golden_answers))
