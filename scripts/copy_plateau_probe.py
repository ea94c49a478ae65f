"""Probe (docs/warmstart.md, probes C and E): does copying from context start on induction drills alone, and
after rows where the copied names recur?

    python scripts/copy_plateau_probe.py --recurring-steps 0   --drill-steps 300   # probe C: drills alone
    python scripts/copy_plateau_probe.py --recurring-steps 200 --drill-steps 300   # probe E: recurring rows first

A recurring row: 2-8 random pool names (context), then 16 names drawn from them again (trained). A drill:
`induction_drill` with 8-name lines and 6 quotes of 3. Prints the training loss and, on held-out drills, how often
the argmax is a span's next name (8-name lines; 40-name lines) every 50 steps. 64 rows a step, warm-start model.
"""

import argparse
import random

import torch

from searche1.data.toyworld.demos import induction_drill
from searche1.data.toyworld.names import NAME_POOL
from searche1.data.toyworld.tokenizer import build_toy_tokenizer, value_words
from searche1.toy.episodes import encode_demo
from searche1.toy.warmstart import WarmstartConfig, make_model, masked_lm_loss


def recurring_row(rng: random.Random) -> list[tuple[str, bool]]:
    few = rng.sample(NAME_POOL, rng.choice((2, 3, 4, 6, 8)))
    return [(" ".join(few) + "\n", False), (" ".join(rng.choice(few) for _ in range(16)) + "\n", True)]


@torch.no_grad()
def span_accuracy(model, tokenizer, length: int, quotes: int, span: int, n: int = 30) -> float:
    """Argmax hits on quoted names after a span's first (only an earlier occurrence predicts them)."""
    rng, names = random.Random(999), set(tokenizer.convert_tokens_to_ids(list(NAME_POOL)))
    newline, hits, total = tokenizer.convert_tokens_to_ids("Ċ"), 0, 0
    model.eval()
    for _ in range(n):
        ids, mask = encode_demo([], induction_drill(rng, NAME_POOL, length, quotes, span), tokenizer, 10**6)
        predicted = model(input_ids=torch.tensor([ids])).logits[0].argmax(-1)
        first = True
        for i in range(1, len(ids)):
            if mask[i] != 1:
                continue
            if ids[i] == newline:
                first = True
            elif ids[i] in names:
                if not first:
                    total, hits = total + 1, hits + int(predicted[i - 1] == ids[i])
                first = False
    model.train()
    return hits / max(total, 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recurring-steps", type=int, default=200)
    ap.add_argument("--drill-steps", type=int, default=300)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    rng, tokenizer = random.Random(0), build_toy_tokenizer()
    model = make_model(tokenizer, WarmstartConfig()).train()
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, betas=(0.9, 0.95), weight_decay=0.01)
    weight = torch.ones(len(tokenizer))
    weight[tokenizer.convert_tokens_to_ids(value_words())] = 4.0  # as the warm start weighs value tokens
    for step in range(1, args.recurring_steps + args.drill_steps + 1):
        recurring = step <= args.recurring_steps
        rows = [encode_demo([], recurring_row(rng) if recurring else induction_drill(rng, NAME_POOL, 8, 6, 3),
                            tokenizer, 10**6) for _ in range(64)]
        width = max(len(ids) for ids, _ in rows)
        ids = torch.tensor([r + [tokenizer.pad_token_id] * (width - len(r)) for r, _ in rows])
        mask = torch.tensor([m + [0] * (width - len(m)) for _, m in rows])
        for group in opt.param_groups:
            group["lr"] = 2e-3 * min(1.0, step / 20)
        loss = masked_lm_loss(model(input_ids=ids).logits, ids, (mask == 1) * weight[ids])
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step % 50 == 0:
            print(f"step {step} {'recurring' if recurring else 'drill'} loss {loss.item():.2f} "
                  f"span accuracy 8-name lines {span_accuracy(model, tokenizer, 8, 6, 3):.2f} "
                  f"40-name lines {span_accuracy(model, tokenizer, 40, 8, 5):.2f}", flush=True)


if __name__ == "__main__":
    main()
