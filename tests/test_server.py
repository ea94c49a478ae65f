"""The /retrieve server (Search-R1 request/response shapes, validation, batching) and the clients."""

import asyncio
import os
import socket
import subprocess
import sys
import time

import httpx
import pytest
from fastapi.testclient import TestClient

from searche1.retrieval.bm25 import BM25Retriever
from searche1.retrieval.client import (
    HttpClient,
    InProcessClient,
    RetrieverRequestError,
    RetrieverUnavailable,
    make_client,
)
from searche1.retrieval.server import ServerLimits, make_app


@pytest.fixture
def retriever(tiny_corpus):
    return BM25Retriever.build(tiny_corpus)


@pytest.fixture
def client(retriever):
    with TestClient(make_app(retriever, ServerLimits(max_queries=8, max_query_chars=50, max_body_bytes=2000))) as c:
        yield c


def test_retrieve_with_scores(client, retriever):
    r = client.post("/retrieve", json={"queries": ["Zorvak painter", "Melin"], "topk": 3, "return_scores": True})
    assert r.status_code == 200
    result = r.json()["result"]
    assert len(result) == 2 and all(len(docs) == 3 for docs in result)
    doc = result[0][0]
    assert set(doc) == {"document", "score"} and set(doc["document"]) == {"id", "contents"}
    expected = retriever.search(["Zorvak painter"], 3)[0]
    assert [d["document"]["id"] for d in result[0]] == [h.doc.id for h in expected]
    assert [d["score"] for d in result[0]] == pytest.approx([h.score for h in expected])


def test_retrieve_without_scores_and_default_topk(client):
    r = client.post("/retrieve", json={"queries": ["Kelmar"], "topk": None, "return_scores": False})
    assert r.status_code == 200
    docs = r.json()["result"][0]
    assert len(docs) == 3 and set(docs[0]) == {"id", "contents"}
    r = client.post("/retrieve", json={"queries": ["Kelmar"]})  # both fields optional
    assert r.json()["result"][0] == docs


@pytest.mark.parametrize("body,fragment", [
    ({"queries": ["x"], "topk": 0}, "topk"),
    ({"queries": ["x"], "topk": 101}, "topk"),
    ({"queries": "x"}, "queries"),
    ({"queries": [3]}, "queries.0"),
    ({"topk": 3}, "queries"),
    ({"queries": []}, "at least one query"),
    ({"queries": ["q"] * 9}, "9 queries; the limit is 8"),
    ({"queries": ["q" * 51]}, "queries.0: 51 characters"),
    ({"queries": ["x"], "return_scores": "maybe"}, "return_scores"),
])
def test_validation_is_422_with_message(client, body, fragment):
    r = client.post("/retrieve", json=body)
    assert r.status_code == 422
    assert fragment in r.json()["detail"]


def test_body_size_limit_and_bad_json(client):
    r = client.post("/retrieve", content=b'{"queries": ["' + b"x" * 3000 + b'"]}',
                    headers={"content-type": "application/json"})
    assert r.status_code == 422 and "limit of 2000 bytes" in r.json()["detail"]

    def chunks():  # no Content-Length: the limit applies while the body streams in
        yield b'{"queries": ["'
        for _ in range(30):
            yield b"x" * 100
        yield b'"]}'

    r = client.post("/retrieve", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 422 and "limit of 2000 bytes" in r.json()["detail"]
    r = client.post("/retrieve", content=b"{nope", headers={"content-type": "application/json"})
    assert r.status_code == 422


def test_health(client):
    assert client.get("/health").json()["status"] == "ok"


@pytest.mark.parametrize("in_thread", [False, True], ids=["inline", "worker-thread"])
def test_concurrent_requests_are_batched_and_correct(retriever, in_thread):
    retriever.search_releases_gil = in_thread
    calls = []
    original = retriever.search

    def counting(queries, k):
        calls.append(len(queries))
        time.sleep(0.01)  # while this runs, other requests queue up
        return original(queries, k)

    retriever.search = counting
    app = make_app(retriever)
    queries = ["Zorvak", "Melin", "Kelmar", "Dosta", "Tarvos", "ship", "painter", "city"] * 4

    async def run():
        transport = httpx.ASGITransport(app=app)
        async with app.router.lifespan_context(app):
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
                rs = await asyncio.gather(*[c.post("/retrieve", json={"queries": [q], "topk": 1 + i % 3})
                                            for i, q in enumerate(queries)])
        return [r.json()["result"][0] for r in rs]

    results = asyncio.run(run())
    for i, (q, docs) in enumerate(zip(queries, results)):
        assert [d["id"] for d in docs] == [h.doc.id for h in original([q], 1 + i % 3)[0]]
    assert sum(calls) == len(queries) and len(calls) < len(queries)  # fewer search calls than requests


def test_search_error_returns_500_and_server_lives(retriever):
    original = retriever.search
    state = {"fail": True}

    def flaky(queries, k):
        if state["fail"]:
            raise RuntimeError("index broke")
        return original(queries, k)

    retriever.search = flaky
    with TestClient(make_app(retriever), raise_server_exceptions=False) as c:
        assert c.post("/retrieve", json={"queries": ["x"]}).status_code == 500
        state["fail"] = False
        assert c.post("/retrieve", json={"queries": ["Zorvak"]}).status_code == 200


def test_inprocess_client(retriever):
    docs = InProcessClient(retriever, topk=2).retrieve(["Zorvak", "Melin"])
    assert [len(d) for d in docs] == [2, 2] and set(docs[0][0]) == {"id", "contents"}


def _wait_healthy(url: str, proc: subprocess.Popen) -> None:
    for _ in range(300):
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.1)
    proc.kill()
    pytest.fail("server did not start: " + (proc.stdout.read().decode() if proc.stdout else ""))


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_http_client_unreachable_is_clear():
    port = _free_port()
    c = HttpClient(f"http://127.0.0.1:{port}", timeout=1.0, retries=2, backoff=0.01)
    t0 = time.perf_counter()
    with pytest.raises(RetrieverUnavailable, match=r"unreachable after 3 attempts .*searche1 serve"):
        c.retrieve(["x"])
    assert time.perf_counter() - t0 < 10


@pytest.fixture(scope="module")
def served_world(tmp_path_factory):
    """`searche1 world` + `searche1 index` + `searche1 serve` as real subprocesses (1 thread each), loopback port."""
    tmp = tmp_path_factory.mktemp("serve")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cli = [sys.executable, "-m", "searche1.cli", "--threads", "1"]
    subprocess.run(cli + ["world", "--seed", "5", "--out", str(tmp / "world"), "--no-check"],
                   check=True, env=env, capture_output=True)
    subprocess.run(cli + ["index", "--corpus", str(tmp / "world" / "corpus.jsonl"), "--out", str(tmp / "idx")],
                   check=True, env=env, capture_output=True)
    port = _free_port()
    proc = subprocess.Popen(cli + ["serve", "--index", str(tmp / "idx"), "--port", str(port)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    _wait_healthy(url, proc)
    yield url, tmp
    proc.terminate()
    proc.wait(timeout=10)


def test_search_r1_style_client_against_cli_server(served_world):
    """What Search-R1's retriever client sends, to `searche1 serve` over a toy-world BM25 index."""
    from searche1.data.qa import read_qa_jsonl
    from searche1.retrieval.index import open_index

    url, tmp = served_world
    questions = [ex.question for ex in read_qa_jsonl(tmp / "world" / "test" / "toy-nq.jsonl")[:4]]
    expected = open_index(tmp / "idx").search(questions, 3)
    payload = {"queries": questions, "topk": 3, "return_scores": True}
    # the timeout guards against a hang, not speed: a loaded 2-core machine took over 10 s for the first request
    body = httpx.post(url + "/retrieve", json=payload, timeout=60).json()
    assert list(body) == ["result"] and len(body["result"]) == 4
    for docs, hits in zip(body["result"], expected):
        assert len(docs) == 3
        assert [set(d) for d in docs] == [{"document", "score"}] * 3
        assert [d["document"] for d in docs] == [h.doc.to_json() for h in hits]
        assert [d["score"] for d in docs] == pytest.approx([h.score for h in hits])
        assert docs[0]["document"]["contents"].startswith('"')  # wiki-18 layout: quoted title line
    payload["return_scores"] = False
    body = httpx.post(url + "/retrieve", json=payload, timeout=60).json()
    assert body["result"] == [[h.doc.to_json() for h in hits] for hits in expected]


def test_http_client_against_cli_server(served_world):
    url, tmp = served_world
    inprocess = make_client(str(tmp / "idx"), topk=2).retrieve(["where was Zorvak born", "Kelmar founded"])
    c = make_client(url, topk=2)
    assert c.retrieve(["where was Zorvak born", "Kelmar founded"]) == inprocess
    assert [len(d) for d in inprocess] == [2, 2]
    with pytest.raises(RetrieverRequestError, match="422"):
        c.retrieve(["x"], topk=500)


def test_serve_workers_and_config_limits(tmp_path, tiny_corpus):
    """`--workers 2` and `server.*` limits from the config reach every worker."""
    from searche1.data.corpus import write_corpus

    write_corpus(tmp_path / "c.jsonl", tiny_corpus)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cli = [sys.executable, "-m", "searche1.cli", "--threads", "1"]
    subprocess.run(cli + ["index", "--corpus", str(tmp_path / "c.jsonl"), "--out", str(tmp_path / "idx")],
                   check=True, env=env, capture_output=True)
    port = _free_port()
    proc = subprocess.Popen(cli + ["serve", "--index", str(tmp_path / "idx"), "--port", str(port), "--workers", "2",
                                   "--topk", "2", "server.max_queries=3"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, proc)
        for _ in range(6):  # connections land on either worker
            with httpx.Client(timeout=60) as c:  # a worker may still be compiling its numba kernels
                assert len(c.post(url + "/retrieve", json={"queries": ["Zorvak"]}).json()["result"][0]) == 2
                r = c.post(url + "/retrieve", json={"queries": ["a", "b", "c", "d"]})
                assert r.status_code == 422 and "the limit is 3" in r.json()["detail"]
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_strict_request_types(client):
    assert client.post("/retrieve", json={"queries": ["x"], "topk": True}).status_code == 422
    assert client.post("/retrieve", json={"queries": ["x"], "return_scores": "yes"}).status_code == 422


def test_retrieve_url():
    from searche1.retrieval.client import retrieve_url

    assert retrieve_url("http://h:8000") == "http://h:8000/retrieve"
    assert retrieve_url("http://h:8000/retrieve/") == "http://h:8000/retrieve"
    assert retrieve_url("http://h/api") == "http://h/api/retrieve"
    assert retrieve_url("http://h/retrieve?token=x") == "http://h/retrieve?token=x"


def _search_r1_like_app(retriever):
    """Mimics Search-R1's retrieval server: it unpacks (results, scores) and so fails on return_scores=false."""
    from fastapi import FastAPI

    app = FastAPI()

    @app.post("/retrieve")
    def retrieve(body: dict):
        if not body.get("return_scores"):
            raise RuntimeError("too many values to unpack")
        hits = retriever.search(body["queries"], body.get("topk") or 3)
        return {"result": [[{"document": h.doc.to_json(), "score": h.score} for h in row] for row in hits]}

    return app


def test_http_client_works_with_search_r1_server(retriever):
    import threading

    import uvicorn

    server = uvicorn.Server(uvicorn.Config(_search_r1_like_app(retriever), host="127.0.0.1", port=0,
                                           log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        docs = HttpClient(f"http://127.0.0.1:{port}", topk=2).retrieve(["Zorvak", "Melin", "Kelmar"])
        assert [[d["id"] for d in row] for row in docs] == [[h.doc.id for h in row]
                                                            for row in retriever.search(["Zorvak", "Melin",
                                                                                         "Kelmar"], 2)]
        assert set(docs[0][0]) == {"id", "contents"}
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def test_http_client_rejects_a_non_retrieve_answer():
    import httpx as _httpx

    c = HttpClient("http://x", retries=1, backoff=0)
    c._http = _httpx.Client(transport=_httpx.MockTransport(lambda req: _httpx.Response(200, text="<html>")))
    # a half-broken server may answer well next time: retried like a 5xx, then the run stops (or skips)
    with pytest.raises(RetrieverUnavailable, match="kept failing after 2 attempts.*not a /retrieve response"):
        c.retrieve(["q"])
    c._http = _httpx.Client(transport=_httpx.MockTransport(lambda req: _httpx.Response(200, json={"result": [[]]})))
    with pytest.raises(RetrieverUnavailable, match="one list of documents for each of 2 queries"):
        c.retrieve(["q", "r"])
    c._http = _httpx.Client(transport=_httpx.MockTransport(lambda req: _httpx.Response(503, text="busy")))
    with pytest.raises(RetrieverUnavailable, match="kept failing after 2 attempts .HTTP 503: busy"):
        c.retrieve(["q"])


def test_openapi_states_the_retrieve_request_and_response(client):
    operation = client.get("/openapi.json").json()["paths"]["/retrieve"]["post"]
    schema = operation["requestBody"]["content"]["application/json"]["schema"]
    assert set(schema["properties"]) == {"queries", "topk", "return_scores"} and schema["required"] == ["queries"]
    assert operation["responses"]["200"]["content"]["application/json"]["schema"]["required"] == ["result"]
