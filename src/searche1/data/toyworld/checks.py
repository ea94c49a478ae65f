"""Sanity figures for a toy world: gold passages hold their answers, BM25 finds them (but not trivially), and the
questions cannot be answered from the question alone.

Every number here comes from `check_world`; docs/toyworld.md quotes them for seed 0.
"""

from __future__ import annotations

import collections
import re

from searche1.data.qa import QAExample
from searche1.data.toyworld.generator import SINGLE_HOP_SETS, World
from searche1.metrics import mean
from searche1.retrieval.bm25 import BM25Retriever
from searche1.reward import em


def _contains(text: str, value: str) -> bool:
    # Whole-word match, so "1873" does not hide in "18731" nor a name inside a longer word.
    return re.search(rf"(?<![A-Za-z0-9]){re.escape(value)}(?![A-Za-z0-9])", text) is not None


def _hop_values(ex: QAExample) -> list[str]:
    """The value each gold passage must state, hop by hop (comparison: each side's compared value)."""
    meta = ex.metadata or {}
    if "values" in meta:
        return list(meta["values"])
    if "chain" in meta:
        return list(meta["bridge"]) + [ex.golden_answers[0]]
    return [ex.golden_answers[0]]


def check_gold_passages(world: World) -> int:
    """Raise ValueError naming the question if a gold passage is missing or does not state its hop's value."""
    contents = {d.id: d.contents for d in world.docs}
    examples = list(world.train) + [ex for exs in world.tests.values() for ex in exs]
    for ex in examples:
        gold_ids = (ex.metadata or {}).get("gold_doc_ids") or []
        values = _hop_values(ex)
        if len(gold_ids) != len(values):
            raise ValueError(f"question {ex.id}: {len(gold_ids)} gold passages for {len(values)} hops")
        for doc_id, value in zip(gold_ids, values):
            if doc_id not in contents:
                raise ValueError(f"question {ex.id}: gold passage {doc_id!r} is not in the corpus")
            if not _contains(contents[doc_id], value):
                raise ValueError(f"question {ex.id}: gold passage {doc_id!r} does not contain {value!r}")
        if not any(_contains(contents[d], ex.golden_answers[0]) for d in gold_ids):
            raise ValueError(f"question {ex.id}: no gold passage contains the answer {ex.golden_answers[0]!r}")
    return len(examples)


def _answer_key(ex: QAExample) -> str:
    meta = ex.metadata or {}
    return "/".join(meta["chain"]) if "chain" in meta else meta["relation"]


def _final_relation(ex: QAExample) -> str:
    meta = ex.metadata or {}
    return meta["chain"][-1] if "chain" in meta else meta["relation"]


def _majority_answers(train: list[QAExample]) -> tuple[dict[str, str], dict[str, str]]:
    """Most frequent train answer per relation/chain, and per final relation (ties -> alphabetically first)."""
    by_key, by_final = collections.defaultdict(collections.Counter), collections.defaultdict(collections.Counter)
    for ex in train:
        by_key[_answer_key(ex)][ex.golden_answers[0]] += 1
        by_final[_final_relation(ex)][ex.golden_answers[0]] += 1

    def top(counter: collections.Counter) -> str:
        return min(counter.items(), key=lambda kv: (-kv[1], kv[0]))[0]

    return {k: top(c) for k, c in by_key.items()}, {k: top(c) for k, c in by_final.items()}


def _first_named_entity(question: str, entity_names: set[str]) -> str | None:
    for word in re.findall(r"[A-Z][a-z]+", question):
        if word in entity_names:
            return word
    return None


def check_world(world: World, topk: int = 3) -> dict:
    """All check figures for `world` (fractions in [0, 1]); raises ValueError if a gold passage is wrong."""
    n_checked = check_gold_passages(world)
    retriever = BM25Retriever.build(world.docs)
    distractor_ids = {d.id for d in world.docs if d.contents.split("\n", 1)[0].endswith(')"')}
    at_k = f"recall@{topk}"
    report: dict = {
        "namespace": world.namespace, "n_docs": len(world.docs), "n_distractors": len(distractor_ids),
        "n_facts": len(world.facts), "n_questions_checked": n_checked,
        "single_hop_retrieval": {}, "multi_hop_retrieval": {}, "guess_majority_em": {}, "guess_entity_em": {},
    }
    pooled = {"recall@1": [], at_k: [], "distractor@1": []}
    for name, examples in world.tests.items():
        if not examples:
            continue
        hits = retriever.search([ex.question for ex in examples], topk=max(topk, 1))
        ranked = [[h.doc.id for h in row] for row in hits]
        gold_first = [ex.metadata["gold_doc_ids"][0] for ex in examples]
        found_k = [float(g in ids[:topk]) for g, ids in zip(gold_first, ranked)]
        if name in SINGLE_HOP_SETS:
            found_1 = [float(ids[0] == g) for g, ids in zip(gold_first, ranked)]
            distractor_1 = [float(ids[0] in distractor_ids) for ids in ranked]
            report["single_hop_retrieval"][name] = {"recall@1": mean(found_1), at_k: mean(found_k),
                                                    "distractor@1": mean(distractor_1)}
            for key, xs in (("recall@1", found_1), (at_k, found_k), ("distractor@1", distractor_1)):
                pooled[key] += xs
        else:
            # The last hop's passage names no word of the question but the answer type, so one search with the
            # question rarely finds it: multi-hop needs a second query with the bridge entity.
            gold_last = [ex.metadata["gold_doc_ids"][-1] for ex in examples]
            last_k = [float(g in ids[:topk]) for g, ids in zip(gold_last, ranked)]
            report["multi_hop_retrieval"][name] = {f"first_hop_{at_k}": mean(found_k),
                                                   f"last_hop_{at_k}": mean(last_k)}
    report["single_hop_retrieval"]["overall"] = {k: mean(v) for k, v in pooled.items()}

    by_key, by_final = _majority_answers(world.train)
    entity_names = set(world.entities)
    for name, examples in world.tests.items():
        majority = [em(by_key.get(_answer_key(ex), by_final.get(_final_relation(ex))), ex.golden_answers)
                    for ex in examples]
        entity = [em(_first_named_entity(ex.question, entity_names), ex.golden_answers) for ex in examples]
        report["guess_majority_em"][name] = mean(majority)
        report["guess_entity_em"][name] = mean(entity)
    return report


def fact_agreement(world_a: World, world_b: World) -> dict:
    """How often two worlds state the same object for a (subject, relation) both of them have."""
    facts_a, facts_b = world_a.fact_map(), world_b.fact_map()
    shared = [key for key in facts_a if key in facts_b]
    agree = sum(facts_a[key] == facts_b[key] for key in shared)
    return {"shared": len(shared), "agree": agree, "rate": agree / len(shared) if shared else 0.0}


def format_check_report(report: dict) -> str:
    """A readable multi-line summary of `check_world`'s dict."""
    lines = [f"toy world {report['namespace']}: {report['n_docs']} passages ({report['n_distractors']} look-alike "
             f"distractors), {report['n_facts']} facts, {report['n_questions_checked']} questions with verified gold "
             "passages"]
    lines.append("BM25, question as query, gold passage found (single-hop):")
    for name, figures in report["single_hop_retrieval"].items():
        lines.append(f"  {name:<16}" + "  ".join(f"{k} {v:.3f}" for k, v in figures.items()))
    lines.append("BM25, question as query, first / last hop's gold passage found (multi-hop):")
    for name, figures in report["multi_hop_retrieval"].items():
        lines.append(f"  {name:<16}" + "  ".join(f"{k} {v:.3f}" for k, v in figures.items()))
    lines.append("Question-only guessing, EM (majority train answer | first entity named in the question):")
    for name in report["guess_majority_em"]:
        lines.append(f"  {name:<16}{report['guess_majority_em'][name]:.3f} | {report['guess_entity_em'][name]:.3f}")
    return "\n".join(lines)
