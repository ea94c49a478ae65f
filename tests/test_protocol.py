"""Pins the Search-R1 protocol strings byte for byte (docs/protocol.md) and the turn rules."""

import pytest

from searche1 import protocol as P

EXPECTED_PROMPT = (
    "Answer the given question. You must conduct reasoning inside <think> and </think> first every time you get new "
    "information. After reasoning, if you find you lack some knowledge, you can call a search engine by <search> "
    "query </search> and it will return the top searched results between <information> and </information>. You can "
    "search as many times as your want. If you find no further external knowledge needed, you can directly provide "
    "the answer inside <answer> and </answer>, without detailed illustrations. For example, <answer> Beijing "
    "</answer>. Question: who wrote hamlet?\n"
)
EXPECTED_INVALID = (
    "\nMy previous action is invalid. If I want to search, I should put the query between <search> and </search>. "
    "If I want to give the final answer, I should put the answer between <answer> and </answer>. Let me try again.\n"
)


def test_prompt_is_byte_exact():
    assert P.make_prompt_text("who wrote hamlet") == EXPECTED_PROMPT
    assert P.make_prompt_text("  who wrote hamlet?  ") == EXPECTED_PROMPT
    assert EXPECTED_PROMPT.endswith("?\n") and not EXPECTED_PROMPT.endswith("\n\n")
    assert "as your want" in P.PROMPT_TEMPLATE
    assert P.PROMPT_TEMPLATE.endswith(P.QUESTION_MARKER + "{question}\n")  # what a question-only template keeps


@pytest.mark.parametrize("raw,expected", [
    ("who wrote hamlet", "who wrote hamlet?"),
    ("who wrote hamlet?", "who wrote hamlet?"),
    ("  padded  ", "padded?"),
    ("ends with dot.", "ends with dot.?"),
    ("ünïcödé", "ünïcödé?"),
    ("what?? ", "what??"),
])
def test_normalize_question(raw, expected):
    assert P.normalize_question(raw) == expected


@pytest.mark.parametrize("bad", ["", "   ", "\n"])
def test_empty_question_rejected(bad):
    with pytest.raises(ValueError, match="empty"):
        P.normalize_question(bad)


class _ChatTokenizer:
    chat_template = "{{ messages }}"

    def apply_chat_template(self, messages, add_generation_prompt, tokenize):
        assert add_generation_prompt and not tokenize
        return "<|user|>" + messages[0]["content"] + "<|assistant|>"


class _PlainTokenizer:
    chat_template = None


def test_chat_template_applied_when_present():
    assert P.make_prompt("who wrote hamlet", _ChatTokenizer()) == "<|user|>" + EXPECTED_PROMPT + "<|assistant|>"
    assert P.make_prompt("who wrote hamlet", _PlainTokenizer()) == EXPECTED_PROMPT
    assert P.make_prompt("who wrote hamlet") == EXPECTED_PROMPT


def test_chat_template_of_a_real_tokenizer():
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    tok = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.WordLevel({"[UNK]": 0}, unk_token="[UNK]")))
    tok.chat_template = "{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}<assistant>"
    assert P.make_prompt("q", tok) == "<user>" + P.make_prompt_text("q") + "<assistant>"


def test_stop_strings_and_constants():
    assert P.STOP_STRINGS == ("</search>", "</answer>")
    assert P.INVALID_ACTION_TEXT == EXPECTED_INVALID
    assert (P.DEFAULT_MAX_TURNS, P.DEFAULT_TOPK, P.DEFAULT_MAX_OBS_LENGTH) == (4, 3, 500)


@pytest.mark.parametrize("text,kind,content", [
    ("<think>x</think><search> capital of France </search>", "search", "capital of France"),
    ("<answer> Paris </answer>", "answer", "Paris"),
    ("<search>a</search> then <answer>b</answer>", "search", "a"),  # first match wins
    ("<answer>b</answer><search>a</search>", "answer", "b"),
    ("<search>multi\nline</search>", "search", "multi\nline"),  # dot matches newline
    ("<search>unclosed", "invalid", ""),
    ("<search>mismatched</answer>", "invalid", ""),
    ("no tags at all", "invalid", ""),
    ("<search></search>", "search", ""),
    ("<answer><answer>x</answer>", "answer", "<answer>x"),  # non-greedy from the first open tag
])
def test_parse_action(text, kind, content):
    a = P.parse_action(text)
    assert a.kind.value == kind and a.content == content


def test_render_docs_and_information_block_exact():
    docs = [{"id": "1", "contents": '"Paris"\nParis is the capital of France.'},
            {"id": "2", "contents": '"Lyon"\nLyon is a city.\nSecond line.'},
            {"id": "3", "contents": "No title newline"}]
    rendered = P.render_docs(docs)
    assert rendered == ('Doc 1(Title: "Paris") Paris is the capital of France.\n'
                        'Doc 2(Title: "Lyon") Lyon is a city.\nSecond line.\n'
                        "Doc 3(Title: No title newline) \n")
    block = P.information_block(docs)
    assert block == "\n\n<information>" + rendered.strip() + "</information>\n\n"
    assert P.information_block([]) == "\n\n<information></information>\n\n"


def test_next_step_turn_rules():
    S, A = P.Step, P.Action
    search, answer, invalid = A(P.ActionKind.SEARCH, "q"), A(P.ActionKind.ANSWER, "a"), A(P.ActionKind.INVALID)
    for done in range(4):
        assert P.next_step(search, done, 4) is S.SEARCH
        assert P.next_step(invalid, done, 4) is S.INVALID
        assert P.next_step(answer, done, 4) is S.ANSWER
        assert not P.is_final_turn(done, 4)
    # after max_turns search-or-invalid turns: one last turn with search disabled
    assert P.is_final_turn(4, 4)
    assert P.next_step(answer, 4, 4) is S.ANSWER
    assert P.next_step(search, 4, 4) is S.END_NO_ANSWER
    assert P.next_step(invalid, 4, 4) is S.END_NO_ANSWER
    assert P.next_step(search, 0, 0) is S.END_NO_ANSWER
    with pytest.raises(ValueError):
        P.next_step(search, 0, -1)


def test_invalid_turns_cannot_loop_forever():
    """Simulate the engine's loop: a model that never writes a tag ends after max_turns + 1 turns."""
    invalid = P.Action(P.ActionKind.INVALID)
    turns_done, steps = 0, []
    while True:
        step = P.next_step(invalid, turns_done, max_turns=4)
        steps.append(step)
        if step in (P.Step.ANSWER, P.Step.END_NO_ANSWER):
            break
        turns_done += 1
    assert steps == [P.Step.INVALID] * 4 + [P.Step.END_NO_ANSWER]


def test_truncate_observation_ids():
    assert P.truncate_observation_ids(list(range(10)), 3) == [0, 1, 2]
    assert P.truncate_observation_ids([1, 2], 500) == [1, 2]
    with pytest.raises(ValueError):
        P.truncate_observation_ids([1], -1)
