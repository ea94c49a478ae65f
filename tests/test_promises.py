"""What docs/data.md and docs/reliability.md promise, tried as a new user would. Bad input ends with one
message naming the file and line, the flag or the value, exit code 2, no traceback and nothing written; no wrong
result and no wait is silent."""

import json
import socket
import time
from pathlib import Path

import pytest

from searche1.cli import main

QA = [{"id": "1", "question": "where was Zorvak born", "golden_answers": ["Melin"]},
      {"id": "2", "question": "who founded Kelmar", "golden_answers": ["Zorvak"]}]
DOCS = [{"id": "0", "contents": '"Zorvak"\nZorvak is a painter born in Melin.'},
        {"id": "1", "contents": '"Kelmar"\nKelmar was founded by Zorvak.'}]
SMALL = ["rollout.max_turns=1", "rollout.max_response_length=16"]  # a toy-base evaluation in seconds


def _jsonl(path, rows, extra_lines=()):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + "".join(extra_lines))
    return path


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A two-document index, a two-question QA file, and a toy-base evaluation of it written as R/e.json."""
    d = tmp_path_factory.mktemp("promises")
    _jsonl(d / "qa.jsonl", QA)
    assert main(["--threads", "1", "index", "--corpus", str(_jsonl(d / "c.jsonl", DOCS)), "--out",
                 str(d / "idx")]) == 0
    assert main(["--threads", "1", "eval", "--model", "toy-base", "--data", str(d / "qa.jsonl"), "--index",
                 str(d / "idx"), "--out", str(d / "R" / "e.json"), *SMALL]) == 0
    return d


def _refused(capsys, args, *fragments, out=None):
    """Exit code 2 with every fragment in the message, no traceback, and `out` not written."""
    assert main(["--threads", "1", *args]) == 2
    captured = capsys.readouterr()
    for fragment in fragments:
        assert fragment in captured.err, captured.err
    assert "Traceback" not in captured.err + captured.out
    if out is not None:
        assert not out.exists(), f"{out} was written"
    return captured


def _eval(world, out, *extra, data=None, model="toy-base"):
    return ["eval", "--model", model, "--data", str(data or world / "qa.jsonl"), "--index", str(world / "idx"),
            "--out", str(out), *extra]


# 1. --limit 0 evaluated everything, --limit -1 all but the last question
@pytest.mark.parametrize("limit", ["0", "-1"])
def test_eval_refuses_a_limit_below_1(world, tmp_path, capsys, limit):
    out = tmp_path / "r.json"
    _refused(capsys, _eval(world, out, "--limit", limit), f"--limit must be >= 1, got {limit}", out=out)


# 2. the viewer on an eval report: 500 on a trajectory (no tokenizer from the report's model), and a report
# written as e.json was "not a searche1 run"
def test_the_viewer_opens_any_eval_report_and_its_trajectories(world, tmp_path):
    import shutil

    from fastapi.testclient import TestClient

    from searche1.view.app import make_app

    as_eval_json = tmp_path / "R"
    as_eval_json.mkdir()
    shutil.copy(world / "R" / "e.json", as_eval_json / "eval.json")
    shutil.copy(world / "R" / "e.trajectories.jsonl", as_eval_json / "eval.trajectories.jsonl")
    for run, key in ((as_eval_json, "R"), (world / "R", "e"), (world / "R" / "e.json", "e")):
        client = TestClient(make_app(run))
        info = client.get("/api/run").json()
        assert [(p["key"], p["sources"]) for p in info["phases"]] == [(key, ["eval"])], run
        assert client.get("/api/trajectories", params={"phase": "all"}).json()["total"] == 2
        r = client.get("/api/trajectory", params={"phase": key, "source": "eval", "index": 0})
        assert r.status_code == 200, (run, r.text)
        assert r.json()["turns"], run


# 4. a QA or corpus line nested 990 / 5000 levels deep: RecursionError traceback
@pytest.mark.parametrize("depth", [990, 5000])
def test_deeply_nested_lines_are_refused_with_the_line(world, tmp_path, capsys, depth):
    nested = "[" * depth + "]" * depth
    qa = _jsonl(tmp_path / "qa.jsonl", QA, ['{"id": "3", "question": "q", "golden_answers": ["a"], '
                                            f'"metadata": {{"x": {nested}}}}}\n'])
    out = tmp_path / "r.json"
    _refused(capsys, _eval(world, out, data=qa), "qa.jsonl:3", "nested more than 100 levels", out=out)
    corpus = _jsonl(tmp_path / "c.jsonl", DOCS, [f'{{"id": "2", "contents": "x", "extra": {nested}}}\n'])
    _refused(capsys, ["index", "--corpus", str(corpus), "--out", str(tmp_path / "idx")], "c.jsonl:3", "nested",
             out=tmp_path / "idx")


@pytest.fixture
def unwritable(tmp_path):
    """A directory no file can be created in, even by root (/sys), else a read-only one for other users."""
    import os
    import tempfile

    for d in (Path("/sys"), tmp_path / "ro"):
        if d.parent == tmp_path:
            d.mkdir()
            os.chmod(d, 0o500)
        try:
            with tempfile.TemporaryFile(dir=d):
                pass
        except OSError:
            return d
    pytest.skip("no unwritable directory here")


# 5. OSError on output: a traceback, and eval found out only after the whole run
def test_an_unwritable_output_is_refused_before_the_work(world, capsys, unwritable):
    start = time.monotonic()
    _refused(capsys, _eval(world, unwritable / "r.json"), str(unwritable), "cannot be written",
             out=unwritable / "r.json")
    assert time.monotonic() - start < 2  # before the model loads
    _refused(capsys, ["index", "--corpus", str(world / "c.jsonl"), "--out", str(unwritable / "idx")],
             str(unwritable), out=unwritable / "idx")


def test_a_full_disk_leaves_both_eval_files_or_neither(tmp_path, monkeypatch):
    import errno

    from searche1 import eval as ev

    report = tmp_path / "e.json"
    trajectories = tmp_path / "e.trajectories.jsonl"

    def full(f, rows):
        f.write("{}\n")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ev, "write_jsonl_lines", full)
    with pytest.raises(OSError, match="No space"):
        ev.write_eval_report(report, {"benchmarks": {}}, [])
    assert not report.exists() and not trajectories.exists()
    assert list(tmp_path.iterdir()) == []  # no temporary file left either

    report.write_text("old\n")  # an earlier evaluation stays whole
    trajectories.write_text("old\n")
    with pytest.raises(OSError, match="No space"):
        ev.write_eval_report(report, {"benchmarks": {}}, [])
    assert report.read_text() == trajectories.read_text() == "old\n"


def test_both_eval_files_are_put_back_when_the_second_rename_fails(tmp_path, monkeypatch):
    import os

    from searche1 import fileio

    report, trajectories = tmp_path / "e.json", tmp_path / "e.trajectories.jsonl"
    report.write_text("old report\n")
    real_replace, calls = os.replace, []

    def failing_replace(src, dst):
        calls.append(dst)
        if str(dst) == str(trajectories) and ".tmp" in str(src):
            raise OSError(28, "No space left on device")
        return real_replace(src, dst)

    monkeypatch.setattr(fileio.os, "replace", failing_replace)
    with pytest.raises(OSError):
        with fileio.atomic_files(report, trajectories) as (f, ft):
            f.write("new report\n")
            ft.write("new trajectories\n")
    assert report.read_text() == "old report\n" and not trajectories.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e.json"]


# 6. --model /nonexistent, or a hub id with no network: a transformers traceback (after 50 s for a hub id)
def test_a_model_that_is_not_here_is_refused_at_once(world, tmp_path, capsys, monkeypatch):
    out = tmp_path / "r.json"
    start = time.monotonic()
    _refused(capsys, _eval(world, out, model="/nonexistent"), "model /nonexistent: no such model folder", out=out)
    _refused(capsys, _eval(world, out, model="nobody/no-such-model"), "nobody/no-such-model",
             "not in the local HF cache", out=out)  # the tests run with HF_HUB_OFFLINE=1
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # a hub that cannot be reached
    _refused(capsys, _eval(world, out, model="nobody/no-such-model"), "nobody/no-such-model",
             "cannot be reached", out=out)
    (tmp_path / "folder").mkdir()
    _refused(capsys, _eval(world, out, model=str(tmp_path / "folder")), "not a model folder", out=out)
    assert time.monotonic() - start < 10


# 7. golden_answers [""] was accepted, and `<answer> </answer>` then scored EM 1
def test_an_empty_golden_answer_is_refused_with_its_line(world, tmp_path, capsys):
    qa = _jsonl(tmp_path / "qa.jsonl", QA, ['{"id": "3", "question": "q", "golden_answers": ["x", " "]}\n'])
    out = tmp_path / "r.json"
    _refused(capsys, _eval(world, out, data=qa), "qa.jsonl:3", "empty answer", out=out)
    _refused(capsys, ["convert", str(qa), str(tmp_path / "x.parquet")], "qa.jsonl:3", "empty answer",
             out=tmp_path / "x.parquet")


def test_an_empty_prediction_is_never_right():
    from searche1.reward import score

    for golden in ([""], ["the"], ["!!!"], ["a", "an"]):
        s = score("<answer> </answer>", golden)
        assert (s.em, s.sub_em, s.f1) == (0.0, 0.0, 0.0), golden
        assert score("<answer> The </answer>", golden).em == 0.0
        assert score("<answer> Melin </answer>", golden).sub_em == 0.0, golden


# 9. convert wrote an empty parquet; a parquet's plain-string golden_answers was wrapped where jsonl refuses it
def test_convert_and_eval_share_one_rule_for_questions(world, tmp_path, capsys):
    import pyarrow as pa
    import pyarrow.parquet as pq

    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    _refused(capsys, ["convert", str(empty), str(tmp_path / "x.parquet")], "empty.jsonl: holds no questions",
             out=tmp_path / "x.parquet")
    pq.write_table(pa.Table.from_pylist([{"id": "1", "question": "q", "golden_answers": "Melin"}]),
                   tmp_path / "s.parquet")
    _refused(capsys, ["convert", str(tmp_path / "s.parquet"), str(tmp_path / "x.jsonl")], "s.parquet: row 0",
             "'golden_answers' must be a list of strings, got str", out=tmp_path / "x.jsonl")
    out = tmp_path / "r.json"
    _refused(capsys, _eval(world, out, data=tmp_path / "s.parquet"), "s.parquet: row 0", out=out)


# 10. the retriever answered any Host header: a page could read the corpus through DNS rebinding
def test_the_retriever_checks_the_host_header_on_a_loopback_bind(tiny_corpus, monkeypatch):
    import uvicorn
    from fastapi.testclient import TestClient

    from searche1.retrieval.bm25 import BM25Retriever
    from searche1.retrieval.server import serve

    apps = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: apps.append((app, kw)))
    retriever = BM25Retriever.build(tiny_corpus, show_progress=False)
    serve(retriever, "127.0.0.1", 8000)
    serve(retriever, "0.0.0.0", 8000)
    body = {"queries": ["Zorvak"]}
    with TestClient(apps[0][0], base_url="http://127.0.0.1:8000") as loopback:
        assert loopback.post("/retrieve", json=body).status_code == 200
        assert loopback.post("/retrieve", json=body, headers={"host": "localhost:8000"}).status_code == 200
        assert loopback.post("/retrieve", json=body, headers={"host": "[::1]:8000"}).status_code == 200
        r = loopback.post("/retrieve", json=body, headers={"host": "attacker.example:8000"})
        assert r.status_code == 400 and "attacker.example" in r.json()["detail"]
        assert loopback.get("/health", headers={"host": "attacker.example"}).status_code == 400
    with TestClient(apps[1][0], base_url="http://192.0.2.1:8000") as public:  # bound for other machines
        assert public.post("/retrieve", json=body, headers={"host": "search.example"}).status_code == 200


# silent failures: on_failure=skip with the retriever down for the whole run exited 0 with a normal table
def test_eval_with_every_search_failed_is_loud_and_writes_nothing(world, tmp_path, capsys):
    out = tmp_path / "r.json"
    args = _eval(world, out, "retrieval.on_failure=skip", "retrieval.retries=0")  # toy-base searches first
    args[args.index("--index") + 1] = "http://127.0.0.1:9"
    _refused(capsys, args, "retrieval failed for every sample", "retrieval.on_failure=skip", out=out)
    assert not (tmp_path / "r.trajectories.jsonl").exists()


@pytest.fixture
def silent_server():
    """Accepts connections and never answers."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(8)
    yield f"http://127.0.0.1:{s.getsockname()[1]}"
    s.close()


# silent waits: a server that accepts and never answers meant minutes without output, then "unreachable"
def test_each_retry_is_said_and_a_silent_server_times_out(silent_server):
    from searche1.retrieval.client import HttpClient, RetrieverUnavailable

    lines = []
    client = HttpClient(silent_server, timeout=0.2, retries=2, backoff=0.01, warn=lines.append)
    with pytest.raises(RetrieverUnavailable, match="timed out after 3 attempts.*retrieval.timeout=0.2 s") as e:
        client.retrieve(["q"])
    assert "unreachable" not in str(e.value)
    assert len(lines) == 2
    assert lines[0].startswith("retrieval: timeout after 0.2 s, retry 1/2 in ") and lines[0].endswith(" s")
    assert lines[1].startswith("retrieval: timeout after 0.2 s, retry 2/2 in ")
    down = HttpClient("http://127.0.0.1:9", retries=1, backoff=0.01, warn=lines.append)
    with pytest.raises(RetrieverUnavailable, match="unreachable after 2 attempts"):
        down.retrieve(["q"])
    assert lines[2].startswith("retrieval: ConnectError")


def test_search_says_what_it_is_doing_before_the_first_search(world, capsys):
    assert main(["--threads", "1", "search", "--index", str(world / "idx"), "Zorvak"]) == 0
    assert "compiling BM25 search" in capsys.readouterr().err


# serve on a busy port printed "serving ..." and then exited 3
def test_serve_and_view_on_a_busy_port_exit_2_before_serving(world, capsys):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = str(busy.getsockname()[1])
        captured = _refused(capsys, ["serve", "--index", str(world / "idx"), "--port", port],
                            f"cannot listen on 127.0.0.1:{port}", "--port")
        assert "serving" not in captured.out
        captured = _refused(capsys, ["view", str(world / "R"), "--port", port], f"127.0.0.1:{port}")
        assert "viewing" not in captured.out


# consistency: the server's messages
@pytest.mark.parametrize("body,headers,fragment", [
    (b'{"queries": ["x"], "topk": }', {"content-type": "application/json"},
     "body: invalid JSON at character 27 (Expecting value)"),
    (b'{"queries": ["x"]}', {"content-type": "application/x-www-form-urlencoded"},
     "send JSON with the header Content-Type: application/json (got application/x-www-form-urlencoded)"),
    (b"[" * 5000 + b"]" * 5000, {"content-type": "application/json"}, "nested too deeply"),
    (b'{"queries": ["\xff"]}', {"content-type": "application/json"}, "not valid UTF-8"),
])
def test_the_server_says_what_is_wrong_with_a_body_as_a_422(tiny_corpus, body, headers, fragment):
    from fastapi.testclient import TestClient

    from searche1.retrieval.bm25 import BM25Retriever
    from searche1.retrieval.server import make_app

    with TestClient(make_app(BM25Retriever.build(tiny_corpus, show_progress=False))) as client:
        r = client.post("/retrieve", content=body, headers=headers)
    assert r.status_code == 422 and fragment in r.json()["detail"], r.text


def test_a_malformed_answer_names_the_retriever_once():
    from searche1.retrieval.client import HttpClient, RetrieverUnavailable

    class Answer:
        status_code, text = 200, "nope"

        def json(self):
            raise ValueError("not JSON")

    client = HttpClient("http://127.0.0.1:9", retries=0, warn=lambda line: None)
    client._http.post = lambda url, json: Answer()
    with pytest.raises(RetrieverUnavailable) as e:
        client.retrieve(["q"])
    assert str(e.value).count("retriever at") == 1 and "not a /retrieve response" in str(e.value)


def test_search_suggests_http_for_a_host_and_port(capsys):
    _refused(capsys, ["search", "--index", "127.0.0.1:8000", "x"], "pass http://127.0.0.1:8000")
    _refused(capsys, ["search", "--index", "localhost:8000", "x"], "pass http://localhost:8000")


def test_search_json_has_the_scores(world, capsys):
    from searche1.retrieval.index import open_index

    assert main(["--threads", "1", "search", "--index", str(world / "idx"), "--json", "Kelmar founded"]) == 0
    line = json.loads(capsys.readouterr().out)
    hits = open_index(world / "idx").search(["Kelmar founded"], 3)[0]
    assert [d["id"] for d in line["documents"]] == [h.doc.id for h in hits]
    assert line["scores"] == pytest.approx([h.score for h in hits]) and line["scores"][0] > 0


def test_an_eval_report_names_the_index_it_used_in_its_config(world):
    report = json.loads((world / "R" / "e.json").read_text())
    assert report["index"] == report["config"]["retrieval"]["index"] == str(world / "idx")


def test_an_index_of_another_format_version_is_refused(world, tmp_path, capsys):
    import shutil

    idx = tmp_path / "idx"
    shutil.copytree(world / "idx", idx)
    meta = json.loads((idx / "meta.json").read_text())
    (idx / "meta.json").write_text(json.dumps({**meta, "format_version": 2}))
    _refused(capsys, ["search", "--index", str(idx), "x"], "meta.json", "format_version=2")
    del meta["format_version"]
    (idx / "meta.json").write_text(json.dumps(meta))
    _refused(capsys, ["serve", "--index", str(idx), "--port", "0"], "format_version=None")


def test_convert_sets_search_r1_split_and_data_source(world, tmp_path, capsys):
    from searche1.data.qa import read_searchr1_parquet

    out = tmp_path / "x.parquet"
    assert main(["convert", str(world / "qa.jsonl"), str(out), "--split", "test", "--data-source", "nq"]) == 0
    examples = read_searchr1_parquet(out)
    assert {(ex.split, ex.dataset, ex.group_id) for ex in examples} == {("test", "nq", "nq/1"), ("test", "nq", "nq/2")}
    _refused(capsys, ["convert", str(world / "qa.jsonl"), str(tmp_path / "x.jsonl"), "--split", "test"],
             "--split and --data-source", out=tmp_path / "x.jsonl")


def test_every_option_has_a_help_text():
    import argparse

    from searche1.cli import build_parser

    def parsers(p, name="searche1"):
        yield name, p
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub_name, sub in action.choices.items():
                    yield from parsers(sub, f"{name} {sub_name}")

    missing = [f"{name} {'/'.join(a.option_strings) or a.dest}" for name, p in parsers(build_parser())
               for a in p._actions if not isinstance(a, (argparse._HelpAction, argparse._SubParsersAction))
               and not a.help]
    assert missing == [], missing


@pytest.mark.parametrize("args,fragment", [
    (["serve", "--index", "IDX", "--workers", "0"], "--workers must be >= 1, got 0"),
    (["serve", "--index", "IDX", "--topk", "101"], "--topk must be in 1..100, got 101"),
    (["serve", "--index", "IDX", "--port", "70000"], "--port must be in 0..65535, got 70000"),
    (["eval", "--model", "toy-base", "--data", "D", "--index", "I", "--out", "o.json", "--batch-size", "0"],
     "--batch-size must be >= 1, got 0"),
    (["eval", "--model", "toy-base", "--data", "D", "--index", "I", "--out", "o.json", "--max-failed-share", "2"],
     "--max-failed-share must be in [0, 1], got 2"),
])
def test_combined_checks_name_the_value_that_failed(capsys, args, fragment):
    _refused(capsys, args, fragment)


def test_retry_lines_reach_stderr_through_the_cli(silent_server, capsys):
    _refused(capsys, ["search", "--index", silent_server, "-o", "retrieval.timeout=0.2", "-o", "retrieval.retries=1",
                      "x"], "timed out after 2 attempts", "retrieval: timeout after 0.2 s, retry 1/1 in")
