"""The toy base policy's parts: tokenizer, masked loss, and a two-step training run (its episodes:
test_episodes.py)."""

import json
import random

import pytest
import torch

from searche1 import protocol
from searche1.data.toyworld.names import NAME_POOL
from searche1.toy.card import _command as card_command


def test_tokenizer_single_tokens_and_exact_decoding(toy_tokenizer):
    from searche1.data.toyworld.tokenizer import single_token_words

    for w in ["<search>", "</answer>", NAME_POOL[0], NAME_POOL[-1], "1873", "900", "2005", "painter"]:
        assert len(toy_tokenizer.encode(w, add_special_tokens=False)) == 1, w
    assert len(set(single_token_words())) == len(single_token_words())
    texts = [protocol.make_prompt_text(f"where was {NAME_POOL[3]} born"), protocol.INVALID_ACTION_TEXT,
             protocol.information_block([{"id": "1", "contents": f'"{NAME_POOL[5]}"\n{NAME_POOL[5]}\'s city, 1873.'}]),
             "<think> x </think>\n<search> q </search>", "unicode: café ☕"]
    for text in texts:
        assert toy_tokenizer.decode(toy_tokenizer.encode(text, add_special_tokens=False)) == text


def test_spaced_values_are_one_token_with_their_space_and_decode_exactly():
    from searche1.data.toyworld.generator import WorldConfig
    from searche1.data.toyworld.tokenizer import build_toy_tokenizer, value_token_ids
    from searche1.toy.episodes import held_out_demos
    from searche1.toy.warmstart import WarmstartConfig

    tok = build_toy_tokenizer(spaced_values=True)
    name = NAME_POOL[7]
    text = f"<search> {name} born city </search>\n<answer> {name} </answer> 1873. {name}x \"{name}\""
    tokens = tok.convert_ids_to_tokens(tok.encode(text, add_special_tokens=False))
    assert tokens.count(" " + name) == 3 and name in tokens and " 1873" in tokens  # bare form after a quote
    assert tok.decode(tok.encode(text, add_special_tokens=False)) == text
    ids = set(value_token_ids(tok))
    assert set(tok.convert_tokens_to_ids([name, " " + name, " painter"])) <= ids
    # the probe scores the spaced forms: the entity in the first turn, the answer's one token in the final turn
    demos = held_out_demos(tok, WarmstartConfig(world_level=1, quote_style="none"), WorldConfig(seed=5, level=1), n=4)
    for d in demos:
        assert len(d["answer"]) == 1 and tok.convert_ids_to_tokens(d["ids"][d["answer"][0]]).startswith(" ")
        assert all(d["ids"][p] in ids for p in d["entity"]) and d["entity"]


def test_question_only_prompt_keeps_the_question_and_what_follows_it():
    from searche1.data.toyworld.tokenizer import build_toy_tokenizer

    tok = build_toy_tokenizer(question_only_prompt=True)
    assert protocol.make_prompt("where was Zorvak born", tok) == "Question: where was Zorvak born?\n"
    # OFSD's teacher context (the user message, then the privileged block) keeps its block
    text = protocol.make_prompt_text("where was Zorvak born") + "\nREFERENCE <answer> Melin </answer>\n"
    rendered = tok.apply_chat_template([{"role": "user", "content": text}], tokenize=False)
    assert rendered == "Question: where was Zorvak born?\n\nREFERENCE <answer> Melin </answer>\n"
    assert build_toy_tokenizer().chat_template is None  # the default stays the raw protocol text


def test_digit_years_write_each_digit_as_a_token_and_keep_names_whole():
    from searche1.data.toyworld.tokenizer import build_toy_tokenizer, value_token_ids

    tok = build_toy_tokenizer(spaced_values=True, digit_years=True)
    name = NAME_POOL[7]
    text = f"{name} was founded in 1873.\n<answer> 1873 </answer> Doc 10 {name}"
    ids = tok.encode(text, add_special_tokens=False)
    tokens = tok.convert_ids_to_tokens(ids)
    assert tok.decode(ids) == text
    assert tokens.count("1") == 3 and tokens.count("8") == 2 and tokens.count("7") == 2  # no token joins two digits
    assert all(not any(c.isdigit() for c in t) or len(t) == 1 for t in tokens)
    assert tokens.count(" " + name) == 1 and name in tokens
    assert " 1873" not in tok.get_vocab() and "1873" not in tok.get_vocab()
    assert tok.convert_tokens_to_ids(" " + name) in value_token_ids(tok)


def test_year_pairs_write_a_century_and_a_tail_and_keep_names_whole():
    from searche1.data.toyworld.tokenizer import build_toy_tokenizer, year_piece_words

    tok = build_toy_tokenizer(spaced_values=True, year_pairs=True)
    name = NAME_POOL[7]
    text = f"{name} was founded in 1873.\n<answer> 1873 </answer> in 905, 2005 and 1000 Doc 1 {name}"
    ids = tok.encode(text, add_special_tokens=False)
    tokens = tok.convert_ids_to_tokens(ids)
    assert tok.decode(ids) == text
    assert tokens.count(" 18") == 2 and tokens.count("73") == 2
    assert [t for t in tokens if t in (" 9", "05", " 20", " 10", "00")] == [" 9", "05", " 20", "05", " 10", "00"]
    assert " 1873" not in tok.get_vocab() and "1873" not in tok.get_vocab() and tokens.count(" " + name) == 1
    assert len(year_piece_words()) == 12 + 100 and set(year_piece_words()) <= set(tok.get_vocab())
    with pytest.raises(ValueError, match="choose one"):
        build_toy_tokenizer(digit_years=True, year_pairs=True)


def test_written_tokens_weigh_value_words_and_digits_as_configured():
    from searche1.data.toyworld.tokenizer import build_toy_tokenizer
    from searche1.toy.warmstart import WarmstartConfig, written_token_weights

    tok = build_toy_tokenizer(spaced_values=True, digit_years=True)

    def weights(text, cfg):
        return written_token_weights(tok, cfg, len(tok))[tok.encode(text, add_special_tokens=False)].tolist()

    cfg = WarmstartConfig(value_weight=4.0, digit_weight=3.0)
    assert weights(" " + NAME_POOL[2], cfg) == [4.0] and weights(" painter", cfg) == [4.0]
    assert weights("1873", cfg) == [3.0] * 4 and weights("<answer>", cfg) == [1.0]
    assert weights("1873", WarmstartConfig()) == [1.0] * 4  # digits weigh 1 unless asked
    assert weights(" " + NAME_POOL[2] + " 1873", WarmstartConfig(base_model="m", digit_weight=3.0)) == [1.0] * 6
    pairs = build_toy_tokenizer(spaced_values=True, year_pairs=True)
    pieces = written_token_weights(pairs, WarmstartConfig(value_weight=4.0, year_pairs=True), len(pairs))
    assert pieces[pairs.encode(" 1873<answer>", add_special_tokens=False)].tolist() == [4.0, 4.0, 1.0]


def test_transplant_keeps_the_embeddings_of_tokens_both_vocabularies_share():
    from searche1.data.toyworld.tokenizer import build_toy_tokenizer
    from searche1.toy.embeddings import transplant_embeddings
    from searche1.toy.warmstart import WarmstartConfig, make_model

    old_tok = build_toy_tokenizer(spaced_values=True)
    new_tok = build_toy_tokenizer(spaced_values=True, digit_years=True)
    torch.manual_seed(0)
    model = make_model(old_tok, WarmstartConfig(hidden_size=32, intermediate_size=64, num_layers=1, num_heads=2,
                                                num_kv_heads=1))
    old = model.get_input_embeddings().weight.detach().clone()
    old_vocab = old_tok.get_vocab()
    kept = transplant_embeddings(model, old_vocab, new_tok)
    new = model.get_input_embeddings().weight
    new_vocab = new_tok.get_vocab()
    assert new.shape[0] == len(new_tok) == model.config.vocab_size and model.get_output_embeddings().weight is new
    shared = [s for s in new_vocab if s in old_vocab]
    assert kept == len(shared) > len(new_tok) // 2
    for s in [" " + NAME_POOL[3], "<answer>", "1", "Ġ", " painter"]:  # moved to other ids, same vectors
        assert torch.equal(new[new_vocab[s]], old[old_vocab[s]]), s
    assert any(new_vocab[s] != old_vocab[s] for s in shared)
    fresh = torch.tensor([i for s, i in new_vocab.items() if s not in old_vocab])  # merges the digits left room for
    assert len(fresh) > 10
    # drawn like the old rows: about their mean and spread, and apart from each other
    assert (new[fresh].mean(0) - old.mean(0)).norm() < 0.5 * (old - old.mean(0)).norm(dim=-1).mean()
    assert torch.allclose(new[fresh].std(0).mean(), old.std(0).mean(), rtol=0.3)
    cosine = torch.nn.functional.normalize(new[fresh], dim=-1) @ torch.nn.functional.normalize(new[fresh], dim=-1).T
    assert cosine[~torch.eye(len(fresh), dtype=torch.bool)].mean() < 0.5
    ids = torch.tensor([new_tok.encode("<answer> 1873 </answer>", add_special_tokens=False)])
    assert model(input_ids=ids).logits.shape[-1] == len(new_tok)


def test_years_from_names_puts_each_year_between_two_names_and_leaves_the_rest():
    from searche1.data.toyworld.names import YEARS
    from searche1.data.toyworld.tokenizer import build_toy_tokenizer
    from searche1.toy.embeddings import years_from_names
    from searche1.toy.warmstart import WarmstartConfig, make_model

    tiny = WarmstartConfig(hidden_size=32, intermediate_size=64, num_layers=1, num_heads=2, num_kv_heads=1)
    tok = build_toy_tokenizer(spaced_values=True)
    torch.manual_seed(0)
    model = make_model(tok, tiny)
    before = model.get_input_embeddings().weight.detach().clone()
    vocab = tok.get_vocab()
    years = [vocab[" " + y] for y in YEARS]
    names = [vocab[" " + n] for n in NAME_POOL]
    assert years_from_names(model, tok, 0.0) == len(YEARS)
    after = model.get_input_embeddings().weight
    others = torch.ones(len(after), dtype=torch.bool)
    others[years] = False
    assert torch.equal(after[others], before[others]) and model.get_output_embeddings().weight is after
    assert torch.allclose(after[years].norm(dim=-1), before[years].norm(dim=-1).mean().expand(len(years)))
    # gamma 0: each year is the direction of the sum of two distinct names, found by brute force over all pairs
    unit = torch.nn.functional.normalize
    pair_dirs = unit(before[names][:, None] + before[names][None, :], dim=-1)
    found = []
    for y in years[:5] + years[-5:]:
        cos = pair_dirs @ unit(after[y], dim=0)
        cos.fill_diagonal_(0)
        a, b = divmod(int(cos.argmax()), len(names))
        assert cos[a, b] > 1 - 1e-5 and a != b
        found.append((min(a, b), max(a, b)))
    assert len(set(found)) == len(found)  # a pair per year
    assert (unit(after[years], dim=-1) @ unit(before[names], dim=-1).T).max() < 0.99  # never one name twice
    # gamma > 0 leans every year towards their old mean direction
    again = make_model(tok, tiny)
    again.get_input_embeddings().weight.data.copy_(before)
    years_from_names(again, tok, 3.0)
    lean = unit(again.get_input_embeddings().weight[years], dim=-1) @ unit(before[years].mean(0), dim=0)
    assert (lean > unit(after[years], dim=-1) @ unit(before[years].mean(0), dim=0)).all()
    with pytest.raises(ValueError, match="spaced"):
        years_from_names(make_model(build_toy_tokenizer(), tiny), build_toy_tokenizer(), 1.0)


def test_tokenizer_is_deterministic(toy_tokenizer):
    from searche1.data.toyworld.tokenizer import build_toy_tokenizer

    assert build_toy_tokenizer().get_vocab() == toy_tokenizer.get_vocab()


def test_masked_lm_loss_matches_brute_force():
    from searche1.toy.warmstart import masked_lm_loss

    torch.manual_seed(0)
    logits = torch.randn(2, 5, 7)
    ids = torch.randint(0, 7, (2, 5))
    mask = torch.tensor([[0, 1, 4, 0, 1], [0, 0, 0, 0, 0]])  # weights: 0 untrained, 1 written, 4 a value token
    total, n = 0.0, 0.0
    for b in range(2):
        for t in range(1, 5):
            if mask[b, t]:
                total += mask[b, t].item() * -torch.log_softmax(logits[b, t - 1], -1)[ids[b, t]].item()
                n += mask[b, t].item()
    assert masked_lm_loss(logits, ids, mask).item() == pytest.approx(total / n, rel=1e-5)
    assert masked_lm_loss(logits, ids, torch.zeros_like(mask)).item() == 0.0  # all masked: no signal, no NaN


def test_length_batches_keep_episodes_whole_and_pad_at_the_end():
    from searche1.toy.warmstart import length_batches

    lengths = [3, 9, 4, 8, 5, 2, 7, 6]
    stream = iter([(list(range(1, n + 1)), [1] * n) for n in lengths] * 2)
    batches = length_batches(stream, batch_tokens=16, pad_id=0, bucket=8, rng=random.Random(0))
    seen = []
    for _ in range(4):
        ids, mask, real = next(batches)
        assert ids.shape[0] * ids.shape[1] <= 16 or ids.shape[0] == 1  # a batch never exceeds its token budget
        assert real == int(mask.sum())
        for row, row_mask in zip(ids.tolist(), mask.tolist()):
            n = sum(row_mask)
            assert row[:n] == list(range(1, n + 1)) and set(row[n:]) <= {0}  # whole episode from position 0
            seen.append(n)
    assert sorted(seen) == sorted(lengths)  # every episode of the bucket once


def test_warmstart_runs_and_saves(tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from searche1.toy.warmstart import WarmstartConfig, warmstart

    cfg = WarmstartConfig(minutes=5, max_steps=2, hidden_size=32, num_layers=1, num_heads=2, num_kv_heads=1,
                          intermediate_size=64, batch_tokens=1024, bucket_episodes=4, questions_per_world=2,
                          drills_per_world=2, probe_every=1, snapshot_every=1)
    report = warmstart(tmp_path / "m", cfg, log=lambda *_: None)
    assert report["steps"] == 2 and report["trained_tokens"] > 0
    snapshot = json.loads((tmp_path / "m.step1" / "warmstart.json").read_text())
    assert snapshot["steps"] == 1 and (tmp_path / "m.step1" / "model.safetensors").exists()
    assert [p["step"] for p in report["probes"]] == [1, 2] and 0.0 <= report["probes"][-1]["fresh_answer"] <= 1.0
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "m")
    tok = AutoTokenizer.from_pretrained(tmp_path / "m")
    assert model.config.vocab_size == len(tok) and tok.eos_token == "<|endoftext|>"
    assert json.loads((tmp_path / "m" / "warmstart.json").read_text())["steps"] == 2
    # a continuation starts from those weights, on later worlds, and its model card gives both commands
    more = warmstart(tmp_path / "m2", WarmstartConfig(**{**cfg.__dict__, "init_from": str(tmp_path / "m"),
                                                         "first_world": 50, "snapshot_every": 0, "lr": 1e-3}),
                     log=lambda *_: None)
    assert more["parent"]["steps"] == 2 and more["config"]["first_world"] == 50
    card = (tmp_path / "m2" / "README.md").read_text()
    assert "warmstart --out DIR --minutes 5 --max-steps 2 --episodes 2 --drills 2 --seed 0" in card
    assert ("warmstart --out DIR2 --minutes 5 --max-steps 2 --lr 0.001 --first-world 50 --episodes 2 --drills 2 "
            "--init-from DIR") in card
    assert f"DIR: 2 steps, {report['tokens']} tokens" in card and f"DIR2: 2 steps, {more['tokens']} tokens" in card
    with pytest.raises(FileNotFoundError, match="warmstart.json"):
        warmstart(tmp_path / "m3", WarmstartConfig(init_from=str(tmp_path)), log=lambda *_: None)
    # continued with years written digit by digit: a new vocabulary, the shared tokens' weights carried over
    warmstart(tmp_path / "m5", WarmstartConfig(**{**cfg.__dict__, "init_from": str(tmp_path / "m"), "digit_years": True,
                                                "digit_weight": 2.0, "snapshot_every": 0}), log=lambda *_: None)
    tok5 = AutoTokenizer.from_pretrained(tmp_path / "m5")
    assert AutoModelForCausalLM.from_pretrained(tmp_path / "m5").config.vocab_size == len(tok5) < len(tok)
    assert "1873" not in tok5.get_vocab() and "1873" in tok.get_vocab()
    card5 = (tmp_path / "m5" / "README.md").read_text()
    assert "--digit-years --digit-weight 2 --episodes 2 --drills 2 --init-from DIR" in card5
    warmstart(tmp_path / "m7", WarmstartConfig(**{**cfg.__dict__, "init_from": str(tmp_path / "m"), "year_pairs": True,
                                                "snapshot_every": 0}), log=lambda *_: None)
    tok7 = AutoTokenizer.from_pretrained(tmp_path / "m7")
    assert AutoModelForCausalLM.from_pretrained(tmp_path / "m7").config.vocab_size == len(tok7)
    assert tok7.tokenize(" 1873") == [" 18", "73"]
    assert "--year-pairs --episodes 2" in (tmp_path / "m7" / "README.md").read_text()
    # frozen years: the whole-year rows stay as the parent had them, the rest trains
    warmstart(tmp_path / "m8", WarmstartConfig(**{**cfg.__dict__, "init_from": str(tmp_path / "m"),
                                                "freeze_years": True, "snapshot_every": 0, "lr": 0.1}),
              log=lambda *_: None)
    before = model.get_input_embeddings().weight
    after = AutoModelForCausalLM.from_pretrained(tmp_path / "m8").get_input_embeddings().weight
    year_ids = [tok.convert_tokens_to_ids(t) for t in ("1873", "905", "2005")]
    assert torch.equal(after[year_ids], before[year_ids]) and not torch.equal(after, before)
    assert "--freeze-years" in (tmp_path / "m8" / "README.md").read_text()
    with pytest.raises(ValueError, match="give --init-from"):
        warmstart(tmp_path / "m10", WarmstartConfig(**{**cfg.__dict__, "years_from_names": 1.0}), log=lambda *_: None)
    with pytest.raises(ValueError, match="spaced"):  # m's vocabulary has no year with its space
        warmstart(tmp_path / "m10", WarmstartConfig(**{**cfg.__dict__, "init_from": str(tmp_path / "m"),
                                                     "years_from_names": 1.0}), log=lambda *_: None)
    line = card_command({**cfg.__dict__, "years_from_names": 1.0, "freeze_years": True, "induction_repeat": True,
                         "compare_in_one_search": True, "compare_answer_first": True, "compare_repeat": 0.0},
                        "DIR", None)
    assert "--years-from-names 1 --freeze-years" in line and "--induction-repeat" in line
    assert "--compare-in-one-search --compare-answer-first" in line and "--compare-repeat 0 " in line
    with pytest.raises(ValueError, match="no whole-year tokens"):
        warmstart(tmp_path / "m9", WarmstartConfig(**{**cfg.__dict__, "digit_years": True, "freeze_years": True}),
                  log=lambda *_: None)
    # on level-1 worlds (one sentence per passage): the stream, the probes and the card follow the level
    easy = warmstart(tmp_path / "m4", WarmstartConfig(**{**cfg.__dict__, "world_level": 1, "snapshot_every": 0,
                                                         "max_hops": 1, "privileged_per_world": 1,
                                                         "set_weights": {"popqa": 3.0}}),
                     log=lambda *_: None)
    card = (tmp_path / "m4" / "README.md").read_text()
    assert easy["steps"] == 2 and "--level 1 --max-hops 1 --set-weights popqa=3" in card
    assert "--privileged-episodes 1" in card
    assert "following a worked solution" in card
    # the question-only prompt is saved with the model (its chat template), and a continuation must keep it
    short = warmstart(tmp_path / "m5", WarmstartConfig(**{**cfg.__dict__, "snapshot_every": 0,
                                                          "question_only_prompt": True}), log=lambda *_: None)
    assert short["steps"] == 2 and "--question-only-prompt" in (tmp_path / "m5" / "README.md").read_text()
    saved = AutoTokenizer.from_pretrained(tmp_path / "m5")
    assert protocol.make_prompt("where was X born", saved) == "Question: where was X born?\n"
    with pytest.raises(ValueError, match="question-only-prompt"):
        warmstart(tmp_path / "m6", WarmstartConfig(**{**cfg.__dict__, "init_from": str(tmp_path / "m5")}),
                  log=lambda *_: None)


def test_format_warmup_of_a_pretrained_model(tmp_path, smollm2_tokenizer):
    """--base-model: a pretrained HF model (here a tiny Qwen2 with SmolLM2's tokenizer and chat template) trained on
    scripted-searcher episodes in its own tokenizer; drills and probes off, recorded as run; the caller's config
    untouched."""
    from transformers import AutoTokenizer

    from conftest import tiny_qwen2
    from searche1.toy.warmstart import WarmstartConfig, warmstart

    base = tmp_path / "base"
    tiny_qwen2(len(smollm2_tokenizer)).save_pretrained(base)
    smollm2_tokenizer.save_pretrained(base)
    cfg = WarmstartConfig(minutes=5, max_steps=2, batch_tokens=2048, bucket_episodes=4, questions_per_world=2,
                          base_model=str(base), lr=5e-5, loss_on_observations=False)
    report = warmstart(tmp_path / "m", cfg, log=lambda *_: None)
    assert report["steps"] == 2 and report["trained_tokens"] > 0 and report["probes"] == []
    ran = report["config"]
    assert (ran["drills_per_world"], ran["copy_drills_per_world"], ran["probe_every"], ran["warmup_steps"]) == \
        (0, 0, 0, 5)
    assert (cfg.drills_per_world, cfg.probe_every, cfg.warmup_steps) == (8, 50, 50)
    assert AutoTokenizer.from_pretrained(tmp_path / "m").chat_template == smollm2_tokenizer.chat_template
    card = (tmp_path / "m" / "README.md").read_text()
    assert card.startswith(f"# {base} after a searche1 format warm-up")
    assert f"--base-model {base}" in card and "--lr 5e-05" in card
    with pytest.raises(ValueError, match="choose one starting point"):
        warmstart(tmp_path / "m2", WarmstartConfig(base_model=str(base), init_from=str(tmp_path / "m")))
