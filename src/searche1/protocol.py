"""The Search-R1 agent protocol: prompt, tags, action parsing, observations, turn rules.

Every string here is a compatibility contract (docs/protocol.md) pinned byte for byte by tests/test_protocol.py.
Token-level work (stop detection on ids, observation truncation) is done by the rollout engine with these strings.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from typing import Any, Sequence

# The wording is Search-R1's, including "as your want": changing it changes what a trained model sees.
PROMPT_TEMPLATE = (
    "Answer the given question. You must conduct reasoning inside <think> and </think> first every time you get "
    "new information. After reasoning, if you find you lack some knowledge, you can call a search engine by "
    "<search> query </search> and it will return the top searched results between <information> and "
    "</information>. You can search as many times as your want. If you find no further external knowledge needed, "
    "you can directly provide the answer inside <answer> and </answer>, without detailed illustrations. For "
    "example, <answer> Beijing </answer>. Question: {question}\n"
)
QUESTION_MARKER = "Question: "
"""What stands right before the question in the prompt (a question-only chat template keeps the text from here)."""

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
SEARCH_OPEN, SEARCH_CLOSE = "<search>", "</search>"
ANSWER_OPEN, ANSWER_CLOSE = "<answer>", "</answer>"
INFO_OPEN, INFO_CLOSE = "<information>", "</information>"

# A turn's generation stops at the first of these (kept in the output), or at EOS / the per-turn budget.
STOP_STRINGS: tuple[str, ...] = (SEARCH_CLOSE, ANSWER_CLOSE)

ACTION_PATTERN = re.compile(r"<(search|answer)>(.*?)</\1>", re.DOTALL)

INVALID_ACTION_TEXT = (
    "\nMy previous action is invalid. If I want to search, I should put the query between <search> and </search>. "
    "If I want to give the final answer, I should put the answer between <answer> and </answer>. Let me try again.\n"
)

DEFAULT_MAX_TURNS = 4
DEFAULT_TOPK = 3
DEFAULT_MAX_OBS_LENGTH = 500


def normalize_question(question: str) -> str:
    """Strip the question and end it with '?' unless it already does (Search-R1's preprocessing)."""
    if not isinstance(question, str):
        raise TypeError(f"question must be a str, got {type(question).__name__}")
    q = question.strip()
    if not q:
        raise ValueError("question is empty")
    return q if q.endswith("?") else q + "?"


def make_prompt_text(question: str) -> str:
    """The user message: the template with the normalised question substituted."""
    return PROMPT_TEMPLATE.format(question=normalize_question(question))


def make_prompt(question: str, tokenizer: Any | None = None) -> str:
    """The model's input text: the user message through the tokenizer's chat template when it has one.

    Base models with a chat template get it too (docs/protocol.md); raw text otherwise (or with no tokenizer).
    """
    text = make_prompt_text(question)
    if tokenizer is not None and getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(
            [{"role": "user", "content": text}], add_generation_prompt=True, tokenize=False
        )
    return text


class ActionKind(str, enum.Enum):
    SEARCH = "search"
    ANSWER = "answer"
    INVALID = "invalid"


@dataclass(frozen=True)
class Action:
    kind: ActionKind
    content: str = ""  # stripped query or answer; "" for INVALID


def parse_action(turn_text: str) -> Action:
    """Parse one turn's output with the FIRST `<(search|answer)>(.*?)</\\1>` match."""
    m = ACTION_PATTERN.search(turn_text)
    if m is None:
        return Action(ActionKind.INVALID)
    return Action(ActionKind(m.group(1)), m.group(2).strip())


def split_contents(contents: str) -> tuple[str, str]:
    """A corpus `contents` field -> (title, text): the first line (quotes kept) and the rest."""
    lines = contents.split("\n")
    return lines[0], "\n".join(lines[1:])


def render_docs(docs: Sequence[dict]) -> str:
    """Top-k documents of one query as `Doc {i}(Title: {title}) {text}\\n`, i from 1."""
    out = []
    for i, doc in enumerate(docs, start=1):
        title, text = split_contents(doc["contents"])
        out.append(f"Doc {i}(Title: {title}) {text}\n")
    return "".join(out)


def information_block(docs: Sequence[dict]) -> str:
    """The observation inserted after the model's `</search>`."""
    return "\n\n" + INFO_OPEN + render_docs(docs).strip() + INFO_CLOSE + "\n\n"


class Step(str, enum.Enum):
    """What the engine does after a turn."""

    SEARCH = "search"  # run the query, append the information block, continue
    ANSWER = "answer"  # episode ends with an answer
    INVALID = "invalid"  # append INVALID_ACTION_TEXT, continue
    END_NO_ANSWER = "end_no_answer"  # final (search-disabled) turn without an answer: episode ends, reward 0


def next_step(action: Action, turns_done: int, max_turns: int = DEFAULT_MAX_TURNS) -> Step:
    """The turn rule. `turns_done` counts the turns before this one that searched or were invalid.

    As in Search-R1's loop (`for step in range(max_turns)`), a search and an invalid action each use up a turn, so
    there are at most `max_turns` searches and a model that never writes a tag cannot loop forever. After
    `max_turns` such turns the sample gets one last generation turn with search disabled: only an answer ends it
    well; a search or an invalid action there ends the episode with no answer.
    """
    if max_turns < 0:
        raise ValueError(f"max_turns must be >= 0, got {max_turns}")
    if action.kind is ActionKind.ANSWER:
        return Step.ANSWER
    if turns_done >= max_turns:
        return Step.END_NO_ANSWER
    return Step.SEARCH if action.kind is ActionKind.SEARCH else Step.INVALID


def is_final_turn(turns_done: int, max_turns: int = DEFAULT_MAX_TURNS) -> bool:
    """True when the coming turn is the last one (search disabled)."""
    return turns_done >= max_turns


def truncate_observation_ids(ids: Sequence[int], max_obs_length: int = DEFAULT_MAX_OBS_LENGTH) -> list[int]:
    """Keep the first `max_obs_length` observation tokens (Search-R1 truncates the information block's ids)."""
    if max_obs_length < 0:
        raise ValueError(f"max_obs_length must be >= 0, got {max_obs_length}")
    return list(ids[:max_obs_length])
