"""`searche1 train ofsd`: one offline self-distillation phase, pool -> mine -> distil -> merge (docs/ofsd.md,
"The method", points 2-6).

`make_pool`: G rollouts of the current policy per sampled training question. `mine`: pairs of (shortest correct
sibling, most divergent sibling). `distil`: the student's own tokens teacher-forced under the privileged context
(teacher = the policy with the LoRA adapter off, under no_grad) and under the plain prompt (student = adapter on),
clipped token-level divergence, chunked over the sequence. `merge`: the adapter merged into the weights, saved as
a plain HF folder for the next GRPO round.

Outputs under RUN: pool.jsonl (the rollout pool), pairs.jsonl (which siblings were paired; the question, the
privileged prompt and the student's per-token KL at mining time, for `searche1 view`),
metrics.jsonl (ofsd/... per optimizer step, plus one ofsd/pairs record), final/ (merged model, atomic).
"""

from __future__ import annotations

import math
import random
import time
from pathlib import Path

import numpy as np
import torch

from searche1.config import Config, ConfigError, save_config
from searche1.data.sources import training_questions
from searche1.losses.ofsd import teacher_student_loss
from searche1.retrieval.client import check_failures
from searche1.train.kit import SkipGuard, adamw, lora_wrap, progress_bar, sample_seed
from searche1.train.pairs import Pair, answered_samples, mine_pairs, pair_stats, privileged_prompt


def pool_questions(questions: list, n: int, seed: int) -> list:
    """The pool's questions: a seeded sample of n (all when n is 0 or covers them)."""
    if not n or n >= len(questions):
        return list(questions)
    return random.Random(seed * 1_000_003 + 17).sample(questions, n)


def pair_loss(model, tokenizer, question: str, pair: Pair, cfg, grad: bool = True, per_token: bool = False):
    """(loss, stats) of one pair: the student's sampled tokens under the privileged teacher (adapter off,
    no_grad), which sees the pair's reference, against the student (adapter on, plain prompt). `per_token`
    adds each student token's divergence."""
    o = cfg.ofsd
    teacher_prefix = tokenizer(privileged_prompt(question, pair.reference, tokenizer, o.with_retrieved),
                               add_special_tokens=False).input_ids
    return teacher_student_loss(model, teacher_prefix, pair.student, o, grad, per_token)


def pair_record(model, tokenizer, question: str, pair: Pair, cfg, stats: dict | None = None) -> dict:
    """One line of pairs.jsonl: which siblings were paired, and what the viewer shows of them: the question, the
    teacher's privileged prompt, and each student token's divergence at mining time (the fresh adapter, i.e. the
    start policy; unclipped, with the clip beside it). `stats`: pair_loss's, with per_token, when mining already
    computed them (the kl strategy); else one no-grad teacher and student forward here."""
    o = cfg.ofsd
    if stats is None:
        with torch.no_grad():
            stats = pair_loss(model, tokenizer, question, pair, cfg, grad=False, per_token=True)[1]
    return {"group_id": pair.reference.group_id, "reference": pair.reference.sample_index,
            "student": pair.student.sample_index, "student_kl": stats["kl"], "divergence": o.divergence,
            "tau_clip": o.tau_clip, "student_token_kl": [round(v, 5) for v in stats["per_token"]],
            "question": question,
            "privileged_prompt": privileged_prompt(question, pair.reference, tokenizer, o.with_retrieved)}


def train_ofsd(cfg: Config, out: str | Path, model_path: str | None = None, device: str = "cpu",
               log=print) -> dict:
    """One OFSD phase from `model_path` (default ofsd.model) into `out`; returns its summary (also written to
    summary.json). The merged model is written to out/final/."""
    from searche1.fileio import write_json
    from searche1.models import load_model

    out, model_path = Path(out), model_path or cfg.ofsd.model
    if not model_path:
        raise ConfigError("ofsd.model is empty: set it to the policy to distil (an HF folder or toy-base)")
    if (out / "final").exists():
        raise FileExistsError(f"{out / 'final'} exists: this OFSD phase is done; choose another --out")
    t_start = time.perf_counter()
    questions, client = training_questions(cfg)
    base, tokenizer = load_model(model_path, device, "float32")
    save_config(cfg, out / "config.yaml")
    pool, by_group = make_pool(cfg, base, tokenizer, model_path, questions, client, out, log)
    t_pool = time.perf_counter() - t_start
    torch.manual_seed(cfg.seed)  # LoRA's A matrices are drawn from the global RNG: same seed, same phase
    model = lora_wrap(base, cfg.ofsd.lora_rank, cfg.ofsd.lora_alpha)
    pairs, stats = mine(cfg, model, tokenizer, pool, by_group, out, log)
    steps, last = distil(cfg, model, tokenizer, pairs, by_group, {**stats, "pool_seconds": t_pool}, out)
    merge(model, tokenizer, out)
    seconds = time.perf_counter() - t_start
    summary = {"pairs": stats, "steps": steps, "seconds": seconds, "pool_seconds": t_pool, "last": last}
    write_json(out / "summary.json", summary)
    log(f"OFSD: {steps} steps over {len(pairs)} pairs in {seconds:.0f} s; wrote {out / 'final'}")
    return summary


def make_pool(cfg: Config, base, tokenizer, model_path: str, questions: list, client, out: Path, log):
    """(pool, {group id: question}): the current policy's G samples per pool question, seeded per sample, also
    written to pool.jsonl."""
    from searche1.rollout.backends.base import SamplingParams
    from searche1.rollout.backends.select import phase_backend
    from searche1.rollout.engine import rollout
    from searche1.rollout.trajectory import save_trajectories

    o, r = cfg.ofsd, cfg.rollout
    chosen = pool_questions(questions, o.pool_questions, cfg.seed)
    log(f"OFSD: {model_path} -> {out}: pool of {len(chosen)} questions x {o.n_samples}")
    base.eval()
    with torch.no_grad():
        pool = rollout(chosen, phase_backend(r, base, tokenizer, model_path, cfg.seed), tokenizer, client,
                       r, SamplingParams(r.temperature, r.top_p, r.top_k), o.n_samples,
                       sample_seeds=[sample_seed(cfg.seed, 10**6, p, j) for p in range(len(chosen))
                                     for j in range(o.n_samples)], on_retrieval_failure=cfg.retrieval.on_failure)
    save_trajectories(out / "pool.jsonl", pool)
    return pool, {q.group_id: q for q in chosen}


def mine(cfg: Config, model, tokenizer, pool: list, by_group: dict, out: Path, log) -> tuple[list[Pair], dict]:
    """(pairs, their statistics), the pairs also written to pairs.jsonl. The kl strategy scores every candidate
    under the fresh adapter (`model`): teacher vs the plain policy."""
    from searche1.fileio import write_jsonl

    o = cfg.ofsd
    scored: dict[tuple[str, int], dict] = {}  # per-token values kept as float32 arrays: a large pool stays small

    def kl_score(ref, t):
        key = (t.group_id, t.sample_index)
        if key not in scored:
            stats = pair_loss(model, tokenizer, by_group[t.group_id].question, Pair(ref, t), cfg, grad=False,
                              per_token=True)[1]
            scored[key] = {**stats, "per_token": np.asarray(stats["per_token"], np.float32)}
        return scored[key]["kl"]

    def mined_stats(pair):  # the scores mining computed for this student against this reference, if any
        stats = scored.get((pair.student.group_id, pair.student.sample_index))
        return {**stats, "per_token": stats["per_token"].tolist()} if stats is not None else None

    model.eval()
    usable = answered_samples(pool)
    if len(usable) < len(pool):
        log(f"OFSD: {len(pool) - len(usable)} pool samples failed retrieval; they are left out of the pairs")
        check_failures(len(pool) - len(usable), len(pool), cfg.retrieval.on_failure, cfg.retrieval.max_failed_share,
                       "the OFSD pool")
    pairs = mine_pairs(usable, o.student, o.reference, kl_score, seed=cfg.seed)
    stats = {**pair_stats(pool, pairs), "failed_samples": len(pool) - len(usable)}
    write_jsonl(out / "pairs.jsonl", (pair_record(model, tokenizer, by_group[p.student.group_id].question, p, cfg,
                                                  mined_stats(p)) for p in pairs))
    log(f"OFSD pairs: {stats['pairs']} from {stats['questions']} questions ({stats['paired_fraction']:.1%} with a "
        f"correct sibling); reference {stats['reference_tokens']:.0f} tokens / {stats['reference_searches']:.2f} "
        f"searches, student {stats['student_tokens']:.0f} / {stats['student_searches']:.2f}")
    return pairs, stats


def distil(cfg: Config, model, tokenizer, pairs: list[Pair], by_group: dict, first_record: dict,
           out: Path) -> tuple[int, dict]:
    """Train the adapter to act, from the plain prompt, as the teacher would with the reference: ofsd.epochs
    passes over the pairs in seeded orders, pairs_per_step pairs per update. Logs `first_record` (the mining
    statistics) as step 0, then one record per update; returns (updates, the last update's record)."""
    from searche1.metrics import MetricsWriter

    o = cfg.ofsd
    optimizer, trainable = adamw(model, o.lr, weight_decay=0.0)
    order_rng = random.Random(cfg.seed)
    steps = [(e, s) for e in range(o.epochs) for s in range(0, len(pairs), o.pairs_per_step)]
    record: dict = {}
    model.train()
    with MetricsWriter(out / "metrics.jsonl", report_to=cfg.report_to) as metrics, progress_bar() as bar:
        metrics.log(first_record, step=0, prefix="ofsd")
        task = bar.add_task("ofsd", total=len(steps), info="")
        epoch_order: list[int] = []
        guard = SkipGuard("OFSD", "lower ofsd.lr or ofsd.tau_clip, or check the model's dtype")
        for n, (epoch, start) in enumerate(steps, start=1):
            if start == 0:
                epoch_order = order_rng.sample(range(len(pairs)), len(pairs))
            batch = [pairs[i] for i in epoch_order[start:start + o.pairs_per_step]]
            tokens = sum(p.student.n_generated for p in batch)
            optimizer.zero_grad(set_to_none=True)
            sums = {"loss": 0.0, "kl": 0.0, "clipped_fraction": 0.0}
            for pair in batch:  # token-mean over the step's pairs
                loss, pstats = pair_loss(model, tokenizer, by_group[pair.student.group_id].question, pair, cfg)
                weight = pair.student.n_generated / max(tokens, 1)
                (loss * weight).backward()
                sums["loss"] += loss.item() * weight
                sums["kl"] += pstats["kl"] * weight
                sums["clipped_fraction"] += pstats["clipped_fraction"] * weight
            grad_norm = float(torch.nn.utils.clip_grad_norm_(trainable, o.grad_clip))
            skipped = not (math.isfinite(grad_norm) and all(math.isfinite(v) for v in sums.values()))
            if skipped:  # a NaN/inf loss or gradient: this update is skipped and counted
                optimizer.zero_grad(set_to_none=True)
            else:
                optimizer.step()
            record = {**sums, "grad_norm": grad_norm, "skipped": int(skipped), "tokens": tokens, "epoch": epoch}
            metrics.log(record, step=n, prefix="ofsd")
            guard.step(n, skipped)
            bar.update(task, completed=n, info=f"loss {sums['loss']:.4f}")
    return len(steps), record


def merge(model, tokenizer, out: Path) -> None:
    """Merge the adapter into the weights and write them to out/final (atomic): the next phase starts from plain
    weights."""
    from searche1.fileio import atomic_dir

    merged = model.merge_and_unload()
    with atomic_dir(out / "final", marker="config.json", what="OFSD model") as tmp:
        merged.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
