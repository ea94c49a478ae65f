"""Questions about a toy world's facts: three single-hop styles, bridge, comparison, 3-hop, bamboogle-style 2-hop.

Guarantees (checked by `_check_question_texts`): single-hop test facts are disjoint from single-hop train facts, no
test question text is a train question text, and texts are unique within a set.
"""

from __future__ import annotations

import collections
import math
import warnings
from dataclasses import replace

from searche1.data.qa import QAExample
from searche1.data.toyworld import names as words
from searche1.data.toyworld.names import RELATIONS, SINGLE_HOP_SETS, TEST_SETS


def _split_sizes(available: int, wanted: dict[str, int], what: str) -> list[int]:
    """Shrink the `wanted` sizes proportionally (with a warning) when fewer than their sum are available."""
    if sum(wanted.values()) <= available:
        return list(wanted.values())
    scale = available / sum(wanted.values())
    sizes = [int(w * scale) for w in wanted.values()]
    asked = ", ".join(f"{n} {label}" for label, n in wanted.items())
    got = ", ".join(f"{n} {label}" for label, n in zip(wanted, sizes))
    warnings.warn(f"toy world has only {available} {what} for the requested {asked}; using {got} "
                  "(add entities or lower the question counts)", stacklevel=4)
    return sizes


def _single_hop(rng, style, subject, kind, relation, facts, gold, split) -> QAExample:
    template = rng.choice(words.SINGLE_HOP_QUESTIONS[style][(kind, relation)])
    meta = {"style": style, "relation": relation, "hops": 1, "gold_doc_ids": [gold[(subject, relation)]],
            "subject": subject}
    return QAExample("", template.format(s=subject), [facts[(subject, relation)]], f"toy-{style}", split, meta)


def _chain_instances(chain: tuple[str, ...], entities, facts, gold) -> list[tuple[str, list[str], list[str]]]:
    """(subject, values hop by hop, gold passage per hop) for every entity where the whole chain is known."""
    first_kind = next(k for k, relations in RELATIONS.items() if chain[0] in relations)  # never founded_year
    out = []
    for subject in (s for s, kind in entities.items() if kind == first_kind):
        node, values, golds = subject, [], []
        for relation in chain:
            if (node, relation) not in facts:
                break
            golds.append(gold[(node, relation)])
            node = facts[(node, relation)]
            values.append(node)
        else:
            out.append((subject, values, golds))
    return out


def _chain_question(rng, style, chain, instance, split) -> QAExample:
    subject, values, golds = instance
    template = rng.choice(words.CHAIN_QUESTIONS[style][chain])
    meta = {"style": style, "chain": list(chain), "hops": len(chain), "gold_doc_ids": golds, "subject": subject,
            "bridge": values[:-1]}
    return QAExample("", template.format(s=subject), [values[-1]], f"toy-{style}", split, meta)


def _round_robin(groups: list[list]) -> list:
    """Interleave shuffled groups one item at a time, so every chain (or kind) gets an even share of a set."""
    out, groups = [], [list(g) for g in groups]
    while any(groups):
        out += [g.pop() for g in groups if g]
    return out


def _chain_set(rng, style, entities, facts, gold) -> list[tuple[tuple[str, ...], tuple]]:
    """All (chain, instance) pairs of a style's chains, shuffled within a chain and interleaved across chains.

    An even mix keeps the set from being dominated by chains with a small answer set (a few countries), which a
    question-only guesser could exploit."""
    groups = []
    for chain in words.CHAIN_QUESTIONS[style]:
        instances = _chain_instances(chain, entities, facts, gold)
        rng.shuffle(instances)
        groups.append([(chain, inst) for inst in instances])
    return _round_robin(groups)


def _comparison_questions(rng, n: int, entities, facts, gold) -> list[QAExample]:
    per_kind = []
    for kind, (relation, _) in words.COMPARISON_QUESTIONS.items():
        names = [s for s, k in entities.items() if k == kind and (s, relation) in facts]
        pairs = [(a, b) for i, a in enumerate(names) for b in names[i + 1:]
                 if facts[(a, relation)] != facts[(b, relation)]]  # no ties: every question has one answer
        rng.shuffle(pairs)
        per_kind.append([(kind, relation, pair) for pair in pairs])
    picked = _round_robin(per_kind)[:n]  # people's many pairs do not crowd out the countries'
    if len(picked) < n:
        warnings.warn(f"toy world has only {len(picked)} comparison pairs for the requested {n}", stacklevel=4)
    questions = []
    for i, (kind, relation, (a, b)) in enumerate(picked):
        template, wins = rng.choice(words.COMPARISON_QUESTIONS[kind][1])
        pick = min if wins == "min" else max
        answer = pick((a, b), key=lambda e: int(facts[(e, relation)]))
        other = b if answer == a else a
        # The answer is named first exactly half the time, so "pick the first name" scores 0.5, not more.
        first, second = (answer, other) if i % 2 == 0 else (other, answer)
        meta = {"style": "2wikimultihopqa", "relation": relation, "hops": 2,
                "gold_doc_ids": [gold[(first, relation)], gold[(second, relation)]], "subject": first,
                "subjects": [first, second], "values": [facts[(first, relation)], facts[(second, relation)]]}
        questions.append(QAExample("", template.format(a=first, b=second), [answer], "toy-2wikimultihopqa", "test",
                                   meta))
    rng.shuffle(questions)
    return questions


def _spread_answers(items: list, n: int, answer_of) -> list:
    """Reorder `items` so that among the first n no (relation or chain, answer) occurs more than ~1% of n times
    (when possible; `answer_of` returns that pair).

    Why: a few countries or languages answer many chains; capping each answer's share keeps a question-only guess
    (always say the most common answer for this kind of question) below 10% EM."""
    cap = max(1, math.ceil(0.01 * n))
    counts: collections.Counter = collections.Counter()
    first, rest = [], []
    for item in items:
        answer = answer_of(item)
        if len(first) < n and counts[answer] < cap:
            first.append(item)
            counts[answer] += 1
        else:
            rest.append(item)
    return first + rest  # a small world may still need the rest to fill n


def _make_questions(cfg, entities, facts, gold, rng) -> tuple[list[QAExample], dict[str, list[QAExample]]]:
    single = [(s, entities[s], r) for (s, r) in facts]
    rng.shuffle(single)
    n_pool, n_train = _split_sizes(
        len(single), {"test facts (3 x n_test)": 3 * cfg.n_test, "train facts": cfg.n_train_single}, "single-hop facts")
    single = _spread_answers(single, n_pool, lambda fact: (fact[2], facts[(fact[0], fact[2])]))
    test_pool, train_facts = single[:n_pool], single[n_pool:n_pool + n_train]
    n_each = min(cfg.n_test, n_pool)
    tests: dict[str, list[QAExample]] = {}
    final_answer = lambda pair: (pair[0], pair[1][1][-1])  # noqa: E731  (chain, (subject, values, golds))
    for i, style in enumerate(SINGLE_HOP_SETS):
        # Disjoint slices when the pool is big enough; overlapping (differently worded) slices otherwise.
        chosen = [test_pool[(i * n_each + j) % n_pool] for j in range(n_each)] if n_pool else []
        tests[style] = [_single_hop(rng, style, s, k, r, facts, gold, "test") for s, k, r in chosen]
    bridges = _chain_set(rng, "hotpotqa", entities, facts, gold)
    n_test_bridge, n_train_bridge = _split_sizes(
        len(bridges), {"test": cfg.n_test, "train": cfg.n_train_bridge}, "bridge chains")
    bridges = _spread_answers(bridges, n_test_bridge, final_answer)
    tests["hotpotqa"] = [_chain_question(rng, "hotpotqa", c, inst, "test") for c, inst in bridges[:n_test_bridge]]
    tests["2wikimultihopqa"] = _comparison_questions(rng, cfg.n_test, entities, facts, gold)
    for style, n in (("musique", cfg.n_test), ("bamboogle", cfg.n_test_bamboogle)):
        pairs = _spread_answers(_chain_set(rng, style, entities, facts, gold), n, final_answer)
        if len(pairs) < n:
            warnings.warn(f"toy world has only {len(pairs)} {style} chains for the requested {n}", stacklevel=3)
        tests[style] = [_chain_question(rng, style, c, inst, "test") for c, inst in pairs[:n]]
    train = [_single_hop(rng, "nq", s, k, r, facts, gold, "train") for s, k, r in train_facts]
    train += [_chain_question(rng, "hotpotqa", c, inst, "train")
              for c, inst in bridges[n_test_bridge:n_test_bridge + n_train_bridge]]
    rng.shuffle(train)
    train = _numbered(train, "toy-train")
    tests = {name: _numbered(tests[name], f"toy-{name}") for name in TEST_SETS}
    _check_question_texts(train, tests)
    return train, tests


def _numbered(examples: list[QAExample], prefix: str) -> list[QAExample]:
    # group_id="" lets QAExample derive it again from the dataset and the new id.
    return [replace(ex, id=f"{prefix}-{i}", index=i, group_id="") for i, ex in enumerate(examples)]


def _check_question_texts(train: list[QAExample], tests: dict[str, list[QAExample]]) -> None:
    """Construction guarantees these; a failure here is a generator bug, so fail loudly."""
    train_texts = [ex.question for ex in train]
    for name, examples in [("train", train)] + list(tests.items()):
        texts = [ex.question for ex in examples]
        if len(set(texts)) != len(texts):
            raise RuntimeError(f"toy world: duplicate question texts in {name}")
    leaked = {ex.question for exs in tests.values() for ex in exs} & set(train_texts)
    if leaked:
        raise RuntimeError(f"toy world: test questions also in train: {sorted(leaked)[:3]}")
