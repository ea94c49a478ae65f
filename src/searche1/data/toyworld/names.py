"""Every word the toy world can write: the shared name pool, the attribute vocabularies, and the sentence and
question templates.

They live together so that a toy tokenizer can be built from one place (`vocabulary_words` + `NAME_POOL`), and so
that the pool can be checked against every word a template or vocabulary uses.

Why one fixed pool of 300 names: a tiny model learns to copy a name out of a retrieved passage only when names are
known single tokens, and with 3000 names copying never formed in a short warm start (docs/toyworld.md). Facts are drawn
fresh per world, so a known name carries no memorizable fact.
"""

from __future__ import annotations

import random
import re

NAME_POOL_SEED = 20250101  # fixed forever: changing it renames every entity a toy model was trained on
NAME_POOL_SIZE = 300

# Consonant-vowel syllables. The last one never ends in 'e', 'y', 'l' or 's' nor reads "-li", "-gi", "-ator": those
# are the endings the English Snowball stemmer used by BM25 strips, so every name stays itself after stemming
# (checked in tests) and no two names share a stem.
_ONSETS = "bdfgklmnprstvz"
_FINAL_ONSETS = "bdfkmnprstvz"
_VOWELS = "aeiou"
_FINAL_VOWELS = "aiou"
_MIDDLE_CODAS = "nrlk"
_FINAL_CODAS = ("", "n", "r", "k", "m")
_STEMMED_ENDINGS = ("ator", "itor")

OCCUPATIONS = (
    "painter", "chemist", "sculptor", "poet", "architect", "astronomer", "botanist", "composer", "engineer",
    "geologist", "historian", "linguist", "mathematician", "novelist", "physician", "physicist", "playwright",
    "surgeon", "violinist", "philosopher",
)
LANGUAGES = (  # fictional, so no real-world prior helps
    "Brevish", "Calorese", "Dunmaric", "Elvarian", "Forthic", "Galmese", "Hestrish", "Ilvanic", "Jortese",
    "Kavrish", "Lumbrian", "Mordic",
)
# Inclusive year ranges. Every city is older than every person, so "born in a city" is always consistent.
BIRTH_YEARS = (1780, 1960)
CITY_FOUNDED_YEARS = (900, 1700)
INDEPENDENCE_YEARS = (1550, 1950)
ORG_FOUNDER_AGE = (25, 70)  # an org is founded when its founder is this old
LATEST_YEAR = 2005
YEARS = tuple(str(y) for y in range(CITY_FOUNDED_YEARS[0], LATEST_YEAR + 1))  # every year a fact can state
EMPLOYER_MAX_AGE = 50  # an employer was founded before the person turned this old

# ---- passages: one sentence per fact. {S} / {P} / {O}: the subject as sentence start, possessive, object -- the
# name in a passage's first sentence, later often a pronoun ("He", "Its", "the city"), as Wikipedia writes, so a
# passage does not repeat its name in every sentence (which would make BM25 on the bare name trivial).
# {o}: the object; {ao}: the object with "a"/"an". ----
INTRO_TEMPLATES = {
    "person": ("{S} is remembered as one of the notable people of the age.", "{S} led a long and well recorded life.",
               "Much is known about the life of {O}."),
    "city": ("{S} is a city with a busy old market.", "{S} is a city on a wide river.", "{S} is a walled city."),
    "country": ("{S} is a country with a long history.", "{S} is a small country.", "{S} is a country of hills."),
    "org": ("{S} is a company.", "{S} is a well known company.", "{S} is an old trading company."),
}
FACT_TEMPLATES = {
    "person": {
        "born_in": ("{S} was born in the city of {o}.", "{S} was a native of {o}.", "{P} birthplace was {o}.",
                    "{S} came from {o}, where the family lived."),
        "birth_year": ("{S} was born in {o}.", "{P} year of birth was {o}.", "{S} was born in the year {o}."),
        "occupation": ("{S} worked as {ao}.", "{S} was {ao} by profession.", "{S} made a living as {ao}.",
                       "{P} occupation was {o}."),
        "employer": ("{S} was employed by {o}.", "{S} worked for the company {o}.", "{S} spent a long career at {o}.",
                     "{o} employed {O} for many years."),
    },
    "city": {
        "country": ("{S} is a city in {o}.", "{S} lies in the country of {o}.", "{S} is located in {o}."),
        "founded_year": ("{S} was founded in {o}.", "{S} dates from {o}.", "{S} was established in the year {o}."),
    },
    "country": {
        "language": ("{P} language is {o}.", "People in {O} speak {o}.", "{o} is the official language of {O}."),
        "independence_year": ("{S} became independent in {o}.", "{S} gained its independence in {o}.",
                              "{P} independence dates from {o}."),
    },
    "org": {
        "founder": ("{S} was founded by {o}.", "{o} was the founder of {O}.", "{S} was started by {o}."),
        "headquarters": ("{S} has its headquarters in {o}.", "{S} is based in {o}.", "{P} head office is in {o}."),
        "founded_year": ("{S} was founded in {o}.", "{S} was set up in {o}.", "{S} has existed since {o}."),
    },
}
# Sentences naming related entities (consistent with the facts, but not the gold passage of those facts).
MENTION_TEMPLATES = {
    "person": "{S} founded {names}.",  # orgs with founder == subject
    "city": "People born in {O} include {names}.",  # persons with born_in == subject
    "country": "Cities in {O} include {names}.",  # cities with country == subject
    "org": "Employees of {O} have included {names}.",  # persons with employer == subject
}
FILLER_TEMPLATES = {
    "person": ("Many letters written by {O} survive today.", "{S} travelled widely when young."),
    "city": ("{P} old town has a large square.", "{S} has a stone bridge over its river."),
    "country": ("{S} has many rivers and forests.", "{P} coast is long and rocky."),
    "org": ("{S} has a large number of workers.", "{P} records are kept in a museum."),
}
# Pronouns and descriptions that stand for the subject after a passage's first sentence.
PERSON_PRONOUNS = (("He", "His", "him"), ("She", "Her", "her"))
KIND_NOUNS = {"city": "city", "country": "country", "org": "company"}
# Look-alike distractors: a different thing with the same name, written with similar words and different values.
# Each slot names the real entity's relation whose value range it draws from.
DISTRACTOR_TEMPLATES = {
    "person": (("ship", "{s} was a cargo ship built in {birth_year} in the city of {born_in}. It was owned by "
                        "{employer} and was later lost in a storm."),
               ("locomotive", "{s} was a steam locomotive built in {birth_year} in {born_in} for {employer}.")),
    "city": (("album", "{s} is an album recorded in {founded_year}. The album was popular in {country}."),
             ("opera", "{s} is an opera first performed in {founded_year} in the country of {country}.")),
    "country": (("novel", "{s} is a novel written in {language} and published in {independence_year}."),
                ("film", "{s} is a film made in {independence_year}, with dialogue in {language}.")),
    "org": (("band", "{s} was a band formed in {founded_year} in {headquarters} by {founder}."),
            ("festival", "{s} is a festival started in {founded_year} in the city of {headquarters} by {founder}.")),
}

# ---- questions: keyed by (subject kind, relation); {s} subject ----
SINGLE_HOP_QUESTIONS = {
    "nq": {  # Natural Questions: lower-case search-style, no question mark
        ("person", "born_in"): ("where was {s} born", "what city was {s} born in"),
        ("person", "birth_year"): ("when was {s} born", "what year was {s} born"),
        ("person", "occupation"): ("what did {s} do for a living", "what was {s}'s job"),
        ("person", "employer"): ("who did {s} work for", "what company did {s} work for"),
        ("city", "country"): ("what country is {s} in", "{s} is in which country"),
        ("city", "founded_year"): ("when was the city of {s} founded", "what year was the city of {s} founded"),
        ("country", "language"): ("what language do they speak in {s}", "what is the language of {s}"),
        ("country", "independence_year"): ("when did {s} become independent", "what year did {s} gain independence"),
        ("org", "founder"): ("who founded {s}", "who started the company {s}"),
        ("org", "headquarters"): ("where is {s} headquartered", "where is the company {s} based"),
        ("org", "founded_year"): ("when was {s} founded", "what year was the company {s} founded"),
    },
    "triviaqa": {  # TriviaQA: quiz sentences naming the kind of answer
        ("person", "born_in"): ("Which city was the birthplace of {s}?", "In which city was {s} born?"),
        ("person", "birth_year"): ("In which year was {s} born?",),
        ("person", "occupation"): ("What was the profession of {s}?",),
        ("person", "employer"): ("Which company employed {s}?",),
        ("city", "country"): ("In which country is the city of {s}?",),
        ("city", "founded_year"): ("In which year was the city of {s} founded?",),
        ("country", "language"): ("Which language is spoken in {s}?",),
        ("country", "independence_year"): ("In which year did {s} become independent?",),
        ("org", "founder"): ("Who founded the company {s}?",),
        ("org", "headquarters"): ("In which city does the company {s} have its headquarters?",),
        ("org", "founded_year"): ("In which year was the company {s} established?",),
    },
    "popqa": {  # PopQA's relation templates
        ("person", "born_in"): ("In what city was {s} born?",),
        ("person", "birth_year"): ("In what year was {s} born?",),
        ("person", "occupation"): ("What is {s}'s occupation?",),
        ("person", "employer"): ("Who was {s}'s employer?",),
        ("city", "country"): ("In what country is {s}?",),
        ("city", "founded_year"): ("In what year was {s} founded?",),
        ("country", "language"): ("What is the official language of {s}?",),
        ("country", "independence_year"): ("In what year did {s} gain independence?",),
        ("org", "founder"): ("Who was the founder of {s}?",),
        ("org", "headquarters"): ("Where is {s} headquartered?",),
        ("org", "founded_year"): ("In what year was {s} founded?",),
    },
}
# Chains start at the subject kind implied by the first relation; values follow the facts hop by hop.
CHAIN_QUESTIONS = {
    "hotpotqa": {  # bridge, 2 hops (also the train split's multi-hop half)
        ("employer", "founded_year"): ("In what year was the employer of {s} founded?",
                                       "When was the company that employed {s} founded?"),
        ("founder", "born_in"): ("The founder of {s} was born in which city?",
                                 "In which city was the founder of {s} born?"),
        ("born_in", "country"): ("In which country is the birthplace of {s}?",
                                 "{s} was born in a city of which country?"),
        ("headquarters", "country"): ("In which country is the company {s} headquartered?",),
        ("employer", "headquarters"): ("In which city is the employer of {s} based?",),
        ("born_in", "founded_year"): ("When was the birthplace of {s} founded?",),
        ("country", "language"): ("What language is spoken in the country where the city of {s} lies?",),
    },
    "musique": {  # 3 hops
        ("founder", "born_in", "country"): ("In which country was the founder of {s} born?",),
        ("employer", "headquarters", "founded_year"): (
            "In what year was the headquarters city of the employer of {s} founded?",),
        ("born_in", "country", "language"): ("What language is spoken in the country where {s} was born?",),
        ("founder", "born_in", "founded_year"): ("In what year was the birthplace of the founder of {s} founded?",),
        ("employer", "founder", "birth_year"): ("When was the founder of {s}'s employer born?",),
        ("headquarters", "country", "independence_year"): (
            "When did the country where {s} is headquartered become independent?",),
    },
    "bamboogle": {  # 2 hops, templates used nowhere else
        ("founder", "occupation"): ("What is the occupation of the founder of {s}?",),
        ("founder", "birth_year"): ("When was the founder of {s} born?",),
        ("employer", "founder"): ("Who founded the company that {s} worked for?",),
        ("country", "independence_year"): ("When did the country that contains {s} become independent?",),
    },
}
# 2WikiMultihopQA-style comparison: (relation compared, template, "min" or "max" wins). Years never tie.
COMPARISON_QUESTIONS = {
    "person": ("birth_year", (("Who was born first, {a} or {b}?", "min"), ("Who was born later, {a} or {b}?", "max"))),
    "org": ("founded_year", (("Which company was founded earlier, {a} or {b}?", "min"),
                             ("Which company is younger, {a} or {b}?", "max"))),
    "city": ("founded_year", (("Which city is older, {a} or {b}?", "min"),
                              ("Which city was founded later, {a} or {b}?", "max"))),
    "country": ("independence_year", (("Which country became independent first, {a} or {b}?", "min"),)),
}


def with_article(noun: str) -> str:
    return ("an " if noun[0] in "aeiou" else "a ") + noun


def join_names(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def subject_references(rng: random.Random, kind: str, name: str, pronouns: tuple[str, str, str], first: bool) -> dict:
    """{S}, {P}, {O} for one sentence: the name in a passage's first sentence, later often a pronoun."""
    if first or rng.random() < 0.35:
        return {"S": name, "P": f"{name}'s", "O": name}
    if kind == "person":
        return dict(zip("SPO", pronouns))
    noun = KIND_NOUNS[kind]
    return {"S": rng.choice(("It", f"The {noun}")), "P": "Its", "O": f"the {noun}"}


def _template_texts() -> list[str]:
    texts = [t for kind in INTRO_TEMPLATES.values() for t in kind]
    texts += [t for rels in FACT_TEMPLATES.values() for ts in rels.values() for t in ts]
    texts += list(MENTION_TEMPLATES.values()) + [t for ts in FILLER_TEMPLATES.values() for t in ts]
    texts += [f"{noun} {text}" for kinds in DISTRACTOR_TEMPLATES.values() for noun, text in kinds]
    texts += [t for style in SINGLE_HOP_QUESTIONS.values() for ts in style.values() for t in ts]
    texts += [t for style in CHAIN_QUESTIONS.values() for ts in style.values() for t in ts]
    texts += [t for _, ts in COMPARISON_QUESTIONS.values() for t, _ in ts]
    return texts


def vocabulary_words() -> list[str]:
    """Every word (lower-cased, letters only) a template or attribute vocabulary can write, sorted.

    Names come from `NAME_POOL` (or `disjoint_names`); years are digits. Together they cover the world's text.
    """
    words: set[str] = set()
    pronouns = [w for forms in PERSON_PRONOUNS for w in forms] + ["it", "its", "the"] + list(KIND_NOUNS.values())
    for text in _template_texts() + list(OCCUPATIONS) + list(LANGUAGES) + pronouns + ["a", "an", "and", "s"]:
        words.update(re.findall(r"[a-z]+", re.sub(r"\{[A-Za-z_]+\}", " ", text).lower()))
    return sorted(words)


def _pseudo_word(rng: random.Random) -> str:
    n_syllables = rng.choice((2, 2, 3))
    parts = [rng.choice(_ONSETS) + rng.choice(_VOWELS) + (rng.choice(_MIDDLE_CODAS) if rng.random() < 0.4 else "")
             for _ in range(n_syllables - 1)]
    parts.append(rng.choice(_FINAL_ONSETS) + rng.choice(_FINAL_VOWELS) + rng.choice(_FINAL_CODAS))
    return "".join(parts)


def _prefix_clash(word: str, taken: list[str]) -> bool:
    # A name that is a prefix of another ("Melin" / "Melinor") would make a toy tokenizer's greedy matching and
    # "answer in passage" checks ambiguous.
    return any(word.startswith(t) or t.startswith(word) for t in taken)


def _draw_names(rng: random.Random, n: int, excluded: set[str], reserved: list[str]) -> list[str]:
    """n new capitalised pseudo-words, 4-8 letters, distinct, prefix-free, outside `excluded` (lower-case)."""
    names: list[str] = []
    lowered: list[str] = []
    attempts = 0
    while len(names) < n:
        attempts += 1
        if attempts > 1000 * (n + 10):
            raise RuntimeError(f"could not draw {n} distinct names (got {len(names)})")
        word = _pseudo_word(rng)
        if not 4 <= len(word) <= 8 or word.endswith(_STEMMED_ENDINGS) or word in excluded:
            continue
        if _prefix_clash(word, lowered) or _prefix_clash(word, reserved):
            continue
        names.append(word.capitalize())
        lowered.append(word)
    return names


def _attribute_words() -> list[str]:
    return sorted(w.lower() for w in OCCUPATIONS + LANGUAGES)


# Drawn only against the attribute vocabularies (fixed), not the templates, so that rewording a template can never
# silently rename the pool; tests pin the pool and check it against every template word.
NAME_POOL: tuple[str, ...] = tuple(
    _draw_names(random.Random(NAME_POOL_SEED), NAME_POOL_SIZE, set(_attribute_words()), _attribute_words()))


def disjoint_names(rng: random.Random, n: int) -> list[str]:
    """n names built like the pool's but none in NAME_POOL (nor a prefix of / prefixed by a pool name): for worlds
    whose names a pool-trained model has never seen."""
    pool_lower = [name.lower() for name in NAME_POOL]
    # Template words of 3+ letters may not prefix a name either ("the" / "Thekar" reads like a word).
    template_words = [w for w in vocabulary_words() if len(w) > 2]
    return _draw_names(rng, n, set(vocabulary_words()) | set(pool_lower), template_words + pool_lower)


# The world's schema: entity kinds, their relations, and the seven test sets.
KINDS = ("person", "city", "country", "org")
RELATIONS = {
    "person": ("born_in", "birth_year", "occupation", "employer"),
    "city": ("country", "founded_year"),
    "country": ("language", "independence_year"),
    "org": ("founder", "headquarters", "founded_year"),
}
SINGLE_HOP_SETS = ("nq", "triviaqa", "popqa")
TEST_SETS = ("nq", "triviaqa", "popqa", "hotpotqa", "2wikimultihopqa", "musique", "bamboogle")
