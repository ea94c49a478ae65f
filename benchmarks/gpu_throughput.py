"""GPU throughput: rollout tokens/s with vLLM against HF generate (the baseline, measured in the same run; goal
vLLM >= 5x), and GRPO training tokens/s. Needs a CUDA GPU and vLLM (pip install 'searche1[vllm]').

    python benchmarks/gpu_throughput.py [--model smollm2-135m] [--questions 64] [--samples 5]

Both backends run the same multi-turn rollouts (toy-world questions, in-process BM25, up to --max-turns searches,
temperature 1), each once untimed (warm-up: CUDA kernels, vLLM's graphs), then --repeats timed rounds interleaved;
each figure is the median. Generated tokens/s counts the tokens the model sampled. Training: one GRPO update
(`policy_update`, fp32 weights under bf16 autocast, micro-batches of --micro-batch) over the vLLM rollouts; its
tokens/s counts prompt + response tokens, the work docs/reproduce.md's cost formula multiplies. Writes JSON (--out).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="smollm2-135m", help="HF folder or name (default: the bundled SmolLM2)")
    ap.add_argument("--questions", type=int, default=64)
    ap.add_argument("--samples", type=int, default=5, help="G: samples per question")
    ap.add_argument("--max-turns", type=int, default=4)
    ap.add_argument("--turn-tokens", type=int, default=256, help="token budget per turn")
    ap.add_argument("--micro-batch", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--gpu-memory", type=float, default=0.4, help="vLLM's share of the GPU memory")
    ap.add_argument("--out", default=str(HERE / "results" / "gpu_throughput.json"))
    args = ap.parse_args()

    from searche1.rollout.backends.vllm import vllm_available

    if not vllm_available():
        print("gpu_throughput: needs a CUDA GPU and vLLM (pip install 'searche1[vllm]'); nothing measured",
              file=sys.stderr)
        return 1
    from searche1.config import GRPOConfig, load_config
    from searche1.data.sources import training_questions
    from searche1.losses.grpo import group_advantages
    from searche1.models import load_model, resolve_model_path
    from searche1.rollout.backends.base import SamplingParams
    from searche1.rollout.backends.hf import HFBackend
    from searche1.rollout.backends.select import vllm_engine
    from searche1.rollout.engine import rollout
    from searche1.train.grpo_update import policy_update

    cfg = load_config("smollm2-135m-cpu", [f"rollout.max_turns={args.max_turns}",
                                           f"rollout.max_response_length={args.turn_tokens}",
                                           f"rollout.vllm_gpu_memory_utilization={args.gpu_memory}"])
    questions, client = training_questions(cfg)
    questions = questions[:args.questions]
    path = resolve_model_path(args.model)
    policy, tokenizer = load_model(path, "cuda", "float32")
    hf_model = load_model(path, "cuda", "bfloat16")[0]  # HF generate at the engine's precision: a fair baseline
    engine = vllm_engine(path, cfg.rollout)
    limits, sampling = cfg.rollout, SamplingParams(1.0)
    backends = {"hf": lambda: HFBackend(hf_model, tokenizer), "vllm": lambda: engine}

    def run(name):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        trajs = rollout(questions, backends[name](), tokenizer, client, limits, sampling, args.samples,
                        torch.Generator().manual_seed(0))
        torch.cuda.synchronize()
        return trajs, time.perf_counter() - t0

    for name in backends:
        run(name)  # warm-up
    rounds = {name: [] for name in backends}
    last = {}
    for _ in range(args.repeats):
        for name in backends:
            trajs, seconds = run(name)
            rounds[name].append(sum(t.n_generated for t in trajs) / seconds)
            last[name] = trajs
    tps = {name: sorted(v)[len(v) // 2] for name, v in rounds.items()}

    trajectories = last["vllm"]
    rewards = torch.tensor([t.reward for t in trajectories])
    advantages = group_advantages(rewards, [t.group_id for t in trajectories], True)
    optimizer = torch.optim.AdamW(policy.parameters(), lr=1e-7)
    policy.train()
    train_tps = []
    for _ in range(args.repeats):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            policy_update(policy, optimizer, trajectories, advantages, GRPOConfig(kl_coef=0.0),
                          tokenizer.pad_token_id, args.micro_batch)
        torch.cuda.synchronize()
        tokens = sum(len(t.prompt_ids) + len(t.response_ids) for t in trajectories)
        train_tps.append(tokens / (time.perf_counter() - t0))
    result = {"device": torch.cuda.get_device_name(), "model": args.model, "questions": len(questions),
              "samples": args.samples, "max_turns": args.max_turns, "turn_tokens": args.turn_tokens,
              "generated_tokens_per_second": tps, "rounds": rounds, "vllm_over_hf": tps["vllm"] / tps["hf"],
              "train_tokens_per_second": sorted(train_tps)[len(train_tps) // 2],
              "peak_memory_gib": torch.cuda.max_memory_allocated() / 2**30}
    print(f"{result['device']}, {args.model}: generated tokens/s HF {tps['hf']:.0f}, vLLM {tps['vllm']:.0f} "
          f"({result['vllm_over_hf']:.1f}x, goal >= 5x); GRPO update {result['train_tokens_per_second']:.0f} tokens/s")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
