"""A seeded synthetic world: entities, facts, Wikipedia-like passages and seven QA sets (docs/toyworld.md).

Order of work: name the entities -> draw their facts -> write the corpus (recording each fact's gold passage) ->
ask questions about the facts. Each stage takes its own RNG derived from the world's namespace and the stage name,
so changing a question count never changes the facts or the corpus.

No-leak guarantee: every candidate value of a (subject, relation) falls in half 0 or half 1 by a stable hash of
(subject, relation, value). Evaluation worlds only draw from half 0, pretraining worlds only from half 1, so no
pretraining world can ever state a fact that an evaluation world asks about.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import string
from dataclasses import asdict, dataclass, field
from pathlib import Path

from searche1.data.corpus import Document, make_contents, write_corpus
from searche1.data.qa import QAExample, write_qa_jsonl
from searche1.data.toyworld import names as words
from searche1.data.toyworld.names import KINDS, RELATIONS, SINGLE_HOP_SETS, TEST_SETS  # noqa: F401 (re-exported)
from searche1.data.toyworld.questions import _make_questions
from searche1.fileio import atomic_dir

EVAL_HALF, PRETRAIN_HALF = 0, 1
LEVELS = {
    1: "one passage per fact, the relation's canonical template, the subject by name; no look-alikes",
    2: "one passage per entity stating all its facts with the canonical templates, by name; no look-alikes",
    3: "Wikipedia-like passages: paraphrased templates, pronouns, intro, mention and filler sentences, sometimes two "
       "sections; no look-alikes",
    4: "level 3 plus look-alike passages (another thing of the same name) as distractors",
}
"""Corpus difficulty: the same entities, facts and questions at every level of a seed; only the corpus changes."""
MAX_LEVEL = max(LEVELS)


@dataclass
class WorldConfig:
    seed: int = 0
    """Evaluation world number: namespace "eval:{seed}" (or part of the pretraining namespace, see below)."""
    pretrain_index: int | None = None
    """When set, a pretraining world: namespace "pretrain:{seed}:{pretrain_index}", facts from the other half."""
    name_pool: str = "shared"
    """"shared": names from NAME_POOL (known tokens); "disjoint": fresh names never in the pool."""
    n_people: int = 120
    n_cities: int = 50
    n_countries: int = 15
    n_orgs: int = 60
    homonym_fraction: float = 0.15
    """Fraction of entities that get a look-alike passage about a different thing with the same name."""
    n_train_single: int = 400
    """Single-hop train questions (nq-style wording), on facts no single-hop test question uses."""
    n_train_bridge: int = 400
    """2-hop bridge train questions (hotpotqa wording)."""
    n_test: int = 100
    """Questions per test set (nq, triviaqa, popqa, hotpotqa, 2wikimultihopqa, musique)."""
    n_test_bamboogle: int = 50
    level: int = MAX_LEVEL
    """Corpus difficulty, 1 (one canonical sentence per passage) to 4 (today's realistic world): LEVELS."""

    def __post_init__(self):
        if self.level not in LEVELS:
            raise ValueError(f"level must be one of {sorted(LEVELS)}, got {self.level}")
        if self.name_pool not in ("shared", "disjoint"):
            raise ValueError(f"name_pool must be 'shared' or 'disjoint', got {self.name_pool!r}")
        counts = [self.n_people, self.n_cities, self.n_countries, self.n_orgs]
        for key in ("n_people", "n_cities", "n_countries", "n_orgs"):
            if getattr(self, key) < 2:
                raise ValueError(f"{key} must be at least 2 (comparisons need pairs), got {getattr(self, key)}")
        total = sum(counts)
        if total > len(words.NAME_POOL):
            raise ValueError(
                f"n_people + n_cities + n_countries + n_orgs = {total}, but the name pool holds "
                f"{len(words.NAME_POOL)} names; lower the counts so they sum to at most {len(words.NAME_POOL)}")
        if not 0.0 <= self.homonym_fraction <= 1.0:
            raise ValueError(f"homonym_fraction must be in [0, 1], got {self.homonym_fraction}")
        for key in ("n_train_single", "n_train_bridge", "n_test", "n_test_bamboogle"):
            if getattr(self, key) < 0:
                raise ValueError(f"{key} must be >= 0, got {getattr(self, key)}")
        if self.pretrain_index is not None and self.pretrain_index < 0:
            raise ValueError(f"pretrain_index must be >= 0 or None, got {self.pretrain_index}")

    @property
    def namespace(self) -> str:
        if self.pretrain_index is None:
            return f"eval:{self.seed}"
        return f"pretrain:{self.seed}:{self.pretrain_index}"

    @property
    def fact_half(self) -> int:
        return EVAL_HALF if self.pretrain_index is None else PRETRAIN_HALF


@dataclass(frozen=True)
class Fact:
    subject: str
    relation: str
    object: str
    gold_doc_id: str  # the subject's passage that states it


@dataclass
class World:
    config: WorldConfig
    entities: dict[str, str]  # name -> kind, in draw order
    facts: list[Fact]
    docs: list[Document]  # in id order "0", "1", ...
    train: list[QAExample]
    tests: dict[str, list[QAExample]]  # "nq" -> examples of toy-nq, ...
    distractor_titles: list[str] = field(default_factory=list)

    @property
    def namespace(self) -> str:
        return self.config.namespace

    def fact_map(self) -> dict[tuple[str, str], str]:
        return {(f.subject, f.relation): f.object for f in self.facts}


def fact_half(subject: str, relation: str, value: str) -> int:
    """Which namespace half may state `relation(subject) = value`: a stable hash, the same in every world."""
    return hashlib.sha256(f"{subject}\x1f{relation}\x1f{value}".encode()).digest()[0] & 1


def stage_rng(namespace: str, stage: str) -> random.Random:
    digest = hashlib.sha256(f"searche1-toyworld/{namespace}/{stage}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def _years(lo: int, hi: int) -> list[str]:
    return [str(y) for y in range(lo, hi + 1)]


ENTITY_OBJECTS = {"born_in": "city", "headquarters": "city", "country": "country", "founder": "person"}
YEAR_RANGES = {("person", "birth_year"): words.BIRTH_YEARS, ("city", "founded_year"): words.CITY_FOUNDED_YEARS,
               ("country", "independence_year"): words.INDEPENDENCE_YEARS}


def _candidates(kind: str, relation: str, subject: str, by_kind: dict[str, list[str]],
                facts: dict[tuple[str, str], str], constrained: bool = True) -> list[str]:
    """All values `relation(subject)` could take in this world, consistent with the facts drawn so far."""
    if relation in ENTITY_OBJECTS:
        return by_kind[ENTITY_OBJECTS[relation]]
    if relation in ("occupation", "language"):
        return list(words.OCCUPATIONS if relation == "occupation" else words.LANGUAGES)
    if (kind, relation) in YEAR_RANGES:
        return _years(*YEAR_RANGES[(kind, relation)])
    if (kind, relation) == ("org", "founded_year"):  # when its founder was 25-70 years old
        born = facts.get((facts.get((subject, "founder"), ""), "birth_year"))
        if not constrained or born is None:
            return _years(words.BIRTH_YEARS[0] + words.ORG_FOUNDER_AGE[0], words.LATEST_YEAR)
        return _years(int(born) + words.ORG_FOUNDER_AGE[0], min(int(born) + words.ORG_FOUNDER_AGE[1],
                                                                 words.LATEST_YEAR))
    if relation == "employer":  # an org founded before the person turned EMPLOYER_MAX_AGE
        latest = int(facts.get((subject, "birth_year"), -words.EMPLOYER_MAX_AGE)) + words.EMPLOYER_MAX_AGE
        return [o for o in by_kind["org"]
                if not constrained or int(facts.get((o, "founded_year"), latest + 1)) <= latest]
    raise KeyError(f"unknown relation {kind}.{relation}")


def _draw_value(rng: random.Random, subject: str, relation: str, candidates: list[str], half: int,
                exclude: str | None = None) -> str | None:
    allowed = [v for v in candidates if v != exclude and fact_half(subject, relation, v) == half]
    return rng.choice(allowed) if allowed else None  # None: the fact is left out of this world (rare)


def _draw_entities(cfg: WorldConfig, rng: random.Random) -> dict[str, str]:
    sizes = {"person": cfg.n_people, "city": cfg.n_cities, "country": cfg.n_countries, "org": cfg.n_orgs}
    total = sum(sizes.values())
    pool = rng.sample(words.NAME_POOL, total) if cfg.name_pool == "shared" else words.disjoint_names(rng, total)
    kinds = [kind for kind in KINDS for _ in range(sizes[kind])]
    return dict(zip(pool, kinds))  # the sample is random, so kinds are assigned at random


def _draw_facts(entities: dict[str, str], half: int, rng: random.Random) -> dict[tuple[str, str], str]:
    by_kind = {kind: [n for n, k in entities.items() if k == kind] for kind in KINDS}
    facts: dict[tuple[str, str], str] = {}
    # Dependency order: an org's founding year needs its founder's birth year; an employer needs both.
    order = [("country", "language"), ("country", "independence_year"), ("city", "country"),
             ("city", "founded_year"), ("person", "born_in"), ("person", "birth_year"), ("person", "occupation"),
             ("org", "founder"), ("org", "founded_year"), ("org", "headquarters"), ("person", "employer")]
    for kind, relation in order:
        for subject in by_kind[kind]:
            value = _draw_value(rng, subject, relation, _candidates(kind, relation, subject, by_kind, facts), half)
            if value is not None:
                facts[(subject, relation)] = value
    # Re-key in entity order then relation order, so files list facts in a readable, stable order.
    return {(s, r): facts[(s, r)] for s, kind in entities.items() for r in RELATIONS[kind] if (s, r) in facts}


def _mentioned(kind: str, subject: str, entities: dict[str, str], facts: dict[tuple[str, str], str]) -> list[str]:
    link = {"person": ("org", "founder"), "city": ("person", "born_in"), "country": ("city", "country"),
            "org": ("person", "employer")}[kind]
    return [n for n, k in entities.items() if k == link[0] and facts.get((n, link[1])) == subject]


def _canonical_sentence(kind: str, subject: str, relation: str, value: str) -> str:
    """The relation's first template, with the subject by name."""
    return words.FACT_TEMPLATES[kind][relation][0].format(S=subject, P=f"{subject}'s", O=subject, o=value,
                                                          ao=words.with_article(value))


def _plain_passages(subject: str, kind: str, facts: dict[tuple[str, str], str],
                    level: int) -> list[tuple[str, list[str]]]:
    """Levels 1-2: (text, relations stated) in relation order, canonical sentences only; one passage per fact
    (level 1) or one per entity (level 2)."""
    known = [r for r in RELATIONS[kind] if (subject, r) in facts]
    sentences = [(_canonical_sentence(kind, subject, r, facts[(subject, r)]), [r]) for r in known]
    if level == 1 or not sentences:
        return sentences
    return [(" ".join(text for text, _ in sentences), known)]


def _entity_passages(rng: random.Random, subject: str, kind: str, entities: dict[str, str],
                     facts: dict[tuple[str, str], str]) -> list[tuple[str, list[str]]]:
    """Levels 3-4: 1-2 passages (text, relations stated) about one entity: a lead, and sometimes a second section."""
    stated = []  # (relation, template, values) per known fact
    for relation in RELATIONS[kind]:
        if (subject, relation) in facts:
            obj = facts[(subject, relation)]
            values = {"o": obj, "ao": words.with_article(obj)}
            stated.append((relation, rng.choice(words.FACT_TEMPLATES[kind][relation]), values))
    rng.shuffle(stated)
    extras = []
    related = _mentioned(kind, subject, entities, facts)
    if related:
        chosen = rng.sample(related, min(3, len(related)))
        extras.append((None, words.MENTION_TEMPLATES[kind], {"names": words.join_names(chosen)}))
    if rng.random() < 0.5:
        extras.append((None, rng.choice(words.FILLER_TEMPLATES[kind]), {}))
    intro = (None, rng.choice(words.INTRO_TEMPLATES[kind]), {})
    if len(stated) >= 2 and rng.random() < 0.5:
        cut = rng.randint(1, len(stated) - 1)
        second = stated[cut:] + extras
        rng.shuffle(second)
        sections = [[intro] + stated[:cut], second]
    else:
        sections = [[intro] + stated + extras]
    pronouns = rng.choice(words.PERSON_PRONOUNS)
    passages = []
    for sentences in sections:
        text = " ".join(template.format(**words.subject_references(rng, kind, subject, pronouns, first=i == 0),
                                        **values) for i, (_, template, values) in enumerate(sentences))
        passages.append((text, [relation for relation, _, _ in sentences if relation is not None]))
    return passages


def _distractor_passage(rng: random.Random, subject: str, kind: str, entities: dict[str, str],
                        facts: dict[tuple[str, str], str], half: int) -> tuple[str, str]:
    """(title, text) of a different thing named `subject`, worded like the real entity's facts."""
    by_kind = {k: [n for n, kk in entities.items() if kk == k] for k in KINDS}
    noun, template = rng.choice(words.DISTRACTOR_TEMPLATES[kind])
    values = {}
    for _, slot, _, _ in string.Formatter().parse(template):
        if slot and slot != "s" and slot not in values:
            candidates = _candidates(kind, slot, subject, by_kind, facts, constrained=False)
            true_value = facts.get((subject, slot))
            # Same half as the world's facts, so a distractor never shows a value of the other namespace.
            value = _draw_value(rng, subject, slot, candidates, half, exclude=true_value)
            values[slot] = value or rng.choice([c for c in candidates if c != true_value])
    return f"{subject} ({noun})", template.format(s=subject, **values)


def _write_corpus(cfg: WorldConfig, entities: dict[str, str], facts: dict[tuple[str, str], str],
                  rng: random.Random) -> tuple[list[Document], dict[tuple[str, str], str], list[str]]:
    passages: list[tuple[str, str, list[str]]] = []  # (title, text, relations of the title entity it states)
    for subject, kind in entities.items():
        written = (_plain_passages(subject, kind, facts, cfg.level) if cfg.level <= 2
                   else _entity_passages(rng, subject, kind, entities, facts))
        for text, relations in written:
            passages.append((subject, text, relations))
    n_homonyms = round(cfg.homonym_fraction * len(entities)) if cfg.level >= 4 else 0
    distractors = []
    for subject in rng.sample(list(entities), n_homonyms):
        title, text = _distractor_passage(rng, subject, entities[subject], entities, facts, cfg.fact_half)
        passages.append((title, text, []))
        distractors.append(title)
    rng.shuffle(passages)  # ids in a seeded random order, so an id says nothing about its entity
    docs, gold = [], {}
    for i, (title, text, relations) in enumerate(passages):
        docs.append(Document(str(i), make_contents(title, text)))
        for relation in relations:
            gold[(title, relation)] = str(i)
    return docs, gold, sorted(distractors)


def generate_world(cfg: WorldConfig | None = None) -> World:
    """Build the world for `cfg` (default: evaluation world 0). Same config -> same world, byte for byte."""
    cfg = cfg or WorldConfig()
    entities = _draw_entities(cfg, stage_rng(cfg.namespace, "entities"))
    facts = _draw_facts(entities, cfg.fact_half, stage_rng(cfg.namespace, "facts"))
    docs, gold, distractors = _write_corpus(cfg, entities, facts, stage_rng(cfg.namespace, "corpus"))
    train, tests = _make_questions(cfg, entities, facts, gold, stage_rng(cfg.namespace, "questions"))
    fact_list = [Fact(s, r, o, gold[(s, r)]) for (s, r), o in facts.items()]
    return World(cfg, entities, fact_list, docs, train, tests, distractors)


def world_summary(world: World) -> dict:
    """What world.json holds: the config, the namespace, every fact with its gold passage, and counts."""
    kinds = list(world.entities.values())
    return {
        "config": asdict(world.config),
        "namespace": world.namespace,
        "fact_half": world.config.fact_half,
        "entities": [{"name": n, "kind": k} for n, k in world.entities.items()],
        "facts": [asdict(f) for f in world.facts],
        "distractors": world.distractor_titles,
        "counts": {
            **{f"n_{kind}": kinds.count(kind) for kind in KINDS},
            "n_facts": len(world.facts), "n_docs": len(world.docs), "n_distractors": len(world.distractor_titles),
            "n_train": len(world.train), **{f"n_test_{name}": len(exs) for name, exs in world.tests.items()},
        },
    }


def write_world(world: World, out_dir: str | os.PathLike) -> dict[str, Path]:
    """Write corpus.jsonl, train.jsonl, test/toy-<set>.jsonl and world.json; the directory appears atomically."""
    out_dir = Path(out_dir)
    relative = {"corpus": Path("corpus.jsonl"), "train": Path("train.jsonl"), "world": Path("world.json")}
    relative.update({name: Path("test") / f"toy-{name}.jsonl" for name in world.tests})
    with atomic_dir(out_dir, marker="world.json", what="world") as tmp:
        write_corpus(tmp / relative["corpus"], world.docs)
        write_qa_jsonl(tmp / relative["train"], world.train)
        for name, examples in world.tests.items():
            write_qa_jsonl(tmp / relative[name], examples)
        (tmp / relative["world"]).write_text(json.dumps(world_summary(world), indent=1, ensure_ascii=False) + "\n",
                                             encoding="utf-8")
    return {key: out_dir / path for key, path in relative.items()}
