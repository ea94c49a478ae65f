"""OFSD pair mining and the teacher's privileged context (docs/ofsd.md, "The method", points 3-4).

Per question of the rollout pool: the reference is the shortest correct sibling (fewest generated tokens; ties ->
fewer searches, then the lower sample index), the student the sibling that differs most from it; the ablations swap
either rule (ofsd.reference, ofsd.student). Questions with no correct sibling give no pair, and a trajectory is never
its own student. Pure functions over Trajectory records;
the KL strategy's scores are computed by the caller (a teacher-forced forward) and passed in.
"""

from __future__ import annotations

import difflib
import random
from dataclasses import dataclass
from typing import Callable, Literal, Sequence

from searche1 import protocol
from searche1.metrics import mean
from searche1.rollout.trajectory import FinishReason, Trajectory

StudentStrategy = Literal["kl", "longest", "lexical", "random", "all", "failed"]
ReferenceStrategy = Literal["shortest", "any", "longest", "first"]

PRIVILEGED_HEADER = ("A worked solution of this same question follows, between the two marker lines. Use it: "
                     "reason, search and answer as it does, in your own words.")
PRIVILEGED_BEGIN = "=== worked solution ==="
PRIVILEGED_END = "=== end of worked solution ==="


@dataclass(frozen=True)
class Pair:
    reference: Trajectory
    student: Trajectory


def answered_samples(pool: Sequence[Trajectory]) -> list[Trajectory]:
    """The pool samples that can be a reference or a student: one whose retrieval failed (retrieval.on_failure=skip)
    is neither right nor wrong."""
    return [t for t in pool if t.finish_reason is not FinishReason.ERROR]


def group_by_question(pool: Sequence[Trajectory]) -> dict[str, list[Trajectory]]:
    groups: dict[str, list[Trajectory]] = {}
    for t in pool:
        groups.setdefault(t.group_id, []).append(t)
    return groups


def pick_reference(siblings: Sequence[Trajectory], strategy: ReferenceStrategy = "shortest",
                   rng: random.Random | None = None) -> Trajectory | None:
    """The shortest correct sibling; for the ablations any correct one, the longest (ties -> more searches, then the
    lower sample index) or the first (lowest sample index: the successful rollout TRL's SDPOTrainer shows its
    teacher). None when none is correct."""
    correct = [t for t in siblings if t.reward > 0]
    if not correct:
        return None
    if strategy == "shortest":
        return min(correct, key=lambda t: (t.n_generated, t.n_searches, t.sample_index))
    if strategy == "longest":
        return max(correct, key=lambda t: (t.n_generated, t.n_searches, -t.sample_index))
    if strategy == "first":
        return min(correct, key=lambda t: t.sample_index)
    if strategy == "any":
        return (rng or random.Random(0)).choice(sorted(correct, key=lambda t: t.sample_index))
    raise ValueError(f"unknown reference strategy {strategy!r}: shortest | any | longest | first")


def action_text(t: Trajectory) -> str:
    """The trajectory's actions in order (queries, then the answer): what `lexical` compares."""
    parts = [f"search:{turn.query}" for turn in t.turns if turn.query is not None]
    return " | ".join(parts + [f"answer:{t.answer}"])


def mine_pairs(pool: Sequence[Trajectory], student: StudentStrategy = "kl", reference: ReferenceStrategy = "shortest",
               kl_scores: Callable[[Trajectory, Trajectory], float] | None = None,
               seed: int = 0) -> list[Pair]:
    """Pairs of the pool, in question order. `kl_scores(reference, candidate)` gives the mean per-token
    teacher-student KL of a candidate (needed by the `kl` strategy only). `all` pairs the reference with every other
    sibling, correct ones included; `failed` with every wrong one only."""
    if student == "kl" and kl_scores is None:
        raise ValueError("the kl student strategy needs kl_scores (teacher-student KL of each candidate)")
    rng = random.Random(seed)
    pairs = []
    for siblings in group_by_question(pool).values():
        ref = pick_reference(siblings, reference, rng)
        others = sorted((t for t in siblings if t is not ref), key=lambda t: t.sample_index)
        if ref is None or not others:
            continue
        if student in ("all", "failed"):
            pairs += [Pair(ref, t) for t in others if student == "all" or not t.reward > 0]
            continue
        if student == "kl":
            chosen = max(others, key=lambda t: kl_scores(ref, t))
        elif student == "longest":
            chosen = max(others, key=lambda t: (t.n_generated, -t.sample_index))
        elif student == "lexical":  # lowest similarity of the action sequences
            chosen = min(others, key=lambda t: difflib.SequenceMatcher(None, action_text(ref),
                                                                       action_text(t)).ratio())
        elif student == "random":
            chosen = rng.choice(others)
        else:
            raise ValueError(f"unknown student strategy {student!r}: kl | longest | lexical | random | all | failed")
        pairs.append(Pair(ref, chosen))
    return pairs


def pair_stats(pool: Sequence[Trajectory], pairs: Sequence[Pair]) -> dict[str, float]:
    """What a mining pass found: share of questions with a pair, and the mean sizes of references and students."""
    questions = len(group_by_question(pool))
    paired = len({p.reference.group_id for p in pairs})
    return {"questions": questions, "pairs": len(pairs), "paired_fraction": paired / max(questions, 1),
            "reference_tokens": mean(p.reference.n_generated for p in pairs),
            "student_tokens": mean(p.student.n_generated for p in pairs),
            "reference_searches": mean(p.reference.n_searches for p in pairs),
            "student_searches": mean(p.student.n_searches for p in pairs)}


def reference_text(t: Trajectory, tokenizer, with_retrieved: bool = False) -> str:
    """What the teacher is shown of the reference: its turns as written (reasoning, queries, answer), and with
    `with_retrieved` the retrieved <information> blocks too."""
    parts = []
    for turn in t.turns:
        parts.append(tokenizer.decode(t.response_ids[turn.start:turn.end], skip_special_tokens=True).strip())
        if with_retrieved and turn.observation is not None:
            a, b = turn.observation
            parts.append(tokenizer.decode(t.response_ids[a:b], skip_special_tokens=True).strip())
    return "\n".join(p for p in parts if p)


def privileged_prompt(question: str, reference: Trajectory, tokenizer, with_retrieved: bool = False) -> str:
    """The teacher's context for a reference trajectory (privileged_context of its reference_text)."""
    return privileged_context(question, reference_text(reference, tokenizer, with_retrieved), tokenizer)


def privileged_context(question: str, worked_solution: str, tokenizer) -> str:
    """The plain user message, a blank line, then a delimited block with the worked solution, through the same
    chat template as the plain prompt (protocol.make_prompt). The user message ends in a newline as the plain one
    does, so the student's first token follows the same separator in both contexts (the template's suffix, or with
    no template that newline)."""
    block = "\n".join([PRIVILEGED_HEADER, PRIVILEGED_BEGIN, worked_solution, PRIVILEGED_END])
    text = protocol.make_prompt_text(question) + "\n" + block + "\n"
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template([{"role": "user", "content": text}], add_generation_prompt=True,
                                             tokenize=False)
    return text
