"""QA jsonl / Search-R1 parquet / corpus readers and writers: round trips, malformed input, atomic writes."""

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import SHARED_BENCHMARKS
from searche1.data.corpus import iter_corpus, read_corpus
from searche1.data.qa import QAExample, load_qa, read_qa_jsonl, read_searchr1_parquet, save_qa, write_searchr1_parquet
from searche1.fileio import InputError, atomic_write
from searche1.protocol import make_prompt_text


def _write(path, text: str | bytes):
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    return path


GOOD = '{"id": "a", "question": "who?", "golden_answers": ["x"]}\n'


@pytest.mark.parametrize("line,message", [
    ("{not json", "invalid JSON"),
    ('["a list"]', "expected a JSON object"),
    ('{"id": "b", "golden_answers": ["x"]}', "missing field 'question'"),
    ('{"id": "b", "question": "q"}', "missing field 'golden_answers'"),
    ('{"question": "q", "golden_answers": ["x"]}', "missing field 'id'"),
    ('{"id": "b", "question": "q", "golden_answers": []}', "empty list"),
    ('{"id": "b", "question": "q", "golden_answers": "x"}', "must be a list of strings"),
    ('{"id": "b", "question": "q", "golden_answers": [1]}', "holds a int"),
    ('{"id": "b", "question": 5, "golden_answers": ["x"]}', "'question' must be a string"),
    ('{"id": "b", "question": "  ", "golden_answers": ["x"]}', "'question' is empty"),
    ('{"id": [1], "question": "q", "golden_answers": ["x"]}', "'id' must be a string"),
    ('{"id": "b", "question": "q", "golden_answers": ["x"], "metadata": 3}', "'metadata' must be an object"),
    ('{"id": "a", "question": "q", "golden_answers": ["x"]}', "duplicate id 'a' in 'bad' (first on line 1)"),
])
def test_malformed_qa_names_file_and_line(tmp_path, line, message):
    path = _write(tmp_path / "bad.jsonl", GOOD + "\n" + line + "\n")  # blank line 2 is skipped; bad one is line 3
    with pytest.raises(InputError) as e:
        read_qa_jsonl(path)
    assert f"{path}:3: " in str(e.value) and message in str(e.value)


def test_non_utf8_names_line(tmp_path):
    path = _write(tmp_path / "bad.jsonl", GOOD.encode() + b'{"id": "b", "question": "\xff", "golden_answers": ["x"]}\n')
    with pytest.raises(InputError, match=r"bad.jsonl:2: not valid UTF-8"):
        read_qa_jsonl(path)


def test_missing_file_and_unknown_suffix(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        read_qa_jsonl(tmp_path / "nope.jsonl")
    with pytest.raises(InputError, match="unknown QA file type"):
        load_qa(tmp_path / "x.csv")


def test_group_ids_are_globally_unique(tmp_path):
    (tmp_path / "nq").mkdir()
    a = read_qa_jsonl(_write(tmp_path / "nq" / "test.jsonl", GOOD))
    b = read_qa_jsonl(_write(tmp_path / "other.jsonl", GOOD))
    assert a[0].dataset == "nq" and a[0].split == "test" and b[0].dataset == "other"
    assert a[0].id == b[0].id and a[0].group_id != b[0].group_id


def _examples():
    return [
        QAExample("1", "who painted the mona lisa", ["Leonardo da Vinci", "Leonardo"], "nq", "test"),
        QAExample("2", "Wie heißt die Hauptstadt?", ["Berlin"], "nq", "test", metadata={"source_idx": 7, "x": [1]}),
    ]


def test_parquet_roundtrip_and_exact_columns(tmp_path):
    path = tmp_path / "nq_test.parquet"
    write_searchr1_parquet(path, _examples())
    table = pq.read_table(path)
    assert tuple(table.column_names) == ("id", "question", "golden_answers", "data_source", "prompt", "ability",
                                         "reward_model", "extra_info")
    row = table.to_pylist()[0]
    assert row["prompt"] == [{"role": "user", "content": make_prompt_text("who painted the mona lisa")}]
    assert row["ability"] == "fact-reasoning"
    assert row["reward_model"] == {"style": "rule", "ground_truth": {"target": ["Leonardo da Vinci", "Leonardo"]}}
    assert row["extra_info"]["split"] == "test" and row["extra_info"]["index"] == 0
    back = read_searchr1_parquet(path)
    assert [e.to_json() for e in back] == [e.to_json() for e in _examples()]


def test_our_parquet_reads_like_search_r1_loader(tmp_path):
    """Search-R1's RLHFDataset: pandas.read_parquet, pop `prompt`, chat template or chat[0]['content']."""
    pd = pytest.importorskip("pandas")
    path = tmp_path / "train.parquet"
    write_searchr1_parquet(path, _examples(), split="train")
    df = pd.read_parquet(path)
    row = df.iloc[1].to_dict()
    chat = row.pop("prompt")
    assert chat[0]["role"] == "user" and chat[0]["content"] == make_prompt_text("Wie heißt die Hauptstadt?")
    assert list(row["reward_model"]["ground_truth"]["target"]) == ["Berlin"]
    assert row["data_source"] == "nq" and row["extra_info"]["index"] == 1


def test_search_r1_written_parquet_is_readable(tmp_path):
    """A file shaped as Search-R1's data_process/nq_search.py writes it (schema inferred, no metadata field)."""
    rows = [{
        "id": f"train_{i}", "question": q, "golden_answers": ans, "data_source": "nq",
        "prompt": [{"role": "user", "content": make_prompt_text(q)}], "ability": "fact-reasoning",
        "reward_model": {"style": "rule", "ground_truth": {"target": ans}},
        "extra_info": {"split": "train", "index": i},
    } for i, (q, ans) in enumerate([("q one?", ["a"]), ("q two?", ["b", "c"])])]
    path = tmp_path / "sr1.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    got = read_searchr1_parquet(path)
    assert [(e.id, e.question, e.golden_answers, e.dataset, e.split) for e in got] == [
        ("train_0", "q one?", ["a"], "nq", "train"), ("train_1", "q two?", ["b", "c"], "nq", "train")]
    # golden_answers missing -> taken from reward_model.ground_truth.target
    for r in rows:
        r.pop("golden_answers")
    pq.write_table(pa.Table.from_pylist(rows), path)
    assert read_searchr1_parquet(path)[1].golden_answers == ["b", "c"]


def test_bad_parquet(tmp_path):
    path = _write(tmp_path / "x.parquet", b"not parquet")
    with pytest.raises(InputError, match="not a readable parquet"):
        read_searchr1_parquet(path)
    pq.write_table(pa.Table.from_pylist([{"id": "1", "question": "q", "golden_answers": []}]), path)
    with pytest.raises(InputError, match="row 0: field 'golden_answers' is an empty list"):
        read_searchr1_parquet(path)


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.jsonl"
    target.write_text("old\n")
    with pytest.raises(RuntimeError):
        with atomic_write(target) as f:
            f.write("half")
            raise RuntimeError("crash")
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["out.jsonl"]


def test_corpus_both_shapes(tmp_path):
    path = _write(tmp_path / "c.jsonl", '{"id": "0", "contents": "\\"Paris\\"\\nParis is a city."}\n'
                                        '{"id": 1, "title": "Lyon", "text": "Lyon is a city."}\n')
    docs = read_corpus(path)
    assert docs[0].contents == '"Paris"\nParis is a city.'
    assert docs[1].id == "1" and docs[1].contents == '"Lyon"\nLyon is a city.'


@pytest.mark.parametrize("line,message", [
    ('{"contents": "x"}', "missing field 'id'"),
    ('{"id": "9"}', "expected field 'contents'"),
    ('{"id": "9", "contents": 3}', "'contents' must be a string"),
    ('{"id": "0", "contents": "dup"}', "duplicate id '0'"),
])
def test_corpus_malformed(tmp_path, line, message):
    path = _write(tmp_path / "c.jsonl", '{"id": "0", "contents": "a"}\n' + line + "\n")
    with pytest.raises(InputError, match=f"c.jsonl:2: .*{message}"):
        list(iter_corpus(path))


BENCHMARK_FILES = sorted(SHARED_BENCHMARKS.glob("*/*.jsonl"))


@pytest.mark.skipif(not BENCHMARK_FILES, reason="../shared/data/benchmarks not present")
@pytest.mark.parametrize("path", BENCHMARK_FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_real_benchmarks_roundtrip_through_parquet(tmp_path, path):
    examples = read_qa_jsonl(path)
    assert examples and examples[0].dataset == path.parent.name
    pq_path = tmp_path / "x.parquet"
    save_qa(pq_path, examples)
    back = load_qa(pq_path)
    assert [e.to_json() for e in back] == [e.to_json() for e in examples]
    assert [e.dataset for e in back] == [e.dataset for e in examples]
    jl = tmp_path / "x.jsonl"
    save_qa(jl, back)
    original = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    assert [json.loads(line) for line in jl.read_text(encoding="utf-8").splitlines()] == original


def test_atomic_outputs_get_normal_permissions(tmp_path):
    import os

    from searche1.fileio import atomic_dir

    mask = os.umask(0o022)
    try:
        with atomic_write(tmp_path / "f.txt") as f:
            f.write("x")
        with atomic_dir(tmp_path / "d") as d:
            (d / "inner.txt").write_text("y")
    finally:
        os.umask(mask)
    assert (tmp_path / "f.txt").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "d").stat().st_mode & 0o777 == 0o755


def test_parquet_duplicate_ids_and_bad_metadata(tmp_path):
    path = tmp_path / "x: y.parquet"  # a path with ": " in it must not garble the message
    row = {"id": "1", "question": "q", "golden_answers": ["a"], "extra_info": {"split": "", "index": 0,
                                                                              "metadata": None}}
    pq.write_table(pa.Table.from_pylist([row, dict(row)]), path)
    with pytest.raises(InputError) as e:
        read_searchr1_parquet(path)
    assert str(e.value) == f"{path}: row 1: duplicate id '1' in 'x: y' (first on row 0)"
    bad = dict(row, extra_info={"split": "", "index": 0, "metadata": "{not json"})
    pq.write_table(pa.Table.from_pylist([bad]), path)
    with pytest.raises(InputError, match=r"row 0: extra_info.metadata is not JSON text"):
        read_searchr1_parquet(path)


def test_empty_metadata_roundtrips(tmp_path):
    ex = [QAExample("1", "q", ["a"], "nq", metadata={})]
    write_searchr1_parquet(tmp_path / "m.parquet", ex)
    assert read_searchr1_parquet(tmp_path / "m.parquet")[0].metadata == {}


def test_lone_surrogate_names_line(tmp_path):
    path = _write(tmp_path / "s.jsonl", GOOD + '{"id": "2", "question": "bad \\ud800", "golden_answers": ["x"]}\n'
                                              '{"id": "3", "question": "ok \\ud83d\\ude00", "golden_answers": ["x"]}\n')
    with pytest.raises(InputError, match=r"s.jsonl:2: holds a lone UTF-16 surrogate"):
        read_qa_jsonl(path)
    path = _write(tmp_path / "ok.jsonl", '{"id": "3", "question": "ok \\ud83d\\ude00", "golden_answers": ["x"]}\n')
    assert read_qa_jsonl(path)[0].question == "ok 😀"  # a proper surrogate pair is fine
