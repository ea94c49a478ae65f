"""Retriever faults: a real HTTP server on loopback that is down, slow, answers 500 or
malformed JSON, or dies mid-run. The client retries a bounded number of times with backoff and jitter under a
per-request timeout, then stops with a clear error (retrieval.on_failure=stop) or, with skip, the affected samples
end as `error`, are counted, and are left out of the GRPO loss. Nothing hangs: every test is bounded in time."""

import dataclasses
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import torch

from searche1.retrieval.client import HttpClient, RetrieverRequestError, RetrieverUnavailable

DOC = {"id": "0", "contents": '"Zorvak"\nZorvak is a painter born in 1873 in the city of Melin.'}


class FaultyServer:
    """POST /retrieve answering by a script: each request takes the next mode ("ok" once the script runs out)."""

    def __init__(self, script=(), delay: float = 0.0):
        self.script, self.delay, self.requests = list(script), delay, []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.requests.append(body)
                mode = server.script.pop(0) if server.script else "ok"
                if mode == "slow":
                    time.sleep(server.delay)
                if mode == "500":
                    return self._send(500, b"internal error")
                if mode == "400":
                    return self._send(400, b'{"detail": "bad request"}')
                if mode == "malformed":
                    return self._send(200, b'{"result": [[{"document": ')
                result = [[{"document": DOC, "score": 1.0}] for _ in body["queries"]]
                return self._send(200, json.dumps({"result": result}).encode())

            def _send(self, status, payload):
                self.send_response(status)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    made = []

    def make(script=(), delay=0.0):
        made.append(FaultyServer(script, delay))
        return made[-1]

    yield make
    for s in made:
        s.stop()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_down_at_start_stops_with_a_clear_error_in_bounded_time():
    client = HttpClient(f"http://127.0.0.1:{_free_port()}", retries=2, backoff=0.01)
    start = time.monotonic()
    with pytest.raises(RetrieverUnavailable, match="unreachable after 3 attempts.*searche1 serve"):
        client.retrieve(["q"])
    assert time.monotonic() - start < 5


def test_500_and_malformed_answers_are_retried_then_succeed(server):
    s = server(["500", "malformed", "ok"])
    client = HttpClient(s.url, retries=3, backoff=0.01)
    assert client.retrieve(["where was Zorvak born"]) == [[DOC]]
    assert len(s.requests) == 3


@pytest.mark.parametrize("mode,message", [("500", "HTTP 500"), ("malformed", "not a /retrieve response")])
def test_a_server_that_keeps_failing_stops_after_the_retries(server, mode, message):
    s = server([mode] * 10)
    with pytest.raises(RetrieverUnavailable, match=f"kept failing after 3 attempts.*{message}"):
        HttpClient(s.url, retries=2, backoff=0.01).retrieve(["q"])
    assert len(s.requests) == 3


def test_a_slow_server_times_out_per_request_and_never_hangs(server):
    s = server(["slow"] * 10, delay=3.0)
    start = time.monotonic()
    with pytest.raises(RetrieverUnavailable, match="ReadTimeout"):
        HttpClient(s.url, timeout=0.2, retries=1, backoff=0.01).retrieve(["q"])
    assert time.monotonic() - start < 2.5  # 2 attempts x 0.2 s, not 2 x 3 s


def test_a_4xx_answer_is_not_retried(server):
    s = server(["400"])
    with pytest.raises(RetrieverRequestError, match="HTTP 400"):
        HttpClient(s.url, retries=3, backoff=0.01).retrieve(["q"])
    assert len(s.requests) == 1


def test_backoff_grows_with_jitter(server, monkeypatch):
    sleeps = []
    monkeypatch.setattr("searche1.retrieval.client.time.sleep", sleeps.append)
    s = server(["500"] * 4)
    HttpClient(s.url, retries=4, backoff=1.0, seed=0).retrieve(["q"])
    assert len(sleeps) == 4
    for attempt, slept in enumerate(sleeps):  # 1, 2, 4, 8 s, each times a factor in [0.5, 1.5]
        assert 0.5 * 2 ** attempt <= slept <= 1.5 * 2 ** attempt
    assert len({round(s / 2 ** a, 6) for a, s in enumerate(sleeps)}) > 1  # not the same factor every time


def test_many_queries_go_in_requests_the_server_accepts(server):
    s = server()
    out = HttpClient(s.url, max_queries=512).retrieve([f"q{i}" for i in range(1200)])
    assert len(out) == 1200 and [len(r["queries"]) for r in s.requests] == [512, 512, 176]


def _engine_run(client, tokenizer, scripts, on_failure):
    from searche1.config import RolloutConfig
    from searche1.data.qa import QAExample
    from searche1.rollout.backends.base import SamplingParams
    from searche1.rollout.engine import rollout
    from test_engine import ScriptedBackend

    examples = [QAExample(str(i), "Where was Zorvak born", ["Melin"], "toy") for i in range(len(scripts))]
    return rollout(examples, ScriptedBackend(tokenizer, scripts), tokenizer, client,
                   RolloutConfig(max_turns=2), SamplingParams(greedy=True),
                   on_retrieval_failure=on_failure)


def test_engine_with_a_server_dying_mid_run(server, smollm2_tokenizer):
    """The first turn's searches are answered, then the server goes away: with skip, the samples searching again
    end as `error` and the one answering finishes normally; with stop, the rollout raises."""
    from searche1.rollout.trajectory import FinishReason

    s = server()
    client = HttpClient(s.url, retries=1, backoff=0.01, timeout=1.0)
    search = "<search> Zorvak born </search>"
    scripts = [[search, search, "<answer> Melin </answer>"], [search, "<answer> Melin </answer>"]]

    class DiesAfterOne(HttpClient):
        def retrieve(self, queries, topk=None):
            if s.requests:
                s.stop()
            return super().retrieve(queries, topk)

    dying = DiesAfterOne(s.url, retries=1, backoff=0.01, timeout=1.0)
    trajs = _engine_run(dying, smollm2_tokenizer, scripts, "skip")
    assert [t.finish_reason for t in trajs] == [FinishReason.ERROR, FinishReason.ANSWER]
    assert trajs[1].em == 1.0 and trajs[0].reward == 0.0 and trajs[0].n_searches == 2
    assert trajs[0].turns[-1].observation is None  # nothing was inserted for the failed search
    with pytest.raises(RetrieverUnavailable):
        _engine_run(client, smollm2_tokenizer, scripts, "stop")


def test_failed_samples_are_left_out_of_advantages_and_the_loss():
    """group_advantages ignores invalid rows; a failed sample's masked copy changes nothing in the update."""
    from conftest import tiny_qwen2
    from searche1.config import GRPOConfig
    from searche1.losses.grpo import group_advantages
    from searche1.rollout.trajectory import Trajectory
    from searche1.train.grpo_update import policy_update

    rewards = torch.tensor([1.0, 0.0, 0.0, 1.0, 0.0])
    groups = [0, 0, 0, 1, 1]
    valid = [True, True, False, True, True]
    got = group_advantages(rewards, groups, valid=valid)
    expected = torch.cat([group_advantages(rewards[:2], [0, 0]), torch.zeros(1),
                          group_advantages(rewards[3:], [1, 1])])
    assert torch.allclose(got, expected)
    # the lone valid survivor of a group whose siblings all failed has nothing to compare against: advantage 0
    lone = group_advantages(torch.tensor([1.0, 0.0, 0.0, 1.0, 0.0]), groups, valid=[True, False, False, True, True])
    assert lone[0] == 0 and torch.allclose(lone[3:], group_advantages(rewards[3:], [1, 1]))

    def traj(seed, n=6):
        g = torch.Generator().manual_seed(seed)
        ids = torch.randint(3, 60, (n,), generator=g).tolist()
        return Trajectory(f"q{seed}", 0, [1, 2, 3], ids, [1] * n, [-1.0] * n)

    good = [traj(1), traj(2)]
    failed = traj(3)
    masked = dataclasses.replace(failed, response_mask=[0] * len(failed.response_mask))
    grads = []
    for batch, adv in ((good, torch.tensor([1.0, -1.0])), (good + [masked], torch.tensor([1.0, -1.0, 0.0]))):
        model = tiny_qwen2(64)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
        policy_update(model, optimizer, batch, adv, GRPOConfig(kl_coef=0.0), 0, 2, None, 1.0, 1e9)
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]))
    assert torch.allclose(grads[0], grads[1], atol=1e-6)


def test_grpo_with_the_retriever_down(tmp_path):
    """toy-base searches in its first turn (nearly always): with the retriever down, `skip` counts those samples as
    failed and logs the count, and the step goes on (no skipped update, no crash); `stop` ends the run with the
    retriever's error."""
    from searche1.config import load_config
    from searche1.train.grpo import train_grpo

    qa = tmp_path / "qa.jsonl"
    qa.write_text("".join(json.dumps({"id": str(i), "question": q, "golden_answers": ["x"], "data_source": "nq"})
                          + "\n" for i, q in enumerate(["where was Zorvak born", "who founded Kelmar"])))

    def config(on_failure, *more):
        return load_config("toy", ["grpo.model=toy-base", "grpo.steps=1", "grpo.prompts_per_step=2",
                                   "grpo.mini_batch_prompts=2", "rollout.n_samples=2", "rollout.max_response_length=48",
                                   f"data.train=[{qa}]", f"retrieval.index=http://127.0.0.1:{_free_port()}",
                                   "retrieval.retries=0", f"retrieval.on_failure={on_failure}", *more])

    record = train_grpo(config("skip", "retrieval.max_failed_share=1"), tmp_path / "skip", log=lambda *_: None)
    assert 1 <= record["failed_samples"] <= 4 and record["skipped"] == 0  # (a sample may answer at once)
    logged = [json.loads(line) for line in (tmp_path / "skip" / "metrics.jsonl").read_text().splitlines()]
    assert logged[-1]["grpo/failed_samples"] == record["failed_samples"]
    with pytest.raises(RetrieverUnavailable, match="unreachable"):
        train_grpo(config("stop"), tmp_path / "stop", log=lambda *_: None)
    # past retrieval.max_failed_share (default 0.1) of a step's samples, skip stops the run too: its rewards would
    # measure the retriever
    with pytest.raises(RetrieverUnavailable, match=r"retrieval failed for .* of GRPO step 1 .*max_failed_share=0.1"):
        train_grpo(config("skip"), tmp_path / "skip-default", log=lambda *_: None)


def test_an_evaluation_phase_with_the_retriever_down_stops_the_run(tmp_path):
    """`searche1 train`'s evaluations with retrieval.on_failure=skip and the retriever down: past
    retrieval.max_failed_share the phase stops with the error instead of writing a table of zeros."""
    from searche1.config import load_config
    from searche1.data.qa import QAExample
    from searche1.retrieval.client import client_from_config
    from searche1.train.evolve import evaluate_model

    cfg = load_config("toy", ["rollout.max_turns=1", "rollout.max_response_length=48", "retrieval.retries=0",
                              "retrieval.on_failure=skip", f"retrieval.index=http://127.0.0.1:{_free_port()}"])
    questions = [QAExample(str(i), q, ["x"], "toy-nq") for i, q in enumerate(["where was Zorvak born",
                                                                               "who founded Kelmar"])]
    sets = ({"toy-nq": questions}, client_from_config(cfg.retrieval))
    with pytest.raises(RetrieverUnavailable, match="retrieval failed for .* of the evaluation of toy-base"):
        evaluate_model(cfg, "toy-base", tmp_path, "cpu", sets)
    assert not (tmp_path / "eval.json").exists()
