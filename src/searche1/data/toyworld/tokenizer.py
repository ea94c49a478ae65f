"""The toy tokenizer: byte-level BPE over toy-world text, with every pool name, year, attribute word and protocol
tag as a single token.

Why single tokens: the base policy must learn to copy a name out of an <information> block, and a tiny model learns
that copy only when the thing copied is one token (docs/toyworld.md). Years are the exception worth knowing: 1106
rare, interchangeable year tokens collapse onto one embedding, so `digit_years` writes them digit by digit instead
(docs/warmstart.md, run s8-z1) and `year_pairs` as a century and a two-digit tail. Byte-level BPE keeps decoding
exact (decode(encode(text)) == text), which the protocol needs: the engine parses decoded turns and the tests
compare decoded observation spans with the inserted text byte for byte. Deterministic: the same vocabulary every
build.
"""

from __future__ import annotations

import os

from searche1 import protocol
from searche1.data.toyworld import names as words

EOS = "<|endoftext|>"
VOCAB_SIZE = 2048  # BPE merges over the toy text; the added tokens come on top
PROTOCOL_TAGS = (protocol.THINK_OPEN, protocol.THINK_CLOSE, protocol.SEARCH_OPEN, protocol.SEARCH_CLOSE,
                 protocol.ANSWER_OPEN, protocol.ANSWER_CLOSE, protocol.INFO_OPEN, protocol.INFO_CLOSE)


def value_words(years: bool = True) -> list[str]:
    """Every value a toy fact can take or name: entity names, years (unless `years` is False), occupations,
    languages."""
    year_words = list(words.YEARS) if years else []
    return list(words.NAME_POOL) + year_words + list(words.OCCUPATIONS) + list(words.LANGUAGES)


def single_token_words(years: bool = True) -> list[str]:
    """Protocol tags and every value word: each becomes one token."""
    return list(PROTOCOL_TAGS) + value_words(years)


def training_text(n_worlds: int = 4) -> list[str]:
    """Text the BPE merges are learned from: pretraining worlds' passages and questions, and the protocol strings."""
    from searche1.data.toyworld.generator import WorldConfig, generate_world

    # The protocol strings stand in every training sequence: weight them so their words become few tokens.
    texts = [protocol.make_prompt_text("where was Zorvak born"), protocol.INVALID_ACTION_TEXT,
             "Doc 1(Title: \"X\") text\nDoc 2(Title: \"Y\") text\nDoc 3(Title: \"Z\") text\n"] * 200
    for i in range(n_worlds):
        world = generate_world(WorldConfig(seed=10_000, pretrain_index=i))
        texts += [d.contents for d in world.docs] + [ex.question for ex in world.train]
    return texts


def year_piece_words() -> list[str]:
    """With year_pairs, the two tokens a year is written with: a century with its space (" 9", " 10" ... " 20")
    and a two-digit tail ("00" ... "99"). The space keeps the two kinds apart, so each is copied by what it is."""
    centuries = range(words.CITY_FOUNDED_YEARS[0] // 100, words.LATEST_YEAR // 100 + 1)
    return [f" {c}" for c in centuries] + [f"{t:02d}" for t in range(100)]


def value_token_ids(tokenizer, words: list[str] | None = None) -> list[int]:
    """Ids of the value words' tokens (all of them, or `words`): the bare form and, in a spaced vocabulary, the form
    with its space."""
    vocab = tokenizer.get_vocab()
    return [vocab[t] for w in (value_words() if words is None else words) for t in (w, " " + w) if t in vocab]


# Renders the user message from protocol.QUESTION_MARKER on: the Search-R1 instruction before it is dropped.
QUESTION_ONLY_TEMPLATE = ("{% for m in messages %}{% if m['role'] == 'user' %}" + protocol.QUESTION_MARKER
                          + "{{ m['content'].split('" + protocol.QUESTION_MARKER + "', 1)[-1] }}"
                          + "{% endif %}{% endfor %}")


def build_toy_tokenizer(out_dir: str | os.PathLike | None = None, spaced_values: bool = False,
                        question_only_prompt: bool = False, digit_years: bool = False,
                        year_pairs: bool = False):
    """A PreTrainedTokenizerFast; without a chat template the prompt is the raw protocol text.

    spaced_values: each value word also gets a token with its leading space (" Zorvak"), so a name in running
    text, a query or an answer is one token instead of a space token and the name (docs/warmstart.md).
    question_only_prompt: a chat template that keeps only "Question: ..." of the user message (and what follows,
    such as OFSD's privileged information): a 4M model cannot use the instruction, and behind its ~115 constant
    tokens neither copying nor reading formed in a warm start that learns both within minutes without it.
    digit_years: years are written digit by digit (" 1873" -> " ", "1", "8", "7", "3"), not as one token each:
    1106 year tokens, each rare and interchangeable, end up with near-identical embeddings and a toy model answers
    a year question with some year, not the one its passage states (docs/warmstart.md); ten digits do not.
    year_pairs: years are written as a century and a two-digit tail (" 1873" -> " 18", "73"): 112 tokens, each far
    more frequent than a whole year, and copied like a name (one token of its kind in the passage), where the
    digits of digit_years must be copied in sequence."""
    if digit_years and year_pairs:
        raise ValueError("digit_years and year_pairs: choose one way to write years")
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    if digit_years:  # no merge may join a digit to anything: every number is its digits
        tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                                     tok.pre_tokenizer])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=VOCAB_SIZE, special_tokens=[EOS], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(training_text(), trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOS, pad_token=EOS)
    # Added tokens match before BPE, so "Zorvak" (or "1873", without digit_years) is one token wherever it stands.
    whole_years = not (digit_years or year_pairs)
    fast.add_tokens(single_token_words(years=whole_years))
    if spaced_values:
        fast.add_tokens([AddedToken(" " + w, normalized=False) for w in value_words(years=whole_years)])
    if year_pairs:  # after the values, so a spaced name is matched whole before any piece
        fast.add_tokens([AddedToken(w, normalized=False) for w in year_piece_words()])
    if question_only_prompt:
        fast.chat_template = QUESTION_ONLY_TEMPLATE
    if out_dir is not None:
        fast.save_pretrained(out_dir)
    return fast
