"""The toy base policy shipped with the package (searche1/assets/toy-base): small, described, made with today's
toy tokenizer, and it plays the protocol on a world it never saw."""

import json

import pytest


@pytest.fixture(scope="module")
def toy_base():
    from searche1.models import load_model, toy_base_path

    model, tokenizer = load_model("toy-base")
    return toy_base_path(), model, tokenizer


def test_shipped_checkpoint_is_small_and_says_how_it_was_made(toy_base):
    path, model, _ = toy_base
    assert sum(f.stat().st_size for f in path.iterdir()) <= 20 * 2**20
    report = json.loads((path / "warmstart.json").read_text())
    assert report["parameters"] == sum(p.numel() for p in model.parameters())
    card = (path / "README.md").read_text()
    assert "searche1 --threads 2 warmstart --out" in card and f"--seed {report['config']['seed']}" in card
    assert f"{report['seconds']:.0f} s" in card


def test_shipped_tokenizer_is_the_toy_tokenizer(toy_base):
    """A change to the toy tokenizer invalidates the shipped weights: this fails until the base is made again."""
    from searche1.data.toyworld.tokenizer import build_toy_tokenizer

    path, _, shipped = toy_base
    run = json.loads((path / "warmstart.json").read_text())["config"]
    built = build_toy_tokenizer(spaced_values=run.get("spaced_values", False),
                                question_only_prompt=run.get("question_only_prompt", False),
                                digit_years=run.get("digit_years", False), year_pairs=run.get("year_pairs", False))
    assert shipped.get_vocab() == built.get_vocab() and shipped.chat_template == built.chat_template


def test_plays_the_protocol_on_a_fresh_world(toy_base):
    """Greedy on a world seed no run trained or evaluated on, at the base's level: it searches, reads and answers in
    the protocol."""
    import torch

    from searche1.config import RolloutConfig
    from searche1.data.toyworld.generator import WorldConfig, generate_world
    from searche1.eval import evaluate
    from searche1.retrieval.bm25 import BM25Retriever
    from searche1.retrieval.client import InProcessClient
    from searche1.rollout.backends.hf import HFBackend

    torch.set_num_threads(2)
    path, model, tokenizer = toy_base
    level = json.loads((path / "warmstart.json").read_text())["config"]["world_level"]
    world = generate_world(WorldConfig(seed=31337, level=level))
    client = InProcessClient(BM25Retriever.build(world.docs))
    benchmarks = {"toy-nq": world.tests["nq"][:16], "toy-hotpotqa": world.tests["hotpotqa"][:16]}
    report, trajectories = evaluate(benchmarks, HFBackend(model, tokenizer), tokenizer, client,
                                    RolloutConfig(max_response_length=96), batch_size=16, show_progress=False)
    single, bridge = report["benchmarks"]["toy-nq"], report["benchmarks"]["toy-hotpotqa"]
    # a bridge can run past the 96-token budget while searching (the shipped base: 13 of 16 answered here)
    assert single["answer_rate"] >= 0.9 and bridge["answer_rate"] >= 0.75
    assert 1.0 <= single["mean_searches"] < bridge["mean_searches"]  # 1-hop: a search; 2-hop: more
    assert single["em"] >= 0.3  # it reads: the value out of the passage (a base that does not: 0.06)
    # what it searched for names the question's entity (it copies from the prompt)
    firsts = [t.turns[0].query or "" for t in trajectories if t.turns and t.turns[0].query]
    names = [ex.metadata["subject"] for ex in benchmarks["toy-nq"]]
    assert sum(name in q for name, q in zip(names, firsts)) >= 0.8 * len(names)


def test_follows_a_worked_solution_in_the_teacher_context(toy_base, monkeypatch):
    """As OFSD's teacher (the privileged block with a flawless scripted run of the question in its prompt) it does
    the solution's first search, word for word, and answers right about as often as without the block (a base
    that cannot use the block makes OFSD distill a worse policy: docs/ofsd.md, "The teacher, measured")."""
    import random

    import torch

    from searche1 import protocol
    from searche1.config import RolloutConfig
    from searche1.data.toyworld.demos import demonstrate
    from searche1.data.toyworld.generator import WorldConfig, generate_world
    from searche1.eval import evaluate
    from searche1.retrieval.bm25 import BM25Retriever
    from searche1.retrieval.client import InProcessClient
    from searche1.rollout.backends.hf import HFBackend
    from searche1.toy.episodes import FLAWLESS, worked_solution
    from searche1.train.pairs import privileged_context

    torch.set_num_threads(2)
    path, model, tokenizer = toy_base
    level = json.loads((path / "warmstart.json").read_text())["config"]["world_level"]
    world = generate_world(WorldConfig(seed=31337, level=level))
    client = InProcessClient(BM25Retriever.build(world.docs))
    examples = world.tests["nq"][:16] + world.tests["popqa"][:16]
    runs = {ex.question: demonstrate(ex, world.fact_map(), client, random.Random(0), FLAWLESS, quote_style="none")
            for ex in examples}
    backend = HFBackend(model, tokenizer)

    def run(benchmarks):
        return evaluate(benchmarks, backend, tokenizer, client, RolloutConfig(max_response_length=96),
                        batch_size=32, show_progress=False)

    plain, _ = run({"single": examples})
    monkeypatch.setattr(protocol, "make_prompt", lambda question, tok=None: privileged_context(
        question, worked_solution(runs[question], tokenizer), tok))
    teacher, trajectories = run({"single": examples})
    first_queries = [t.turns[0].query if t.turns else None for t in trajectories]
    solution_queries = [protocol.parse_action(runs[ex.question][0][0]).content for ex in examples]
    assert sum(a == b for a, b in zip(first_queries, solution_queries)) >= 0.9 * len(examples)
    assert teacher["average_em"] >= plain["average_em"] - 0.15
