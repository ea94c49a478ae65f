"""Rollout benchmark: generated tokens/s of the engine against two baselines measured in the same run.

    python benchmarks/rollout.py [--model MODEL]          # toy-base (default) or a warm-started toy model folder

1. engine: `rollout()` with the HF backend (KV cache kept across turns, finished rows dropped), up to 4 search
   turns, sampled at temperature 1 on toy-world questions, in-process BM25.
2. single pass: one HF `generate` call over the same prompts producing the same number of tokens per row (no
   turns, no retrieval): the ceiling a multi-turn loop can approach (goal: engine >= 0.9x).
3. naive loop, as Search-R1 does it: every turn decodes each row's whole sequence to text, re-tokenizes it and
   generates the turn from scratch (no cache across turns), replaying the engine's own turns and observations so
   the work is the same (goal: engine >= 1.5x). As batched HF generate does, every row of a turn runs for that
   turn's longest row; retrieval is not timed in it (the engine's time includes its BM25 calls).

4. continuous batching: a pool of questions (--pool) through --questions places, a finished sample's place taken by
   a waiting one at the next turn (`max_batch`, what `searche1 eval` does), against the same pool in fixed chunks.
5. `--against COMMIT`: the engine of that commit (its `src/` from git, run by benchmarks/rollout_worker.py in a
   process of its own with the same model folder, world and threads), its rounds interleaved with this one's.

The roofline: FLOPs of one engine run as executed (padding slots included; torch's FlopCounterMode, with the CPU
attention kernel added), over the engine's median seconds, against the FLOP/s of a 2048^3 float32 matrix product
measured in the same run with the same threads.

Tokens/s of 1-3 counts the engine's generated tokens, so the three figures share a numerator. The sequential decode
steps each method cannot avoid are printed too: the single pass needs the mean tokens per row, an engine that starts
every row at once at least the longest trajectory's tokens (it bounds goal 1 on a batch of uneven episodes). Each
method runs once untimed first (warm-up), then --repeats timed rounds interleave the methods (so a slow spell of a
shared machine hits them alike) and each figure is the median of its rounds. Prints a table and writes JSON (--out).
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import torch

from rollout_setup import add_batch_arguments, load_batch, questions_sha, run_engine

HERE = Path(__file__).resolve().parent


def _timed(fn):
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def _median_seconds(methods: dict, repeats: int, warm_up: bool = True) -> tuple[dict, dict]:
    """Each method warmed up once, then `repeats` interleaved timed rounds: ({name: median s}, {name: all s}).
    A method that returns a float has timed itself (another process) and that is its round's time."""
    for fn in methods.values() if warm_up else ():
        fn()
    rounds = {name: [] for name in methods}
    for _ in range(repeats):
        for name, fn in methods.items():
            result, seconds = _timed(fn)
            rounds[name].append(result if isinstance(result, float) else seconds)
    return {name: sorted(xs)[len(xs) // 2] for name, xs in rounds.items()}, rounds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_batch_arguments(ap)
    ap.add_argument("--pool", type=int, default=128,
                    help="questions for the continuous-batching comparison (--questions places in flight; 0: skip it)")
    ap.add_argument("--repeats", type=int, default=3, help="timed rounds per method (median reported)")
    ap.add_argument("--against", metavar="COMMIT", help="also time this commit's engine (e.g. the last release)")
    ap.add_argument("--out", default=str(HERE / "results" / "rollout.json"))
    args = ap.parse_args()

    batch = load_batch(args)
    from searche1.models import resolve_model_path
    from searche1.rollout.backends.base import SamplingParams
    from searche1.rollout.backends.hf import HFBackend
    from searche1.rollout.engine import rollout

    model, tokenizer, world, examples = batch.model, batch.tokenizer, batch.world, batch.examples
    client, limits = batch.client, batch.limits
    sampling = SamplingParams(temperature=1.0)

    def engine():
        return run_engine(batch, args)

    trajs = engine()  # seeded: every call returns these trajectories
    generated = sum(t.n_generated for t in trajs)
    per_row = max(1, round(generated / len(trajs)))

    prompts = [t.prompt_ids for t in trajs]
    tokenizer.padding_side = "left"
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id

    @torch.no_grad()
    def hf_generate(seqs, new_tokens):
        """Plain HF generate over left-padded rows, exactly `new_tokens` sampled tokens each."""
        width = max(len(s) for s in seqs)
        ids = torch.tensor([[pad] * (width - len(s)) + s for s in seqs], device=model.device)
        mask = torch.tensor([[0] * (width - len(s)) + [1] * len(s) for s in seqs], device=model.device)
        out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=new_tokens,
                             min_new_tokens=new_tokens, do_sample=True, temperature=1.0, top_k=0, pad_token_id=pad)
        out.cpu()  # waits for a GPU to finish

    def single_pass():
        hf_generate(prompts, per_row)

    def naive_loop():
        # Replays the engine's turns: turn k of every row still going is generated from its re-tokenized text.
        n_turns = max(len(t.turns) for t in trajs)
        for k in range(n_turns):
            live = [t for t in trajs if len(t.turns) > k]
            texts = [tokenizer.decode(t.prompt_ids + t.response_ids[:t.turns[k].start]) for t in live]
            seqs = [tokenizer(text, add_special_tokens=False).input_ids for text in texts]
            hf_generate(seqs, max(t.turns[k].end - t.turns[k].start for t in live))

    methods = {"engine": engine, "single_pass": single_pass, "naive": naive_loop}
    other = None
    if args.against:
        from other_commit import OtherCommitEngine

        other = OtherCommitEngine(args.against, [
            "--model", resolve_model_path(args.model), "--questions", str(args.questions), "--max-turns",
            str(args.max_turns), "--turn-tokens", str(args.turn_tokens), "--threads", str(args.threads),
            "--seed", str(args.seed), "--device", args.device, "--dtype", args.dtype]
            + (["--random-weights"] if args.random_weights else []))
        if other.ready["questions_sha"] != questions_sha(examples):
            raise SystemExit(f"commit {args.against} generates other questions for world 0: no comparison")
        methods["against"] = other
    seconds, rounds = _median_seconds(methods, args.repeats)
    if other is not None:
        other.close()

    # Continuous batching: a pool of questions through --questions places, refilled as samples finish, against
    # the same pool in fixed chunks of --questions (each chunk waits for its longest episode).
    pool = [ex for exs in world.tests.values() for ex in exs][:args.pool]

    def pooled(refill: bool):
        gen = torch.Generator().manual_seed(args.seed)
        if refill:
            return rollout(pool, HFBackend(model, tokenizer), tokenizer, client, limits, sampling, generator=gen,
                           max_batch=args.questions)
        return [t for i in range(0, len(pool), args.questions)
                for t in rollout(pool[i:i + args.questions], HFBackend(model, tokenizer), tokenizer, client,
                                 limits, sampling, generator=gen)]

    # seeded, so these untimed runs count the tokens every timed round generates, and warm up
    pool_tokens = {k: sum(t.n_generated for t in pooled(k == "refill")) for k in ("chunks", "refill")} if pool else {}
    pool_seconds, pool_rounds = _median_seconds({k: lambda k=k: pooled(k == "refill") for k in pool_tokens},
                                                args.repeats, warm_up=False)
    pool_rates = {k: pool_tokens[k] / pool_seconds[k] for k in pool_tokens}

    rates = {k: generated / secs for k, secs in seconds.items()}
    if other is not None:  # its own trajectories (sampling may differ between commits): its own token count
        rates["against"] = other.ready["generated_tokens"] / seconds["against"]

    from roofline import counted_flops, matmul_flops_per_second

    engine_flops = counted_flops(engine)
    peak = matmul_flops_per_second(model.device, model.dtype)
    # Sequential decode steps each method cannot avoid: the single pass needs per_row; any engine that starts all
    # rows together needs the longest trajectory's own tokens; a turn-synchronous one the sum over turns of the
    # longest row's turn.
    n_turns = max(len(t.turns) for t in trajs)
    steps = {"single_pass": per_row, "longest_trajectory": max(t.n_generated for t in trajs),
             "turn_synchronous": sum(max(t.turns[k].end - t.turns[k].start for t in trajs if len(t.turns) > k)
                                     for k in range(n_turns))}
    figures = {
        "machine": f"{platform.machine()} {torch.get_num_threads()} torch threads",
        "model": args.model, "questions": len(examples), "generated_tokens": generated,
        "mean_searches": sum(t.n_searches for t in trajs) / len(trajs),
        "mean_turns": sum(len(t.turns) for t in trajs) / len(trajs),
        "seconds": seconds, "seconds_each_round": rounds, "repeats": args.repeats,
        "tokens_per_second": rates,
        "engine_vs_single_pass": rates["engine"] / rates["single_pass"],
        "engine_vs_naive": rates["engine"] / rates["naive"],
        "sequential_decode_steps": steps,
        "roofline": {"engine_flops": engine_flops, "engine_flops_per_second": engine_flops / seconds["engine"],
                     "matmul_flops_per_second": peak,
                     "fraction_of_matmul_peak": engine_flops / seconds["engine"] / peak},
        "pool": {"questions": len(pool), "places": args.questions, "tokens_per_second": pool_rates,
                 "seconds_each_round": pool_rounds,
                 "refill_vs_chunks": pool_rates["refill"] / pool_rates["chunks"] if pool else None},
    }
    print(f"\n{len(examples)} questions, {generated} generated tokens, {figures['mean_searches']:.2f} searches and "
          f"{figures['mean_turns']:.2f} turns per trajectory\n")
    print(f"median of {args.repeats} interleaved timed rounds\n")
    print("| method | seconds | generated tokens/s | engine vs it |\n|---|---|---|---|")
    for key, label in (("engine", "engine (KV cache across turns)"), ("single_pass", "one HF generate call"),
                       ("naive", "naive re-tokenize loop")):
        print(f"| {label} | {figures['seconds'][key]:.2f} | {rates[key]:.0f} | "
              f"{rates['engine'] / rates[key]:.2f}x |")
    if other is not None:
        print(f"| engine at {args.against} ({other.ready['generated_tokens']} tokens of its own) | "
              f"{seconds['against']:.2f} | {rates['against']:.0f} | {rates['engine'] / rates['against']:.2f}x |")
        figures["against"] = {"commit": args.against, "generated_tokens": other.ready["generated_tokens"],
                              "engine_vs_it": rates["engine"] / rates["against"]}
    roof = figures["roofline"]
    print(f"\nroofline: the engine executes {roof['engine_flops'] / 1e9:.1f} GFLOP (matrix products and attention, "
          f"padding included) at {roof['engine_flops_per_second'] / 1e9:.1f} GFLOP/s, "
          f"{100 * roof['fraction_of_matmul_peak']:.0f}% of a 2048^3 {model.dtype} matrix product here "
          f"({peak / 1e9:.0f} GFLOP/s)")
    print(f"\nsequential decode steps: single pass {steps['single_pass']}, longest trajectory "
          f"{steps['longest_trajectory']}, turn-synchronous (sum of each turn's longest row) "
          f"{steps['turn_synchronous']}")
    if pool:
        print(f"\n{len(pool)} questions through {args.questions} places: refilled as samples finish "
              f"{pool_rates['refill']:.0f} tokens/s, fixed chunks {pool_rates['chunks']:.0f} tokens/s "
              f"({pool_rates['refill'] / pool_rates['chunks']:.2f}x)")
    from searche1.fileio import write_json

    write_json(args.out, figures)
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
