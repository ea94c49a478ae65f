"""Where a run's questions come from, with the retriever that serves them: training questions (GRPO, the OFSD
pool) and evaluation sets (each phase of `searche1 train`)."""

from __future__ import annotations

from searche1.config import Config, ConfigError


def training_questions(cfg: Config):
    """(questions, retrieval client): data.train through retrieval.index, or by default the toy world's train
    split with an in-process BM25 index over its corpus."""
    from searche1.retrieval.client import client_from_config

    r = cfg.retrieval
    if cfg.data.train:
        from searche1.data.qa import load_qa
        from searche1.eval import find_qa_files

        if not r.index:
            raise ConfigError("data.train is set but retrieval.index is empty: set it to an index directory "
                              "or a retrieval server URL")
        questions = [ex for f in find_qa_files(cfg.data.train) for ex in load_qa(f)]
        if not questions:
            raise ConfigError(f"data.train {cfg.data.train} holds no questions")
        return questions, client_from_config(r)
    world, client = _toy_world(cfg)
    return world.train, client


def eval_benchmarks(cfg: Config):
    """({name: questions}, retrieval client) to evaluate on: data.eval through retrieval.index, or by default
    the toy world's seven test sets with an in-process BM25 index (at most evolve.eval_limit questions each)."""
    from searche1.eval import load_benchmarks
    from searche1.retrieval.client import client_from_config

    e, r = cfg.evolve, cfg.retrieval
    if cfg.data.eval:
        if not r.index:
            raise ConfigError("data.eval is set but retrieval.index is empty")
        return load_benchmarks(cfg.data.eval, e.eval_limit or None), client_from_config(r)
    world, client = _toy_world(cfg)
    return {name: exs[:e.eval_limit] if e.eval_limit else exs for name, exs in world.tests.items()}, client


def _toy_world(cfg: Config):
    """(the toy world of cfg.world, an in-process BM25 client over its corpus)."""
    from searche1.data.toyworld.generator import generate_world
    from searche1.retrieval.bm25 import BM25Retriever
    from searche1.retrieval.client import InProcessClient

    world = generate_world(cfg.world)
    return world, InProcessClient(BM25Retriever.build(world.docs), topk=cfg.retrieval.topk)
