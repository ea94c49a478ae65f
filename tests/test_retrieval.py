"""BM25 and dense indexes: build, save, mmap load, batched search, options and errors."""

import json

import numpy as np
import pytest

from searche1.data.corpus import write_corpus
from searche1.fileio import InputError
from searche1.retrieval.base import DocStore, read_meta
from searche1.retrieval.bm25 import BM25Retriever
from searche1.retrieval.index import IndexOptions, build_index, open_index


def _ids(hits):
    return [h.doc.id for h in hits]


def test_bm25_finds_the_right_passage(tiny_corpus):
    r = BM25Retriever.build(tiny_corpus)
    res = r.search(["Which company did Zorvak found?", "Melin city founded", "Velsh language country"], 3)
    assert [len(x) for x in res] == [3, 3, 3]
    assert "2" in _ids(res[0]) and _ids(res[1])[0] == "1" and _ids(res[2])[0] == "5"
    for hits in res:
        scores = [h.score for h in hits]
        assert scores == sorted(scores, reverse=True)


def test_bm25_batch_equals_single(tiny_corpus):
    r = BM25Retriever.build(tiny_corpus)
    queries = ["Zorvak ship", "Dosta Quenland", "painter born 1873", "Kelmar"]
    batch = r.search(queries, 2)
    for q, hits in zip(queries, batch):
        single = r.search([q], 2)[0]
        assert _ids(single) == _ids(hits)
        assert [h.score for h in single] == pytest.approx([h.score for h in hits])


def test_bm25_unknown_words_and_topk(tiny_corpus):
    r = BM25Retriever.build(tiny_corpus)
    res = r.search(["qwertyuiop", ""], 3)
    assert all(len(x) == 3 and all(h.score == 0 for h in x) for x in res)
    assert len(r.search(["Zorvak"], 100)[0]) == len(tiny_corpus)  # k capped at corpus size
    for bad in (0, 101, -1, True, 2.5):
        with pytest.raises(ValueError, match="topk"):
            r.search(["x"], bad)
    assert r.search([], 3) == []


def test_build_save_load_mmap(tmp_path, tiny_corpus):
    corpus = tmp_path / "corpus.jsonl"
    write_corpus(corpus, tiny_corpus)
    meta = build_index(corpus, tmp_path / "idx", IndexOptions("bm25"), show_progress=False)
    assert meta["n_docs"] == 6 and read_meta(tmp_path / "idx")["method"] == "bm25"
    loaded = open_index(tmp_path / "idx")
    fresh = BM25Retriever.build(tiny_corpus)
    q = ["Zorvak painter", "Tarvos independence"]
    assert [_ids(h) for h in loaded.search(q, 3)] == [_ids(h) for h in fresh.search(q, 3)]
    hit = loaded.search(["Kelmar"], 1)[0][0]
    assert hit.doc.contents == tiny_corpus[2].contents  # docs come back byte-exact from docs.jsonl
    assert isinstance(loaded.model.scores["data"], np.memmap)


def test_docstore_lazy_reads_unicode(tmp_path):
    from searche1.data.corpus import Document

    docs = [Document("a", '"Ünï"\ncafé ☕'), Document("b", '"B"\nline1\nline2')]
    DocStore.write(tmp_path, docs)
    store = DocStore(directory=tmp_path)
    assert len(store) == 2 and list(store) == docs


def test_failed_build_leaves_no_index(tmp_path):
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text('{"id": "0", "contents": "a"}\n{"id": "0", "contents": "b"}\n')
    with pytest.raises(InputError, match="duplicate id"):
        build_index(corpus, tmp_path / "idx", IndexOptions("bm25"), show_progress=False)
    assert not (tmp_path / "idx").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["corpus.jsonl"]
    with pytest.raises(InputError, match="not a searche1 index"):
        open_index(tmp_path)


def test_e5_prefixes():
    from searche1.retrieval.dense import DenseRetriever, is_e5

    assert is_e5("intfloat/e5-base-v2") and is_e5("/models/e5-large") and not is_e5("minilm")
    assert DenseRetriever.passage_prefix("intfloat/e5-base-v2") == "passage: "
    assert DenseRetriever.passage_prefix("minilm") == ""


@pytest.fixture(scope="module")
def minilm():
    from searche1.retrieval.dense import load_encoder

    return load_encoder("minilm")


def test_dense_minilm_retrieves(tmp_path, tiny_corpus, minilm):
    from searche1.retrieval.dense import DenseRetriever, encode, make_faiss_index

    emb = encode(minilm, [d.contents for d in tiny_corpus], "")
    assert emb.shape == (6, 384) and np.allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-5)
    tops = {}
    for kind in ("flat", "fp16", "hnsw"):
        r = DenseRetriever(minilm, make_faiss_index(emb, kind), DocStore(tiny_corpus), "minilm")
        res = r.search(["What is the language of Tarvos?", "the ship named Zorvak"], 2)
        tops[kind] = [_ids(h)[0] for h in res]
        assert all(len(h) == 2 for h in res)
    assert tops["flat"] == ["5", "4"] and tops["fp16"] == tops["flat"] == tops["hnsw"]


def test_dense_index_dir_and_import(tmp_path, tiny_corpus, minilm):
    corpus = tmp_path / "corpus.jsonl"
    write_corpus(corpus, tiny_corpus)
    build_index(corpus, tmp_path / "dense", IndexOptions("dense", faiss_type="flat"), show_progress=False)
    meta = json.loads((tmp_path / "dense" / "meta.json").read_text())
    assert meta["method"] == "dense" and meta["dim"] == 384
    r = open_index(tmp_path / "dense")
    assert _ids(r.search(["Tarvos language"], 1)[0]) == ["5"]
    # reuse an existing faiss file (Search-R1's e5_Flat.index path): must match the corpus size
    build_index(corpus, tmp_path / "imported", IndexOptions("dense", faiss_index=str(tmp_path / "dense/faiss.index")),
                show_progress=False)
    assert _ids(open_index(tmp_path / "imported").search(["Tarvos language"], 1)[0]) == ["5"]
    write_corpus(corpus, tiny_corpus[:5])
    with pytest.raises(InputError, match="holds 6 vectors but the corpus has 5"):
        build_index(corpus, tmp_path / "bad", IndexOptions("dense", faiss_index=str(tmp_path / "dense/faiss.index")),
                    show_progress=False)


def test_ivf_option_trains():
    from searche1.retrieval.dense import make_faiss_index

    rng = np.random.default_rng(0)
    x = rng.standard_normal((400, 16)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    index = make_faiss_index(x, "ivf")
    index.nprobe = index.nlist  # probing every list = exact
    _, idx = index.search(x[:5], 1)
    assert idx[:, 0].tolist() == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match="faiss_type"):
        make_faiss_index(x, "lsh")


def test_out_dir_that_is_not_an_index_is_never_replaced(tmp_path, tiny_corpus):
    corpus = tmp_path / "corpus.jsonl"
    write_corpus(corpus, tiny_corpus)
    mine = tmp_path / "mydata"
    mine.mkdir()
    (mine / "precious.txt").write_text("keep me")
    with pytest.raises(InputError, match="is not a searche1 index .no meta.json."):
        build_index(corpus, mine, IndexOptions("bm25"), show_progress=False)
    assert (mine / "precious.txt").read_text() == "keep me"
    with pytest.raises(InputError, match="not a searche1 index"):
        build_index(corpus, tmp_path, IndexOptions("bm25"), show_progress=False)  # the corpus's own folder
    build_index(corpus, tmp_path / "idx", IndexOptions("bm25"), show_progress=False)
    build_index(corpus, tmp_path / "idx", IndexOptions("bm25"), show_progress=False)  # an index: replaced
    assert read_meta(tmp_path / "idx")["n_docs"] == 6
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corpus.jsonl", "idx", "mydata"]


def test_stopword_or_unknown_query_matches_nothing(tmp_path):
    from searche1.data.corpus import Document

    docs = [Document("0", "the of and"), Document("1", '"A"\napples grow'), Document("2", '"B"\npears grow')]
    r = BM25Retriever.build(docs)
    for q in ("the", "qwertyuiop", ""):
        assert [h.score for h in r.search([q], 3)[0]] == [0.0, 0.0, 0.0]
    assert _ids(r.search(["apples"], 1)[0]) == ["1"]
    mixed = r.search(["apples", "the", "pears"], 1)
    assert [_ids(h) for h in mixed] == [["1"], ["0"], ["2"]] and mixed[1][0].score == 0.0


def test_bare_string_query_is_rejected(tiny_corpus):
    r = BM25Retriever.build(tiny_corpus)
    with pytest.raises(TypeError, match="wrap it"):
        r.search("Zorvak", 3)


def test_is_e5_names():
    from searche1.retrieval.dense import is_e5

    assert is_e5("intfloat/e5-base-v2") and is_e5("intfloat/multilingual-e5-large") and is_e5("/m/e5_small")
    assert not is_e5("/hf/snapshots/f52bf8ec6c3d4e5bcd") and not is_e5("minilm") and not is_e5("bge-e5x")


def test_dense_prefixes_stored_at_build(tmp_path, tiny_corpus, minilm):
    corpus = tmp_path / "corpus.jsonl"
    write_corpus(corpus, tiny_corpus)
    build_index(corpus, tmp_path / "d", IndexOptions("dense", query_prefix="query: ", passage_prefix="passage: "),
                show_progress=False)
    meta = read_meta(tmp_path / "d")
    assert (meta["query_prefix"], meta["passage_prefix"]) == ("query: ", "passage: ")
    assert open_index(tmp_path / "d").query_prefix == "query: "


def test_imported_faiss_must_match_encoder(tmp_path, tiny_corpus, minilm):
    import faiss

    corpus = tmp_path / "corpus.jsonl"
    write_corpus(corpus, tiny_corpus)
    cases = [(faiss.IndexFlatIP(768), "768-d vectors but --model minilm makes 384-d"),
             (faiss.IndexFlatL2(384), "not an inner-product index")]
    for index, message in cases:
        index.add(np.zeros((6, index.d), np.float32))
        faiss.write_index(index, str(tmp_path / "imported.index"))
        with pytest.raises(InputError, match=message):
            build_index(corpus, tmp_path / "x", IndexOptions("dense", faiss_index=str(tmp_path / "imported.index")),
                        show_progress=False)
    assert not (tmp_path / "x").exists()
