"""Bad input files and configs through the CLI as a user meets them: one clear message naming
the file and line, or the config key, exit code 2, and nothing written where the output would have gone."""

import json

import pytest

from searche1.cli import main

GOOD_QA = [{"id": "1", "question": "where was Zorvak born", "golden_answers": ["Melin"], "data_source": "toy-nq"},
           {"id": "2", "question": "who founded Kelmar", "golden_answers": ["Zorvak"], "data_source": "toy-nq"}]
GOOD_DOCS = [{"id": "0", "contents": '"Zorvak"\nZorvak is a painter born in Melin.'},
             {"id": "1", "contents": '"Kelmar"\nKelmar was founded by Zorvak.'}]


def _jsonl(path, rows, extra_lines=()):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + "".join(extra_lines))
    return path


@pytest.fixture
def index(tmp_path):
    assert main(["--threads", "1", "index", "--corpus", str(_jsonl(tmp_path / "c.jsonl", GOOD_DOCS)), "--out",
                 str(tmp_path / "idx")]) == 0
    return tmp_path / "idx"


def _refused(capsys, args, out, *fragments):
    assert main(["--threads", "1", *args]) == 2
    err = capsys.readouterr().err
    for fragment in fragments:
        assert fragment in err, err
    assert not out.exists(), f"{out} was written"
    return err


@pytest.mark.parametrize("lines,fragments", [
    (['{"id": "3", "question": "q", "golden_answers": ["a"]', "\n"], ["qa.jsonl:3", "JSON"]),  # cut line
    ([json.dumps({"id": "1", "question": "again", "golden_answers": ["x"], "data_source": "toy-nq"}) + "\n"],
     ["qa.jsonl", "1"]),  # a duplicate id
    ([json.dumps({"id": "3", "question": "no answers"}) + "\n"], ["qa.jsonl:3", "golden_answers"]),
])
def test_bad_qa_files_for_eval(tmp_path, capsys, index, lines, fragments):
    data = _jsonl(tmp_path / "qa.jsonl", GOOD_QA, lines)
    out = tmp_path / "out" / "r.json"
    _refused(capsys, ["eval", "--model", "toy-base", "--data", str(data), "--index", str(index), "--out", str(out)],
             out, *fragments)


def test_an_empty_dataset_and_a_file_that_is_not_parquet(tmp_path, capsys, index):
    out = tmp_path / "out" / "r.json"
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    _refused(capsys, ["eval", "--model", "toy-base", "--data", str(empty), "--index", str(index), "--out", str(out)],
             out, "empty.jsonl: holds no questions")
    fake = tmp_path / "fake.parquet"
    fake.write_bytes(b"not a parquet file")
    _refused(capsys, ["eval", "--model", "toy-base", "--data", str(fake), "--index", str(index), "--out", str(out)],
             out, "fake.parquet")


@pytest.mark.parametrize("extra,fragment", [
    (['{"id": "2", "contents": "x"}\n'], "c.jsonl:4: duplicate id '2'"),
    (['{"id": "3", "contents": "x"\n'], "c.jsonl:4: invalid JSON"),  # a cut line
    (['{"id": "3"}\n'], "c.jsonl:4: expected field 'contents'"),  # no text
])
def test_bad_corpus_for_index(tmp_path, capsys, extra, fragment):
    rows = GOOD_DOCS + [{"id": "2", "contents": '"Melin"\nMelin is a city.'}]
    corpus = _jsonl(tmp_path / "c.jsonl", rows, extra)
    _refused(capsys, ["index", "--corpus", str(corpus), "--out", str(tmp_path / "idx")], tmp_path / "idx", fragment)


@pytest.mark.parametrize("override,fragment", [
    ("retrieval.topkk=3", "unknown config key 'retrieval.topkk'"),
    ("retrieval.topk=0", "retrieval.topk must be in 1..100"),
    ("grpo.lr=-1", "grpo.lr"),
    ("rollout.n_samples=1", "GRPO needs rollout.n_samples >= 2"),
    ("rollout.max_query_chars=0", "max_query_chars"),
    ("retrieval.on_failure=ignore", "retrieval.on_failure: must be one of"),
    ("grpo.steps=ten", "grpo.steps: expected int, got str 'ten'"),
])
def test_impossible_configs_stop_before_anything_is_written(tmp_path, capsys, override, fragment):
    out = tmp_path / "run"
    _refused(capsys, ["train", "grpo", "--out", str(out), override], out, fragment)
