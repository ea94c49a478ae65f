"""The toy base policy: a tiny Qwen2 that learns the protocol and to read passages from pretraining worlds.

It stands in for a pretrained LLM (DESIGN.md): it must know the protocol and copy a name or year out of an
<information> block, but know no evaluation world's facts. It learns only from a stream of pretraining worlds
(a separate seed namespace; each world has fresh facts for the same pool of names, so facts cannot be memorized),
from demonstrations of the imperfect scripted searcher, with the loss on model-written tokens only.
"""

from __future__ import annotations

import json
import math
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from searche1 import protocol
from searche1.data.toyworld.demos import Imperfections, demonstrate
from searche1.data.toyworld.generator import WorldConfig, generate_world
from searche1.retrieval.bm25 import BM25Retriever
from searche1.retrieval.client import InProcessClient


@dataclass
class WarmstartConfig:
    minutes: float = 8.0
    """Wall-clock training budget."""
    max_steps: int | None = None
    """Stop after this many optimizer steps (tests); None = the time budget decides."""
    world_seed: int = 0
    """Pretraining namespace seed: worlds pretrain:{world_seed}:0, :1, ... are used in order."""
    questions_per_world: int = 32
    """Demonstrations drawn from each pretraining world (many worlds, few questions each)."""
    hidden_size: int = 256
    num_layers: int = 4
    num_heads: int = 4
    num_kv_heads: int = 2
    intermediate_size: int = 768
    batch_size: int = 4
    """Rows per step; each row packs whole episodes into seq_len tokens (no padding)."""
    seq_len: int = 1024
    lr: float = 2e-3
    warmup_steps: int = 50
    weight_decay: float = 0.01
    max_obs_length: int = protocol.DEFAULT_MAX_OBS_LENGTH
    loss_on_observations: bool = False
    """Also train on the <information> text (DESIGN.md's probe: worse at 5 minutes, better at 10)."""
    seed: int = 0


def encode_demo(prompt_ids: list[int], segments: list[tuple[str, bool]], tokenizer, max_obs_length: int,
                loss_on_observations: bool = False) -> tuple[list[int], list[int]]:
    """Token ids and loss mask of one episode, tokenized segment by segment exactly as the engine would
    (each turn and each observation encoded on its own), plus EOS after the answer."""
    ids, mask = list(prompt_ids), [0] * len(prompt_ids)
    for text, written in segments:
        seg = tokenizer(text, add_special_tokens=False).input_ids
        if not written:
            seg = protocol.truncate_observation_ids(seg, max_obs_length)
        ids += seg
        mask += [int(written or loss_on_observations)] * len(seg)
    ids.append(tokenizer.eos_token_id)
    mask.append(1)
    return ids, mask


def demo_stream(tokenizer, cfg: WarmstartConfig, rng: random.Random):
    """Endless (ids, mask) episodes from pretraining worlds pretrain:{world_seed}:0, :1, ..."""
    index = 0
    while True:
        world = generate_world(WorldConfig(seed=cfg.world_seed, pretrain_index=index))
        client = InProcessClient(BM25Retriever.build(world.docs))
        facts = world.fact_map()
        pool = world.train + [ex for exs in world.tests.values() for ex in exs]
        for ex in rng.sample(pool, min(cfg.questions_per_world, len(pool))):
            prompt_ids = tokenizer(protocol.make_prompt(ex.question, tokenizer), add_special_tokens=False).input_ids
            segments = demonstrate(ex, facts, client, rng, Imperfections())
            yield encode_demo(prompt_ids, segments, tokenizer, cfg.max_obs_length, cfg.loss_on_observations)
        index += 1


def packed_rows(episodes, seq_len: int):
    """Concatenate episodes (each ends in EOS) and cut the stream into rows of seq_len tokens: no padding, so every
    position trains and attention needs no mask (an episode may attend to the one before it, as in LM
    pretraining; EOS marks the boundary)."""
    ids, mask = [], []
    for episode_ids, episode_mask in episodes:
        ids += episode_ids
        mask += episode_mask
        while len(ids) >= seq_len:
            yield ids[:seq_len], mask[:seq_len]
            ids, mask = ids[seq_len:], mask[seq_len:]


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
    """Mean next-token cross-entropy over positions whose target is model-written (mask 1).
    logits [B, T, V], ids [B, T], mask [B, T] (of the targets)."""
    target, keep = ids[:, 1:], mask[:, 1:].bool()
    losses = torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1).float(), target.flatten(),
                                               reduction="none").view_as(target)
    return (losses * keep).sum() / keep.sum().clamp(min=1)


def warmstart(out: str | Path, cfg: WarmstartConfig, log=print) -> dict:
    """Train, save an HF folder (model + toy tokenizer + warmstart.json) at `out`, return the run's figures."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from searche1.data.toyworld.tokenizer import build_toy_tokenizer
    from searche1.fileio import atomic_dir, check_replaceable

    check_replaceable(out, "warmstart.json", "warm-start model")
    torch.manual_seed(cfg.seed)
    rng = random.Random(cfg.seed)
    tokenizer = build_toy_tokenizer()
    model = make_model(tokenizer, cfg).train()
    n_params = sum(p.numel() for p in model.parameters())
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr, betas=(0.9, 0.95))
    rows = packed_rows(demo_stream(tokenizer, cfg, rng), cfg.seq_len)
    budget = cfg.minutes * 60
    t0, step, tokens, trained_tokens, history = time.perf_counter(), 0, 0, 0, []
    with Progress(TextColumn("warm start"), BarColumn(), TextColumn("{task.fields[info]}"), TimeElapsedColumn(),
                  TimeRemainingColumn(), console=Console(stderr=True)) as bar:
        task = bar.add_task("train", total=budget, info="")
        while True:
            elapsed = time.perf_counter() - t0
            if elapsed >= budget or (cfg.max_steps is not None and step >= cfg.max_steps):
                break
            batch = [next(rows) for _ in range(cfg.batch_size)]
            ids = torch.tensor([r for r, _ in batch], dtype=torch.long)
            mask = torch.tensor([m for _, m in batch], dtype=torch.long)
            # linear warmup, then cosine to 10% over the time budget (the fraction of time spent)
            frac = min(elapsed / budget, 1.0)
            scale = min(1.0, (step + 1) / cfg.warmup_steps) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)))
            for g in opt.param_groups:
                g["lr"] = cfg.lr * scale
            loss = masked_lm_loss(model(input_ids=ids).logits, ids, mask)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            step += 1
            tokens += ids.numel()
            trained_tokens += int(mask.sum())
            history.append(loss.item())
            bar.update(task, completed=min(time.perf_counter() - t0, budget),
                       info=f"step {step} loss {loss.item():.3f} {tokens / (time.perf_counter() - t0):.0f} tok/s")
    seconds = time.perf_counter() - t0
    report = {"config": asdict(cfg), "parameters": n_params, "steps": step, "tokens": tokens,
              "trained_tokens": trained_tokens, "seconds": round(seconds, 1),
              "tokens_per_second": round(tokens / max(seconds, 1e-9)), "final_loss": history[-1] if history else None,
              "loss_first_last_10": [sum(history[:10]) / max(len(history[:10]), 1),
                                     sum(history[-10:]) / max(len(history[-10:]), 1)]}
    model.eval()
    with atomic_dir(out, marker="warmstart.json", what="warm-start model") as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / "warmstart.json").write_text(json.dumps(report, indent=2) + "\n")
    log(f"warm start: {n_params / 1e6:.1f}M parameters, {step} steps, {tokens} tokens in {seconds:.0f}s "
        f"({report['tokens_per_second']} tok/s), loss {report['loss_first_last_10'][0]:.3f} -> "
        f"{report['loss_first_last_10'][1]:.3f}; wrote {out}")
    return report
