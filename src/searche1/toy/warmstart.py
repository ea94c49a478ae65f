"""The toy base policy: a tiny Qwen2 that learns the protocol and to read passages from pretraining worlds.

It stands in for a pretrained LLM (docs/toyworld.md): it must know the protocol and copy a name or year out of an
<information> block, but know no evaluation world's facts. It learns only from a stream of pretraining worlds
(a separate seed namespace; each world has fresh facts for the same pool of names, so facts cannot be memorized):
demonstrations of the imperfect scripted searcher, reading drills and copy drills (docs/warmstart.md).

Scaffolding for the toy world, not the paper's method: the episodes it learns from and the probes it is measured
with are toy/episodes.py, its model card toy/card.py.
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch

from searche1 import protocol
from searche1.data.toyworld.generator import MAX_LEVEL, WorldConfig
from searche1.data.toyworld.tokenizer import build_toy_tokenizer, value_token_ids, year_piece_words
from searche1.toy.card import model_card
from searche1.toy.embeddings import frozen_year_rows, restore_rows, transplant_embeddings, years_from_names
from searche1.toy.episodes import demo_stream, held_out_demos, probe
from searche1.train.kit import adamw, cosine_decay, progress_bar


@dataclass
class WarmstartConfig:
    minutes: float = 8.0
    """Wall-clock training budget."""
    max_steps: int | None = None
    """Stop after this many optimizer steps (tests); None = the time budget decides."""
    world_seed: int = 0
    """Pretraining namespace seed: worlds pretrain:{world_seed}:{first_world}, +1, ... are used in order."""
    first_world: int = 0
    """Index of the first pretraining world (a continuation uses worlds its parent run never reached)."""
    world_level: int = MAX_LEVEL
    """Corpus level of the pretraining and probe worlds (docs/toyworld.md, "Levels"): 1 easiest, 4 realistic."""
    init_from: str | None = None
    """Continue from this warm-start folder's weights instead of random ones (same architecture)."""
    base_model: str | None = None
    """Fine-tune this pretrained HF model (with its own tokenizer and chat template) instead of the toy model: a
    format warm-up on scripted-searcher episodes, so that a small real model (smollm2-135m) ever emits the
    protocol's tags and gets a reward GRPO can learn from. Drills and probes are toy-model tools: off here."""
    questions_per_world: int = 8
    """Scripted-searcher episodes drawn from each pretraining world (many worlds, few questions each)."""
    max_hops: int | None = None
    """Episodes only on questions of at most this many hops (comparisons count 2); None = every kind. With 1,
    reading forms within minutes; multi-hop episodes in the mix from the start keep it away (docs/warmstart.md)."""
    set_weights: dict[str, float] | None = None
    """Sampling weight of each question set in the scripted episodes ({"2wikimultihopqa": 4.0}: a comparison
    four times as likely as a question of weight 1); unnamed sets weigh 1. None = every question equally likely.
    Privileged episodes still draw uniformly."""
    compare_in_one_search: bool = False
    """Scripted comparisons search both names in one query ("A or B founded year") instead of one per name."""
    compare_answer_first: bool = False
    """Scripted comparisons name the answer first in the question ("Which city is older, A or B?" with A the
    older): the answer is then the first name of the question, as the first query copies it, a step towards
    copying a name of the question at all (docs/warmstart.md, "Comparisons are memorised, not copied")."""
    compare_repeat: float = 0.1
    """With compare_in_one_search: share of scripted comparisons that run their one search twice. At 0, after a
    comparison's block the next turn is always its answer, never another "I need ..." (docs/warmstart.md, s13)."""
    misread: float = 0.1
    """Share of scripted episodes (not privileged ones) that answer with another value seen in the passages (the
    scripted searcher's misreads): the wrong answers a policy samples at temperature 1, so that siblings differ."""
    drills_per_world: int = 8
    """Reading drills per pretraining world: a retrieved block, then questions on what it states (0 = none)."""
    copy_drills_per_world: int = 4
    """Copy drills per pretraining world: a retrieved block, then the same block written out again (0 = none)."""
    privileged_per_world: int = 0
    """Episodes per pretraining world with OFSD's teacher context in the prompt: a flawless worked solution of the
    question (train/pairs.py's block), then a scripted run that answers as it does. A pretrained LLM follows a
    solution shown in its prompt; a toy model must learn to, or OFSD's teacher is noise (docs/warmstart.md)."""
    privileged_hide_answer: float = 0.0
    """Share of those episodes whose run sees no passage stating the answer (each block re-retrieved without
    them): the answer is then only in the solution, so copying it is learned, not only reading it."""
    restate_need: bool = False
    """Scripted episodes' final turn names what it needs again before quoting, as reading drills do."""
    spaced_values: bool = False
    """The tokenizer also has every value word with its leading space as one token (" Zorvak"): copying a name
    is then one step, not a space token and the name."""
    digit_years: bool = False
    """The tokenizer writes years digit by digit instead of one token per year (docs/warmstart.md: 1106 rare year
    tokens collapse to near-identical embeddings, and the model then answers with some year, not the one read)."""
    year_pairs: bool = False
    """The tokenizer writes a year as a century and a two-digit tail (" 18", "73"), each copied like a name; the
    pieces weigh value_weight in the loss."""
    years_from_names: float | None = None
    """With init_from: before training, each whole-year token is rebuilt from two pool names' embeddings plus this
    times the years' mean direction (toy/embeddings.py), where the model's copy of names carries to them."""
    freeze_years: bool = False
    """Whole-year tokens keep the embeddings they start with (e.g. rebuilt by years_from_names): trained, 1106
    rare year tokens drift back onto one direction (docs/warmstart.md)."""
    question_only_prompt: bool = False
    """The toy tokenizer's chat template keeps only "Question: ..." of the Search-R1 prompt (the instruction is
    ~115 constant tokens a 4M model cannot use; behind them nothing formed in a probe, docs/warmstart.md)."""
    quote_style: str = "sentence"
    """What episodes and reading drills quote of the passage that answered: the stating sentence, "value" (only
    "Entity: value.", a short copy), "none" (the answer straight after the information block), "hops" (the
    sentence at the start of the turn after each hop but the last, nothing before the answer) or "compare" ("none",
    but a comparison's answer turn states both values before it answers)."""
    induction_drills_per_world: int = 0
    """Induction drills per world: a line of random pool names, then spans of it quoted from random places."""
    induction_words: str = "names"
    """What induction drills' lines are made of: pool names, or "years" (16 random years a line, spans of 3
    quoted): with digit_years or year_pairs a year is several tokens, and continuing a copied sequence is what
    reading such a year needs (docs/warmstart.md)."""
    induction_repeat: bool = False
    """Induction drills write their line out again whole, not quoted in spans: the form in which this model learns
    to continue a copy within a hundred steps when trained on nothing else (docs/warmstart.md, s10)."""
    shuffle_copies: bool = False
    """Copy drills write the block's sentences in a random order instead (tried in run K: slower, docs)."""
    hidden_size: int = 256
    num_layers: int = 4
    num_heads: int = 4
    num_kv_heads: int = 2
    intermediate_size: int = 768
    batch_tokens: int = 4096
    """Tokens per step (padding included): episodes of similar length are batched together, one per row."""
    bucket_episodes: int = 64
    """Episodes read ahead and sorted by length, so a batch wastes little on padding."""
    lr: float = 2e-3
    warmup_steps: int = 50
    weight_decay: float = 0.01
    max_obs_length: int = protocol.DEFAULT_MAX_OBS_LENGTH
    loss_on_observations: bool = True
    """Also train on the <information> text (entity copying formed ~100 steps sooner with it, docs/warmstart.md)."""
    value_weight: float = 4.0
    """Loss weight of written name/year/occupation/language tokens (the copies), other written tokens 1: the
    templates are learned in minutes, copying is what takes long."""
    digit_weight: float = 1.0
    """Loss weight of written digit tokens: with digit_years, the year answers' digits (value_weight does not cover
    them, since a year is then no value token)."""
    snapshot_every: int = 0
    """Steps between intermediate copies of the model, written to OUT.step{N} (long runs); 0 = only the end."""
    probe_every: int = 50
    """Steps between held-out probes (teacher-forced entity copy and answer reading on worlds never trained on);
    0 = off."""
    seed: int = 0


def length_batches(episodes, batch_tokens: int, pad_id: int, bucket: int, rng: random.Random):
    """Batches of whole episodes, one per row, each starting at position 0 and attending only to itself.

    Why not pack episodes into long rows: copying a name from a few hundred tokens back is what the model must
    learn, and at initialisation attention is spread over the whole row; in a probe the same copy task learned in
    150 steps at the start of a row and had barely started after 300 steps behind 900 other tokens
    (docs/warmstart.md). Padding goes at the end of a row (causal attention needs no mask for it) and episodes
    are sorted by length within a read-ahead bucket, so little is wasted."""
    while True:
        pending = sorted((next(episodes) for _ in range(bucket)), key=lambda e: len(e[0]))
        batches, current = [], []
        for episode in pending:
            if current and (len(current) + 1) * len(episode[0]) > batch_tokens:
                batches.append(current)
                current = []
            current.append(episode)
        batches.append(current)
        rng.shuffle(batches)
        for batch in batches:
            yield *padded_rows(batch, pad_id), sum(len(episode_ids) for episode_ids, _ in batch)


def padded_rows(episodes, pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids, mask) of (ids, mask) episodes, one per row from position 0, padded at the end (mask 0 there)."""
    width = max(len(ids) for ids, _ in episodes)
    ids = torch.full((len(episodes), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(episodes), width), dtype=torch.long)
    for row, (episode_ids, episode_mask) in enumerate(episodes):
        ids[row, :len(episode_ids)] = torch.tensor(episode_ids)
        mask[row, :len(episode_mask)] = torch.tensor(episode_mask)
    return ids, mask


def written_token_weights(tokenizer, cfg: WarmstartConfig, size: int) -> torch.Tensor:
    """Loss weight per token id when the model writes it: value words (names, years, ...) value_weight, digits
    digit_weight, the rest 1; a pretrained model's warm-up weighs every token 1."""
    weight = torch.ones(size)
    if not cfg.base_model:  # the toy vocabulary's value words are what copying is about
        weight[value_token_ids(tokenizer)] = cfg.value_weight
        weight[tokenizer.convert_tokens_to_ids(list("0123456789"))] = cfg.digit_weight
        if cfg.year_pairs:
            weight[tokenizer.convert_tokens_to_ids(year_piece_words())] = cfg.value_weight
    return weight


def toy_tokenizer(cfg: WarmstartConfig):
    """The toy tokenizer the run's options ask for (the same for a fresh model and a continuation)."""
    return build_toy_tokenizer(spaced_values=cfg.spaced_values, question_only_prompt=cfg.question_only_prompt,
                               digit_years=cfg.digit_years, year_pairs=cfg.year_pairs)


def make_model(tokenizer, cfg: WarmstartConfig):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    config = Qwen2Config(vocab_size=len(tokenizer), hidden_size=cfg.hidden_size,
                         intermediate_size=cfg.intermediate_size, num_hidden_layers=cfg.num_layers,
                         num_attention_heads=cfg.num_heads, num_key_value_heads=cfg.num_kv_heads,
                         max_position_embeddings=4096, tie_word_embeddings=True,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
                         bos_token_id=tokenizer.eos_token_id)
    return Qwen2ForCausalLM(config)


def masked_lm_loss(logits: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Next-token cross-entropy averaged over target positions with weights `mask` (0 = not trained; 1 or more
    otherwise). logits [B, T, V], ids [B, T], mask [B, T] (of the targets)."""
    target, keep = ids[:, 1:], mask[:, 1:].float()
    losses = torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1).float(), target.flatten(),
                                               reduction="none").view_as(target)
    return (losses * keep).sum() / keep.sum().clamp(min=1)


def _report(cfg: WarmstartConfig, n_params: int, step: int, tokens: int, trained_tokens: int, seconds: float,
            history: list[float], probe_log: list[dict]) -> dict:
    return {"config": asdict(cfg), "parameters": n_params, "steps": step, "tokens": tokens,
            "trained_tokens": trained_tokens, "seconds": round(seconds, 1),
            "tokens_per_second": round(tokens / max(seconds, 1e-9)), "final_loss": history[-1] if history else None,
            "loss_first_last_10": [sum(history[:10]) / max(len(history[:10]), 1),
                                   sum(history[-10:]) / max(len(history[-10:]), 1)],
            "probes": list(probe_log)}


def _save(out: str | Path, model, tokenizer, report: dict) -> None:
    """An HF folder (model, toy tokenizer, warmstart.json, model card), written atomically."""
    from searche1.fileio import atomic_dir

    was_training = model.training
    model.eval()
    with atomic_dir(out, marker="warmstart.json", what="warm-start model") as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / "warmstart.json").write_text(json.dumps(report, indent=2) + "\n")
        (tmp / "README.md").write_text(model_card(report))
    model.train(was_training)


def warmstart(out: str | Path, cfg: WarmstartConfig, log=print) -> dict:
    """Train, save an HF folder (model + toy tokenizer + warmstart.json) at `out`, return the run's figures."""
    from searche1.fileio import check_replaceable

    check_replaceable(out, "warmstart.json", "warm-start model")
    if cfg.years_from_names is not None and not cfg.init_from:
        raise ValueError("--years-from-names rebuilds a trained model's years: give --init-from")
    torch.manual_seed(cfg.seed)
    rng = random.Random(cfg.seed)
    parent = None
    if cfg.base_model:
        from searche1.models import load_model

        if cfg.init_from:
            raise ValueError("--base-model and --init-from: choose one starting point")
        model, tokenizer = load_model(cfg.base_model, "cpu", "float32")
        model.train()
        # the run's own copy of the config (recorded in warmstart.json as run): a pretrained model's warm-up is
        # tens of steps, not thousands
        cfg = replace(cfg, drills_per_world=0, copy_drills_per_world=0, induction_drills_per_world=0,
                      probe_every=0, warmup_steps=min(cfg.warmup_steps, 5))
    elif cfg.init_from:
        from transformers import AutoModelForCausalLM

        parent_file = Path(cfg.init_from) / "warmstart.json"
        if not parent_file.is_file():
            raise FileNotFoundError(f"--init-from {cfg.init_from}: no warmstart.json there (not a warm-start folder)")
        parent = json.loads(parent_file.read_text())
        tokenizer = toy_tokenizer(cfg)
        model = AutoModelForCausalLM.from_pretrained(cfg.init_from, dtype=torch.float32).train()
        parent_years = (parent["config"].get("digit_years", False), parent["config"].get("year_pairs", False))
        if parent_years != (cfg.digit_years, cfg.year_pairs):  # the tokens both vocabularies share keep
            # their embeddings (found by their strings); the parent's tokenizer is the one saved with it
            from transformers import AutoTokenizer

            transplant_embeddings(model, AutoTokenizer.from_pretrained(cfg.init_from).get_vocab(), tokenizer)
        if model.config.vocab_size != len(tokenizer):
            raise ValueError(f"--init-from {cfg.init_from}: vocabulary {model.config.vocab_size} != the toy "
                             f"tokenizer's {len(tokenizer)} (--spaced-values as the parent run?)")
        if parent["config"].get("question_only_prompt", False) != cfg.question_only_prompt:
            raise ValueError(f"--init-from {cfg.init_from}: its prompt differs (--question-only-prompt as the parent "
                             "run)")
    else:
        tokenizer = toy_tokenizer(cfg)
        model = make_model(tokenizer, cfg).train()
    if cfg.years_from_names is not None:
        years_from_names(model, tokenizer, cfg.years_from_names)
    n_params = sum(p.numel() for p in model.parameters())
    frozen = frozen_year_rows(model, tokenizer) if cfg.freeze_years else None
    opt, _ = adamw(model, cfg.lr, cfg.weight_decay, betas=(0.9, 0.95), decay_matrices_only=True)
    batches = length_batches(demo_stream(tokenizer, cfg, rng), cfg.batch_tokens, tokenizer.pad_token_id,
                             cfg.bucket_episodes, rng)
    # held out: a pretraining-namespace world far beyond the stream, and an evaluation world nobody evaluates on
    probes = {"pretrain": held_out_demos(tokenizer, cfg, WorldConfig(seed=cfg.world_seed, pretrain_index=10**6,
                                                                     level=cfg.world_level)),
              "fresh": held_out_demos(tokenizer, cfg, WorldConfig(seed=10**6, level=cfg.world_level))
              } if cfg.probe_every else {}
    probe_log = []
    token_weight = written_token_weights(tokenizer, cfg, max(len(tokenizer), model.config.vocab_size))
    budget = cfg.minutes * 60
    t0, step, tokens, trained_tokens, history = time.perf_counter(), 0, 0, 0, []
    with progress_bar(counts=False) as bar:
        task = bar.add_task("warm start", total=1.0, info="")  # the share done of the budget or of max_steps
        while True:
            elapsed = time.perf_counter() - t0
            if elapsed >= budget or (cfg.max_steps is not None and step >= cfg.max_steps):
                break
            ids, mask, real_tokens = next(batches)
            # linear warmup, then cosine to 10% over the budget (the fraction of time or of max_steps spent)
            frac = min(max(elapsed / budget, step / cfg.max_steps if cfg.max_steps else 0.0), 1.0)
            scale = min(1.0, (step + 1) / cfg.warmup_steps) * cosine_decay(frac)
            for g in opt.param_groups:
                g["lr"] = cfg.lr * scale
            # written value tokens weigh value_weight, other written tokens and trained observations 1
            weights = (mask == 1) * token_weight[ids] + (mask == 2).float()
            loss = masked_lm_loss(model(input_ids=ids).logits, ids, weights)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            if frozen is not None:
                restore_rows(model, *frozen)
            step += 1
            tokens += real_tokens  # padding not counted
            trained_tokens += int((mask > 0).sum())
            history.append(loss.item())
            if probes and (step % cfg.probe_every == 0):
                result = {"step": step, "tokens": tokens, "seconds": round(time.perf_counter() - t0, 1)}
                result.update({f"{name}_{k}": v for name, demos in probes.items()
                               for k, v in probe(model, demos).items()})
                probe_log.append(result)
                log("probe " + " ".join(f"{k}={v:.2f}" if isinstance(v, float) else f"{k}={v}"
                                        for k, v in result.items()))
            done = max((time.perf_counter() - t0) / budget, step / cfg.max_steps if cfg.max_steps else 0.0)
            bar.update(task, completed=min(done, 1.0),
                       info=f"step {step} loss {loss.item():.3f} {tokens / (time.perf_counter() - t0):.0f} tok/s")
            if cfg.snapshot_every and step % cfg.snapshot_every == 0:
                _save(f"{out}.step{step}", model, tokenizer, _report(cfg, n_params, step, tokens, trained_tokens,
                                                                      time.perf_counter() - t0, history, probe_log))
    seconds = time.perf_counter() - t0
    report = _report(cfg, n_params, step, tokens, trained_tokens, seconds, history, probe_log)
    if parent is not None:
        report["parent"] = parent  # the run this one continued, with its own config (model card: both commands)
    _save(out, model, tokenizer, report)
    log(f"warm start: {n_params / 1e6:.1f}M parameters, {step} steps, {tokens} tokens in {seconds:.0f}s "
        f"({report['tokens_per_second']} tok/s), loss {report['loss_first_last_10'][0]:.3f} -> "
        f"{report['loss_first_last_10'][1]:.3f}; wrote {out}")
    return report
