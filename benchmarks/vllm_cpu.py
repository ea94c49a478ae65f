"""vLLM's CPU build against HF on the same model and threads, measured in the same run (needs .venv-vllm:
`make test-vllm` creates it):

    .venv-vllm/bin/python benchmarks/vllm_cpu.py --model smollm2-135m --questions 16 --threads 1

1. generate: each question's prompt, exactly --gen-tokens greedy tokens per row (EOS ignored), one batched call:
   vLLM's `LLM.generate` against HF's `model.generate` (its KV cache, no turns, no retrieval).
2. rollout: the project's `rollout()` (search turns, in-process BM25, sampled at temperature 1, a seed per
   trajectory) with the vLLM backend against the HF backend; each counts its own generated tokens.

Both float32. Each method runs once untimed (warm-up), then --repeats interleaved rounds; figures are medians.
Prints a table and writes JSON (--out).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from rollout_setup import add_batch_arguments, load_batch, sample_seeds

HERE = Path(__file__).resolve().parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_batch_arguments(ap)
    ap.add_argument("--gen-tokens", type=int, default=64, help="tokens per row in the generate comparison")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=None, help="JSON (default benchmarks/results/vllm_cpu_<model>.json)")
    args = ap.parse_args()
    args.dtype = "float32"

    batch = load_batch(args)
    import vllm
    from vllm.inputs import TokensPrompt

    from searche1.models import model_location
    from searche1.protocol import make_prompt
    from searche1.rollout.backends.base import SamplingParams
    from searche1.rollout.backends.hf import HFBackend
    from searche1.rollout.backends.vllm import VLLMBackend
    from searche1.rollout.engine import rollout

    model, tok = batch.model, batch.tokenizer
    engine = VLLMBackend(model_location(args.model), max_model_len=4096, seed=args.seed)
    prompts = [tok(make_prompt(ex.question, tok), add_special_tokens=False).input_ids for ex in batch.examples]
    n = args.gen_tokens

    def vllm_generate() -> int:
        params = vllm.SamplingParams(max_tokens=n, min_tokens=n, ignore_eos=True, temperature=0.0)
        out = engine.llm.generate([TokensPrompt(prompt_token_ids=p) for p in prompts], params, use_tqdm=False)
        return sum(len(r.outputs[0].token_ids) for r in out)

    def hf_generate() -> int:
        width = max(map(len, prompts))
        ids = torch.full((len(prompts), width), tok.pad_token_id or 0)
        mask = torch.zeros_like(ids)
        for i, p in enumerate(prompts):  # left-padded
            ids[i, width - len(p):], mask[i, width - len(p):] = torch.tensor(p), 1
        with torch.no_grad():
            out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=n, min_new_tokens=n,
                                 do_sample=False, pad_token_id=tok.pad_token_id or 0)
        return (out.shape[1] - width) * len(prompts)

    def rollout_with(backend):
        def run() -> int:
            trajectories = rollout(batch.examples, backend, tok, batch.client, batch.limits, SamplingParams(1.0),
                                   sample_seeds=sample_seeds(args, len(batch.examples)))
            return sum(t.n_generated for t in trajectories)
        return run

    methods = {"generate/vllm": vllm_generate, "generate/hf": hf_generate,
               "rollout/vllm": rollout_with(engine), "rollout/hf": rollout_with(HFBackend(model, tok))}
    for fn in methods.values():
        fn()
    rounds = {name: [] for name in methods}
    for _ in range(args.repeats):
        for name, fn in methods.items():
            start = time.perf_counter()
            tokens = fn()
            rounds[name].append((time.perf_counter() - start, tokens))
    results = {}
    for name, xs in rounds.items():
        seconds, tokens = sorted(xs)[len(xs) // 2]
        results[name] = {"seconds": round(seconds, 3), "tokens": tokens,
                         "tokens_per_second": round(tokens / seconds, 1),
                         "rounds_tokens_per_second": [round(t / s, 1) for s, t in xs]}
    print(f"{args.model}, {len(prompts)} questions, {args.threads} thread(s), float32, vllm {vllm.__version__}")
    print("| method | backend | tokens | s (median) | tokens/s | rounds |\n|---|---|---|---|---|---|")
    for name, r in results.items():
        method, backend = name.split("/")
        print(f"| {method} | {backend} | {r['tokens']} | {r['seconds']} | {r['tokens_per_second']} | "
              f"{r['rounds_tokens_per_second']} |")
    for method in ("generate", "rollout"):
        ratio = results[f"{method}/vllm"]["tokens_per_second"] / results[f"{method}/hf"]["tokens_per_second"]
        print(f"{method}: vLLM {ratio:.2f}x HF")
    out = Path(args.out or HERE / "results" / f"vllm_cpu_{Path(args.model).name}.json")
    out.write_text(json.dumps({"args": vars(args), "vllm": vllm.__version__, "torch": torch.__version__,
                               "machine": platform.processor() or platform.machine(), "results": results},
                              indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
