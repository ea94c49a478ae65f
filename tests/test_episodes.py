"""What the toy base policy learns from: the scripted searcher, drills, privileged episodes, the episode stream
and its options, and the held-out probe."""

import random
import re

import pytest
import torch

from searche1 import protocol
from searche1.data.toyworld.demos import QUERY_WORDS, _hops
from searche1.data.toyworld.names import NAME_POOL


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
    single = next(e for e in world.train if not (e.metadata or {}).get("subjects") and len(e.question) < 40)
    final = demonstrate(single, facts, client, random.Random(0), perfect, restate_need=True)[-1][0]
    plain = demonstrate(single, facts, client, random.Random(0), perfect)[-1][0]
    assert final.startswith("<think> I need the ") and final.endswith(plain.removeprefix("<think> "))
    # quote_style=value: the final turn writes "Entity: value." where it quoted the stating sentence
    short = demonstrate(single, facts, client, random.Random(0), perfect, quote_style="value")[-1][0]
    entity, relation = single.metadata["subject"], single.metadata["relation"]
    assert f"{entity}: {facts[(entity, relation)]}. So the answer is" in short and short != plain
    assert short.endswith(f"<answer> {single.golden_answers[0]} </answer>")
    # quote_style=none: after the information block, the answer alone
    segments = demonstrate(single, facts, client, random.Random(0), perfect, quote_style="none")
    assert segments[-1] == (f"<answer> {single.golden_answers[0]} </answer>", True) and not segments[-2][1]
    assert all("<think>" in text for text, written in segments[:-1] if written)  # the searches still say why
    # quote_style=hops: a bridge question's second search quotes the sentence that named the bridge entity, and
    # the answer still follows the last information block alone
    bridge = next(e for e in world.train if e.metadata["hops"] == 2 and "subjects" not in e.metadata)
    segments = demonstrate(bridge, facts, client, random.Random(0), perfect, quote_style="hops")
    written = [t for t, w in segments if w]
    (entity, relation), (middle, _) = _hops(bridge, facts)
    quote = written[1].removeprefix("<think> ").split(" I need ")[0]  # a sentence of the first block
    assert quote.endswith(f"{middle}.") and quote in segments[1][0] and not segments[1][1]
    assert middle == facts[(entity, relation)] and f"of {middle}. </think>" in written[1]
    assert written[-1] == f"<answer> {bridge.golden_answers[0]} </answer>"


def test_comparisons_in_one_search(pretrain_world):
    """With compare_in_one_search a comparison's one query names both subjects in the question's order, and a
    flawless run answers right exactly when the block states both values (else it guesses one of the two); other
    questions are demonstrated as without the option."""
    from searche1.data.toyworld.demos import Imperfections, demonstrate

    world, client = pretrain_world
    facts, perfect = world.fact_map(), Imperfections(0, 0, 0, 0)
    comparisons = world.tests["2wikimultihopqa"]
    both_found = 0
    for ex in comparisons:
        (a, b), values = ex.metadata["subjects"], ex.metadata["values"]
        segments = demonstrate(ex, facts, client, random.Random(0), perfect, quote_style="none",
                               compare_in_one_search=True)
        query = f"{a} or {b} {QUERY_WORDS[ex.metadata['relation']]}"
        assert len(segments) == 3 and segments[0][0].endswith(f"<search> {query} </search>")
        both = all(re.search(rf"\b{re.escape(v)}\b", segments[1][0]) for v in values)
        answer = protocol.parse_action(segments[-1][0]).content
        assert answer == ex.golden_answers[0] if both else answer in (a, b)
        both_found += both
        misread = demonstrate(ex, facts, client, random.Random(0), Imperfections(0, 0, 0, 1.0), quote_style="none",
                              compare_in_one_search=True)
        if both:  # a misread names the other subject
            assert protocol.parse_action(misread[-1][0]).content == (b if ex.golden_answers[0] == a else a)
    assert both_found > 0.8 * len(comparisons)
    others = world.train[:20] + [ex for name in ("nq", "hotpotqa", "musique", "bamboogle")
                                 for ex in world.tests[name][:10]]
    for ex in others:
        assert demonstrate(ex, facts, client, random.Random(3), compare_in_one_search=True) == \
            demonstrate(ex, facts, client, random.Random(3))


def test_compare_quote_style_reasons_only_before_a_comparisons_answer(pretrain_world):
    """Quote style "compare": a comparison's answer turn that found both values writes both names with them, then
    the answer (one search or one per name; a misread concludes the other name); without both values, and in every
    other episode, exactly as with "none"."""
    from searche1.data.toyworld.demos import Imperfections, demonstrate

    world, client = pretrain_world
    facts, perfect = world.fact_map(), Imperfections(0, 0, 0, 0)
    stated = 0
    for one_search in (True, False):
        for ex in world.tests["2wikimultihopqa"]:
            (a, b), values = ex.metadata["subjects"], ex.metadata["values"]
            last = demonstrate(ex, facts, client, random.Random(0), perfect, quote_style="compare",
                               compare_in_one_search=one_search)[-1][0]
            answer = protocol.parse_action(last).content
            reason = f"<think> {a} has {values[0]} and {b} has {values[1]}, so the answer is {answer}. </think>\n"
            stated += last == reason + f"<answer> {answer} </answer>"
            if not last.startswith("<think> "):
                assert last == demonstrate(ex, facts, client, random.Random(0), perfect, quote_style="none",
                                           compare_in_one_search=one_search)[-1][0]
            misread = demonstrate(ex, facts, client, random.Random(0), Imperfections(0, 0, 0, 1.0),
                                  quote_style="compare", compare_in_one_search=one_search)[-1][0]
            if misread.startswith("<think> "):
                wrong = b if ex.golden_answers[0] == a else a
                assert misread.endswith(f"so the answer is {wrong}. </think>\n<answer> {wrong} </answer>")
    assert stated > 0.8 * 2 * len(world.tests["2wikimultihopqa"])
    others = world.train[:20] + [ex for name in ("nq", "hotpotqa", "musique", "bamboogle")
                                 for ex in world.tests[name][:10]]
    for ex in others:
        assert demonstrate(ex, facts, client, random.Random(3), quote_style="compare") == \
            demonstrate(ex, facts, client, random.Random(3), quote_style="none")


def test_answer_named_first_swaps_only_comparisons_answered_second(pretrain_world):
    """The question, subjects, values and gold passages swap together, the answer stays, and the one-search run
    then answers with the question's first name; questions of other kinds come back unchanged."""
    from searche1.data.toyworld.demos import Imperfections, demonstrate
    from searche1.toy.episodes import answer_named_first

    world, client = pretrain_world
    facts, perfect, swapped = world.fact_map(), Imperfections(0, 0, 0, 0), 0
    for ex in world.tests["2wikimultihopqa"]:
        out = answer_named_first(ex)
        (a, b), (first, second) = ex.metadata["subjects"], out.metadata["subjects"]
        assert first == ex.golden_answers[0] == out.golden_answers[0]
        if a == ex.golden_answers[0]:
            assert out is ex
            continue
        swapped += 1
        assert (first, second) == (b, a) and out.metadata["values"] == ex.metadata["values"][::-1]
        assert out.metadata["gold_doc_ids"] == ex.metadata["gold_doc_ids"][::-1] and out.metadata["subject"] == b
        assert out.question.index(first) < out.question.index(second)
        assert out.question.replace(first, "#").replace(second, "@") == ex.question.replace(a, "#").replace(b, "@")
        segments = demonstrate(out, facts, client, random.Random(0), perfect, quote_style="none",
                               compare_in_one_search=True)
        if all(re.search(rf"\b{re.escape(v)}\b", segments[1][0]) for v in out.metadata["values"]):
            assert protocol.parse_action(segments[-1][0]).content == first
    assert swapped > 0.3 * len(world.tests["2wikimultihopqa"])
    for ex in world.train[:10] + world.tests["hotpotqa"][:10]:
        assert answer_named_first(ex) is ex


def test_reading_drill_asks_only_what_its_block_states(pretrain_world):
    from searche1.data.toyworld.demos import reading_drill

    world, client = pretrain_world
    facts, rng, asked = world.fact_map(), random.Random(0), 0
    for _ in range(20):
        (block, written), *rest = reading_drill(world, client, rng)
        assert not written and block.startswith("<information>") and block.endswith("</information>\n")
        for (question, asked_written), (text, written) in zip(rest[::2], rest[1::2]):
            assert not asked_written and question.startswith("Question: ")  # context, not trained
            assert written and text.startswith("<think> I need ")
            answer = protocol.parse_action(text).content
            quote = text.split("</think>")[0].split(". ", 1)[1].rsplit(" So the answer is", 1)[0]
            assert quote in block and answer in quote  # the stating sentence is copied from the block
            subject = next(n for n in world.entities if f" of {n}." in text)
            assert any(facts.get((subject, r)) == answer for r in ("born_in", "birth_year", "occupation",
                       "employer", "country", "founded_year", "language", "independence_year", "founder",
                       "headquarters"))
            asked += 1
    assert asked >= 40  # several questions per drill


def test_copy_drill_repeats_its_block_whole_or_shuffled(pretrain_world, toy_tokenizer):
    from searche1.data.toyworld.demos import copy_drill

    world, client = pretrain_world
    rng = random.Random(0)
    orders = set()
    for _ in range(5):
        (context, _), (copy, _) = copy_drill(world, client, rng)
        assert context == copy  # the default: the block again, whole
        (context, context_written), (copy, copy_written) = copy_drill(world, client, rng, shuffle=True)
        assert context.startswith("<information>") and not context_written and copy_written
        lines = copy.strip("\n").split("\n")
        assert len(lines) >= 6 and all(line in context for line in lines)  # every line copied verbatim
        passages = [line.split('") ', 1)[1].removesuffix("</information>") for line in context.split("\n")
                    if '(Title: "' in line]
        assert sorted(lines) == sorted(s for p in passages for s in re.split(r"(?<=\.) ", p))  # all, once each
        orders.add(tuple(lines) == tuple(sorted(lines, key=context.index)))
    assert False in orders  # not simply the block's own order


def test_encode_demo_masks(toy_tokenizer):
    from searche1.toy.episodes import encode_demo

    segs = [("<search> q </search>", True), ("\n\n<information>x</information>\n\n", False),
            ("<answer> a </answer>", True)]
    ids, mask = encode_demo([1, 2], segs, toy_tokenizer, max_obs_length=3)
    assert mask[:2] == [0, 0] and ids[-1] == toy_tokenizer.eos_token_id and mask[-1] == 1
    assert mask.count(0) == 2 + 3  # prompt + truncated observation
    _, mask = encode_demo([1, 2], segs, toy_tokenizer, max_obs_length=3, loss_on_observations=True)
    assert mask.count(0) == 2 and mask.count(2) == 3  # only the prompt stays untrained; observations marked 2


def test_privileged_episodes_show_the_teacher_context_ofsd_builds(pretrain_world):
    """A privileged episode's prompt is, token for token, what OFSD's teacher sees for a reference trajectory
    that wrote the flawless run's turns; the run after it answers as the worked solution does."""
    from searche1.data.toyworld.demos import demonstrate
    from searche1.data.toyworld.tokenizer import build_toy_tokenizer
    from searche1.rollout.trajectory import Trajectory, Turn
    from searche1.toy.episodes import FLAWLESS, encode_demo, privileged_episode
    from searche1.toy.warmstart import WarmstartConfig
    from searche1.train.pairs import PRIVILEGED_BEGIN, privileged_prompt

    tok = build_toy_tokenizer(spaced_values=True, question_only_prompt=True)
    world, client = pretrain_world
    facts, cfg, rng = world.fact_map(), WarmstartConfig(quote_style="none"), random.Random(0)
    detours = 0
    for ex in world.train[:40]:
        prompt_ids, run = privileged_episode(ex, facts, client, rng, tok, cfg)
        reference = demonstrate(ex, facts, client, random.Random(1), FLAWLESS, quote_style="none")
        ids, mask = encode_demo([], reference, tok, protocol.DEFAULT_MAX_OBS_LENGTH)
        turns, pos = [], 0
        for text, written in reference:
            n = len(tok(text, add_special_tokens=False).input_ids) + (text is reference[-1][0])  # the EOS
            if written:
                turns.append(Turn(pos, pos + n, "search"))
            pos += n
        traj = Trajectory(group_id="g", sample_index=0, prompt_ids=[], response_ids=ids, response_mask=mask,
                          logprobs=[0.0] * len(ids), turns=turns, answer="", reward=1.0)
        assert prompt_ids == tok(privileged_prompt(ex.question, traj, tok), add_special_tokens=False).input_ids
        shown = tok.decode(prompt_ids)
        assert shown.startswith(f"Question: {protocol.normalize_question(ex.question)}") and PRIVILEGED_BEGIN in shown
        answer = protocol.parse_action(run[-1][0]).content
        assert answer == protocol.parse_action(reference[-1][0]).content and f"<answer> {answer} </answer>" in shown
        detours += run != reference
    assert 0 < detours < 40  # some runs take a poor or repeated query first, most follow the solution as it is


def test_privileged_comparisons_in_one_search_show_a_right_solution(pretrain_world):
    """Where one search misses a value the flawless run would guess; the solution shown searches each name then."""
    from searche1.data.toyworld.tokenizer import build_toy_tokenizer
    from searche1.toy.episodes import privileged_episode
    from searche1.toy.warmstart import WarmstartConfig

    tok = build_toy_tokenizer(spaced_values=True, question_only_prompt=True)
    world, client = pretrain_world
    cfg, rng = WarmstartConfig(quote_style="none", compare_in_one_search=True), random.Random(0)
    one_search = 0
    for ex in world.tests["2wikimultihopqa"]:
        prompt_ids, run = privileged_episode(ex, world.fact_map(), client, rng, tok, cfg)
        shown = tok.decode(prompt_ids)
        assert f"<answer> {ex.golden_answers[0]} </answer>" in shown
        one_search += " or ".join(ex.metadata["subjects"]) + " " in shown
    assert 0.8 * len(world.tests["2wikimultihopqa"]) < one_search < len(world.tests["2wikimultihopqa"])


def test_privileged_episodes_can_hide_the_answer_from_the_passages(pretrain_world):
    """With privileged_hide_answer=1 no block of the run states the answer (it is left to the solution), each block
    still shows as many passages as a search does, and the run answers as the solution does."""
    from searche1.data.toyworld.tokenizer import build_toy_tokenizer
    from searche1.toy.episodes import privileged_episode
    from searche1.toy.warmstart import WarmstartConfig

    tok = build_toy_tokenizer(spaced_values=True, question_only_prompt=True)
    world, client = pretrain_world
    cfg, rng = WarmstartConfig(quote_style="none", privileged_hide_answer=1.0), random.Random(0)
    for ex in world.train[:30]:
        prompt_ids, run = privileged_episode(ex, world.fact_map(), client, rng, tok, cfg)
        answer = protocol.parse_action(run[-1][0]).content
        assert f"<answer> {answer} </answer>" in tok.decode(prompt_ids)
        for k, (text, written) in enumerate(run):
            if not written:
                assert not re.search(rf"\b{re.escape(answer)}\b", text)
                query = protocol.parse_action(run[k - 1][0]).content
                assert text.count("Doc ") == len(client.retrieve([query])[0])


@pytest.mark.parametrize("max_hops", [None, 1])
def test_the_stream_keeps_questions_within_max_hops(monkeypatch, toy_tokenizer, max_hops):
    import searche1.toy.episodes as episodes
    from searche1.toy.warmstart import WarmstartConfig

    hops, demonstrate = [], episodes.demonstrate
    monkeypatch.setattr(episodes, "demonstrate", lambda ex, *a, **k: hops.append(ex.metadata["hops"]) or
                        demonstrate(ex, *a, **k))
    cfg = WarmstartConfig(world_level=1, max_hops=max_hops, questions_per_world=12, drills_per_world=0,
                          copy_drills_per_world=0)
    stream = episodes.demo_stream(toy_tokenizer, cfg, random.Random(0))
    for _ in range(24):
        next(stream)
    assert len(hops) == 24
    assert set(hops) == {1} if max_hops == 1 else max(hops) > 1  # the default mix has multi-hop questions


def test_misread_sets_how_often_scripted_episodes_answer_wrongly(monkeypatch, toy_tokenizer):
    import searche1.toy.episodes as episodes
    from searche1.toy.warmstart import WarmstartConfig

    right, demonstrate = [], episodes.demonstrate

    def recorded(ex, *a, **k):
        segments = demonstrate(ex, *a, **k)
        right.append(protocol.parse_action(segments[-1][0]).content == ex.golden_answers[0])
        return segments

    monkeypatch.setattr(episodes, "demonstrate", recorded)
    shares = {}
    for misread in (0.0, 0.5):
        right.clear()
        cfg = WarmstartConfig(world_level=1, misread=misread, questions_per_world=40, drills_per_world=0,
                              copy_drills_per_world=0, max_hops=1)
        stream = episodes.demo_stream(toy_tokenizer, cfg, random.Random(0))
        for _ in range(120):
            next(stream)
        shares[misread] = sum(right) / len(right)
    # guesses without a search (10%) are wrong either way; misreads take about half of the rest
    assert shares[0.0] > 0.8 and 0.3 < shares[0.5] < 0.6, shares


def test_compare_repeat_sets_how_often_a_one_search_comparison_searches_twice(monkeypatch, toy_tokenizer):
    """compare_repeat applies to one-search comparisons only: at 0 none searches twice, at 1 each does (up to the
    guesses without a search); the other questions keep the default imperfections."""
    import searche1.toy.episodes as episodes
    from searche1.data.toyworld.demos import Imperfections
    from searche1.toy.warmstart import WarmstartConfig

    runs, demonstrate = {True: [], False: []}, episodes.demonstrate

    def recorded(ex, facts, client, rng, imperfect, **k):
        segments = demonstrate(ex, facts, client, rng, imperfect, **k)
        queries = [protocol.parse_action(t).content for t, written in segments if written and "<search>" in t]
        runs["subjects" in ex.metadata].append((imperfect, len(queries) > len(set(queries))))
        return segments

    monkeypatch.setattr(episodes, "demonstrate", recorded)
    for compare_repeat in (0.0, 1.0):
        runs[True].clear(), runs[False].clear()
        cfg = WarmstartConfig(world_level=1, compare_repeat=compare_repeat, compare_in_one_search=True,
                              questions_per_world=40, drills_per_world=0, copy_drills_per_world=0,
                              set_weights={"2wikimultihopqa": 6.0})
        stream = episodes.demo_stream(toy_tokenizer, cfg, random.Random(0))
        for _ in range(200):
            next(stream)
        twice = sum(again for _, again in runs[True]) / len(runs[True])
        assert twice == 0 if compare_repeat == 0 else twice > 0.85  # 10% answer without a search
        assert {imperfect for imperfect, _ in runs[False]} == {Imperfections()}


def test_set_weights_change_the_mix_of_scripted_questions():
    """Weights draw a set's questions in proportion (a weight-0 set never), without repeats in a world; without
    weights every question is equally likely."""
    import collections

    from searche1.data.toyworld.generator import WorldConfig
    from searche1.toy.episodes import open_world, scripted_questions
    from searche1.toy.warmstart import WarmstartConfig

    _, _, pool = open_world(WorldConfig(seed=0, pretrain_index=5, level=1))
    share = collections.Counter(ex.dataset for ex in pool)
    for weights in (None, {"2wikimultihopqa": 6.0, "musique": 0.0}):
        cfg, rng, drawn = WarmstartConfig(questions_per_world=16, set_weights=weights), random.Random(0), []
        for _ in range(150):
            picked = scripted_questions(pool, cfg, rng)
            assert len(picked) == 16 and len({id(ex) for ex in picked}) == 16
            drawn += [ex.dataset for ex in picked]
        if weights:
            assert "toy-musique" not in drawn  # weight 0: never
        w = {f"toy-{k}": v for k, v in (weights or {}).items()}
        total = sum(n * w.get(name, 1.0) for name, n in share.items())
        for name, n in share.items():
            expected = n * w.get(name, 1.0) / total
            assert abs(drawn.count(name) / len(drawn) - expected) < 0.02 + 0.1 * expected, (weights, name)


def test_held_out_probe_positions_and_a_perfect_copier(toy_tokenizer):
    """The probe scores the question's entity in the first turn and the answer in the final turn; a stand-in model
    whose argmax is always the true next token scores 1.0, one that never is scores 0.0."""
    from searche1.data.toyworld.generator import WorldConfig
    from searche1.toy.episodes import held_out_demos, probe
    from searche1.toy.warmstart import WarmstartConfig

    demos = held_out_demos(toy_tokenizer, WarmstartConfig(), WorldConfig(seed=5), n=6)
    name_ids = set(toy_tokenizer.convert_tokens_to_ids(list(NAME_POOL)))
    for d in demos:
        assert d["entity"] and all(d["ids"][p] in name_ids for p in d["entity"])
        assert d["answer"] and min(d["answer"]) > max(d["entity"])  # read in the final turn, after the first
        assert d["ids"][-1] == toy_tokenizer.eos_token_id
        # the scored value re-appears in <answer> ... </answer> at the end
        answer_ids = [d["ids"][p] for p in d["answer"]]
        assert d["ids"][-2 - len(answer_ids) - 1:-3] == answer_ids

    class Oracle(torch.nn.Module):
        def __init__(self, shift):
            super().__init__()
            self.shift = shift

        def forward(self, input_ids):
            nxt = torch.roll(input_ids, -1, dims=1) + self.shift
            logits = torch.nn.functional.one_hot(nxt % len(toy_tokenizer), len(toy_tokenizer)).float()
            return type("Out", (), {"logits": logits})()

    assert probe(Oracle(0), demos) == {"entity": 1.0, "answer": 1.0}
    assert probe(Oracle(1), demos) == {"entity": 0.0, "answer": 0.0}


def test_induction_drill_quotes_spans_of_its_line():
    from searche1.data.toyworld.demos import induction_drill
    from searche1.data.toyworld.names import NAME_POOL

    (line, line_written), (quotes, quotes_written) = induction_drill(random.Random(0), list(NAME_POOL))
    sequence = line.split()
    assert len(sequence) == len(set(sequence)) == 40 and not line_written and quotes_written
    spans = quotes.strip("\n").split("\n")
    assert len(spans) == 8 and all(len(s.split()) == 5 and f" {s} " in f" {line.strip()} " for s in spans)


def test_induction_drill_can_repeat_its_whole_line():
    from searche1.data.toyworld.demos import induction_drill
    from searche1.data.toyworld.names import NAME_POOL
    from searche1.toy.episodes import induction_line

    (line, line_written), (again, again_written) = induction_drill(random.Random(0), list(NAME_POOL), repeat=True)
    assert again == line and len(set(line.split())) == 40 and not line_written and again_written
    (years, _), (years_again, _) = induction_line(random.Random(1), "years", repeat=True)
    assert years_again == years and len(years.split()) == 16 and all(y.isdigit() for y in years.split())


def test_year_induction_drills_join_the_stream_as_lines_of_years():
    from searche1.data.toyworld.tokenizer import build_toy_tokenizer
    from searche1.toy.episodes import demo_stream
    from searche1.toy.warmstart import WarmstartConfig

    tok = build_toy_tokenizer(spaced_values=True, digit_years=True)
    cfg = WarmstartConfig(world_level=1, questions_per_world=1, drills_per_world=0, copy_drills_per_world=0,
                          induction_drills_per_world=3, induction_words="years", spaced_values=True, digit_years=True)
    stream = demo_stream(tok, cfg, random.Random(0))
    drills = [e for e in (next(stream) for _ in range(8)) if tok.decode(e[0][:1]).isdigit()]
    assert len(drills) == 6  # 3 a world, two worlds
    for ids, mask in drills:
        line, quotes = tok.decode(ids).split("\n", 1)
        years = line.split()
        assert len(years) == 16 and all(900 <= int(y) <= 2005 for y in years)
        spans = quotes.replace(tok.eos_token, "").strip("\n").split("\n")
        assert len(spans) == 6 and all(len(s.split()) == 3 and f" {s} " in f" {line} " for s in spans)
        written = [i for i, m in zip(ids, mask) if m == 1]  # the model writes the quoted spans (and EOS)
        assert tok.decode(written[:-1]).strip("\n") == quotes.replace(tok.eos_token, "").strip("\n")
    from searche1.toy.episodes import induction_line

    with pytest.raises(ValueError, match="induction_words must be 'names' or 'years', got 'digits'"):
        induction_line(random.Random(0), "digits")
