"""What the toy base policy learns from and is probed on: episodes from pretraining worlds (scripted-searcher
demonstrations, OFSD-style privileged episodes, reading, copy and induction drills), tokenized exactly as the
rollout engine would, and held-out demonstrations with the positions the probe scores (docs/warmstart.md).
"""

from __future__ import annotations

import dataclasses
import random
import re
from typing import TYPE_CHECKING

import torch

from searche1 import protocol
from searche1.data.toyworld.demos import Imperfections, copy_drill, demonstrate, induction_drill, reading_drill
from searche1.data.toyworld.generator import WorldConfig, generate_world
from searche1.data.toyworld.names import NAME_POOL, YEARS
from searche1.data.toyworld.tokenizer import value_token_ids
from searche1.retrieval.bm25 import BM25Retriever
from searche1.retrieval.client import InProcessClient
from searche1.train.pairs import privileged_context

if TYPE_CHECKING:
    from searche1.toy.warmstart import WarmstartConfig

FLAWLESS = Imperfections(no_search=0.0, poor_query=0.0, repeat=0.0, misread=0.0)


def encode_demo(prompt_ids: list[int], segments: list[tuple[str, bool]], tokenizer, max_obs_length: int,
                loss_on_observations: bool = False) -> tuple[list[int], list[int]]:
    """Token ids and loss mask of one episode, tokenized segment by segment exactly as the engine would
    (each turn and each observation encoded on its own), plus EOS after the answer. Mask: 0 context, 1 written
    by the model, 2 an observation trained on (loss_on_observations)."""
    ids, mask = list(prompt_ids), [0] * len(prompt_ids)
    for text, written in segments:
        seg = tokenizer(text, add_special_tokens=False).input_ids
        if not written:
            seg = protocol.truncate_observation_ids(seg, max_obs_length)
        ids += seg
        mask += [1 if written else 2 if loss_on_observations else 0] * len(seg)
    ids.append(tokenizer.eos_token_id)
    mask.append(1)
    return ids, mask


def open_world(world_cfg: WorldConfig):
    """A generated world, an in-process BM25 client over its corpus, and all its questions (train + tests)."""
    world = generate_world(world_cfg)
    questions = world.train + [ex for exs in world.tests.values() for ex in exs]
    return world, InProcessClient(BM25Retriever.build(world.docs)), questions


def question_prompt_ids(tokenizer, question: str) -> list[int]:
    return tokenizer(protocol.make_prompt(question, tokenizer), add_special_tokens=False).input_ids


def demo_stream(tokenizer, cfg: WarmstartConfig, rng: random.Random):
    """Endless (ids, mask) episodes from pretraining worlds pretrain:{world_seed}:0, :1, ..."""
    index = cfg.first_world
    while True:
        world, client, pool = open_world(WorldConfig(seed=cfg.world_seed, pretrain_index=index,
                                                      level=cfg.world_level))
        facts = world.fact_map()
        if cfg.max_hops is not None:
            pool = [ex for ex in pool if ex.metadata["hops"] <= cfg.max_hops]
        episodes = []
        for ex in scripted_questions(pool, cfg, rng):
            ex = answer_named_first(ex) if cfg.compare_answer_first else ex
            imperfect = Imperfections(misread=cfg.misread)
            if cfg.compare_in_one_search and "subjects" in (ex.metadata or {}):
                imperfect = dataclasses.replace(imperfect, repeat=cfg.compare_repeat)
            segments = demonstrate(ex, facts, client, rng, imperfect,
                                   restate_need=cfg.restate_need,
                                   quote_style=cfg.quote_style, compare_in_one_search=cfg.compare_in_one_search)
            episodes.append((question_prompt_ids(tokenizer, ex.question), segments))
        for ex in rng.sample(pool, min(cfg.privileged_per_world, len(pool))):
            episodes.append(privileged_episode(ex, facts, client, rng, tokenizer, cfg))
        episodes += [([], reading_drill(world, client, rng, quote_style=cfg.quote_style))
                     for _ in range(cfg.drills_per_world)]
        episodes += [([], induction_line(rng, cfg.induction_words, cfg.induction_repeat))
                     for _ in range(cfg.induction_drills_per_world)]
        episodes += [([], copy_drill(world, client, rng, cfg.shuffle_copies))
                     for _ in range(cfg.copy_drills_per_world)]
        rng.shuffle(episodes)
        for prompt_ids, segments in episodes:
            yield encode_demo(prompt_ids, segments, tokenizer, cfg.max_obs_length, cfg.loss_on_observations)
        index += 1


def induction_line(rng: random.Random, words: str, repeat: bool = False) -> list[tuple[str, bool]]:
    """An induction drill of pool names (40 a line, spans of 5) or of years (16 a line, spans of 3); with `repeat`
    the line is written out again whole instead of quoted in spans."""
    if words == "names":
        return induction_drill(rng, NAME_POOL, repeat=repeat)
    if words == "years":
        return induction_drill(rng, YEARS, length=16, quotes=6, span=3, repeat=repeat)
    raise ValueError(f"induction_words must be 'names' or 'years', got {words!r}")


def answer_named_first(ex):
    """A comparison with its two names swapped in the question (and in the metadata's pairs) where the answer is
    named second; any other question as it is."""
    meta = ex.metadata or {}
    if "subjects" not in meta or meta["subjects"][0] == ex.golden_answers[0]:
        return ex
    first, second = meta["subjects"]
    swap = {first: second, second: first}
    question = re.sub(rf"\b({re.escape(first)}|{re.escape(second)})\b", lambda m: swap[m.group(0)], ex.question)
    pairs = {k: meta[k][::-1] for k in ("subjects", "values", "gold_doc_ids") if k in meta}
    return dataclasses.replace(ex, question=question, metadata={**meta, **pairs, "subject": second})


def scripted_questions(pool: list, cfg: WarmstartConfig, rng: random.Random) -> list:
    """The questions of one world's scripted episodes (not its privileged ones): distinct, drawn uniformly or by
    cfg.set_weights (a world's train questions count as nq and hotpotqa). Fewer than questions_per_world when
    fewer questions have a weight above 0."""
    n = min(cfg.questions_per_world, len(pool))
    if not cfg.set_weights:
        return rng.sample(pool, n)
    weight = lambda ex: cfg.set_weights.get(ex.dataset.removeprefix("toy-"), 1.0)  # noqa: E731
    # Weighted sampling without replacement: the n smallest of Exp(1) / w (Efraimidis-Spirakis).
    keys = [(rng.expovariate(1.0) / weight(ex), i) for i, ex in enumerate(pool) if weight(ex) > 0]
    return [pool[i] for _, i in sorted(keys)[:n]]


def worked_solution(segments: list[tuple[str, bool]], tokenizer) -> str:
    """A scripted run's written turns as OFSD shows a reference trajectory (pairs.reference_text): each decoded
    from its tokens, special tokens dropped, stripped, one per line."""
    return "\n".join(tokenizer.decode(tokenizer(text, add_special_tokens=False).input_ids,
                                      skip_special_tokens=True).strip() for text, written in segments if written)


def privileged_episode(ex, facts: dict, client, rng: random.Random, tokenizer,
                       cfg: WarmstartConfig) -> tuple[list[int], list[tuple[str, bool]]]:
    """(prompt ids, segments): the question with a flawless worked solution in OFSD's privileged block (written
    as OFSD shows a reference: its turns as decoded, one per line), then a scripted run of the same question that
    may take a detour (a poor or repeated query) but never guesses or misreads."""
    reference = demonstrate(ex, facts, client, rng, FLAWLESS, restate_need=cfg.restate_need,
                            quote_style=cfg.quote_style, compare_in_one_search=cfg.compare_in_one_search)
    if cfg.compare_in_one_search and protocol.parse_action(reference[-1][0]).content != ex.golden_answers[0]:
        # one search missed a value and the flawless run guessed: the solution shown searches each name instead
        reference = demonstrate(ex, facts, client, rng, FLAWLESS, restate_need=cfg.restate_need,
                                quote_style=cfg.quote_style)
    run = demonstrate(ex, facts, client, rng, Imperfections(no_search=0.0, misread=0.0), restate_need=cfg.restate_need,
                      quote_style=cfg.quote_style, compare_in_one_search=cfg.compare_in_one_search)
    answer = protocol.parse_action(reference[-1][0]).content
    if protocol.parse_action(run[-1][0]).content != answer:
        run = reference  # the detour ran out of turns: follow the solution itself
    if cfg.privileged_hide_answer and rng.random() < cfg.privileged_hide_answer:
        run = without_answer_passages(run, answer, client)
    prompt = privileged_context(ex.question, worked_solution(reference, tokenizer), tokenizer)
    return tokenizer(prompt, add_special_tokens=False).input_ids, run


def without_answer_passages(segments: list[tuple[str, bool]], answer: str,
                             client: InProcessClient) -> list[tuple[str, bool]]:
    """The episode with each information block retrieved again for its query, the passages that state the answer
    left out (the next ones take their places)."""
    out, pattern = [], re.compile(rf"\b{re.escape(answer)}\b")
    for k, (text, written) in enumerate(segments):
        if not written:
            query = protocol.parse_action(segments[k - 1][0]).content
            docs = [d for d in client.retrieve([query], topk=client.topk + 3)[0] if not pattern.search(d["contents"])]
            docs = docs[:client.topk]  # as many passages as usual: the count gives nothing away
            text = protocol.information_block(docs)
        out.append((text, written))
    return out


def held_out_demos(tokenizer, cfg: WarmstartConfig, world: WorldConfig, n: int = 48) -> list[dict]:
    """Flawless demonstrations on a world the stream never reaches, with the positions the probe scores: the
    entity names the first turn copies from the question, and the first mention of the answer in the final turn
    (the value read out of a passage)."""
    world_, client, pool = open_world(world)
    facts, rng = world_.fact_map(), random.Random(1)
    names = set(value_token_ids(tokenizer, NAME_POOL))
    space = tokenizer(" ", add_special_tokens=False).input_ids
    demos = []
    for ex in rng.sample(pool, len(pool)):
        if len(demos) == n:
            break
        prompt_ids = question_prompt_ids(tokenizer, ex.question)
        segments = demonstrate(ex, facts, client, rng, FLAWLESS, restate_need=cfg.restate_need,
                               quote_style=cfg.quote_style, compare_in_one_search=cfg.compare_in_one_search)
        if protocol.parse_action(segments[-1][0]).content != ex.golden_answers[0] or \
                ex.golden_answers[0] in ex.question:
            continue  # retrieval never returned the value, or a comparison (its answer is in the question)
        ids, _ = encode_demo(prompt_ids, segments, tokenizer, cfg.max_obs_length)
        first_end = len(prompt_ids) + len(tokenizer(segments[0][0], add_special_tokens=False).input_ids)
        entity = [i for i in range(len(prompt_ids), first_end) if ids[i] in names]
        if not entity:
            continue
        final_start = len(ids) - 1 - len(tokenizer(segments[-1][0], add_special_tokens=False).input_ids)
        answer = tokenizer(f"<answer> {ex.golden_answers[0]} </answer>", add_special_tokens=False).input_ids[1:-1]
        answer = answer[answer[:1] == space:]  # the value's own tokens: no lone space token before or after
        answer = answer[:len(answer) - (answer[-1:] == space)]
        # the first time the final turn names the answer: the value read out of a passage (later mentions copy it)
        first = next(i for i in range(final_start, len(ids)) if ids[i:i + len(answer)] == answer)
        demos.append({"ids": ids, "entity": entity, "answer": list(range(first, first + len(answer)))})
    return demos


@torch.no_grad()
def probe(model, demos: list[dict]) -> dict[str, float]:
    """Teacher-forced: the fraction of demos whose entity names (first turn) / answer read out of a passage (its
    first mention in the final turn) are the model's argmax."""
    hits = {"entity": 0, "answer": 0}
    was_training = model.training
    model.eval()
    for demo in demos:
        ids = torch.tensor([demo["ids"]])
        predicted = model(input_ids=ids).logits[0].argmax(-1)
        for key in hits:
            positions = torch.tensor(demo[key], dtype=torch.long)
            hits[key] += bool((predicted[positions - 1] == ids[0, positions]).all())
    model.train(was_training)
    return {k: v / max(len(demos), 1) for k, v in hits.items()}
