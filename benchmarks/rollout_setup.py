"""The rollout benchmarks' batch: the same arguments, model, questions, retriever and limits for each of them
(rollout.py, rollout_profile.py, and rollout_worker.py on another commit's code)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass


def add_batch_arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--model", default="toy-base", help="toy-base (shipped), smollm2-135m, or a model folder")
    ap.add_argument("--questions", type=int, default=32, help="questions in the batch")
    ap.add_argument("--max-turns", type=int, default=4)
    ap.add_argument("--turn-tokens", type=int, default=96, help="token budget per turn")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu", help="cpu, or cuda on a GPU machine")
    ap.add_argument("--dtype", default="auto", help="auto (float32 on CPU, bfloat16 on a GPU), float32, bfloat16")
    ap.add_argument("--random-weights", action="store_true",
                    help="the model folder's architecture and tokenizer with random weights (seeded): for a machine "
                         "the weights cannot travel to, e.g. a SmolLM2-shaped model from config.json alone")


def sample_seeds(args: argparse.Namespace, n: int) -> list[int]:
    """One sampling seed per trajectory (as GRPO draws): a row's tokens then depend on its seed and the logits
    alone, so two commits whose model code computes the same logits generate the same trajectories."""
    return [args.seed * 1_000_003 + i for i in range(n)]


@dataclass
class Batch:
    model: object
    tokenizer: object
    world: object
    examples: list
    client: object
    limits: object


def load_batch(args: argparse.Namespace) -> Batch:
    """Threads set, then the model, toy world 0, its first --questions of musique, hotpotqa and nq, in-process
    BM25 over its corpus, and the engine's limits."""
    from searche1.runtime import configure_threads

    configure_threads(args.threads)
    from searche1.data.toyworld.generator import WorldConfig, generate_world
    from searche1.models import load_model
    from searche1.retrieval.bm25 import BM25Retriever
    from searche1.retrieval.client import InProcessClient

    if args.random_weights:
        model, tokenizer = _random_model(args)
    else:
        model, tokenizer = load_model(args.model, device=args.device, dtype=args.dtype)
    world = generate_world(WorldConfig(seed=0))
    examples = [ex for name in ("musique", "hotpotqa", "nq") for ex in world.tests[name]][:args.questions]
    return Batch(model, tokenizer, world, examples, InProcessClient(BM25Retriever.build(world.docs)),
                 _limits(max_turns=args.max_turns, max_response_length=args.turn_tokens))


def _limits(**fields):
    """The engine's limits in the form the code in hand takes: a RolloutConfig, or at commits before it the
    EngineLimits dataclass (rollout_worker.py runs on another commit's code)."""
    from searche1.rollout import engine

    if hasattr(engine, "EngineLimits"):
        return engine.EngineLimits(**fields)
    from searche1.config import RolloutConfig

    return RolloutConfig(**fields)


def run_engine(batch: Batch, args: argparse.Namespace, **options) -> list:
    """One seeded engine run over the batch (the same tokens every call), with the HF backend."""
    from searche1.rollout.backends.base import SamplingParams
    from searche1.rollout.backends.hf import HFBackend
    from searche1.rollout.engine import rollout

    return rollout(batch.examples, HFBackend(batch.model, batch.tokenizer), batch.tokenizer, batch.client,
                   batch.limits, SamplingParams(temperature=1.0),
                   sample_seeds=sample_seeds(args, len(batch.examples)), **options)


def questions_sha(examples: list) -> str:
    """A fingerprint of the batch's questions: two commits compare only on the same ones."""
    import hashlib

    return hashlib.sha256("\n".join(ex.question for ex in examples).encode()).hexdigest()


def _random_model(args: argparse.Namespace):
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from searche1.models import load_tokenizer, resolve_dtype, resolve_model_path

    folder = resolve_model_path(args.model)
    torch.manual_seed(args.seed)
    model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(folder),
                                             dtype=resolve_dtype(args.dtype, args.device))
    return model.to(args.device).eval(), load_tokenizer(folder)
