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


def _as_list(golden_answers: str | Sequence[str]) -> list[str]:
    return [golden_answers] if isinstance(golden_answers, str) else list(golden_answers)


def em(prediction: str | None, golden_answers: str | Sequence[str]) -> float:
    if prediction is None:
        return 0.0
    p = normalize_answer(prediction)
    return float(any(p == normalize_answer(g) for g in _as_list(golden_answers)))


def sub_em(prediction: str | None, golden_answers: str | Sequence[str]) -> float:
    """1 when some normalised golden answer is contained in the normalised prediction."""
    if prediction is None:
        return 0.0
    p = normalize_answer(prediction)
    return float(any(normalize_answer(g) in p for g in _as_list(golden_answers)))


def f1(prediction: str | None, golden_answers: str | Sequence[str]) -> float:
    """Max token-level F1 over the golden answers (bag of normalised tokens)."""
    if prediction is None:
        return 0.0
    pred = normalize_answer(prediction).split()
    best = 0.0
    for g in _as_list(golden_answers):
        gold = normalize_answer(g).split()
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
