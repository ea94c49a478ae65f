"""Does a toy model copy the answer out of OFSD's worked solution, or only read it out of the passages?

Teacher-forced on the scripted searcher's flawless runs of a world's test questions (comparisons left out: their
answer is in the question), the share whose answer is the model's argmax at the answer position, under four
contexts: the teacher's (train/pairs.py: the question, then the worked-solution block, here the run itself) or the
plain prompt, with the passages that state the answer in the information blocks (shown) or each block retrieved
again without them (hidden; toy/episodes.py). A model that copies from the solution scores well on
"teacher, hidden"; one that only reads scores 0 there, as on "plain, hidden". docs/warmstart.md.

    python scripts/copy_probe.py MODEL [MODEL ...] [--seed 2026] [--level 1] [--per-set 25] [--threads 1]
"""

import argparse
import json
import random

import torch

from searche1 import protocol
from searche1.data.toyworld.demos import demonstrate
from searche1.data.toyworld.generator import WorldConfig
from searche1.models import load_model
from searche1.toy.episodes import (
    FLAWLESS,
    encode_demo,
    open_world,
    question_prompt_ids,
    without_answer_passages,
    worked_solution,
)
from searche1.train.pairs import privileged_context

CONTEXTS = ("teacher, shown", "teacher, hidden", "plain, shown", "plain, hidden")


@torch.no_grad()
def copy_rates(model, tokenizer, world_cfg: WorldConfig, per_set: int) -> dict[str, float]:
    world, client, _ = open_world(world_cfg)
    facts, hits, n = world.fact_map(), dict.fromkeys(CONTEXTS, 0), 0
    for ex in (ex for exs in world.tests.values() for ex in exs[:per_set]):
        run = demonstrate(ex, facts, client, random.Random(0), FLAWLESS, quote_style="none")
        answer = ex.golden_answers[0]
        if protocol.parse_action(run[-1][0]).content != answer or answer in ex.question:
            continue
        hidden = without_answer_passages(run, answer, client)
        teacher = tokenizer(privileged_context(ex.question, worked_solution(run, tokenizer), tokenizer),
                            add_special_tokens=False).input_ids
        plain = question_prompt_ids(tokenizer, ex.question)
        n += 1
        for key, prompt, segments in zip(CONTEXTS, (teacher, teacher, plain, plain), (run, hidden, run, hidden)):
            ids, _ = encode_demo(prompt, segments, tokenizer, protocol.DEFAULT_MAX_OBS_LENGTH)
            start = len(ids) - 1 - len(tokenizer(segments[-1][0], add_special_tokens=False).input_ids)
            value = tokenizer(f" {answer}", add_special_tokens=False).input_ids
            at = next((i for i in range(start, len(ids)) if ids[i:i + len(value)] == value), None)
            if at is None:
                raise SystemExit(f"{ex.question!r}: the answer {answer!r} is not one piece of the final turn's tokens")
            predicted = model(input_ids=torch.tensor([ids])).logits[0].argmax(-1)
            hits[key] += all(predicted[p - 1].item() == ids[p] for p in range(at, at + len(value)))
    return {"questions": n, **{k: v / max(n, 1) for k, v in hits.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="+")
    parser.add_argument("--seed", type=int, default=2026, help="evaluation world seed")
    parser.add_argument("--level", type=int, default=1, help="world level")
    parser.add_argument("--per-set", type=int, default=25, help="questions per test set")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    for path in args.models:
        model, tokenizer = load_model(path)
        rates = copy_rates(model, tokenizer, WorldConfig(seed=args.seed, level=args.level), args.per_set)
        print(json.dumps({"model": path, **{k: round(v, 3) for k, v in rates.items()}}), flush=True)


if __name__ == "__main__":
    main()
