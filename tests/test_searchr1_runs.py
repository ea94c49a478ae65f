"""A Search-R1 user's files, unchanged, through `searche1 eval` and `searche1 train`: the merged test parquet (all
sources in one file, FlashRAG ids repeated per source), the train parquet, a retriever served from a faiss file +
corpus, and a Search-R1 checkpoint folder (HF format) as the starting model."""

import json
import os
import socket
import subprocess
import sys
import time

import httpx
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import tiny_qwen2
from searche1.cli import main
from searche1.protocol import make_prompt_text


def _searchr1_rows(examples, split):
    """Rows as Search-R1's scripts/data_process/nq_search.py writes them (FlashRAG columns kept, schema inferred)."""
    return [{"id": f"{split}_{i}", "question": ex.question, "golden_answers": list(ex.golden_answers),
             "data_source": source, "prompt": [{"role": "user", "content": make_prompt_text(ex.question)}],
             "ability": "fact-reasoning", "reward_model": {"style": "rule", "ground_truth": {"target":
                                                                                         list(ex.golden_answers)}},
             "extra_info": {"split": split, "index": i}}
            for source, exs in examples for i, ex in enumerate(exs)]


@pytest.fixture(scope="module")
def searchr1(tmp_path_factory, smollm2_tokenizer):
    import faiss

    from searche1.data.corpus import Document
    from searche1.data.toyworld.generator import WorldConfig, generate_world
    from searche1.retrieval.dense import encode, load_encoder

    tmp = tmp_path_factory.mktemp("searchr1")
    world = generate_world(WorldConfig(seed=0))
    docs = [Document(str(i), d.contents) for i, d in enumerate(world.docs[:300])]
    (tmp / "wiki-18.jsonl").write_text("".join(json.dumps(d.to_json()) + "\n" for d in docs))
    emb = encode(load_encoder("minilm"), [d.contents for d in docs], "")
    index = faiss.IndexFlatIP(emb.shape[1])
    index.add(emb)
    faiss.write_index(index, str(tmp / "e5_Flat.index"))
    test = [("nq", world.tests["nq"][:3]), ("hotpotqa", world.tests["hotpotqa"][:3])]
    pq.write_table(pa.Table.from_pylist(_searchr1_rows(test, "test")), tmp / "test.parquet")
    train = [("nq", world.train[:4]), ("hotpotqa", world.train[4:8])]
    pq.write_table(pa.Table.from_pylist(_searchr1_rows(train, "train")), tmp / "train.parquet")
    # a Search-R1 actor checkpoint is an HF folder (verl saves the actor with save_pretrained + its tokenizer)
    checkpoint = tmp / "verl_checkpoints" / "actor" / "global_step_100"
    tiny_qwen2(len(smollm2_tokenizer)).save_pretrained(checkpoint)
    smollm2_tokenizer.save_pretrained(checkpoint)
    return tmp, checkpoint


@pytest.fixture(scope="module")
def server(searchr1):
    tmp, _ = searchr1
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "searche1.cli", "--threads", "1", "serve", "--faiss-index",
                             str(tmp / "e5_Flat.index"), "--corpus", str(tmp / "wiki-18.jsonl"), "--port", str(port)],
                            env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                httpx.get(url + "/health", timeout=1)
                break
            except httpx.TransportError:
                if proc.poll() is not None:
                    pytest.fail("server exited: " + proc.stdout.read().decode())
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_eval_a_searchr1_checkpoint_on_the_merged_test_parquet(searchr1, server, tmp_path):
    tmp, checkpoint = searchr1
    out = tmp_path / "report.json"
    assert main(["--threads", "1", "eval", "--model", str(checkpoint), "--data", str(tmp / "test.parquet"),
                 "--index", server, "--out", str(out), "--limit", "2", "--preset", "toy",
                 "rollout.max_response_length=8", "rollout.max_turns=1"]) == 0
    report = json.loads(out.read_text())
    # one benchmark per data_source of the merged file, in the paper's order, each limited to 2 questions
    assert list(report["benchmarks"]) == ["nq", "hotpotqa"]
    assert [b["n"] for b in report["benchmarks"].values()] == [2, 2]
    lines = (tmp_path / "report.trajectories.jsonl").read_text().splitlines()
    assert sorted(json.loads(x)["group_id"] for x in lines) == ["hotpotqa/test_0", "hotpotqa/test_1", "nq/test_0",
                                                                 "nq/test_1"]


def test_grpo_starts_from_a_searchr1_checkpoint_on_the_train_parquet(searchr1, server, tmp_path):
    from transformers import AutoConfig

    tmp, checkpoint = searchr1
    run = tmp_path / "run"
    assert main(["--threads", "1", "train", "grpo", "--preset", "toy", "--out", str(run),
                 f"grpo.model={checkpoint}", f"data.train=[{tmp / 'train.parquet'}]", f"retrieval.index={server}",
                 "grpo.steps=1", "grpo.prompts_per_step=2", "grpo.mini_batch_prompts=2", "grpo.micro_batch=4",
                 "rollout.n_samples=2", "rollout.max_response_length=8", "rollout.max_turns=1"]) == 0
    saved = run / "checkpoints" / "step-1"
    assert AutoConfig.from_pretrained(saved).model_type == "qwen2"
    record = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    assert record["step"] == 1 and record["grpo/response_tokens_mean"] > 0
