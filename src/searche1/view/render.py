"""A trajectory as the viewer shows it: turn by turn, the model's text apart from the text the engine inserted.

The record keeps token ids with a mask (1 = sampled by the model, 0 = inserted: information blocks, the
invalid-action text) and each turn's token span, so the split is exact; the text of each span is decoded with the
run's tokenizer. For an OFSD student, each sampled token carries its teacher-student divergence.
"""

from __future__ import annotations

import re

from searche1 import protocol
from searche1.rollout.trajectory import Trajectory
from searche1.view.trajindex import benchmark_of

_QUESTION_LEAD = protocol.PROMPT_TEMPLATE.split("{question}")[0]
_DOC_START = re.compile(r"(?m)^Doc \d+\(Title: ")


def question_of(prompt_text: str) -> str | None:
    """The question inside a protocol prompt (chat template or not); None if the prompt is not one."""
    # the whole lead, or what a question-only chat template (toy-base's) keeps of it
    for lead in (_QUESTION_LEAD, protocol.QUESTION_MARKER):
        at = prompt_text.find(lead)
        if at >= 0:
            return prompt_text[at + len(lead):].split("\n", 1)[0]
    return None


def split_documents(observation: str) -> list[str]:
    """The retrieved documents of an information block, one string each ("Doc i(Title: ...) text")."""
    body = observation.strip()
    if body.startswith(protocol.INFO_OPEN) and body.endswith(protocol.INFO_CLOSE):
        body = body[len(protocol.INFO_OPEN):-len(protocol.INFO_CLOSE)]
    starts = [m.start() for m in _DOC_START.finditer(body)]
    if not starts:
        return [body.strip()] if body.strip() else []
    return [body[a:b].strip() for a, b in zip(starts, starts[1:] + [len(body)])]


def token_pieces(tokenizer, ids: list[int]) -> list[str]:
    """Each token's share of the decoded text, decoding incrementally from a short window (linear in the tokens).
    A token that ends inside a multi-byte character gets "" and the token that completes it gets the character."""
    pieces, prefix, read = [], 0, 0  # ids[prefix:read] is decoded text already handed out
    for j in range(len(ids)):
        before = tokenizer.decode(ids[prefix:read], skip_special_tokens=True)
        text = tokenizer.decode(ids[prefix:j + 1], skip_special_tokens=True)
        if len(text) > len(before) and not text.endswith("\ufffd"):
            pieces.append(text[len(before):] if text.startswith(before) else text)
            prefix, read = read, j + 1
        else:
            pieces.append("")
    return pieces


def render_trajectory(t: Trajectory, tokenizer, token_kl: list[float] | None = None) -> dict:
    """What the viewer draws. `token_kl`, one value per sampled token (mask 1) in order, colours an OFSD student's
    tokens; each turn then carries `tokens`: [[text, kl or None where the engine inserted the token], ...]."""
    if token_kl is not None and len(token_kl) != t.n_generated:
        raise ValueError(f"{t.group_id}#{t.sample_index}: {len(token_kl)} token KL values for "
                         f"{t.n_generated} sampled tokens")
    sampled_before = [0]
    for m in t.response_mask:
        sampled_before.append(sampled_before[-1] + m)
    decode = lambda a, b: tokenizer.decode(t.response_ids[a:b], skip_special_tokens=True)  # noqa: E731
    turns, covered = [], [False] * len(t.response_ids)
    for n, turn in enumerate(t.turns, start=1):
        shown = {"turn": n, "action": turn.action, "query": turn.query, "doc_ids": list(turn.doc_ids),
                 "text": decode(turn.start, turn.end), "observation": None, "documents": []}
        covered[turn.start:turn.end] = [True] * (turn.end - turn.start)
        if token_kl is not None:
            pieces = token_pieces(tokenizer, t.response_ids[turn.start:turn.end])
            shown["tokens"] = [[piece, token_kl[sampled_before[pos]] if t.response_mask[pos] else None]
                               for pos, piece in zip(range(turn.start, turn.end), pieces)]
        if turn.observation is not None:
            a, b = turn.observation
            covered[a:b] = [True] * (b - a)
            shown["observation"] = decode(a, b)
            shown["documents"] = split_documents(shown["observation"]) if turn.action == "search" else []
        turns.append(shown)
    # text no turn claims (none in the engine's output; kept visible when a file from elsewhere has some)
    unclaimed, start = [], None
    for pos, claimed in enumerate(covered + [True]):
        if not claimed and start is None:
            start = pos
        elif claimed and start is not None:
            unclaimed.append({"sampled": bool(t.response_mask[start]), "text": decode(start, pos)})
            start = None
    return {"group_id": t.group_id, "sample_index": t.sample_index, "benchmark": benchmark_of(t.group_id),
            "question": question_of(t.prompt_text), "prompt_text": t.prompt_text, "turns": turns,
            "unclaimed_text": [u for u in unclaimed if u["text"].strip()], "answer": t.answer,
            "golden_answers": list(t.golden_answers), "em": t.em, "f1": t.f1, "reward": t.reward,
            "finish_reason": t.finish_reason.value, "searches": t.n_searches, "generated_tokens": t.n_generated}


def list_row(index: int, row: dict) -> dict:
    """One line of the trajectory list, from a parsed jsonl row (no tokenizer needed)."""
    return {"index": index, "group_id": str(row["group_id"]), "sample_index": int(row["sample_index"]),
            "benchmark": benchmark_of(str(row["group_id"])), "question": question_of(str(row.get("prompt_text", ""))),
            "answer": row.get("answer"), "golden_answers": [str(a) for a in row.get("golden_answers", [])],
            "em": float(row.get("em", 0.0)), "searches": sum(t.get("action") == "search" for t in row.get("turns", [])),
            "generated_tokens": int(sum(row.get("response_mask", []))), "finish_reason": row.get("finish_reason")}
