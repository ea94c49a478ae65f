"""A deliberately imperfect scripted searcher: protocol demonstrations the toy base policy learns from.

For a question of a (pretraining) world it plans the hops from the question's metadata, searches each with a real
retriever call, reads the value only when a returned passage states it, and answers. It is imperfect on purpose,
so that sampled siblings of the learned policy differ in quality and length, the raw material OFSD needs: it
sometimes answers without searching, repeats a search, writes a poor first query, or misreads a passage.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

from searche1 import protocol
from searche1.data.qa import QAExample
from searche1.data.toyworld import names as words
from searche1.retrieval.client import RetrievalClient

QUERY_WORDS = {
    "born_in": "born city", "birth_year": "born year", "occupation": "occupation", "employer": "worked for company",
    "country": "city country", "founded_year": "founded year", "language": "language",
    "independence_year": "independence year", "founder": "founded by", "headquarters": "headquartered city",
}
RELATION_NOUNS = {
    "born_in": "the birthplace", "birth_year": "the birth year", "occupation": "the occupation",
    "employer": "the employer", "country": "the country", "founded_year": "the founding year",
    "language": "the language", "independence_year": "the year of independence", "founder": "the founder",
    "headquarters": "the headquarters",
}
RELATION_PHRASES = {
    "born_in": "was born in", "birth_year": "was born in", "occupation": "worked as", "employer": "worked for",
    "country": "lies in", "founded_year": "was founded in", "language": "speaks", "independence_year":
    "became independent in", "founder": "was founded by", "headquarters": "is based in",
}


@dataclass(frozen=True)
class Imperfections:
    """Probabilities, per question, of each way the scripted searcher goes wrong or wastes a turn."""

    no_search: float = 0.1  # answer at once with a guess
    poor_query: float = 0.15  # the first query lacks the entity's name
    repeat: float = 0.1  # run the same search twice
    misread: float = 0.1  # answer with another value seen in the passages


def _hops(ex: QAExample, facts: dict) -> list[tuple[str, str]]:
    """(entity, relation) looked up in order."""
    meta = ex.metadata or {}
    if "subjects" in meta:  # comparison
        return [(s, meta["relation"]) for s in meta["subjects"]]
    chain = meta["chain"] if "chain" in meta else [meta["relation"]]
    node, hops = meta["subject"], []
    for relation in chain:
        hops.append((node, relation))
        node = facts.get((node, relation), "")
    return hops


def _values_in(text: str, like: str) -> list[str]:
    """Candidate answers of the same shape seen in `text`: years for a year, capitalised words otherwise."""
    pattern = r"\b\d{3,4}\b" if like.isdigit() else r"\b[A-Z][a-z]+\b"
    return sorted(set(re.findall(pattern, text)) - {like})


def _stating_sentence(docs: list[dict], entity: str, value: str) -> str | None:
    """The first sentence that states `value`, from the entity's own passage when one was returned."""
    own = [d for d in docs if protocol.split_contents(d["contents"])[0] == f'"{entity}"']
    for d in own + [d for d in docs if d not in own]:
        for sentence in _sentences(d):
            if re.search(rf"\b{re.escape(value)}\b", sentence):
                return sentence
    return None


QUOTE_STYLES = ("sentence", "value", "none", "hops", "compare")


def _quote(docs: list[dict], entity: str, value: str, style: str = "sentence") -> str | None:
    """What a turn writes of the passage it read: the stating sentence itself ("sentence"), only "Entity: value."
    ("value", a short copy), or nothing ("none": the episode answers straight after the information block); "hops"
    quotes the sentence in the turns between hops and nothing before the answer; "compare" is "none" except in a
    comparison's answer turn (`_answer_style`). None when no sentence states it."""
    if style not in QUOTE_STYLES:
        raise ValueError(f"unknown quote style {style!r}: {' | '.join(QUOTE_STYLES)}")
    sentence = _stating_sentence(docs, entity, value)
    if sentence is None or style in ("sentence", "hops"):
        return sentence
    return f"{entity}: {value}." if style == "value" else ""


def _answer_style(ex: QAExample, quote_style: str) -> str:
    """The quote style of an answer turn that found its values: "compare" gives a comparison's answer turn its
    reasoning ("A has Y1 and B has Y2, so the answer is A."), so that the answer copies one of two names written just
    before it; with no reasoning the answer must come from the question, and no head attends there from the answer
    (docs/warmstart.md, "Comparisons are memorised, not copied"). Turns that did not find both values answer alone:
    their reasoning would be words the toy tokenizer spells in pieces."""
    if quote_style == "compare":
        return "value" if "subjects" in (ex.metadata or {}) else "none"
    return quote_style


def _answer_turn(reason: str, value: str, quote_style: str) -> str:
    """The answering turn: the reasoning in <think>, then the answer; with quote_style "none", "hops" or "compare"
    the answer alone."""
    if quote_style in ("none", "hops", "compare"):  # straight from the information block to the answer
        return f"<answer> {value} </answer>"
    return f"<think> {reason} </think>\n<answer> {value} </answer>"


def _sentences(doc: dict) -> list[str]:
    """The sentences of a passage's text (its title line left out)."""
    return [s.strip() for s in re.split(r"(?<=\.)\s+", protocol.split_contents(doc["contents"])[1]) if s.strip()]


def demonstrate(ex: QAExample, facts: dict, client: RetrievalClient, rng: random.Random,
                imperfect: Imperfections = Imperfections(), max_turns: int = protocol.DEFAULT_MAX_TURNS,
                restate_need: bool = False, quote_style: str = "sentence",
                compare_in_one_search: bool = False) -> list[tuple[str, bool]]:
    """The episode as segments (text, written_by_model): turns are written, observations are not.

    restate_need: the final turn names what it needs again before quoting ("I need the birthplace of X. <quote>
    So the answer is V."), as reading drills do, so that the quote is chosen next to its cue. quote_style: what
    is quoted of a passage that stated a value (`_quote`). compare_in_one_search: a comparison searches both
    names in one query (`_one_search_comparison`) instead of one search per name."""
    segments: list[tuple[str, bool]] = []
    hops = _hops(ex, facts)
    answer = ex.golden_answers[0]
    if rng.random() < imperfect.no_search:
        guess = rng.choice(_values_in(" ".join(v for v in facts.values()), answer) or [answer])
        return [(f"<think> I think I know this. </think>\n<answer> {guess} </answer>", True)]
    if compare_in_one_search and "subjects" in (ex.metadata or {}):
        return _one_search_comparison(ex, client, rng, imperfect, max_turns, quote_style)
    found: list[str] = []
    quotes: list[str] = []  # the sentence that stated each found value, quoted in the next <think>
    seen_text = ""
    searches = 0
    for i, (entity, relation) in enumerate(hops):
        value = facts.get((entity, relation), "")
        queries = [f"{entity} {QUERY_WORDS[relation]}"]
        if i == 0 and rng.random() < imperfect.poor_query:
            queries.insert(0, QUERY_WORDS[relation])
        if rng.random() < imperfect.repeat:
            queries.insert(1, queries[0])
        for query in queries:
            if searches >= max_turns:
                break
            # Quoting the sentence that answered the last hop gives the model a dense copy signal: locate the
            # sentence by the entity's name, copy it, and the value to use next is in the copy.
            think = (quotes[-1] + " " if quotes and len(quotes) == i and quotes[-1] else "") + \
                f"I need {RELATION_NOUNS[relation]} of {entity}."
            segments.append((f"<think> {think} </think>\n<search> {query} </search>", True))
            docs = client.retrieve([query])[0]
            block = protocol.information_block(docs)
            segments.append((block, False))
            searches += 1
            seen_text += block
            quote = _quote(docs, entity, value, quote_style) if value and entity in block else None
            if quote is not None:
                found.append(value)
                quotes.append(quote)
                break
        else:
            continue
        if len(found) <= i:  # out of turns, or the value never showed: stop searching
            break
    answer_style = quote_style
    if len(found) == len(hops) and rng.random() >= imperfect.misread:
        final = answer
        if "subjects" in (ex.metadata or {}):
            answer_style = _answer_style(ex, quote_style)
            a, b = (ex.metadata or {})["subjects"]
            reason = " ".join(q for q in quotes[:2] if q) + \
                f" {a} has {found[0]} and {b} has {found[1]}, so the answer is {final}."
        else:
            entity, relation = hops[-1]
            need = f"I need {RELATION_NOUNS[relation]} of {entity}. " if restate_need else ""
            reason = f"{need}{quotes[-1]} So the answer is {final}."
    else:  # misread, or never found it: answer with something seen, wrongly
        final = rng.choice(_values_in(seen_text, answer) or [answer])
        reason = f"The passages suggest {final}."
    segments.append((_answer_turn(reason.strip(), final, answer_style), True))
    return segments


def _one_search_comparison(ex: QAExample, client: RetrievalClient, rng: random.Random, imperfect: Imperfections,
                           max_turns: int, quote_style: str) -> list[tuple[str, bool]]:
    """A comparison searched with both names in one query ("A or B founded year"), whose block states both values
    for ~90% of the toy's comparisons: the names are copied from the question in their order, the way a small
    model copies one name, instead of finding the second name for a second search. Without both values it
    guesses one of the two (a flawless run too); a misread names the other subject. Of the imperfections only
    `repeat` and `misread` apply; the answer turn's reasoning (quote styles "sentence", "value" and "compare")
    states both values instead of quoting a sentence."""
    (a, b), relation, values = ex.metadata["subjects"], ex.metadata["relation"], ex.metadata["values"]
    query = f"{a} or {b} {QUERY_WORDS[relation]}"
    segments, docs = [], []
    for _ in range(min(1 + (rng.random() < imperfect.repeat), max_turns)):
        segments.append((f"<think> I need {RELATION_NOUNS[relation]} of {a} or {b}. </think>\n"
                         f"<search> {query} </search>", True))
        docs = client.retrieve([query])[0]
        segments.append((protocol.information_block(docs), False))
    answer = ex.golden_answers[0]
    other = b if answer == a else a
    stated = f"{a} has {values[0]} and {b} has {values[1]}, so the answer is"
    style = _answer_style(ex, quote_style)
    if not all(_stating_sentence(docs, name, value) for name, value in ((a, values[0]), (b, values[1]))):
        final, reason, style = rng.choice((a, b)), "The passages do not say both.", quote_style
    elif rng.random() < imperfect.misread:  # "compare" states the values and draws the wrong conclusion
        final, reason = other, f"{stated} {other}." if quote_style == "compare" else f"The passages suggest {other}."
    else:
        final, reason = answer, f"{stated} {answer}."
    segments.append((_answer_turn(reason, final, style), True))
    return segments


def _random_block(world, client: RetrievalClient, rng: random.Random) -> tuple[list[dict], str]:
    """The passages the scripted searcher's query for a random fact retrieves, and their <information> block as
    a drill's opening text."""
    fact = rng.choice(world.facts)
    docs = client.retrieve([f"{fact.subject} {QUERY_WORDS[fact.relation]}"])[0]
    return docs, protocol.information_block(docs).strip("\n") + "\n"


def reading_drill(world, client: RetrievalClient, rng: random.Random, max_questions: int = 6,
                  quote_style: str = "sentence") -> list[tuple[str, bool]]:
    """One retrieved <information> block followed by questions on what its passages state, each answered the way
    the searcher's final turn answers (name the need, quote the stating sentence, answer).

    Pretraining-style reading practice: a pretrained LLM reads passages before it ever searches; here the
    scripted episodes alone give a few copy targets per ~400 tokens, too sparse for copying to form in minutes
    (docs/warmstart.md), while a drill packs a dozen into ~500 tokens."""
    docs, block = _random_block(world, client, rng)
    returned = {d["id"]: d for d in docs}
    questions = []
    for f in world.facts:  # every fact whose own passage came back, quoted from that passage
        if f.gold_doc_id in returned and (quote := _quote([returned[f.gold_doc_id]], f.subject, f.object,
                                                          quote_style)) is not None:
            style = rng.choice(("nq", "triviaqa", "popqa"))
            template = rng.choice(words.SINGLE_HOP_QUESTIONS[style][(world.entities[f.subject], f.relation)])
            questions.append((template.format(s=f.subject), f"I need {RELATION_NOUNS[f.relation]} of {f.subject}. "
                              f"{quote}", f.object))
    rng.shuffle(questions)
    segments = [(block, False)]
    for question, reason, value in questions[:max_questions]:
        # the question is given (context, as in a prompt); what the model would write is trained
        segments.append((f"Question: {question}\n", False))
        segments.append((_answer_turn(f"{reason} So the answer is {value}.", value, quote_style) + "\n", True))
    return segments


def copy_drill(world, client: RetrievalClient, rng: random.Random, shuffle: bool = False) -> list[tuple[str, bool]]:
    """A retrieved <information> block (context), then the same block written out again (trained); with
    `shuffle`, its sentences in a random order instead, one per line.

    Copying is what reading rests on (find the place in the context that matches, continue from there), and in
    the toy text it does not form from the episodes and reading drills alone: answers stay at the type prior
    (docs/warmstart.md). Repeated text is where language models learn it in pretraining; here it is made explicit.
    A block copied whole can be learned as "attend a fixed distance back" (RoPE makes that easy); a shuffled
    sentence must be found by its content, as a quote must. Yet in run K (docs/warmstart.md) shuffled copies were
    learned far more slowly (0.15 of values copied at step 1000, against 0.52 for whole blocks) and reading did not
    start, so whole blocks stay the default."""
    docs, block = _random_block(world, client, rng)
    if not shuffle:
        return [(block, False), (block, True)]
    sentences = [sentence for d in docs for sentence in _sentences(d)]
    rng.shuffle(sentences)
    return [(block, False), ("\n".join(sentences) + "\n", True)]


def induction_drill(rng: random.Random, names: list[str], length: int = 40, quotes: int = 8, span: int = 5,
                    repeat: bool = False) -> list[tuple[str, bool]]:
    """A line of random names (context), then spans of it quoted again from random places (trained); with
    `repeat`, the whole line once more instead.

    After a span's first name nothing but the earlier occurrence predicts the next one: the pure form of copying
    by content (an induction head) that reading a passage needs, with no template prior to fall back on."""
    sequence = rng.sample(names, length)
    line = " ".join(sequence) + "\n"
    if repeat:
        return [(line, False), (line, True)]
    lines = []
    for _ in range(quotes):
        start = rng.randrange(length - span + 1)
        lines.append(" ".join(sequence[start:start + span]))
    return [(line, False), ("\n".join(lines) + "\n", True)]
