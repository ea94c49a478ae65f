"""Peak memory and time of the OFSD loss: chunked along the sequence vs naive full logits, measured in one run.

    python benchmarks/ofsd_memory.py [--tokens 2048] [--vocab 49152] [--hidden 576] [--chunk 256] [--repeats 3]

One loss evaluation + backward over T scored tokens: student hidden states [T, H] (with gradient) and the LM head
[V, H], teacher hidden states [T, H] and the same head (LoRA OFSD: the head is frozen, so only the hidden states
get a gradient; --train-head gives it one too). Defaults: T=2048, SmolLM2-135M's V=49152 and H=576.
- naive: distill_loss(student_hidden @ W.T, teacher_hidden @ W.T, ...): full [T, V] logits for both models, and
  autograd keeps the student's for backward;
- chunked: chunked_distill_loss(..., chunk): at most `chunk` rows of logits at a time.
Each measurement runs in its own child process (fresh allocator); its peak is the child's maximum resident set
size minus its resident size just before the loss. Variants alternate, --repeats rounds; the medians are reported
with the ratios chunked / naive (goal: <= 0.25x memory at <= 1.2x time).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def measure(variant: str, tokens: int, vocab: int, hidden: int, chunk: int, train_head: bool, threads: int) -> dict:
    """In this (child) process: one loss + backward of `variant`; seconds and peak bytes above the start."""
    import torch

    from searche1.losses.ofsd import chunked_distill_loss, distill_loss

    torch.set_num_threads(threads)
    g = torch.Generator().manual_seed(0)
    student = torch.randn(tokens, hidden, generator=g).requires_grad_(True)
    teacher = torch.randn(tokens, hidden, generator=g)
    weight = (torch.randn(vocab, hidden, generator=g) * hidden ** -0.5).requires_grad_(train_head)
    mask = torch.ones(tokens)
    mask[::7] = 0  # some observation tokens
    before = _rss_bytes()
    start = time.perf_counter()
    if variant == "naive":
        loss, stats = distill_loss(student @ weight.T, teacher @ weight.T, mask)
    else:
        loss, stats = chunked_distill_loss(student, weight, teacher, weight, mask, chunk=chunk)
    loss.backward()
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kB on Linux
    return {"variant": variant, "seconds": seconds, "peak_bytes": max(peak - before, 0), "loss": loss.item(),
            "grad_norm": student.grad.norm().item(), "kl": stats["kl"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tokens", type=int, default=2048)
    ap.add_argument("--vocab", type=int, default=49152)
    ap.add_argument("--hidden", type=int, default=576)
    ap.add_argument("--chunk", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--train-head", action="store_true", help="the LM head gets a gradient too (full fine-tuning)")
    ap.add_argument("--child", choices=["naive", "chunked"], help=argparse.SUPPRESS)
    ap.add_argument("--out", default=str(HERE / "results" / "ofsd_memory.json"))
    args = ap.parse_args()
    shape = (args.tokens, args.vocab, args.hidden, args.chunk, args.train_head, args.threads)
    if args.child:
        print(json.dumps(measure(args.child, *shape)))
        return

    from rich.progress import Progress

    runs: dict[str, list[dict]] = {"naive": [], "chunked": []}
    child = [sys.executable, __file__, "--tokens", str(args.tokens), "--vocab", str(args.vocab), "--hidden",
             str(args.hidden), "--chunk", str(args.chunk), "--threads", str(args.threads)] + \
        (["--train-head"] if args.train_head else [])
    with Progress() as bar:
        task = bar.add_task("ofsd loss", total=2 * args.repeats)
        for _ in range(args.repeats):
            for variant in runs:  # alternate, so a noisy moment hits both
                out = subprocess.run(child + ["--child", variant], capture_output=True, text=True,
                                     env={**os.environ, "OMP_NUM_THREADS": str(args.threads)})
                if out.returncode:
                    raise SystemExit(f"{variant} run failed:\n{out.stderr[-2000:]}")
                runs[variant].append(json.loads(out.stdout.strip().splitlines()[-1]))
                bar.advance(task)
    med = {v: {"seconds": statistics.median(r["seconds"] for r in rs),
               "peak_mb": statistics.median(r["peak_bytes"] for r in rs) / 2**20} for v, rs in runs.items()}
    same = abs(runs["naive"][0]["loss"] - runs["chunked"][0]["loss"]) <= 1e-4 * abs(runs["naive"][0]["loss"])
    ratio = {"memory": med["chunked"]["peak_mb"] / med["naive"]["peak_mb"],
             "time": med["chunked"]["seconds"] / med["naive"]["seconds"]}
    print(f"\nT={args.tokens} scored tokens, V={args.vocab}, H={args.hidden}, chunk {args.chunk}, head "
          f"{'trained' if args.train_head else 'frozen'}, {args.threads} threads, median of {args.repeats}\n")
    print("| variant | peak memory above start | time (loss + backward) |\n|---|---|---|")
    for v in runs:
        print(f"| {v} | {med[v]['peak_mb']:.0f} MB | {med[v]['seconds']:.2f} s |")
    print(f"\nchunked / naive: memory {ratio['memory']:.2f}x (goal <= 0.25x), time {ratio['time']:.2f}x (goal <= 1.2x);"
          f" same loss: {same} ({runs['naive'][0]['loss']:.6f} vs {runs['chunked'][0]['loss']:.6f})")
    figures = {"machine": f"{platform.machine()} {args.threads} threads", "tokens": args.tokens, "vocab": args.vocab,
               "hidden": args.hidden, "chunk": args.chunk, "train_head": args.train_head, "median": med,
               "chunked_vs_naive": ratio, "same_loss": same, "runs": runs}
    from searche1.fileio import write_json

    write_json(args.out, figures)
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
