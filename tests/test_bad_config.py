"""Bad presets, overrides and global options through the CLI: exit code 2, a message naming the file and line or
the key and its value, no traceback, nothing written."""

import pytest

from searche1.cli import main


def _refused(capsys, args, out, *fragments):
    assert main(args) == 2
    err = capsys.readouterr().err
    for fragment in fragments:
        assert fragment in err, err
    assert "Traceback" not in err, err
    assert not out.exists(), f"{out} was written"


def test_a_preset_with_a_yaml_syntax_error(tmp_path, capsys):
    preset = tmp_path / "mine.yaml"
    preset.write_text("grpo:\n  steps: 3\n  lr: [1e-4\n")
    out = tmp_path / "run"
    _refused(capsys, ["--threads", "1", "train", "grpo", "--preset", str(preset), "--out", str(out)], out,
             f"{preset}:", "not valid YAML")


@pytest.mark.parametrize("override,fragment", [
    ("retrieval.timeout=nan", "retrieval.timeout must be > 0 and finite (seconds), got nan"),
    ("retrieval.timeout=inf", "retrieval.timeout must be > 0 and finite (seconds), got inf"),
    ("grpo.lr=0", "grpo.lr must be > 0, got 0.0"),
    ("data.train=train.jsonl", "data.train: expected a list ([a, b] in YAML or in an override), got 'train.jsonl'"),
])
def test_overrides_name_the_value_that_failed(tmp_path, capsys, override, fragment):
    out = tmp_path / "run"
    _refused(capsys, ["--threads", "1", "train", "grpo", "--preset", "toy", override, "--out", str(out)], out,
             fragment)


@pytest.mark.parametrize("threads", ["0", "-2", "two"])
def test_threads_must_be_a_positive_integer(tmp_path, capsys, threads):
    out = tmp_path / "run"
    with pytest.raises(SystemExit) as stop:  # argparse's own exit
        main(["--threads", threads, "train", "grpo", "--preset", "toy", "--out", str(out)])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert "--threads" in err and threads in err and "Traceback" not in err
    assert not out.exists()
