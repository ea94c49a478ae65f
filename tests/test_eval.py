"""Evaluation: benchmark discovery, aggregation against hand-computed figures, the table, the CLI end to end."""

import json

import pytest

from searche1.config import RolloutConfig
from searche1.data.qa import QAExample, write_qa_jsonl
from searche1.eval import benchmark_figures, evaluate, find_qa_files, load_benchmarks, markdown_table
from searche1.fileio import InputError
from searche1.retrieval.bm25 import BM25Retriever
from searche1.retrieval.client import InProcessClient
from searche1.rollout.backends.base import TurnOutput


class AlwaysAnswers:
    """Test double: every row searches once, then answers `answer`."""

    def __init__(self, tokenizer, answer):
        self.tok, self.answer, self.turn = tokenizer, answer, {}

    def start(self, prompts):
        self.turn = {r: 0 for r in range(len(prompts))}

    def generate(self, rows, max_new_tokens, sampling, generator=None):
        out = {}
        for r in rows:
            text = "<search> Zorvak </search>" if self.turn[r] == 0 else f"<answer> {self.answer} </answer>"
            self.turn[r] += 1
            ids = self.tok.encode(text)
            out[r] = TurnOutput(ids, [0.0] * len(ids), "stop")
        return out

    def extend(self, ids_by_row):
        pass

    def release(self, rows):
        pass


def test_evaluate_aggregates(smollm2_tokenizer, tiny_corpus):
    benchmarks = {
        "a": [QAExample(str(i), f"q{i}", ["Melin"] if i % 2 == 0 else ["Dosta"], "a") for i in range(4)],
        "b": [QAExample("1", "q", ["Melin city"], "b")],
    }
    client = InProcessClient(BM25Retriever.build(tiny_corpus))
    report, trajs = evaluate(benchmarks, AlwaysAnswers(smollm2_tokenizer, "Melin"), smollm2_tokenizer, client,
                             RolloutConfig(), batch_size=3, show_progress=False)
    a, b = report["benchmarks"]["a"], report["benchmarks"]["b"]
    assert (a["em"], a["n"], a["mean_searches"], a["answer_rate"]) == (0.5, 4, 1.0, 1.0)
    assert (b["em"], b["sub_em"]) == (0.0, 0.0) and b["f1"] == pytest.approx(2 * 1 * 0.5 / 1.5)
    assert report["average_em"] == pytest.approx(0.25)
    assert len(trajs) == 5
    table = markdown_table(report)
    assert table.splitlines()[0] == "| a | b | average |" and "| 0.500 | 0.000 | 0.250 |" in table
    assert benchmark_figures([]) == {"em": 0.0, "n": 0}
    assert a["mixed_fraction"] == 0.0  # one sample per question: never mixed


def test_mixed_fraction_counts_questions_with_right_and_wrong_siblings():
    from searche1.rollout.trajectory import FinishReason, Trajectory

    def traj(group, em):
        return Trajectory(group_id=group, sample_index=0, prompt_ids=[1], response_ids=[2], response_mask=[1],
                          logprobs=[0.0], turns=[], finish_reason=FinishReason.ANSWER, answer="x", reward=em, em=em)

    # q1: 1,0,0 (mixed); q2: 1,1 (all right); q3: 0,0 (all wrong)
    trajs = [traj("q1", 1.0), traj("q1", 0.0), traj("q1", 0.0), traj("q2", 1.0), traj("q2", 1.0),
             traj("q3", 0.0), traj("q3", 0.0)]
    assert benchmark_figures(trajs)["mixed_fraction"] == pytest.approx(1 / 3)


def test_benchmark_discovery(tmp_path):
    (tmp_path / "test").mkdir()
    for name in ("toy-nq", "toy-popqa"):
        write_qa_jsonl(tmp_path / "test" / f"{name}.jsonl", [QAExample("1", "q", ["a"]), QAExample("2", "r", ["b"])])
    assert [f.name for f in find_qa_files([tmp_path])] == ["toy-nq.jsonl", "toy-popqa.jsonl"]
    b = load_benchmarks([tmp_path / "test"], limit=1)
    assert list(b) == ["toy-nq", "toy-popqa"] and len(b["toy-nq"]) == 1
    with pytest.raises(InputError, match="no such file"):
        find_qa_files([tmp_path / "nope"])
    with pytest.raises(InputError, match="a second file for benchmark 'toy-nq'"):
        load_benchmarks([tmp_path / "test" / "toy-nq.jsonl", tmp_path / "test" / "toy-nq.jsonl"])


def test_eval_cli_end_to_end(tmp_path, smollm2_tokenizer, capsys):
    """A tiny random model saved as an HF folder, evaluated on a toy world's seven test sets."""
    from conftest import tiny_qwen2
    from searche1.cli import main

    model_dir = tmp_path / "model"
    tiny_qwen2(len(smollm2_tokenizer)).save_pretrained(model_dir)
    smollm2_tokenizer.save_pretrained(model_dir)
    assert main(["world", "--seed", "1", "--out", str(tmp_path / "w"), "--no-check"]) == 0
    assert main(["index", "--corpus", str(tmp_path / "w" / "corpus.jsonl"), "--out", str(tmp_path / "idx")]) == 0
    capsys.readouterr()
    assert main(["eval", "--model", str(model_dir), "--data", str(tmp_path / "w" / "test"), "--index",
                 str(tmp_path / "idx"), "--out", str(tmp_path / "r.json"), "--limit", "2",
                 "rollout.max_response_length=8", "rollout.max_turns=1"]) == 0
    out = capsys.readouterr().out
    names = ["toy-nq", "toy-triviaqa", "toy-popqa", "toy-hotpotqa", "toy-2wikimultihopqa", "toy-musique",
             "toy-bamboogle"]  # the paper's column order
    assert out.splitlines()[0] == "| " + " | ".join(names) + " | average |"  # progress bars went to stderr
    report = json.loads((tmp_path / "r.json").read_text())
    assert list(report["benchmarks"]) == names and all(r["n"] == 2 for r in report["benchmarks"].values())
    assert 0.0 <= report["average_em"] <= 1.0 and report["samples"] == 1
    assert len((tmp_path / "r.trajectories.jsonl").read_text().splitlines()) == 14
