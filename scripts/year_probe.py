"""Probe (docs/warmstart.md, "Year answers are not read"): does a toy model read year answers as it reads names?

    python scripts/year_probe.py kinds R.trajectories.jsonl [...]   # greedy EM on the single-hop sets: year / other
    python scripts/year_probe.py embeddings --model toy-base          # mean pairwise cosine of year / name embeddings
    python scripts/year_probe.py spread --model toy-base --out DIR    # a copy with the year embeddings spread apart

`kinds` reads the trajectories `searche1 eval` writes beside its report. `spread` gives each year token's embedding a
random direction beside its own (norms kept) so that their mean pairwise cosine falls to --target, about the
names'; the copy can be evaluated or continued with `searche1 warmstart --init-from DIR`.
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


def year_and_name_ids(tokenizer) -> tuple[list[int], list[int]]:
    from searche1.data.toyworld import names

    vocab = tokenizer.get_vocab()
    years = [vocab[f" {y}"] for y in range(names.CITY_FOUNDED_YEARS[0], names.LATEST_YEAR + 1) if f" {y}" in vocab]
    return years, [vocab[" " + n] for n in names.NAME_POOL if " " + n in vocab]


def mean_cosine(weight: torch.Tensor) -> float:
    unit = torch.nn.functional.normalize(weight, dim=-1)
    return (unit @ unit.T)[~torch.eye(len(weight), dtype=torch.bool)].mean().item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=("kinds", "embeddings", "spread"))
    parser.add_argument("paths", nargs="*", help="kinds: eval trajectory files")
    parser.add_argument("--model", default="toy-base")
    parser.add_argument("--out", help="spread: the folder to write the copy to")
    parser.add_argument("--target", type=float, default=0.3, help="spread: the years' mean pairwise cosine after")
    args = parser.parse_args()
    if args.command == "kinds":
        return kinds(args.paths)
    from searche1.models import load_model

    torch.set_num_threads(1)
    model, tokenizer = load_model(args.model, "cpu", "float32")
    years, names = year_and_name_ids(tokenizer)
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
            # unit + b * r, r random unit (near-orthogonal in this width): the cosine falls to cos / (1 + b^2)
            b = max(cos / args.target - 1, 0.0) ** 0.5
            r = torch.randn(old.shape, generator=torch.Generator().manual_seed(0))
            spread = torch.nn.functional.normalize(old, dim=-1) + b * torch.nn.functional.normalize(r, dim=-1)
            weight[years] = torch.nn.functional.normalize(spread, dim=-1) * old.norm(dim=-1, keepdim=True)
        print(f"years spread: mean pairwise cosine {cos:.3f} -> {mean_cosine(weight[years].detach()):.3f}")
        model.save_pretrained(args.out)
        tokenizer.save_pretrained(args.out)
        from searche1.models import toy_base_path

        source = toy_base_path() if args.model == "toy-base" else args.model
        for name in ("warmstart.json", "README.md"):  # --init-from reads the parent run's warmstart.json
            shutil.copy(f"{source}/{name}", f"{args.out}/{name}")


if __name__ == "__main__":
    main()
