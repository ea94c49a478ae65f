"""OFSD pair mining: shortest correct reference (ties -> fewer searches), student strategies, questions without a
correct sibling skipped, never a trajectory paired with itself; and the teacher's privileged prompt."""

import pytest

from searche1 import protocol
from searche1.rollout.trajectory import FinishReason, Trajectory, Turn
from searche1.train.pairs import (
    PRIVILEGED_BEGIN,
    PRIVILEGED_END,
    action_text,
    answered_samples,
    mine_pairs,
    pair_stats,
    pick_reference,
    privileged_prompt,
)


def traj(group, index, generated, reward, searches=0, answer="x", queries=(), obs=8):
    """A trajectory with `generated` sampled tokens and `searches` search turns, each followed by `obs` inserted
    tokens (several, so that generated and total lengths differ)."""
    ids, mask, turns = [], [], []
    per_turn = max(generated // (searches + 1), 1)
    for s in range(searches):
        start = len(ids)
        ids += [1] * per_turn
        mask += [1] * per_turn
        turns.append(Turn(start, len(ids), "search", queries[s] if s < len(queries) else f"q{s}",
                          observation=(len(ids), len(ids) + obs)))
        ids += [2] * obs
        mask += [0] * obs
    rest = generated - sum(mask)
    start = len(ids)
    ids += [3] * rest
    mask += [1] * rest
    turns.append(Turn(start, len(ids), "answer"))
    return Trajectory(group_id=group, sample_index=index, prompt_ids=[9], response_ids=ids, response_mask=mask,
                      logprobs=[0.0] * len(ids), turns=turns, answer=answer, reward=reward, em=reward)


@pytest.fixture
def pool():
    return [traj("a", 0, 30, 1.0, searches=2), traj("a", 1, 20, 1.0, searches=2), traj("a", 2, 20, 1.0, searches=1),
            traj("a", 3, 50, 0.0, searches=3), traj("a", 4, 10, 0.0),
            traj("b", 0, 10, 0.0), traj("b", 1, 12, 0.0),  # no correct sibling
            traj("c", 0, 15, 1.0)]  # correct but alone: no student


def test_reference_is_the_shortest_correct_ties_broken_by_searches(pool):
    ref = pick_reference([t for t in pool if t.group_id == "a"])
    assert (ref.sample_index, ref.n_generated, ref.n_searches) == (2, 20, 1)
    assert pick_reference([t for t in pool if t.group_id == "b"]) is None
    import random

    anys = {pick_reference([t for t in pool if t.group_id == "a"], "any", random.Random(s)).sample_index
            for s in range(30)}
    assert anys == {0, 1, 2}  # any correct one, never an incorrect one


@pytest.mark.parametrize("strategy", ["kl", "longest", "lexical", "random", "all", "failed"])
def test_every_strategy_skips_unpaired_questions_and_never_self_pairs(pool, strategy):
    pairs = mine_pairs(pool, strategy, kl_scores=lambda ref, t: float(t.sample_index))
    assert pairs and all(p.reference is not p.student for p in pairs)
    assert {p.reference.group_id for p in pairs} == {"a"}
    assert all(p.reference.sample_index == 2 and p.student.group_id == "a" for p in pairs)
    assert len(pairs) == {"all": 4, "failed": 2}.get(strategy, 1)


def test_longest_and_first_references(pool):
    siblings = [t for t in pool if t.group_id == "a"]
    assert pick_reference(siblings, "longest").sample_index == 0  # 30 tokens; the 50-token sibling is wrong
    assert pick_reference(siblings, "first").sample_index == 0
    tied = [traj("q", 0, 9, 0.0), traj("q", 1, 20, 1.0, searches=1), traj("q", 2, 20, 1.0, searches=2),
            traj("q", 3, 20, 1.0, searches=2), traj("q", 4, 5, 1.0)]
    assert pick_reference(tied, "longest").sample_index == 2  # ties -> more searches, then the lower index
    assert pick_reference(tied, "first").sample_index == 1  # the lowest index among the correct only
    assert pick_reference(tied[:1], "longest") is None and pick_reference(tied[:1], "first") is None
    assert mine_pairs(tied, "longest", "longest")[0].reference.sample_index == 2


def test_failed_students_are_every_wrong_sibling(pool):
    pairs = mine_pairs(pool, "failed")
    assert [(p.reference.sample_index, p.student.sample_index) for p in pairs] == [(2, 3), (2, 4)]
    assert mine_pairs([traj("q", 0, 9, 1.0), traj("q", 1, 12, 1.0)], "failed") == []  # no wrong sibling
    # `all` keeps the correct non-references too
    assert [p.student.sample_index for p in mine_pairs(pool, "all")] == [0, 1, 3, 4]


def test_new_strategies_against_brute_force():
    """Random pools: the longest / first reference and the failed students against a plain loop over siblings."""
    import random

    rng = random.Random(0)
    for _ in range(200):
        pool = [traj(f"g{g}", i, rng.randint(1, 6), float(rng.random() < 0.4), searches=rng.randint(0, 2))
                for g in range(3) for i in range(rng.randint(1, 5))]
        rng.shuffle(pool)
        for ref_rule in ("longest", "first"):
            expected = []
            for g in sorted({t.group_id for t in pool}, key=lambda g: next(i for i, t in enumerate(pool)
                                                                           if t.group_id == g)):
                ref = None
                for t in pool:
                    if t.group_id != g or t.reward <= 0:
                        continue
                    if ref is None:
                        ref = t
                    elif ref_rule == "first" and t.sample_index < ref.sample_index:
                        ref = t
                    elif ref_rule == "longest" and (t.n_generated > ref.n_generated or (
                            t.n_generated == ref.n_generated and (t.n_searches > ref.n_searches or (
                                t.n_searches == ref.n_searches and t.sample_index < ref.sample_index)))):
                        ref = t
                if ref is None:
                    continue
                for i in range(6):
                    expected += [(ref, t) for t in pool if t.group_id == g and t.sample_index == i
                                 and t is not ref and t.reward <= 0]
            got = [(p.reference, p.student) for p in mine_pairs(pool, "failed", ref_rule)]
            assert got == expected


def test_the_config_offers_every_strategy():
    import typing

    from searche1.config import OFSDConfig
    from searche1.train.pairs import ReferenceStrategy, StudentStrategy

    hints = typing.get_type_hints(OFSDConfig)
    students, references = typing.get_args(StudentStrategy), typing.get_args(ReferenceStrategy)
    assert typing.get_args(hints["student"]) == students and "failed" in students
    assert typing.get_args(hints["reference"]) == references == ("shortest", "any", "longest", "first")


def test_reference_length_counts_generated_tokens_not_inserted_ones():
    """Three searches with long observations make the fewest-generated sibling the longest in total tokens."""
    searcher, guesser = traj("q", 0, 20, 1.0, searches=3, obs=40), traj("q", 1, 25, 1.0)
    assert len(searcher.response_ids) > len(guesser.response_ids) and searcher.n_generated < guesser.n_generated
    assert pick_reference([guesser, searcher]) is searcher
    assert mine_pairs([guesser, searcher, traj("q", 2, 30, 0.0)], "longest")[0].reference is searcher


def test_student_choice_per_strategy(pool):
    def student(strategy, **kw):
        return mine_pairs(pool, strategy, **kw)[0].student.sample_index

    assert student("kl", kl_scores=lambda ref, t: {0: 0.1, 1: 0.9, 3: 0.2, 4: 0.3}[t.sample_index]) == 1
    assert student("longest") == 3
    assert student("random", seed=1) == student("random", seed=1)
    assert {student("random", seed=s) for s in range(40)} == {0, 1, 3, 4}
    with pytest.raises(ValueError, match="kl_scores"):
        mine_pairs(pool, "kl")


def test_lexical_picks_the_most_different_action_sequence():
    ref = traj("q", 0, 10, 1.0, searches=1, answer="Melin", queries=["Zorvak birthplace"])
    same = traj("q", 1, 12, 0.0, searches=1, answer="Melin", queries=["Zorvak birthplace"])
    other = traj("q", 2, 12, 0.0, searches=1, answer="Dosta", queries=["founder of Kelmar company"])
    assert action_text(ref) == "search:Zorvak birthplace | answer:Melin"
    assert mine_pairs([ref, same, other], "lexical")[0].student is other


def test_pair_stats(pool):
    pairs = mine_pairs(pool, "longest")
    stats = pair_stats(pool, pairs)
    assert stats["questions"] == 3 and stats["pairs"] == 1 and stats["paired_fraction"] == pytest.approx(1 / 3)
    assert (stats["reference_tokens"], stats["student_tokens"]) == (20, 50)
    assert (stats["reference_searches"], stats["student_searches"]) == (1, 3)


def _reference(tok):
    written = "<think> need the city </think> <search> Zorvak </search>"
    info = "<information> Doc 1(Title: Zorvak) born in Melin </information>"
    answer = "<think> Melin </think> <answer> Melin </answer>"
    ids_w, ids_i, ids_a = (tok(x, add_special_tokens=False).input_ids for x in (written, info, answer))
    ids = ids_w + ids_i + ids_a
    mask = [1] * len(ids_w) + [0] * len(ids_i) + [1] * len(ids_a)
    turns = [Turn(0, len(ids_w), "search", "Zorvak", observation=(len(ids_w), len(ids_w) + len(ids_i))),
             Turn(len(ids_w) + len(ids_i), len(ids), "answer")]
    return Trajectory(group_id="g", sample_index=0, prompt_ids=[1], response_ids=ids, response_mask=mask,
                      logprobs=[0.0] * len(ids), turns=turns, answer="Melin", reward=1.0)


def test_privileged_prompt_shows_the_reference_between_markers():
    from searche1.data.toyworld.tokenizer import build_toy_tokenizer

    tok = build_toy_tokenizer()
    ref = _reference(tok)
    plain = protocol.make_prompt("Where was Zorvak born?", tok)
    text = privileged_prompt("Where was Zorvak born?", ref, tok)
    assert text.startswith(plain.rstrip("\n")) and PRIVILEGED_BEGIN in text and text.rstrip().endswith(PRIVILEGED_END)
    block = text[text.index(PRIVILEGED_BEGIN):]
    assert "<search>" in block and "Zorvak" in block and "<answer>" in block and "Melin" in block
    assert "<information>" not in block  # retrieved text off by default
    assert "<information>" in privileged_prompt("Where was Zorvak born?", ref, tok, with_retrieved=True)


@pytest.mark.parametrize("template", [False, True])
def test_the_student_tokens_follow_the_same_separator_in_teacher_and_student_contexts(template, smollm2_tokenizer):
    """What stands between the context's last word and the student's first token is the same text under the
    privileged teacher and the plain student: a newline with no chat template (the toy tokenizer), the template's
    turn end and assistant header with one (SmolLM2's)."""
    from searche1.data.toyworld.tokenizer import build_toy_tokenizer

    tok = smollm2_tokenizer if template else build_toy_tokenizer()
    assert bool(getattr(tok, "chat_template", None)) == template
    question = "Where was Zorvak born?"
    plain = protocol.make_prompt(question, tok)
    teacher = privileged_prompt(question, _reference(tok), tok)
    student_separator = plain[plain.rindex(question) + len(question):]
    teacher_separator = teacher[teacher.rindex(PRIVILEGED_END) + len(PRIVILEGED_END):]
    assert teacher_separator == student_separator and student_separator.startswith("\n")


def test_a_sample_whose_retrieval_failed_is_neither_reference_nor_student():
    """retrieval.on_failure=skip keeps a failed sample in the pool; OFSD mines from the answered ones only."""
    failed = traj("q", 2, 4, 0.0)
    failed.finish_reason = FinishReason.ERROR
    pool = [traj("q", 0, 10, 1.0), traj("q", 1, 6, 0.0), failed, traj("q", 3, 8, 0.0)]
    assert answered_samples(pool) == [pool[0], pool[1], pool[3]]
    pairs = mine_pairs(answered_samples(pool), "all")
    assert [p.student.sample_index for p in pairs] == [1, 3]
