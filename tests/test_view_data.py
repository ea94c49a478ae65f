"""The viewer's read-only run API: the trajectory index (fast fields = parsed fields, filters = brute force),
turn-by-turn rendering (model text apart from inserted text, token KL aligned to sampled tokens), RunDir over a
real small run, the tables, the report, and the JSON API."""

import json

import numpy as np
import pytest

from searche1.fileio import InputError
from searche1.rollout.trajectory import Trajectory, Turn, save_trajectories


def _trajectories(n: int) -> list[Trajectory]:
    out = []
    for i in range(n):
        searches = i % 4
        turns = [Turn(2 * k, 2 * k + 1, "search", query=f"q\"{k}", observation=(2 * k + 1, 2 * k + 2))
                 for k in range(searches)]
        turns.append(Turn(2 * searches, 2 * searches + 1, "answer"))
        length = 2 * searches + 1
        out.append(Trajectory(f"{['nq', 'hotpotqa', 'toy-popqa'][i % 3]}/id-{i}", i % 5, [1], [7] * length,
                              [(j + 1) % 2 for j in range(length)], [0.0] * length, turns, answer=f"a{i}",
                              em=float(i % 7 == 0), reward=float(i % 7 == 0), golden_answers=[f"a{i}"],
                              prompt_text=f"p{i}"))
    return out


def test_index_fields_and_filters_equal_parsing_every_line(tmp_path):
    from searche1.view.trajindex import TrajectoryIndex

    trajs = _trajectories(200)
    path = tmp_path / "t.jsonl"
    save_trajectories(path, trajs)
    # a line written by another tool (compact JSON, other key order) and blank lines still open
    with open(path, "a") as f:
        row = trajs[3].to_json()
        f.write("\n" + json.dumps(dict(reversed(list(row.items()))), separators=(",", ":")) + "\n\n")
    trajs.append(trajs[3])
    ix = TrajectoryIndex(path)
    assert len(ix) == 201
    assert ix.group_ids == [t.group_id for t in trajs]
    assert ix.em.tolist() == [t.em for t in trajs] and ix.searches.tolist() == [t.n_searches for t in trajs]
    assert ix.benchmarks == ["hotpotqa", "nq", "toy-popqa"]
    for bench in (None, "nq", "missing"):
        for correct in (None, True, False):
            for searches in (None, 0, 3):
                expected = [i for i, t in enumerate(trajs) if (bench is None or t.group_id.startswith(bench + "/"))
                            and (correct is None or (t.em > 0) == correct)
                            and (searches is None or t.n_searches == searches)]
                assert ix.select(bench, correct, searches).tolist() == expected
    assert ix.trajectory(57).to_json() == trajs[57].to_json()
    assert ix.find("hotpotqa/id-7", 2) == 7
    with pytest.raises(KeyError, match="no trajectory nq/id-0#4"):
        ix.find("nq/id-0", 4)
    with pytest.raises(IndexError):
        ix.row(201)


def test_index_names_the_line_of_a_bad_trajectory(tmp_path):
    from searche1.view.trajindex import TrajectoryIndex

    path = tmp_path / "t.jsonl"
    save_trajectories(path, _trajectories(3))
    with open(path, "a") as f:
        f.write('{"group_id": "x", "sample_index": 0, "oops": 1}\n')
    with pytest.raises(InputError, match=r"t.jsonl:4: not a trajectory"):
        TrajectoryIndex(path)
    path.write_text(path.read_text().replace('"oops": 1}', '"oops": 1'))  # not JSON
    with pytest.raises(InputError, match=r"t.jsonl:4: "):
        TrajectoryIndex(path)


def test_render_splits_model_text_from_inserted_text_and_aligns_token_kl():
    from searche1.models import load_model
    from searche1.protocol import information_block, make_prompt
    from searche1.view.render import question_of, render_trajectory, split_documents, token_pieces

    _, tok = load_model("toy-base")
    enc = lambda s: tok(s, add_special_tokens=False).input_ids  # noqa: E731
    turn1, turn2 = "<think> find it </think>\n<search> Zorvak born </search>", "<answer> Melin </answer>"
    info = information_block([{"contents": '"Zorvak"\nZorvak was born in Melin.'},
                              {"contents": '"Melin"\nMelin is a city.'}])
    a, b, c = enc(turn1), enc(info), enc(turn2)
    t = Trajectory("nq/1", 0, enc(make_prompt("Where was Zorvak born")), a + b + c,
                   [1] * len(a) + [0] * len(b) + [1] * len(c), [0.0] * (len(a) + len(b) + len(c)),
                   [Turn(0, len(a), "search", "Zorvak born", ["0", "1"], (len(a), len(a) + len(b))),
                    Turn(len(a) + len(b), len(a) + len(b) + len(c), "answer")],
                   answer="Melin", em=1.0, golden_answers=["Melin"], prompt_text=make_prompt("Where was Zorvak born"))
    kl = [float(i) for i in range(len(a) + len(c))]
    shown = render_trajectory(t, tok, kl)
    assert question_of(t.prompt_text) == "Where was Zorvak born?"
    assert question_of(make_prompt("Where was Zorvak born", tok)) == "Where was Zorvak born?"  # toy-base's template
    assert question_of("no protocol prompt") is None
    assert [x["text"] for x in shown["turns"]] == [tok.decode(a), tok.decode(c)]
    assert shown["turns"][0]["observation"] == tok.decode(b) and shown["turns"][1]["observation"] is None
    assert shown["turns"][0]["documents"] == ['Doc 1(Title: "Zorvak") Zorvak was born in Melin.',
                                              'Doc 2(Title: "Melin") Melin is a city.']
    # the student's KL values skip the inserted tokens: turn 2 starts at the (len(a))-th sampled token
    assert [v for _, v in shown["turns"][0]["tokens"]] == kl[:len(a)]
    assert [v for _, v in shown["turns"][1]["tokens"]] == kl[len(a):]
    assert "".join(p for p, _ in shown["turns"][1]["tokens"]) == tok.decode(c)
    assert "".join(token_pieces(tok, a)) == tok.decode(a)
    # characters spread over several byte-level tokens are shown once, on the token that completes them
    accented = enc("<think> Zürich 日本 café </think>")
    assert "".join(token_pieces(tok, accented)) == tok.decode(accented) == "<think> Zürich 日本 café </think>"
    assert shown["searches"] == 1 and shown["generated_tokens"] == len(a) + len(c)
    with pytest.raises(ValueError, match="token KL values"):
        render_trajectory(t, tok, kl[:-1])
    assert split_documents("no documents here") == ["no documents here"]


def test_rundir_over_a_real_run_and_the_report_shows_the_same_numbers(small_evolve_run, tmp_path):
    from searche1.view import tables
    from searche1.view.report import write_run_report
    from searche1.view.rundir import RunDir

    run = RunDir(small_evolve_run)
    assert [p.key for p in run.phases] == ["00-base", "01-grpo-r1", "02-ofsd-r1"]
    assert [p.kind for p in run.phases] == ["base", "grpo", "ofsd"] and all(p.finished for p in run.phases)
    summary = json.loads((small_evolve_run / "summary.json").read_text())["phases"]
    rows = run.overview()["phases"]
    assert [r["average_em"] for r in rows] == [s["average_em"] for s in summary]
    assert [r["em"] for r in rows] == [s["em"] for s in summary]
    assert rows[1]["steps"] == 1 and rows[2]["pairs"] == len(run.pairs("02-ofsd-r1"))
    assert [(s["phase"], s["source"]) for s in run.sources()] == [
        ("00-base", "eval"), ("01-grpo-r1", "eval"), ("02-ofsd-r1", "eval"), ("02-ofsd-r1", "pool")]
    pool = run.index("02-ofsd-r1", "pool")
    assert len(pool) == 40 * 4 and run.index("02-ofsd-r1", "pool") is pool  # built once
    for pair in run.pairs("02-ofsd-r1"):
        ref = pool.trajectory(pool.find(pair["group_id"], pair["reference"]))
        student = pool.trajectory(pool.find(pair["group_id"], pair["student"]))
        assert ref.reward > 0 and len(pair["student_token_kl"]) == student.n_generated
    assert run.tokenizer().decode(pool.trajectory(0).response_ids)  # the run's own tokenizer was found

    report = write_run_report(small_evolve_run, tmp_path / "report").read_text()
    for table in tables.run_tables(run):
        assert tables.markdown(table) in report
    assert "| grpo-r1 |" in report and "OFSD pairs" in report
    for name in ("em_by_phase", "cost_by_phase", "grpo_curves", "ofsd_curves"):
        assert (tmp_path / "report" / f"{name}.png").read_bytes()[:4] == b"\x89PNG" and f"({name}.png)" in report
    # a lone phase directory is a run of one phase; anything else is refused clearly
    assert [p.kind for p in RunDir(small_evolve_run / "phases" / "02-ofsd-r1").phases] == ["ofsd"]
    with pytest.raises(InputError, match="not a searche1 run"):
        RunDir(tmp_path / "report")


def test_viewer_api(small_evolve_run):
    from fastapi.testclient import TestClient

    from searche1.view.app import make_app
    from searche1.view.rundir import RunDir
    from searche1.view.tables import run_tables

    client = TestClient(make_app(small_evolve_run))
    info = client.get("/api/run").json()
    assert info["tables"] == run_tables(RunDir(small_evolve_run))  # the report's very cells
    assert [p["sources"] for p in info["phases"]] == [["eval"], ["eval"], ["eval", "pool"]]

    every = client.get("/api/trajectories", params={"source": "pool", "per_page": 7}).json()
    assert every["total"] == 160 and every["pages"] == 23 and len(every["rows"]) == 7
    wrong = client.get("/api/trajectories", params={"source": "pool", "correct": "false", "per_page": 200}).json()
    right = client.get("/api/trajectories", params={"source": "pool", "correct": "true", "per_page": 200}).json()
    assert wrong["total"] + right["total"] == 160 and all(r["em"] == 0 for r in wrong["rows"])
    assert all(r["em"] > 0 for r in right["rows"]) and right["total"] > 0
    one = client.get("/api/trajectories", params={"phase": "00-base", "searches": 1, "benchmark": "toy-nq"}).json()
    assert all(r["searches"] == 1 and r["benchmark"] == "toy-nq" and r["phase"] == "00-base" for r in one["rows"])
    last = client.get("/api/trajectories", params={"phase": "00-base", "page": 99}).json()
    assert last["page"] == last["pages"]  # clamped, not an error

    row = right["rows"][0]
    shown = client.get("/api/trajectory", params={"phase": row["phase"], "source": "pool",
                                                  "index": row["index"]}).json()
    assert shown["em"] == 1.0 and shown["answer"] == row["answer"] and shown["turns"]
    pairs = client.get("/api/pairs", params={"phase": "02-ofsd-r1"}).json()
    assert pairs["total"] >= 1 and all(r["reference_em"] == 1.0 for r in pairs["rows"])
    pair = client.get("/api/pair", params={"phase": "02-ofsd-r1", "index": 0}).json()
    kl = [v for turn in pair["student"]["turns"] for _, v in turn["tokens"]]
    assert pair["has_token_kl"] and np.mean(kl) == pytest.approx(pair["student_kl"], abs=1e-4)
    assert "=== worked solution ===" in pair["privileged_prompt"]

    assert client.get("/api/trajectory", params={"phase": "nope", "index": 0}).status_code == 404
    assert client.get("/api/pair", params={"phase": "02-ofsd-r1", "index": 999}).status_code == 404
    assert client.get("/api/figure/nope.svg").status_code == 404
    assert client.get("/api/figure/em_by_phase.svg").content.lstrip().startswith(b"<?xml")
    assert client.get("/static/..%2Fapp.py").status_code == 404 and client.get("/").status_code == 200


def test_viewer_api_on_a_run_being_written_and_an_older_run(small_evolve_run, tmp_path):
    """A metrics line still being written, a phase without its record, pairs.jsonl from before the viewer (no
    per-token KL), a trajectory index past the end, and a request naming another host."""
    import shutil

    from fastapi.testclient import TestClient

    from searche1.view.app import LOOPBACK_HOSTS, make_app

    run = tmp_path / "run"
    shutil.copytree(small_evolve_run, run, ignore=shutil.ignore_patterns("*.safetensors", "optimizer.pt"))
    ofsd = run / "phases" / "02-ofsd-r1"
    for name in ("phase.json", "eval.json", "eval.trajectories.jsonl"):  # not evaluated yet
        (ofsd / name).unlink()
    with open(ofsd / "metrics.jsonl", "a") as f:
        f.write('{"step": 9, "ofsd/lo')  # half a record: a phase still writing
    old = [{k: v for k, v in json.loads(line).items() if k in ("group_id", "reference", "student", "student_kl")}
           for line in (ofsd / "pairs.jsonl").read_text().splitlines()]
    (ofsd / "pairs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in old))

    client = TestClient(make_app(run))
    info = client.get("/api/run").json()
    assert [p["finished"] for p in info["phases"]] == [True, True, False]
    em_rows = info["tables"][0]["rows"]
    assert em_rows[2][0] == "ofsd-r1" and set(em_rows[2][1:]) == {"-"}  # not evaluated yet
    assert client.get("/api/figure/ofsd_curves.svg").status_code == 200
    pair = client.get("/api/pair", params={"phase": "02-ofsd-r1", "index": 0}).json()
    assert not pair["has_token_kl"] and pair["privileged_prompt"] is None
    assert all("tokens" not in t for t in pair["student"]["turns"])
    assert client.get("/api/trajectory", params={"phase": "00-base", "index": 10**6}).status_code == 404

    guarded = TestClient(make_app(run, list(LOOPBACK_HOSTS)), base_url="http://127.0.0.1:8765")
    assert guarded.get("/api/run").status_code == 200
    assert guarded.get("/api/run", headers={"host": "attacker.example"}).status_code == 400

    (ofsd / "metrics.jsonl").write_text('{"step": 1}\nnot json\n{"step": 2}\n')  # a broken line mid-file
    from searche1.plots import read_metrics

    with pytest.raises(InputError, match=r"metrics.jsonl:2: not a JSON record"):
        read_metrics(ofsd / "metrics.jsonl", "ofsd")


def test_render_shows_text_that_no_turn_claims():
    from searche1.models import load_model
    from searche1.view.render import render_trajectory

    _, tok = load_model("toy-base")
    ids = tok("<answer> Melin </answer> tail", add_special_tokens=False).input_ids
    t = Trajectory("nq/1", 0, [], ids, [1] * len(ids), [0.0] * len(ids), [Turn(0, 3, "answer")])
    shown = render_trajectory(t, tok, [0.5] * len(ids))
    assert shown["unclaimed_text"] == [{"sampled": True, "text": tok.decode(ids[3:])}]
    assert [v for _, v in shown["turns"][0]["tokens"]] == [0.5, 0.5, 0.5]
