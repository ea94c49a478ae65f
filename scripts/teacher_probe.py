"""Probe (docs/ofsd.md): how well does a model do as OFSD's teacher? `searche1 eval` of MODEL on a toy world with
every prompt replaced by OFSD's privileged context (train/pairs.py), whose worked solution is the scripted
searcher's flawless run of that question: its turns, one per line, answer included. Reading the answer off the
block gives EM near 1; a model that cannot use the block does no better than with the plain prompt.

    python scripts/teacher_probe.py --model toy-base --seed 2026 --level 1 --out runs/teacher.json

Writes OUT (the eval report, teacher context) and prints the table; compare with a plain `searche1 eval` of the
same model and world. The world is generated from --seed/--level here (its facts script the solutions).
"""

import argparse
import random
import tempfile

from searche1 import protocol
from searche1.data.toyworld.demos import demonstrate
from searche1.data.toyworld.generator import WorldConfig, generate_world, write_world
from searche1.retrieval.bm25 import BM25Retriever
from searche1.retrieval.client import InProcessClient
from searche1.toy.episodes import FLAWLESS, worked_solution
from searche1.train.pairs import privileged_context


def worked_solutions(world, tokenizer) -> dict[str, str]:
    """question -> the flawless scripted run's turns, decoded as OFSD shows a reference."""
    client, facts = InProcessClient(BM25Retriever.build(world.docs)), world.fact_map()
    rng, solutions = random.Random(0), {}
    for ex in [ex for exs in world.tests.values() for ex in exs]:
        segments = demonstrate(ex, facts, client, rng, FLAWLESS, quote_style="none")
        solutions[ex.question] = worked_solution(segments, tokenizer)
    return solutions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--level", type=int, default=1)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    from searche1.cli import main as searche1
    from searche1.models import load_tokenizer

    world = generate_world(WorldConfig(seed=args.seed, level=args.level))
    tokenizer = load_tokenizer(args.model)
    solutions = worked_solutions(world, tokenizer)
    # the engine builds every prompt through protocol.make_prompt
    protocol.make_prompt = lambda question, tok=None: privileged_context(question, solutions[question], tok)
    with tempfile.TemporaryDirectory() as tmp:
        write_world(world, f"{tmp}/world")
        if searche1(["index", "--corpus", f"{tmp}/world/corpus.jsonl", "--out", f"{tmp}/index"]):
            raise SystemExit("index failed")
        raise SystemExit(searche1(["--threads", "2", "eval", "--model", args.model, "--data", f"{tmp}/world/test",
                                   "--index", f"{tmp}/index", "--out", args.out, "--batch-size", "128",
                                   "rollout.max_response_length=96"]))


if __name__ == "__main__":
    main()
