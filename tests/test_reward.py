"""Table-driven tests of EM / sub-EM / F1 and answer extraction, against a brute-force reference."""

import re
import string

import pytest

from searche1 import reward as R


def brute_normalize(s):
    s = s.lower()
    s = "".join(c for c in s if c not in set(string.punctuation))
    s = re.sub(r"\b(a|an|the)\b", " ", s)
    return " ".join(s.split())


@pytest.mark.parametrize("raw,expected", [
    ("The Beatles", "beatles"),
    ("  A  man, a plan; an canal!  ", "man plan canal"),
    ("Theatre", "theatre"),  # "the" only as a word
    ("U.S.A.", "usa"),
    ("rock-n-roll", "rocknroll"),
    ("Café Noir", "café noir"),  # non-ASCII letters kept, lower-cased
    ("“quoted”", "“quoted”"),  # unicode quotes are not string.punctuation
    ("", ""),
    ("a an the", ""),
    ("Tab\tand\nnewline", "tab and newline"),
])
def test_normalize(raw, expected):
    assert R.normalize_answer(raw) == expected == brute_normalize(raw)


@pytest.mark.parametrize("response,answer", [
    ("<answer> Paris </answer>", "Paris"),
    ("<answer>x</answer> then <answer> y </answer>", "y"),  # the LAST answer
    ("<answer>multi\nline</answer>", "multi\nline"),
    ("<answer></answer>", ""),
    ("<answer>unclosed", None),
    ("no answer", None),
    ("<answer><answer>x</answer>", "<answer>x"),  # nested open tag stays in the text
    ("</answer><answer>z</answer>", "z"),
])
def test_extract_answer(response, answer):
    assert R.extract_answer(response) == answer


@pytest.mark.parametrize("response,golden,em,sub,f1", [
    ("<answer>The Beatles</answer>", ["beatles"], 1.0, 1.0, 1.0),
    ("<answer>beatles!</answer>", "The Beatles", 1.0, 1.0, 1.0),  # a bare string is one golden answer
    ("<answer>the beatles band</answer>", ["Beatles"], 0.0, 1.0, 2 * 0.5 * 1 / 1.5),
    ("<answer>Paris</answer>", ["London", "paris"], 1.0, 1.0, 1.0),  # any golden answer
    ("<answer>Lyon</answer>", ["Paris"], 0.0, 0.0, 0.0),
    ("no answer tag", ["Paris"], 0.0, 0.0, 0.0),
    ("<answer></answer>", ["Paris"], 0.0, 0.0, 0.0),
    # an answer that normalises to nothing is never right (Search-R1 scored this EM 1: a reward hack)
    ("<answer>the</answer>", ["a"], 0.0, 0.0, 0.0),
    ("<answer> </answer>", [""], 0.0, 0.0, 0.0),
    ("<answer>Paris</answer>", ["!!!"], 0.0, 0.0, 0.0),  # a gold that normalises to "" is in every answer
    ("<answer>Paris</answer>", ["The The", "paris"], 1.0, 1.0, 1.0),
    ("<answer>Café</answer>", ["café"], 1.0, 1.0, 1.0),
    ("<answer>naïve</answer>", ["naive"], 0.0, 0.0, 0.0),
    ("<answer>x</answer><answer>Paris</answer>", ["Paris"], 1.0, 1.0, 1.0),
])
def test_score_table(response, golden, em, sub, f1):
    s = R.score(response, golden)
    assert (s.em, s.sub_em) == (em, sub)
    assert s.f1 == pytest.approx(f1)


def test_searchr1_mode_needs_two_matches():
    from searche1.protocol import make_prompt_text

    prompt = make_prompt_text("capital of France")  # contains the example <answer> Beijing </answer>
    assert R.score("<answer>Paris</answer>", ["Paris"], "searchr1", prompt).em == 1.0
    assert R.score("<answer>Paris</answer>", ["Paris"], "searchr1", prompt="").em == 0.0  # one match only
    # Search-R1's quirk, kept for comparable numbers: the prompt itself holds two matches ("<answer> and
    # </answer>" and the example "<answer> Beijing </answer>"), so a response with no answer scores as "Beijing".
    assert R.score("no answer here", ["Beijing"], "searchr1", prompt).answer == "Beijing"
    assert R.score("no answer here", ["Beijing"], "strict", prompt).em == 0.0
    assert R.score("<answer>Paris</answer>", ["Paris"], "strict").em == 1.0
    with pytest.raises(ValueError):
        R.score("x", ["x"], "nope")


def brute_f1(pred, gold):
    p, g = brute_normalize(pred).split(), brute_normalize(gold).split()
    common = 0
    g_left = list(g)
    for tok in p:
        if tok in g_left:
            g_left.remove(tok)
            common += 1
    if common == 0:
        return 0.0
    pr, rc = common / len(p), common / len(g)
    return 2 * pr * rc / (pr + rc)


@pytest.mark.parametrize("pred,gold", [
    ("new york city", "New York"), ("a b c d", "d c"), ("x x y", "x y y"), ("one", "two"), ("the end", "end"),
])
def test_f1_matches_brute_force(pred, gold):
    assert R.f1(pred, [gold]) == pytest.approx(brute_f1(pred, gold))
