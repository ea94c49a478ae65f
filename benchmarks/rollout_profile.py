"""Where a rollout's time goes: the rollout benchmark's engine run, split by what it was doing.

    python benchmarks/rollout_profile.py [--model toy-base] [--questions 32] [--turn-tokens 96]

1. Wall-clock shares, from timers around the engine's parts (one seeded run after a warm-up): model forwards of
   one token per row (decode steps) and of many (prompts, observations), sampling, the rest of a turn's decoding
   loop (stop checks, bookkeeping), retrieval, and the engine's own work (parsing, tokenizing observations,
   building trajectories).
2. Inside the model forwards, torch's profiler: matrix products, attention, other tensor operations, and the time
   no operation ran (Python: the modules' code, argument handling).
Prints two tables and writes JSON (--out).
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict
from pathlib import Path

import torch

from rollout_setup import add_batch_arguments, load_batch, run_engine

HERE = Path(__file__).resolve().parent
MATMUL = ("aten::mm", "aten::addmm", "aten::bmm")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_batch_arguments(ap)
    ap.add_argument("--out", default=str(HERE / "results" / "rollout_profile.json"))
    args = ap.parse_args()

    batch = load_batch(args)
    from searche1.fileio import write_json
    from searche1.rollout.backends import hf

    examples, client = batch.examples, batch.client
    seconds, counts = defaultdict(float), defaultdict(int)

    def timed(name, fn, key=None):
        def wrapper(*a, **kw):
            start = time.perf_counter()
            try:
                return fn(*a, **kw)
            finally:
                elapsed = time.perf_counter() - start  # before key(), which may wait for the device
                part = key(*a) if key else name
                seconds[part] += elapsed
                counts[part] += 1
        return wrapper

    forward, generate, sample = hf.HFBackend._forward, hf.HFBackend.generate, hf.sample_next
    slots = defaultdict(int)  # token slots each kind of forward ran, and how many held a real token

    def kind(self, ids, mask):
        # a chunk one token wide is a decode step (prompts and observations run longer than one token)
        name = "decode" if ids.shape[1] == 1 else "prefill"
        slots[name] += ids.numel()
        slots[f"{name} real"] += int(mask.sum())
        return name

    hf.HFBackend._forward = timed("forward", forward, key=kind)
    hf.HFBackend.generate = timed("generate", generate)
    hf.sample_next = timed("sampling", sample)
    client.retrieve = timed("retrieval", client.retrieve)

    def engine():
        return run_engine(batch, args)

    engine()
    seconds.clear()
    counts.clear()
    slots.clear()
    start = time.perf_counter()
    trajectories = engine()
    total = time.perf_counter() - start
    decoding_rest = seconds["generate"] - seconds["decode"] - seconds["sampling"]
    parts = {
        "model forward, decode steps (1 token a row)": seconds["decode"],
        "model forward, prompts and observations": seconds["prefill"],
        "sampling": seconds["sampling"],
        "rest of the decoding loop (stop checks, parking)": decoding_rest,
        "retrieval (in-process BM25)": seconds["retrieval"],
        "engine (parse, tokenize observations, trajectories)":
            total - seconds["generate"] - seconds["prefill"] - seconds["retrieval"],
    }
    generated = sum(t.n_generated for t in trajectories)
    inserted = sum(len(t.response_ids) - t.n_generated for t in trajectories)
    prompted = sum(len(t.prompt_ids) for t in trajectories)
    print(f"\n{args.model}: {len(examples)} questions, {generated} generated tokens in {total:.2f} s "
          f"({generated / total:.0f} tokens/s); {counts['decode']} decode steps, {counts['prefill']} prefills of "
          f"{prompted} prompt and {inserted} observation tokens\n")
    print("| part | seconds | share |\n|---|---|---|")
    for name, secs in parts.items():
        print(f"| {name} | {secs:.2f} | {100 * secs / total:.0f}% |")
    # left padding: a chunk is as wide as its longest row, and rows that stopped writing still take a slot
    for name in ("prefill", "decode"):
        print(f"{name}: {slots[name]} token slots, {slots[name + ' real']} real "
              f"({100 * slots[name + ' real'] / max(slots[name], 1):.0f}%)")

    # inside the forwards: which operations, and how long none ran
    from torch.profiler import ProfilerActivity, profile, record_function

    hf.HFBackend._forward = lambda self, ids, mask: _tagged(forward, self, ids, mask, record_function)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        engine()
    ops = defaultdict(float)
    for event in prof.key_averages():
        if event.key == "FORWARD":
            ops["no operation running (Python)"] += event.self_cpu_time_total / 1e6
        elif event.key in MATMUL:
            ops["matrix products"] += event.self_cpu_time_total / 1e6
        elif "scaled_dot_product" in event.key:
            ops["attention"] += event.self_cpu_time_total / 1e6
        elif event.key.startswith("aten::"):
            ops["other tensor operations"] += event.self_cpu_time_total / 1e6
    in_forward = sum(ops.values())
    print("\ninside the model forwards (torch profiler, self CPU time)\n\n| part | seconds | share |\n|---|---|---|")
    for name, secs in sorted(ops.items(), key=lambda kv: -kv[1]):
        print(f"| {name} | {secs:.2f} | {100 * secs / in_forward:.0f}% |")
    write_json(args.out, {"model": args.model, "questions": len(examples), "generated_tokens": generated,
                          "prompt_tokens": prompted, "observation_tokens": inserted, "seconds": total,
                          "decode_steps": counts["decode"],
                          "prefills": counts["prefill"], "token_slots": dict(slots),
                          "parts": parts, "inside_forwards": dict(ops),
                          "machine": f"{torch.get_num_threads()} torch threads"})
    print(f"\nwrote {args.out}")


def _tagged(forward, backend, ids, mask, record_function):
    with record_function("FORWARD"):
        return forward(backend, ids, mask)


if __name__ == "__main__":
    main()
