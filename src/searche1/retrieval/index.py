"""Build, save and open a retrieval index directory: meta.json + docs.jsonl/doc_offsets.npy + method files."""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from rich.progress import Progress

from searche1.data.corpus import iter_corpus
from searche1.fileio import InputError, atomic_dir, check_replaceable
from searche1.progress import progress
from searche1.retrieval.base import FORMAT_VERSION, DocStore, Retriever, read_meta, write_meta

METHODS = ("bm25", "dense")


@dataclass
class IndexOptions:
    method: str = "bm25"
    model: str = "minilm"  # dense only: "minilm" (bundled offline), an HF id or a local path (e5 gets prefixes)
    faiss_type: str = "flat"  # dense only: flat | fp16 | ivf | hnsw
    batch_size: int = 64  # dense only: passages per encoder batch
    device: str | None = None  # dense only: cpu / cuda
    faiss_index: str | None = None  # dense only: reuse an existing faiss file (e.g. Search-R1's e5_Flat.index)
    query_prefix: str | None = None  # dense only: None = "query: " for e5-style models, else ""
    passage_prefix: str | None = None  # dense only: None = "passage: " for e5-style models, else ""


def _read_docs(corpus, bar: Progress, task):
    for n, d in enumerate(iter_corpus(corpus), start=1):
        if n % 10000 == 0:
            bar.update(task, completed=n)
        yield d


def build_index(corpus: str | os.PathLike, out: str | os.PathLike, opts: IndexOptions,
                show_progress: bool = True) -> dict:
    """Index a corpus jsonl into `out` (written atomically: a failed build leaves no directory; an existing `out`
    is replaced only if it is an index). Returns meta."""
    if opts.method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {opts.method!r}")
    check_replaceable(out, "meta.json", "index")  # before reading the corpus, not after
    t0 = time.perf_counter()
    meta = {"format_version": FORMAT_VERSION, "method": opts.method, "corpus": str(Path(corpus).resolve())}
    with atomic_dir(out, marker="meta.json", what="index") as tmp, progress() as bar:
        task = bar.add_task("reading corpus", total=None, visible=show_progress)
        if opts.method == "dense" and opts.faiss_index:
            # Streamed: an imported index (wiki-18: 21M passages) never needs the corpus in memory.
            n_docs = DocStore.write(tmp, _read_docs(corpus, bar, task))
            docs = None
        else:
            docs = list(_read_docs(corpus, bar, task))
            n_docs = DocStore.write(tmp, docs)
        bar.update(task, completed=n_docs, total=n_docs)
        if n_docs == 0:
            raise InputError(corpus, "the corpus has no documents")
        meta["n_docs"] = n_docs
        if opts.method == "bm25":
            from searche1.retrieval.bm25 import BM25Retriever

            BM25Retriever.build(docs, show_progress=show_progress).save(tmp)
        else:
            _build_dense(docs, n_docs, tmp, opts, meta, bar, show_progress)
        meta["build_seconds"] = round(time.perf_counter() - t0, 3)
        write_meta(tmp, meta)
    return meta


def _build_dense(docs, n_docs: int, tmp: Path, opts: IndexOptions, meta: dict, bar: Progress,
                 show_progress: bool) -> None:
    import faiss

    from searche1.retrieval import dense

    if opts.faiss_type not in dense.FAISS_TYPES:
        raise ValueError(f"faiss_type must be one of {dense.FAISS_TYPES}, got {opts.faiss_type!r}")
    e5 = dense.is_e5(opts.model)
    query_prefix = opts.query_prefix if opts.query_prefix is not None else ("query: " if e5 else "")
    passage_prefix = opts.passage_prefix if opts.passage_prefix is not None else ("passage: " if e5 else "")
    model = str(Path(opts.model).resolve()) if Path(opts.model).exists() else opts.model
    encoder = dense.load_encoder(opts.model, opts.device)
    dim = dense.embedding_dim(encoder)
    # The prefixes are decided here, once, and stored: loading never guesses them again from a path.
    meta.update(model=model, faiss_type=opts.faiss_type, dim=dim, query_prefix=query_prefix,
                passage_prefix=passage_prefix)
    target = tmp / dense.DenseRetriever.FAISS_FILE
    if opts.faiss_index:
        index = dense.read_faiss(opts.faiss_index)
        dense.check_faiss_index(index, opts.faiss_index, opts.model, dim, n_docs)
        meta["faiss_type"] = "imported"
        del index
        try:  # a hard link costs nothing on the same filesystem; a copy otherwise
            os.link(opts.faiss_index, target)
        except OSError:
            shutil.copyfile(opts.faiss_index, target)
        return
    texts = [d.contents for d in docs]
    task = bar.add_task("encoding passages", total=len(texts), visible=show_progress)
    emb = dense.encode(encoder, texts, passage_prefix, opts.batch_size, on_batch=lambda n: bar.advance(task, n))
    faiss.write_index(dense.make_faiss_index(emb, opts.faiss_type), str(target))


def open_index(directory: str | os.PathLike, device: str | None = None, n_threads: int = 1) -> Retriever:
    """Open an index directory written by `build_index` (BM25 matrices and faiss file memory-mapped)."""
    meta = read_meta(directory)
    docs = DocStore(directory=directory)
    if meta.get("method") == "bm25":
        from searche1.retrieval.bm25 import BM25Retriever

        return BM25Retriever.load(directory, docs, n_threads=n_threads)
    if meta.get("method") == "dense":
        from searche1.retrieval.dense import DenseRetriever

        return DenseRetriever.load(directory, docs, meta["model"], device=device,
                                   query_prefix=meta.get("query_prefix", ""))
    raise InputError(directory, f"unknown index method {meta.get('method')!r} in meta.json")
