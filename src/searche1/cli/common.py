"""What every `searche1` command shares: the help lines, config arguments, the flag-over-config rule."""

from __future__ import annotations

import argparse

COMMANDS = {
    "world": "generate a seeded toy world: corpus, train split and seven test sets",
    "index": "build a BM25 or dense retrieval index from a corpus jsonl",
    "serve": "serve an index over HTTP: POST /retrieve (Search-R1 compatible), GET /health",
    "search": "query an index directory or a running server from the shell",
    "convert": "convert QA files between FlashRAG jsonl and Search-R1 parquet",
    "config": "print the resolved config of a preset plus overrides",
    "model": "model utilities: import-gguf turns a GGUF file (default: bundled SmolLM2-135M) into an HF folder",
    "warmstart": "train the toy base policy on pretraining worlds (scripted-searcher demonstrations)",
    "eval": "greedy rollouts of a model over QA files: EM per benchmark and the average, as a table and JSON",
    "train": "train a policy: `train grpo` runs vanilla GRPO (Search-R1's recipe) with checkpoints and --resume; "
             "`train ofsd` one offline self-distillation phase",
    "ablate": "the ablations the paper lacks: GRPO-only vs GRPO+OFSD at a matched budget, student and reference "
              "strategies, tau_clip, KL direction, gain per round, cost; one `searche1 train` run per arm and seed, "
              "then report.md + ablate.png",
    "demo": "run the main job on the embedded default: toy world, index, checks, then the shipped base policy "
            "evaluated, GRPO -> OFSD (one round) with evaluations, the per-phase table and RUN/final",
    "view": "a local web page over a run: per-phase tables and charts, a trajectory browser, OFSD pairs side by "
            "side with the student's tokens coloured by their teacher-student KL",
    "report": "a markdown report of a run with PNG figures: the per-phase table, cost per phase and the curves",
}


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (argparse names the option and exits 2 otherwise)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def add_config_args(p: argparse.ArgumentParser, default_preset: str | None = "toy", positional: bool = True) -> None:
    """--preset, and overrides in the one form every command takes (`-o key=value`, repeatable); commands without
    other positional arguments also take them bare (`searche1 train --preset toy grpo.steps=5`)."""
    p.add_argument("--preset", default=default_preset, help="preset name in configs/ or a YAML path")
    p.add_argument("-o", "--override", dest="option_overrides", action="append", default=[], metavar="key=value",
                   help="config override (repeatable), e.g. -o retrieval.topk=5")
    if positional:
        p.add_argument("overrides", nargs="*", metavar="key=value",
                       help="config overrides, e.g. retrieval.topk=5 (the same as -o retrieval.topk=5)")


def config_overrides(args: argparse.Namespace) -> list[str]:
    """Every override the command line gave, -o ones first."""
    return [*getattr(args, "option_overrides", []), *getattr(args, "overrides", [])]


def pick(flag, default):
    """A flag the user gave wins over the config (0 and "" count as given)."""
    return default if flag is None else flag
