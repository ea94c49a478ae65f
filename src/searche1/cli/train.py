"""`searche1 train` (grpo, evolve, ofsd) and `searche1 ablate`: parsers and handlers."""

from __future__ import annotations

import argparse
import textwrap
from pathlib import Path

from searche1.cli.common import COMMANDS, add_config_args


def add_parsers(sub) -> None:
    h = COMMANDS

    p = sub.add_parser("train", help=h["train"], description=h["train"])
    train_sub = p.add_subparsers(dest="train_command", required=True, metavar="algorithm")
    q = train_sub.add_parser("grpo", help="vanilla GRPO on the preset's questions (toy: the toy world's train split)",
                             description="vanilla GRPO (grpo.* in the config): G rollouts per question, group "
                                         "advantages, PPO-clipped loss with a KL term; metrics.jsonl, config.yaml "
                                         "and checkpoints/step-N under --out")
    q.add_argument("--out", required=True, help="run directory")
    q.add_argument("--resume", action="store_true", help="continue the run in --out from its latest checkpoint")
    q.add_argument("--device", default="cpu", help="torch device: cpu (default), cuda")
    add_config_args(q)
    q = train_sub.add_parser("evolve", help="self-evolution: rounds of GRPO -> OFSD, each phase evaluated (the "
                                            "default: `searche1 train --preset P --out RUN` runs this)",
                             description="rounds of GRPO -> OFSD (evolve.* in the config), every phase checkpointed "
                                         "and evaluated on the test sets; a per-phase table (summary.md) and "
                                         "phases.png under --out")
    q.add_argument("--out", required=True, help="run directory")
    q.add_argument("--resume", action="store_true", help="skip finished phases, resume an interrupted one")
    arm = q.add_mutually_exclusive_group()
    arm.add_argument("--no-ofsd", action="store_true", help="GRPO only, at the same rollout budget (the baseline)")
    arm.add_argument("--ofsd-only", action="store_true", help="OFSD phases only (the other arm)")
    q.add_argument("--device", default="cpu", help="torch device: cpu (default), cuda")
    add_config_args(q)
    q = train_sub.add_parser("ofsd", help="one offline self-distillation phase (ofsd.* in the config)",
                             description="OFSD: a rollout pool of the policy, pairs (shortest correct sibling, most "
                                         "divergent sibling), clipped teacher-student KL with the reference shown to "
                                         "the teacher, a LoRA adapter merged at the end into --out/final")
    q.add_argument("--out", required=True, help="run directory")
    q.add_argument("--model", default=None, help="policy to distil (default: ofsd.model)")
    q.add_argument("--device", default="cpu", help="torch device: cpu (default), cuda")
    add_config_args(q)
    p.set_defaults(handler=cmd_train)

    from searche1.train.ablate import arms_help

    # raw, so that the arms stay one per line
    p = sub.add_parser("ablate", help=h["ablate"], description=textwrap.fill(h["ablate"], 78), epilog=arms_help(),
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="run directory; the same command again resumes it, like train's "
                   "--resume: finished arm/seed runs are reused, an interrupted phase resumes")
    p.add_argument("--seeds", type=int, default=3, help="seeds per arm (cfg.seed, seed+1, ...)")
    p.add_argument("--arms", default=None, help="comma-separated arms (default: all; listed below)")
    p.add_argument("--reuse", nargs="+", default=[], metavar="DIR",
                   help="earlier ablation directories whose phases are reused where they are the same work (e.g. "
                        "rounds 1-2 of a 2-round ablation inside a 3-round one)")
    p.add_argument("--device", default="cpu", help="torch device: cpu (default), cuda")
    add_config_args(p)
    p.set_defaults(handler=cmd_ablate)


def cmd_train(args) -> int:
    from searche1.config import dump_config, load_config
    from searche1.rollout.backends.select import check_backend
    from searche1.runtime import import_package_now, seed_everything
    from searche1.train.grpo import train_grpo
    from searche1.train.named_models import ensure_made

    cfg = load_config(args.preset, args.overrides)
    check_backend(cfg.rollout, args.device)
    import_package_now()  # after the checks: a bad config fails at once
    # before the seed: making a named model draws from the global RNG, and the run must not depend on whether
    # it was already in the cache
    ensure_made(cfg.grpo.model, cfg.ofsd.model, getattr(args, "model", None))
    seed_everything(cfg.seed)
    print(f"searche1 train {args.train_command} -> {args.out} (preset {args.preset})\n" + dump_config(cfg), end="")
    if args.train_command == "evolve":
        from searche1.train.evolve import phase_table, run_evolve, what_changed

        if args.no_ofsd or args.ofsd_only:
            cfg.evolve.mode = "grpo-only" if args.no_ofsd else "ofsd-only"
        rows = run_evolve(cfg, args.out, resume=args.resume, device=args.device)
        from searche1.runtime import process_rank

        if process_rank() == 0:  # once under a launcher
            print(phase_table(rows) + what_changed(rows)
                  + f"\nwrote {args.out}/summary.md, summary.json and phases.png")
        return 0
    if args.train_command == "ofsd":
        from searche1.train.ofsd import train_ofsd

        summary = train_ofsd(cfg, args.out, model_path=args.model, device=args.device)
        print(f"pairs {summary['pairs']['pairs']}, steps {summary['steps']}; wrote {args.out}/final")
        return 0
    record = train_grpo(cfg, args.out, resume=args.resume, device=args.device)
    print(f"last step: reward {record.get('reward_mean', float('nan')):.3f}, searches "
          f"{record.get('searches_mean', float('nan')):.2f}; wrote {args.out}")
    return 0


def cmd_ablate(args) -> int:
    from searche1.config import load_config
    from searche1.rollout.backends.select import check_backend
    from searche1.runtime import import_package_now
    from searche1.train.ablate import ARMS, run_ablation
    from searche1.train.named_models import ensure_made

    cfg = load_config(args.preset, args.overrides)
    check_backend(cfg.rollout, args.device)
    arms = args.arms.split(",") if args.arms else list(ARMS)
    unknown = [a for a in arms if a not in ARMS]
    if unknown or args.seeds < 1:
        raise ValueError(f"unknown arms {unknown} (choose from {', '.join(ARMS)})" if unknown else
                         f"--seeds must be >= 1, got {args.seeds}")
    missing = [r for r in args.reuse if not Path(r).is_dir()]
    if missing:
        raise ValueError(f"--reuse: no such ablation directory: {', '.join(missing)}")
    import_package_now()  # after the checks: bad arguments fail at once
    ensure_made(cfg.grpo.model, cfg.ofsd.model)  # (the SmolLM2 warm-up takes minutes: not before the checks)
    run_ablation(cfg, args.out, arms, args.seeds, device=args.device, reuse=args.reuse)
    print((Path(args.out) / "report.md").read_text() + f"\nwrote {args.out}/report.md, report.json and ablate.png")
    return 0
