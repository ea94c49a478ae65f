"""Security defaults: servers bind loopback unless told otherwise, nothing unpickles or runs
remote code from a path by default, and the retriever's request bounds hold."""

import re

from conftest import REPO


def test_servers_bind_loopback_by_default():
    from searche1.cli import build_parser
    from searche1.config import load_config

    assert load_config("toy").server.host == "127.0.0.1"
    assert build_parser().parse_args(["view", "RUN"]).host == "127.0.0.1"
    serve = build_parser().parse_args(["serve", "--index", "IDX"])
    assert serve.host is None  # None = server.host of the config: loopback


def test_no_pickle_and_no_remote_code_on_paths_by_default():
    """torch.load only with weights_only=True; no trust_remote_code=True, pickle or numpy allow_pickle anywhere."""
    offenders = []
    for path in sorted((REPO / "src" / "searche1").rglob("*.py")):
        text = path.read_text()
        for m in re.finditer(r"torch\.load\(([^)]*)\)", text):
            if "weights_only=True" not in m.group(1):
                offenders.append(f"{path.name}: {m.group(0)}")
        for pattern in (r"trust_remote_code\s*=\s*True", r"\bimport pickle\b", r"allow_pickle\s*=\s*True",
                        r"\bpickle\.loads?\("):
            offenders += [f"{path.name}: {m.group(0)}" for m in re.finditer(pattern, text)]
    assert not offenders, offenders


def test_the_retriever_bounds_every_request():
    from fastapi.testclient import TestClient

    from searche1.data.corpus import Document, make_contents
    from searche1.retrieval.bm25 import BM25Retriever
    from searche1.retrieval.server import ServerLimits, make_app

    app = make_app(BM25Retriever.build([Document("0", make_contents("Zorvak", "born in Melin"))]),
                   ServerLimits(max_queries=4, max_query_chars=16, max_body_bytes=512))
    with TestClient(app) as client:  # (the lifespan starts the batching worker)
        ok = {"queries": ["Zorvak"], "topk": 1}
        assert client.post("/retrieve", json=ok).status_code == 200
        for bad in ({"queries": ["q"] * 5}, {"queries": ["q" * 17]}, {"queries": ["q"], "topk": 0},
                    {"queries": ["q"], "topk": 101}):
            assert client.post("/retrieve", json={**ok, **bad}).status_code == 422, bad
        big = client.post("/retrieve", content=b'{"queries": ["' + b"x" * 600 + b'"]}')
        assert big.status_code == 422 and "limit of 512 bytes" in big.json()["detail"]
