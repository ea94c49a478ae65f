"""The `searche1` command: one parser assembled from the command modules beside this file; each command parses,
loads its config and calls the library. Heavy imports stay inside the commands, so that `--threads` is applied
before numpy or torch is first imported."""

from __future__ import annotations

import argparse
import re
import sys

from searche1.cli.common import COMMANDS, config_overrides, positive_int

__all__ = ["COMMANDS", "build_parser", "main"]


TRAIN_ALGORITHMS = ("grpo", "ofsd", "evolve")


def with_train_algorithm(argv: list[str]) -> list[str]:
    """`searche1 train --preset P --out RUN` means `searche1 train evolve ...`: argparse has no default sub-command,
    so the word is added when the command is `train` and no algorithm (or help) follows it."""
    i = 2 if argv[:1] == ["--threads"] else 1 if argv[:1] and argv[0].startswith("--threads=") else 0
    if argv[i:i + 1] != ["train"] or len(argv) <= i + 1 or argv[i + 1] in (*TRAIN_ALGORITHMS, "-h", "--help"):
        return argv
    return [*argv[:i + 1], "evolve", *argv[i + 1:]]


def build_parser() -> argparse.ArgumentParser:
    from searche1.cli import data, evaluate, models, retrieval, runs, train

    parser = argparse.ArgumentParser(
        prog="searche1", description="Search-E1: GRPO + offline self-distillation for search agents.")
    parser.add_argument("--threads", type=positive_int, default=None,
                        help="CPU threads for torch/OpenMP/BLAS (default: $OMP_NUM_THREADS if set, else all cores)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="command")
    for module in (data, retrieval, models, evaluate, train, runs):
        module.add_parsers(sub)
    return parser


OVERRIDE = re.compile(r"[A-Za-z_][\w.]*=")


def parse_command_line(argv: list[str]) -> argparse.Namespace:
    """The parsed command, its overrides in one list (-o ones, then bare ones). A bare `key=value` may come after
    options too (`eval --model M x=1 --samples 5 y=2`): argparse takes bare positionals in one run, and the ones after
    an option would otherwise be refused."""
    parser = build_parser()
    args, extra = parser.parse_known_args(with_train_algorithm(argv))
    stray = [a for a in extra if not (OVERRIDE.match(a) and hasattr(args, "overrides"))]
    if stray:
        parser.error(f"unrecognized arguments: {' '.join(stray)}")
    args.overrides = config_overrides(args) + extra
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_command_line(list(sys.argv[1:] if argv is None else argv))
    from searche1.runtime import configure_threads

    configure_threads(args.threads)  # before anything imports numpy or torch, so BLAS sees it too
    if hasattr(sys.stdout, "reconfigure"):  # a log redirected to a file gets each line as it is written
        sys.stdout.reconfigure(line_buffering=True)
    from searche1.config import ConfigError
    from searche1.fileio import InputError
    from searche1.retrieval.client import RetrieverRequestError, RetrieverUnavailable
    from searche1.runtime import TrainingDiverged

    try:
        return args.handler(args)
    except (InputError, ConfigError, RetrieverUnavailable, RetrieverRequestError, TrainingDiverged, ValueError,
            TypeError, OSError) as e:  # OSError: a read-only or full disk, a missing file ([Errno 28] ...: 'PATH')
        print(f"searche1 {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
