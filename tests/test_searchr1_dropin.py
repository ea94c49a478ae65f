"""`searche1 serve` on a Search-R1 setup as it lies on disk: a faiss IndexFlatIP file + a wiki-18-style corpus jsonl
(no index directory), the corpus read lazily by byte offset, and a pyserini Lucene index through LuceneSearcher."""

import json
import os
import subprocess
import sys
import time

import httpx
import numpy as np
import pytest

from searche1.cli import main as cli_main
from searche1.data.corpus import Document, read_corpus
from searche1.fileio import InputError
from searche1.retrieval import base
from searche1.retrieval.base import DocStore
from searche1.retrieval.dense import encode, open_faiss_and_corpus
from searche1.retrieval.pyserini_bm25 import PyseriniBM25Retriever

N_PASSAGES = 200
CLI = [sys.executable, "-m", "searche1.cli", "--threads", "1"]


def _free_port():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _searchr1_passage_embeddings(texts, max_length=256):
    """Passage embeddings as Search-R1's index_builder computes them: AutoModel, masked mean pooling over the last
    hidden state, L2 normalisation (no "passage: " prefix: MiniLM is not an e5 model)."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    from searche1.retrieval.dense import resolve_model_path

    path = resolve_model_path("minilm")
    tokenizer, model = AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path).eval()
    out = []
    with torch.no_grad():
        for start in range(0, len(texts), 64):
            inputs = tokenizer(texts[start:start + 64], max_length=max_length, padding=True, truncation=True,
                               return_tensors="pt")
            hidden = model(**inputs).last_hidden_state
            mask = inputs["attention_mask"]
            emb = hidden.masked_fill(~mask[..., None].bool(), 0.0).sum(dim=1) / mask.sum(dim=1)[..., None]
            out.append(torch.nn.functional.normalize(emb, dim=-1).numpy())
    return np.concatenate(out).astype(np.float32)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A Search-R1 layout at small scale: wiki-18-style `corpus.jsonl` (200 toy-world passages, contents
    '"Title"\\ntext', id = row number) and `e5_Flat.index`, a faiss IndexFlatIP whose row i is line i."""
    import faiss

    from searche1.data.toyworld.generator import WorldConfig, generate_world

    tmp = tmp_path_factory.mktemp("searchr1")
    world = generate_world(WorldConfig(seed=0))
    docs = [Document(str(i), d.contents) for i, d in enumerate(world.docs[:N_PASSAGES])]
    lines = [json.dumps(d.to_json(), ensure_ascii=False) for d in docs]
    (tmp / "wiki-18.jsonl").write_text("\n".join(lines) + "\n")
    emb = _searchr1_passage_embeddings([d.contents for d in docs])
    index = faiss.index_factory(emb.shape[1], "Flat", faiss.METRIC_INNER_PRODUCT)  # index_builder's Flat
    index.add(emb)
    faiss.write_index(index, str(tmp / "e5_Flat.index"))
    questions = [ex.question for ex in world.tests["nq"][:4]] + [ex.question for ex in world.tests["hotpotqa"][:2]]
    return {"dir": tmp, "corpus": tmp / "wiki-18.jsonl", "index": tmp / "e5_Flat.index", "emb": emb,
            "lines": lines, "questions": questions}


def test_faiss_and_corpus_equal_brute_force(setup):
    r = open_faiss_and_corpus(setup["index"], setup["corpus"], "minilm", show_progress=False)
    assert len(r.docs) == N_PASSAGES and r.query_prefix == ""
    q = encode(r.encoder, setup["questions"], r.query_prefix)
    brute = setup["emb"] @ q.T  # [N_PASSAGES, Q]
    for j, hits in enumerate(r.search(setup["questions"], 3)):
        order = np.argsort(-brute[:, j], kind="stable")[:3]
        assert [h.doc.id for h in hits][0] == str(order[0])
        assert [h.score for h in hits] == pytest.approx(brute[order, j], abs=1e-5)
        for h in hits:  # documents come back exactly as the corpus lines
            assert h.doc.to_json() == json.loads(setup["lines"][int(h.doc.id)])
    # A passage's own text as the query: the query encoder (sentence-transformers) agrees with Search-R1's pooling.
    text = json.loads(setup["lines"][17])["contents"]
    top = r.search([text], 1)[0][0]
    assert top.doc.id == "17" and top.score == pytest.approx(1.0, abs=1e-4)


def test_cli_serves_faiss_and_corpus_like_search_r1(setup):
    """`searche1 serve --faiss-index --corpus` in a subprocess; the request Search-R1's client sends."""
    port = _free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(CLI + ["serve", "--faiss-index", str(setup["index"]), "--corpus", str(setup["corpus"]),
                                   "--port", str(port)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                health = httpx.get(url + "/health", timeout=1)
                break
            except httpx.TransportError:
                if proc.poll() is not None:
                    pytest.fail("server exited: " + proc.stdout.read().decode())
                time.sleep(0.1)
        else:
            pytest.fail("server did not start")
        assert health.json() == {"status": "ok", "method": "dense", "n_docs": N_PASSAGES, "model": "minilm"}
        payload = {"queries": setup["questions"][:2], "topk": 3, "return_scores": True}
        body = httpx.post(url + "/retrieve", json=payload, timeout=30).json()
        assert list(body) == ["result"] and [len(docs) for docs in body["result"]] == [3, 3]
        expected = open_faiss_and_corpus(setup["index"], setup["corpus"], "minilm",
                                         show_progress=False).search(payload["queries"], 3)
        for docs, hits in zip(body["result"], expected):
            assert [set(d) for d in docs] == [{"document", "score"}] * 3
            assert [d["document"] for d in docs] == [json.loads(setup["lines"][int(h.doc.id)]) for h in hits]
            assert [d["score"] for d in docs] == pytest.approx([h.score for h in hits], abs=1e-5)
            assert docs[0]["document"]["contents"].startswith('"')  # wiki-18 layout: quoted title line
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _serve_exit(argv, capsys, monkeypatch):
    """Run `searche1 serve ...` in-process; it must fail before serving. Returns (exit code, stderr)."""
    import searche1.retrieval.server as server

    monkeypatch.setattr(server, "serve", lambda *a, **k: pytest.fail("started serving despite the mismatch"))
    code = cli_main(["--threads", "1", "serve", "--port", "0"] + argv)
    return code, capsys.readouterr().err


def test_mismatches_are_clear_errors(setup, tmp_path, capsys, monkeypatch):
    import faiss

    short = tmp_path / "short.jsonl"  # one line fewer than the index has rows
    short.write_text("\n".join(setup["lines"][:-1]) + "\n")
    code, err = _serve_exit(["--faiss-index", str(setup["index"]), "--corpus", str(short)], capsys, monkeypatch)
    assert code == 2 and f"{setup['index']}: holds 200 vectors but {short} has 199 documents" in err
    wrong_dim = faiss.IndexFlatIP(768)
    wrong_dim.add(np.zeros((N_PASSAGES, 768), np.float32))
    faiss.write_index(wrong_dim, str(tmp_path / "768.index"))
    code, err = _serve_exit(["--faiss-index", str(tmp_path / "768.index"), "--corpus", str(setup["corpus"])],
                            capsys, monkeypatch)
    assert code == 2 and "768.index: has 768-d vectors but --model minilm makes 384-d embeddings" in err
    (tmp_path / "junk.index").write_bytes(b"not a faiss file")
    code, err = _serve_exit(["--faiss-index", str(tmp_path / "junk.index"), "--corpus", str(setup["corpus"])],
                            capsys, monkeypatch)
    assert code == 2 and "junk.index: not a readable faiss index" in err
    for argv, message in [(["--faiss-index", str(setup["index"])], "--faiss-index needs --corpus"),
                          (["--index", str(tmp_path), "--corpus", str(short)], "--corpus, --model and"),
                          (["--faiss-index", str(setup["index"]), "--corpus", str(short), "--workers", "2"],
                           "--workers > 1 needs --index DIR")]:
        code, err = _serve_exit(argv, capsys, monkeypatch)
        assert code == 2 and message in err
    with pytest.raises(SystemExit) as exit_info:  # argparse: the sources exclude each other
        cli_main(["serve", "--index", str(tmp_path), "--faiss-index", str(setup["index"])])
    assert exit_info.value.code == 2 and "not allowed with argument" in capsys.readouterr().err


def test_l2_index_is_refused_by_the_cli_process(setup, tmp_path):
    import faiss

    l2 = faiss.IndexFlatL2(setup["emb"].shape[1])
    l2.add(setup["emb"])
    faiss.write_index(l2, str(tmp_path / "l2.index"))
    proc = subprocess.run(CLI + ["serve", "--faiss-index", str(tmp_path / "l2.index"), "--corpus",
                                 str(setup["corpus"]), "--port", "0"], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 2
    assert f"{tmp_path / 'l2.index'}: is an L2 index, not an inner-product index" in proc.stderr


# --- DocStore read straight from a corpus jsonl ---

def test_docstore_from_corpus_layouts(tmp_path, monkeypatch):
    corpus = tmp_path / "c.jsonl"
    corpus.write_bytes(b'{"id": "a", "contents": "\\"A\\"\\nalpha"}\n'
                       b"\n"  # blank lines are skipped, as iter_corpus skips them
                       b'{"id": "b", "title": "B\xc3\xa9", "text": "beta"}\r\n'
                       b"   \n"
                       b' {"id": 7, "contents": "leading space"}\n'
                       b'{"id": "last", "title": "L", "text": "no trailing newline"}')
    expected = read_corpus(corpus)
    assert [d.contents for d in expected][:2] == ['"A"\nalpha', '"Bé"\nbeta']
    for chunk in (base.SCAN_CHUNK_BYTES, 5, 1):  # also with newlines falling on every chunk boundary
        monkeypatch.setattr(base, "SCAN_CHUNK_BYTES", chunk)
        store = DocStore(corpus=corpus, show_progress=False)
        assert len(store) == 4 and list(store) == expected
        assert [store.line_number(i) for i in range(4)] == [1, 3, 5, 6]
        assert store[3] == Document("last", '"L"\nno trailing newline')


def test_docstore_from_corpus_matches_iter_corpus_on_a_world(setup, monkeypatch):
    monkeypatch.setattr(base, "SCAN_CHUNK_BYTES", 4096)  # many chunks over the 200 lines
    assert list(DocStore(corpus=setup["corpus"], show_progress=False)) == read_corpus(setup["corpus"])


def test_docstore_from_corpus_errors_name_file_and_line(tmp_path):
    corpus = tmp_path / "bad.jsonl"
    corpus.write_text('{"id": "0", "contents": "ok"}\n\n{"id": "1", "contents": "ok"\n'
                      '{"id": "2", "text": "no title"}\n{"contents": "no id"}\n[1, 2]\n')
    store = DocStore(corpus=corpus, show_progress=False)  # the scan reads no JSON: errors come when a line is read
    assert len(store) == 5 and store[0] == Document("0", "ok")
    for row, message in [(1, f"{corpus}:3: invalid JSON"),
                         (2, f"{corpus}:4: expected field 'contents', or fields 'title' and 'text'"),
                         (3, f"{corpus}:5: missing field 'id'"),
                         (4, f"{corpus}:6: expected a JSON object, got list")]:
        with pytest.raises(InputError) as e:
            store[row]
        assert str(e.value).startswith(message)
    with pytest.raises(InputError, match="no such file"):
        DocStore(corpus=tmp_path / "missing.jsonl")
    (tmp_path / "empty.jsonl").write_text("")
    assert len(DocStore(corpus=tmp_path / "empty.jsonl", show_progress=False)) == 0


# --- pyserini (Lucene BM25) ---

class _StandInStoredDoc:
    def __init__(self, raw):
        self._raw = raw

    def raw(self):
        return self._raw


class _StandInHit:
    def __init__(self, docid, score):
        self.docid, self.score = docid, score


class StandInLuceneSearcher:
    """A stand-in for the part of pyserini's LuceneSearcher interface the adapter uses (not a Lucene index, not
    BM25): `num_docs`, `search(q, k)` and `batch_search(queries, qids, k, threads)` giving hits with `docid` and
    `score`, and `doc(docid)` (a docid string, or an int Lucene row) whose `raw()` is the stored JSON or None.
    Scores here are word-overlap counts, enough to check the adapter's plumbing."""

    def __init__(self, rows: list[dict], store_raw: bool = True):
        self.rows, self.store_raw = rows, store_raw
        self.num_docs = len(rows)
        self.batch_calls = 0

    def search(self, q, k=10):
        words = set(q.lower().split())
        scored = [(sum(w in words for w in _row_text(row).lower().split()), i) for i, row in enumerate(self.rows)]
        return [_StandInHit(str(self.rows[i]["id"]), float(s)) for s, i in sorted(scored, key=lambda x: -x[0])[:k]
                if s > 0]

    def batch_search(self, queries, qids, k=10, threads=1):
        self.batch_calls += 1
        return {qid: self.search(q, k) for q, qid in zip(queries, qids)}

    def doc(self, docid):
        row = docid if isinstance(docid, int) else next(
            (i for i, r in enumerate(self.rows) if str(r["id"]) == docid), None)
        if row is None or not 0 <= row < len(self.rows):
            return None
        return _StandInStoredDoc(json.dumps(self.rows[row]) if self.store_raw else None)


def _row_text(row):
    return row.get("contents") or f'{row["title"]} {row["text"]}'


def _rows(setup):
    return [json.loads(line) for line in setup["lines"]]


def test_pyserini_adapter_reads_raw_documents(setup):
    rows = _rows(setup)
    rows[3] = {"id": "3", "title": "Titled", "text": "a row in title/text form"}
    searcher = StandInLuceneSearcher(rows)
    r = PyseriniBM25Retriever(searcher, setup["dir"] / "lucene")
    hits = r.search(["Titled row form", setup["questions"][0]], 3)
    assert hits[0][0].doc == Document("3", '"Titled"\na row in title/text form')
    for h in hits[1]:
        assert h.doc.to_json() == json.loads(setup["lines"][int(h.doc.id)])
    assert [h.score for h in hits[1]] == sorted((h.score for h in hits[1]), reverse=True)
    threaded = PyseriniBM25Retriever(searcher, setup["dir"] / "lucene", threads=2)
    assert threaded.search(["Titled row form", setup["questions"][0]], 3) == hits and searcher.batch_calls == 1


def test_pyserini_adapter_falls_back_to_the_corpus(setup, tmp_path):
    docs = DocStore(corpus=setup["corpus"], show_progress=False)
    r = PyseriniBM25Retriever(StandInLuceneSearcher(_rows(setup), store_raw=False), tmp_path / "lucene", docs)
    for h in r.search([setup["questions"][1]], 3)[0]:  # docid = row number (wiki-18)
        assert h.doc.to_json() == json.loads(setup["lines"][int(h.doc.id)])
    assert r._row_by_id is None  # the row-number guess sufficed: no pass over the corpus
    # Ids that are not row numbers: looked up through an id -> row map built once.
    corpus = tmp_path / "named.jsonl"
    named = [{"id": f"doc-{row['id']}", "contents": row["contents"]} for row in _rows(setup)][::-1]
    corpus.write_text("".join(json.dumps(row) + "\n" for row in named))
    r = PyseriniBM25Retriever(StandInLuceneSearcher(named, store_raw=False), tmp_path / "lucene",
                              DocStore(corpus=corpus, show_progress=False))
    top = r.search([setup["questions"][1]], 1)[0][0]
    assert top.doc.id.startswith("doc-") and r._row_by_id is not None
    assert top.doc.to_json() == next(row for row in named if row["id"] == top.doc.id)
    r.docs = docs  # a corpus other than the index's: the docid is not found, and the error says so
    r._row_by_id = None
    with pytest.raises(InputError, match="no document with id 'doc-.*is it the corpus the index was built from"):
        r.search([setup["questions"][1]], 1)
    no_corpus = PyseriniBM25Retriever(StandInLuceneSearcher(_rows(setup), store_raw=False), tmp_path / "lucene")
    with pytest.raises(InputError, match="no stored raw document .*pass --corpus"):
        no_corpus.search([setup["questions"][1]], 1)


def test_pyserini_adapter_behind_the_server(setup):
    from fastapi.testclient import TestClient

    from searche1.retrieval.server import make_app

    r = PyseriniBM25Retriever(StandInLuceneSearcher(_rows(setup)), setup["dir"] / "lucene")
    with TestClient(make_app(r)) as client:
        body = client.post("/retrieve", json={"queries": setup["questions"][:2], "topk": 3,
                                              "return_scores": True}).json()
    assert [[d["document"]["id"] for d in docs] for docs in body["result"]] == \
           [[h.doc.id for h in hits] for hits in r.search(setup["questions"][:2], 3)]
    assert set(body["result"][0][0]) == {"document", "score"}


def test_pyserini_missing_is_a_clear_error(tmp_path, capsys):
    try:
        import pyserini  # noqa: F401
        pytest.skip("pyserini is installed")
    except ImportError:
        pass
    (tmp_path / "lucene").mkdir()
    assert cli_main(["--threads", "1", "serve", "--pyserini-index", str(tmp_path / "lucene")]) == 2
    err = capsys.readouterr().err
    assert "pip install 'searche1[pyserini]'" in err and "Java 21" in err


def test_pyserini_real_lucene_index(setup, tmp_path):
    """With pyserini (and Java 21) installed: index the corpus as Search-R1 does, with and without --storeRaw."""
    pytest.importorskip("pyserini")
    from searche1.retrieval.pyserini_bm25 import open_pyserini

    (tmp_path / "collection").mkdir()
    (tmp_path / "collection" / "wiki-18.jsonl").write_text("\n".join(setup["lines"]) + "\n")
    for store_raw in (True, False):
        index = tmp_path / f"lucene-{store_raw}"
        subprocess.run([sys.executable, "-m", "pyserini.index.lucene", "--collection", "JsonCollection", "--input",
                        str(tmp_path / "collection"), "--index", str(index), "--generator",
                        "DefaultLuceneDocumentGenerator", "--threads", "1"] + (["--storeRaw"] if store_raw else []),
                       check=True, capture_output=True)
        r = open_pyserini(index, None if store_raw else setup["corpus"], threads=2, show_progress=False)
        name = json.loads(setup["lines"][17])["contents"].split("\n")[0].strip('"')
        hits = r.search([f"what is {name}", setup["questions"][0]], 3)
        assert name in hits[0][0].doc.contents and len(hits[1]) == 3
        for h in hits[0] + hits[1]:
            assert h.doc.to_json() == json.loads(setup["lines"][int(h.doc.id)])
        if not store_raw:
            with pytest.raises(InputError, match="stores no raw documents"):
                open_pyserini(index)
