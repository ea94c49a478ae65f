"""The `searche1` command line: help, convert, config, index + search, errors with file and line."""

import json
import subprocess
import sys

import pytest

from searche1.cli import COMMANDS, main


def test_help_lists_every_command():
    out = subprocess.run([sys.executable, "-m", "searche1.cli", "--help"], capture_output=True, text=True,
                         check=True).stdout
    for name, description in COMMANDS.items():
        assert name in out and description[:30] in out


def test_console_script_installed():
    import shutil

    exe = shutil.which("searche1") or str(__import__("pathlib").Path(sys.executable).parent / "searche1")
    out = subprocess.run([exe, "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "world" in out.stdout


def test_convert_roundtrip(tmp_path, capsys):
    src = tmp_path / "in.jsonl"
    src.write_text('{"id": "1", "question": "q?", "golden_answers": ["a", "b"], "metadata": {"k": 1}}\n')
    assert main(["convert", str(src), str(tmp_path / "x.parquet")]) == 0
    assert main(["convert", str(tmp_path / "x.parquet"), str(tmp_path / "out.jsonl")]) == 0
    assert (tmp_path / "out.jsonl").read_text() == src.read_text()
    assert "converted 1 examples" in capsys.readouterr().out


def test_bad_input_exit_code_and_message(tmp_path, capsys):
    src = tmp_path / "bad.jsonl"
    src.write_text('{"id": "1", "question": "q?", "golden_answers": ["a"]}\n{"id": "2", "question": "q"}\n')
    assert main(["convert", str(src), str(tmp_path / "x.parquet")]) == 2
    err = capsys.readouterr().err
    assert f"{src}:2: missing field 'golden_answers'" in err
    assert not (tmp_path / "x.parquet").exists()


@pytest.mark.parametrize("flag", ["--drills", "--copy-drills", "--privileged-episodes", "--first-world",
                                  "--snapshot-every"])
def test_warmstart_refuses_negative_counts(tmp_path, capsys, flag):
    assert main(["warmstart", "--out", str(tmp_path / "m"), flag, "-1"]) == 2
    assert f"{flag} must be >= 0, got -1" in capsys.readouterr().err and not (tmp_path / "m").exists()


@pytest.mark.parametrize("flag", ["--privileged-hide-answer", "--misread"])
def test_warmstart_refuses_a_share_outside_0_1(tmp_path, capsys, flag):
    assert main(["warmstart", "--out", str(tmp_path / "m"), flag, "1.5"]) == 2
    assert f"{flag} must be in [0, 1], got 1.5" in capsys.readouterr().err


@pytest.mark.parametrize("value", ["0", "-2", "inf", "nan"])
def test_warmstart_refuses_a_digit_weight_that_is_not_positive(tmp_path, capsys, value):
    assert main(["warmstart", "--out", str(tmp_path / "m"), "--digit-weight", value]) == 2
    assert "--digit-weight must be a finite number > 0" in capsys.readouterr().err and not (tmp_path / "m").exists()


def test_warmstart_refuses_two_ways_of_writing_years(tmp_path, capsys):
    assert main(["warmstart", "--out", str(tmp_path / "m"), "--digit-years", "--year-pairs"]) == 2
    assert "--digit-years and --year-pairs: choose one" in capsys.readouterr().err and not (tmp_path / "m").exists()


@pytest.mark.parametrize("weights,message", [
    ("2wiki=3", "'2wiki=3' is not SET=WEIGHT with SET one of nq,"),
    ("musique", "'musique' is not SET=WEIGHT"),
    ("musique=x", "weight of musique must be a number, got 'x'"),
    ("musique=-1", "weight of musique must be a finite number >= 0, got '-1'"),
    ("musique=inf", "weight of musique must be a finite number >= 0, got 'inf'"),
    ("musique=nan", "weight of musique must be a finite number >= 0, got 'nan'"),
    ("nq=0,triviaqa=0,popqa=0,hotpotqa=0,2wikimultihopqa=0,musique=0,bamboogle=0", "every set has weight 0")])
def test_warmstart_refuses_bad_set_weights(tmp_path, capsys, weights, message):
    assert main(["warmstart", "--out", str(tmp_path / "m"), "--set-weights", weights]) == 2
    assert message in capsys.readouterr().err and not (tmp_path / "m").exists()


def test_config_command(capsys):
    assert main(["config", "--preset", "toy", "retrieval.topk=7"]) == 0
    assert "topk: 7" in capsys.readouterr().out
    assert main(["config", "retrieval.nope=1"]) == 2
    assert "unknown config key 'retrieval.nope'" in capsys.readouterr().err


def test_index_and_search(tmp_path, tiny_corpus, capsys):
    from searche1.data.corpus import write_corpus

    write_corpus(tmp_path / "c.jsonl", tiny_corpus)
    assert main(["index", "--corpus", str(tmp_path / "c.jsonl"), "--out", str(tmp_path / "idx")]) == 0
    capsys.readouterr()
    assert main(["search", "--index", str(tmp_path / "idx"), "--topk", "2", "Velsh language"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("<search> Velsh language </search>\n\n<information>Doc 1(Title: \"Tarvos\")")
    assert main(["search", "--index", str(tmp_path / "idx"), "--json", "Kelmar"]) == 0
    assert json.loads(capsys.readouterr().out)["documents"][0]["id"] == "2"


def test_search_unreachable_server(capsys):
    assert main(["search", "--index", "http://127.0.0.1:9", "x"]) == 2
    assert "unreachable" in capsys.readouterr().err


def test_world_command(tmp_path, capsys):
    out = tmp_path / "w"
    assert main(["world", "--seed", "3", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "wrote world" in text
    names = ["nq", "triviaqa", "popqa", "hotpotqa", "2wikimultihopqa", "musique", "bamboogle"]
    assert sorted(p.name for p in (out / "test").iterdir()) == sorted(f"toy-{n}.jsonl" for n in names)
    assert (out / "corpus.jsonl").is_file() and (out / "train.jsonl").is_file()
    assert main(["world", "--pretrain", "0", "--out", str(tmp_path / "p"), "--no-check"]) == 0
    with pytest.raises(SystemExit):
        main(["world", "--seed", "1", "--pretrain", "2", "--out", str(tmp_path / "x")])


def test_demo_runs_end_to_end_on_a_small_world(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["--threads", "1", "demo", "--out", str(run), "world.n_test=10", "world.n_test_bamboogle=5",
                 "world.n_train_single=20", "world.n_train_bridge=20", "evolve.rounds=1", "evolve.grpo_steps=1",
                 "evolve.eval_limit=3", "grpo.prompts_per_step=2", "grpo.mini_batch_prompts=2",
                 "rollout.n_samples=2", "rollout.max_response_length=24", "ofsd.pool_questions=4",
                 "ofsd.n_samples=2"]) == 0
    out = capsys.readouterr().out
    assert "<information>Doc 1(Title:" in out and "returned the same documents" in out
    assert "| grpo-r1 |" in out and "| ofsd-r1 |" in out  # the per-phase table
    summary = json.loads((run / "summary.json").read_text())
    base, last = summary["phases"][0], summary["phases"][-1]
    assert (f"base -> ofsd-r1: average EM {base['average_em']:.3f} -> {last['average_em']:.3f} "
            f"({last['average_em'] - base['average_em']:+.3f}), searches {base['searches']:.2f}") in out
    assert [p["phase"] for p in summary["phases"]] == ["base", "grpo-r1", "ofsd-r1"]
    assert (run / "final" / "model.safetensors").is_file() and (run / "final" / "tokenizer.json").is_file()
    assert summary["config"]["world"]["n_test"] == 10
    assert 0 < summary["world_checks"]["single_hop_retrieval"]["overall"]["recall@3"] <= 1
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert any("world/single_hop_retrieval.overall.recall@3" in r for r in records)
    assert (run / "config.yaml").is_file() and (run / "index" / "meta.json").is_file()
