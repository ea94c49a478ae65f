"""The command line's shape: every command has a handler beside its parser; `train` without an algorithm runs evolve."""

import pytest

from searche1.cli import COMMANDS, build_parser, config_overrides, with_train_algorithm


@pytest.mark.parametrize("argv,expected", [
    (["train", "--preset", "toy", "--out", "r"], ["train", "evolve", "--preset", "toy", "--out", "r"]),
    (["--threads", "1", "train", "--out", "r"], ["--threads", "1", "train", "evolve", "--out", "r"]),
    (["--threads=1", "train", "--out", "r"], ["--threads=1", "train", "evolve", "--out", "r"]),
    (["train", "grpo", "--out", "r"], ["train", "grpo", "--out", "r"]),
    (["train", "--help"], ["train", "--help"]),
    (["eval", "--model", "train", "--data", "d"], ["eval", "--model", "train", "--data", "d"]),  # not the command
])
def test_train_without_an_algorithm_means_evolve(argv, expected):
    assert with_train_algorithm(argv) == expected


def test_every_command_has_a_handler():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert sorted(sub.choices) == sorted(COMMANDS)
    for name, command in sub.choices.items():
        if name == "train":
            for algorithm in ("grpo", "evolve", "ofsd"):
                assert callable(parser.parse_args(["train", algorithm, "--out", "r"]).handler)
        else:
            assert callable(command.get_default("handler")), name


def test_no_option_hides_the_handler():
    """An argument named like the handler's attribute would replace it in the parsed namespace."""
    def parsers(parser):
        yield parser
        for action in parser._actions:
            choices = getattr(action, "choices", None)
            for child in (choices.values() if isinstance(choices, dict) else ()):
                if hasattr(child, "_actions"):
                    yield from parsers(child)

    for parser in parsers(build_parser()):
        assert "handler" not in {a.dest for a in parser._actions}, parser.prog
    assert callable(build_parser().parse_args(["view", "RUN"]).handler)


@pytest.mark.parametrize("command", [
    ["config"], ["search", "--index", "I", "q"], ["eval", "--model", "m", "--data", "d", "--out", "o"],
    ["train", "grpo", "--out", "r"], ["serve", "--index", "I"], ["demo"], ["ablate", "--out", "o"],
])
def test_one_override_form_everywhere(command):
    args = build_parser().parse_args([*command[:1], "-o", "retrieval.topk=5", *command[1:]]
                                     if command[0] != "train" else [*command, "-o", "retrieval.topk=5"])
    assert config_overrides(args) == ["retrieval.topk=5"]


def test_bare_overrides_may_follow_options():
    from searche1.cli import parse_command_line

    args = parse_command_line(["eval", "--model", "m", "x.a=1", "--data", "d", "--out", "o", "--samples", "5",
                               "rollout.temperature=1.0", "-o", "y.b=2"])
    assert args.samples == 5 and args.overrides == ["y.b=2", "x.a=1", "rollout.temperature=1.0"]
    assert parse_command_line(["train", "--out", "r", "a.b=1", "--resume", "c.d=2"]).overrides == ["a.b=1", "c.d=2"]
    with pytest.raises(SystemExit):  # an unknown option is still refused
        parse_command_line(["eval", "--model", "m", "--data", "d", "--out", "o", "--bogus", "x.a=1"])
    with pytest.raises(SystemExit):  # and so is a later bare word that is not an override
        parse_command_line(["eval", "--model", "m", "x.a=1", "--data", "d", "--out", "o", "--samples", "5", "oops"])
