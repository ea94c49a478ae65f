"""Probe (docs/warmstart.md, "Continuing a copy"): can the toy model's architecture learn to continue a copied
sequence at all, given nothing else to learn? Each row is L random spaced pool names, then the same L again; the
loss is on the second half, and the accuracy is taken on its tokens after the first (the ones only the earlier
occurrence predicts: an induction head's job), on 128 held-out rows.

    python scripts/induction_probe.py --out R.json                    # a fresh model of the warm start's shape
    python scripts/induction_probe.py --init toy-base --out R.json    # a trained model (toy-base or a folder)
    python scripts/induction_probe.py --init MODEL --drills years      # MODEL on the warm start's repeat drills

With --drills (names or years), no training: the teacher-forced accuracy of MODEL on 40 of `searche1 warmstart
--induction-repeat`'s drills (the line's second copy, its tokens after the first; in MODEL's own tokenizer, so with
--digit-years a year is four digits).

Prints and writes the accuracy every 25 steps and at the end; runs for --minutes (wall clock, 2 threads) or
--max-steps.
"""

import argparse
import json
import random
import time

import torch


def drill_accuracy(model_name: str, words: str, drills: int = 40) -> float:
    """Teacher-forced argmax accuracy on the second copy of repeat drills, its tokens after the first."""
    from searche1.models import load_model
    from searche1.toy.episodes import induction_line

    model, tokenizer = load_model(model_name, "cpu", "float32")
    rng, right, total = random.Random(123), 0, 0
    for _ in range(drills):
        (line, _), (again, _) = induction_line(rng, words, repeat=True)
        first = tokenizer(line, add_special_tokens=False).input_ids
        second = tokenizer(again, add_special_tokens=False).input_ids
        with torch.no_grad():
            predicted = model(input_ids=torch.tensor([first + second])).logits[0].argmax(-1)
        right += sum(int(predicted[len(first) + k - 1] == second[k]) for k in range(1, len(second)))
        total += len(second) - 1
    return right / total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--init", default=None, help="a model to start from (default: a fresh warm-start model)")
    parser.add_argument("--minutes", type=float, default=4.0)
    parser.add_argument("--max-steps", type=int, default=None, help="stop after this many steps (default: none)")
    parser.add_argument("--length", type=int, default=24, help="names per half row")
    parser.add_argument("--rows", type=int, default=64, help="rows per step")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--out", help="where to write the log (training runs)")
    parser.add_argument("--drills", choices=("names", "years"), help="only score --init on repeat drills")
    args = parser.parse_args()
    if args.drills:
        if not args.init:
            raise SystemExit("--drills scores a model: give --init")
        return print(f"{args.init}: {args.drills} repeat drills, accuracy {drill_accuracy(args.init, args.drills):.3f}")
    if not args.out:
        raise SystemExit("give --out (or --drills)")
    from searche1.data.toyworld.names import NAME_POOL
    from searche1.data.toyworld.tokenizer import build_toy_tokenizer
    from searche1.toy.warmstart import WarmstartConfig, make_model
    from searche1.train.kit import adamw

    torch.manual_seed(0)
    torch.set_num_threads(2)
    rng = random.Random(0)
    if args.init:
        from searche1.models import load_model

        model, tokenizer = load_model(args.init, "cpu", "float32")
    else:
        tokenizer = build_toy_tokenizer(spaced_values=True)
        model = make_model(tokenizer, WarmstartConfig())
    model.train()
    vocab = tokenizer.get_vocab()
    pool = [vocab[" " + n] for n in NAME_POOL]
    half = args.length

    def rows(n: int) -> torch.Tensor:
        first = torch.tensor([[rng.choice(pool) for _ in range(half)] for _ in range(n)])
        return torch.cat([first, first], 1)

    held_out = rows(128)
    opt, _ = adamw(model, args.lr, 0.01, betas=(0.9, 0.95), decay_matrices_only=True)
    log, t0, step = [], time.perf_counter(), 0
    while True:
        done = time.perf_counter() - t0 >= args.minutes * 60 or step == args.max_steps
        if step % 25 == 0 or done:
            model.eval()
            with torch.no_grad():
                predicted = model(input_ids=held_out).logits.argmax(-1)
            accuracy = (predicted[:, half:-1] == held_out[:, half + 1:]).float().mean().item()
            log.append({"step": step, "seconds": round(time.perf_counter() - t0), "accuracy": round(accuracy, 3)})
            print(log[-1], flush=True)
            model.train()
        if done:
            break
        ids = rows(args.rows)
        logits = model(input_ids=ids).logits
        loss = torch.nn.functional.cross_entropy(logits[:, half:-1].flatten(0, 1), ids[:, half + 1:].flatten())
        for group in opt.param_groups:  # linear warmup over 50 steps
            group["lr"] = args.lr * min(1.0, (step + 1) / 50)
        opt.zero_grad()
        loss.backward()
        opt.step()
        step += 1
    with open(args.out, "w") as f:
        json.dump({"args": vars(args), "log": log}, f, indent=1)


if __name__ == "__main__":
    main()
