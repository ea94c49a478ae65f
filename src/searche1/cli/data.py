"""`searche1 world`, `convert` and `config`: the toy world, QA files and configs (parsers and handlers)."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from searche1.cli.common import COMMANDS, add_config_args, pick


def add_parsers(sub) -> None:
    h = COMMANDS

    p = sub.add_parser("world", help=h["world"], description=h["world"])
    g = p.add_mutually_exclusive_group()
    g.add_argument("--seed", type=int, help="evaluation-world seed (default: world.seed of the preset)")
    g.add_argument("--pretrain", type=int, metavar="I", help="pretraining world I (a separate seed namespace)")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--disjoint-names", action="store_true", help="names not drawn from the shared pool")
    p.add_argument("--level", type=int, help="corpus difficulty 1-4 (default: world.level of the preset; "
                   "docs/toyworld.md): the same facts and questions, an easier or harder corpus")
    p.add_argument("--no-check", action="store_true", help="skip the answerability/retrieval checks")
    add_config_args(p)
    p.set_defaults(handler=cmd_world)

    p = sub.add_parser("convert", help=h["convert"], description=h["convert"])
    p.add_argument("input", help=".jsonl (FlashRAG) or .parquet (Search-R1)")
    p.add_argument("output", help=".jsonl or .parquet")
    p.add_argument("--split", default=None, help="parquet output: Search-R1's extra_info.split of every row (default: "
                                                 "the input's split, from its file name: train, dev, test)")
    p.add_argument("--data-source", default=None, help="parquet output: Search-R1's data_source of every row "
                                                       "(default: the input's dataset, e.g. nq from .../nq/test.jsonl)")
    p.set_defaults(handler=cmd_convert)

    p = sub.add_parser("config", help=h["config"], description=h["config"])
    add_config_args(p)
    p.set_defaults(handler=cmd_config)


def cmd_world(args) -> int:
    from searche1.config import load_config
    from searche1.data.toyworld.checks import check_world, format_check_report
    from searche1.data.toyworld.generator import generate_world, write_world

    cfg = load_config(args.preset, args.overrides)
    changes = {"seed": args.seed, "pretrain_index": args.pretrain,
               "name_pool": "disjoint" if args.disjoint_names else None, "level": args.level}
    world_cfg = dataclasses.replace(cfg.world, **{k: v for k, v in changes.items() if v is not None})
    t0 = time.perf_counter()
    world = generate_world(world_cfg)
    write_world(world, args.out)
    print(f"wrote world to {args.out} in {time.perf_counter() - t0:.1f}s: {len(world.docs)} passages, "
          f"{len(world.train)} train questions, " + ", ".join(f"{k} {len(v)}" for k, v in world.tests.items()))
    if not args.no_check:
        print(format_check_report(check_world(world)))
    return 0


def cmd_convert(args) -> int:
    from searche1.data.qa import load_qa, save_qa

    if Path(args.output).suffix != ".parquet" and (args.split is not None or args.data_source is not None):
        raise ValueError("--split and --data-source set Search-R1 parquet columns; FlashRAG jsonl has no place for "
                         f"them (output {args.output})")
    examples = load_qa(args.input)
    if args.split is not None or args.data_source is not None:
        examples = [dataclasses.replace(ex, split=pick(args.split, ex.split),
                                        dataset=pick(args.data_source, ex.dataset), group_id="")
                    for ex in examples]
        seen: set[tuple[str, str]] = set()
        for ex in examples:
            if (ex.dataset, ex.id) in seen:  # a merged file's sources share ids (test_0, ...)
                raise ValueError(f"--data-source {args.data_source}: id {ex.id!r} would appear twice in "
                                 f"{args.output}; convert each source on its own")
            seen.add((ex.dataset, ex.id))
    n = save_qa(args.output, examples)
    print(f"converted {n} examples: {args.input} -> {args.output}")
    return 0


def cmd_config(args) -> int:
    from searche1.config import dump_config, load_config

    print(dump_config(load_config(args.preset, args.overrides)), end="")
    return 0
