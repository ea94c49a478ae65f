"""Probe (docs/warmstart.md, "Year answers are not read"): does a toy model read year answers as it reads names?

    python scripts/year_probe.py kinds R.trajectories.jsonl [...]   # greedy EM on the single-hop sets: year / other
    python scripts/year_probe.py embeddings --model toy-base          # mean pairwise cosine of year / name embeddings
    python scripts/year_probe.py spread --model toy-base --out DIR    # a copy with the year embeddings spread apart
    python scripts/year_probe.py copied --model DIR                   # teacher-forced answer tokens, by kind

`kinds` reads the trajectories `searche1 eval` writes beside its report. `spread` gives each year token's embedding a
random direction beside its own (norms kept) so that their mean pairwise cosine falls to --target, about the
names' (with --from-names G, each year is instead the normalised sum of two pool names' embeddings, a pair per
year, plus G times the years' mean direction; with --order B, each year's unit row gets B times its rank in [-1, 1]
along one seeded direction, so that the years are sorted along it, and is put back at its norm); the copy can be
evaluated or continued with `searche1 warmstart --init-from DIR`. `copied` runs a warm-start model (its
warmstart.json gives the tokenizer options) teacher-forced over the single-hop scripted episodes of fresh
pretraining-namespace worlds and reports, per kind of written answer token, how often its argmax is right: `value`
(a name, city, occupation, language), `year` (a whole-year token), `century` and `tail` (--year-pairs), `digit N`
(--digit-years, the N-th digit).
"""

import argparse
import json
import re
import shutil

import torch

SINGLE_HOP = ("toy-nq", "toy-triviaqa", "toy-popqa")


def kinds(paths: list[str]) -> None:
    print("| trajectories | answer is a year | anything else |\n|---|---|---|")
    for path in paths:
        acc = {"year": [0.0, 0], "other": [0.0, 0]}
        with open(path) as f:
            for line in f:
                r = json.loads(line)
                if r["group_id"].split("/")[0] in SINGLE_HOP:
                    kind = "year" if re.fullmatch(r"\d{3,4}", r["golden_answers"][0]) else "other"
                    acc[kind][0] += r["em"]
                    acc[kind][1] += 1
        print(f"| {path} | " + " | ".join(f"{s / max(n, 1):.2f} ({n})" for s, n in acc.values()) + " |")


def mean_cosine(weight: torch.Tensor) -> float:
    unit = torch.nn.functional.normalize(weight, dim=-1)
    return (unit @ unit.T)[~torch.eye(len(weight), dtype=torch.bool)].mean().item()


def answer_kind(token: str, position: int) -> str:
    """The kind of the `position`-th token of an answer (0 = the first after <answer>)."""
    bare = token.replace("Ġ", "").strip()
    if not bare.isdigit():
        return "value" if position == 0 else "other"
    if len(bare) >= 3:
        return "year"
    if len(bare) == 2 or (position == 0 and token != bare):
        return "century" if position == 0 else "tail"
    return f"digit {position}"  # after the space token: 1 is the first digit


def copied_rates(model, tokenizer, run: dict, episodes: int = 300) -> dict[str, tuple[int, int]]:
    """Per kind of answer token (answer_kind): (right, total) of the model's teacher-forced argmax over the
    single-hop scripted episodes of fresh pretraining-namespace worlds; `run` is a warm start's config (the
    tokenizer options)."""
    import random

    from searche1.toy.episodes import demo_stream
    from searche1.toy.warmstart import WarmstartConfig

    cfg = WarmstartConfig(world_level=1, quote_style="none", loss_on_observations=False, drills_per_world=0,
                          copy_drills_per_world=0, max_hops=1, first_world=900_000,
                          **{k: run.get(k, False) for k in ("spaced_values", "question_only_prompt", "digit_years",
                                                            "year_pairs")})
    stream = demo_stream(tokenizer, cfg, random.Random(1))
    open_id, close_id = tokenizer.convert_tokens_to_ids(["<answer>", "</answer>"])
    right: dict[str, list[int]] = {}
    for _ in range(episodes):
        ids, _ = next(stream)
        if open_id not in ids:
            continue
        with torch.no_grad():
            predicted = model(torch.tensor([ids])).logits[0].argmax(-1).tolist()
        start = ids.index(open_id) + 1
        for i in range(start, ids.index(close_id, start) if close_id in ids[start:] else len(ids)):
            token = tokenizer.convert_ids_to_tokens(ids[i])
            if token.replace("Ġ", "").strip():  # the spaces around the value are not what is read
                tally = right.setdefault(answer_kind(token, i - start), [0, 0])
                tally[0] += predicted[i - 1] == ids[i]
                tally[1] += 1
    return {kind: (a, b) for kind, (a, b) in sorted(right.items())}


def ordered(rows: torch.Tensor, beta: float, seed: int = 1) -> torch.Tensor:
    """`rows` (in increasing year order) with beta times each one's rank in [-1, 1] along a seeded unit direction
    added to its unit vector, at their own norms: which of two years is earlier becomes a linear read."""
    unit = torch.nn.functional.normalize
    direction = unit(torch.randn(rows.shape[1], generator=torch.Generator().manual_seed(seed)), dim=0)
    rank = torch.linspace(-1.0, 1.0, len(rows))[:, None]
    return unit(unit(rows, dim=-1) + beta * rank * direction, dim=-1) * rows.norm(dim=-1, keepdim=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=("kinds", "embeddings", "spread", "copied"))
    parser.add_argument("paths", nargs="*", help="kinds: eval trajectory files")
    parser.add_argument("--model", default="toy-base")
    parser.add_argument("--out", help="spread: the folder to write the copy to")
    parser.add_argument("--target", type=float, default=0.3, help="spread: the years' mean pairwise cosine after")
    parser.add_argument("--from-names", type=float, default=None, metavar="GAMMA",
                        help="spread: each year from two names' embeddings plus GAMMA times the years' mean direction")
    parser.add_argument("--order", type=float, default=None, metavar="B",
                        help="spread: add B times each year's rank in [-1, 1] along one seeded direction")
    args = parser.parse_args()
    if args.command == "kinds":
        return kinds(args.paths)
    from searche1.models import load_model
    from searche1.toy.embeddings import spaced_year_and_name_ids, years_from_names

    if args.command == "copied":
        model, tokenizer = load_model(args.model, "cpu", "float32")
        run = json.loads(open(f"{args.model}/warmstart.json").read())["config"]
        rates = copied_rates(model, tokenizer, run)
        return print(f"{args.model}: " + ", ".join(f"{k} {a / b:.2f} ({b})" for k, (a, b) in rates.items()))
    torch.set_num_threads(1)
    model, tokenizer = load_model(args.model, "cpu", "float32")
    years, names = spaced_year_and_name_ids(tokenizer)
    weight = model.get_input_embeddings().weight
    for label, ids in (("year", years), ("name", names)):
        if ids:
            print(f"{len(ids)} {label} tokens: mean pairwise cosine {mean_cosine(weight[ids].detach()):.3f}")
    if args.command == "spread":
        if not (args.out and years):
            raise SystemExit("spread needs --out and a model whose years are tokens (not --digit-years)")
        with torch.no_grad():
            old = weight[years].clone()
            cos = mean_cosine(old)
            unit = torch.nn.functional.normalize
            if args.order is not None:
                weight[years] = ordered(old, args.order)
            elif args.from_names is None:
                # unit + b * r, r random unit (near-orthogonal in this width): the cosine falls to cos / (1 + b^2)
                b = max(cos / args.target - 1, 0.0) ** 0.5
                r = torch.randn(old.shape, generator=torch.Generator().manual_seed(0))
                weight[years] = unit(unit(old, dim=-1) + b * unit(r, dim=-1), dim=-1) * old.norm(dim=-1, keepdim=True)
            else:
                years_from_names(model, tokenizer, args.from_names)
        print(f"years spread: mean pairwise cosine {cos:.3f} -> {mean_cosine(weight[years].detach()):.3f}")
        model.save_pretrained(args.out)
        tokenizer.save_pretrained(args.out)
        from searche1.models import toy_base_path

        source = toy_base_path() if args.model == "toy-base" else args.model
        for name in ("warmstart.json", "README.md"):  # --init-from reads the parent run's warmstart.json
            shutil.copy(f"{source}/{name}", f"{args.out}/{name}")


if __name__ == "__main__":
    main()
