"""Build, save and open a retrieval index directory: meta.json + docs.jsonl/doc_offsets.npy + method files."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from searche1.data.corpus import iter_corpus
from searche1.fileio import InputError, atomic_dir
from searche1.retrieval.base import DocStore, Retriever, read_meta, write_meta

METHODS = ("bm25", "dense")
FORMAT_VERSION = 1


@dataclass
class IndexOptions:
    method: str = "bm25"
    model: str = "minilm"  # dense only: "minilm" (bundled offline), an HF id or a local path (e5 gets prefixes)
    faiss_type: str = "flat"  # dense only: flat | fp16 | ivf | hnsw
    batch_size: int = 64  # dense only: passages per encoder batch
    device: str | None = None  # dense only: cpu / cuda
    faiss_index: str | None = None  # dense only: reuse an existing faiss file (e.g. Search-R1's e5_Flat.index)


def progress(console=None) -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    TextColumn("eta"), TimeRemainingColumn(), console=console, transient=False)


def build_index(corpus: str | os.PathLike, out: str | os.PathLike, opts: IndexOptions,
                show_progress: bool = True) -> dict:
    """Index a corpus jsonl into `out` (written atomically: a failed build leaves no directory). Returns meta."""
    if opts.method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {opts.method!r}")
    t0 = time.perf_counter()
    with progress() as bar:
        task = bar.add_task("reading corpus", total=None, visible=show_progress)
        docs = []
        for d in iter_corpus(corpus):
            docs.append(d)
            if len(docs) % 10000 == 0:
                bar.update(task, completed=len(docs))
        bar.update(task, completed=len(docs), total=len(docs))
    if not docs:
        raise InputError(corpus, "the corpus has no documents")
    meta = {"format_version": FORMAT_VERSION, "method": opts.method, "n_docs": len(docs),
            "corpus": str(Path(corpus).resolve())}
    with atomic_dir(out) as tmp:
        DocStore.write(tmp, docs)
        if opts.method == "bm25":
            from searche1.retrieval.bm25 import BM25Retriever

            BM25Retriever.build(docs, show_progress=show_progress).save(tmp)
        else:
            _build_dense(docs, tmp, opts, meta, show_progress)
        meta["build_seconds"] = round(time.perf_counter() - t0, 3)
        write_meta(tmp, meta)
    return meta


def _build_dense(docs, tmp: Path, opts: IndexOptions, meta: dict, show_progress: bool) -> None:
    import faiss

    from searche1.retrieval import dense

    if opts.faiss_type not in dense.FAISS_TYPES:
        raise ValueError(f"faiss_type must be one of {dense.FAISS_TYPES}, got {opts.faiss_type!r}")
    model = str(Path(opts.model).resolve()) if Path(opts.model).exists() else opts.model
    meta.update(model=model, faiss_type=opts.faiss_type)
    if opts.faiss_index:
        index = faiss.read_index(str(opts.faiss_index))
        if index.ntotal != len(docs):
            raise InputError(opts.faiss_index, f"holds {index.ntotal} vectors but the corpus has {len(docs)} "
                                               "documents; the index and corpus must match line for line")
        meta["faiss_type"] = "imported"
    else:
        encoder = dense.load_encoder(opts.model, opts.device)
        texts = [d.contents for d in docs]
        with progress() as bar:
            task = bar.add_task("encoding passages", total=len(texts), visible=show_progress)
            emb = dense.encode(encoder, texts, dense.DenseRetriever.passage_prefix(opts.model), opts.batch_size,
                               on_batch=lambda n: bar.advance(task, n))
        index = dense.make_faiss_index(emb, opts.faiss_type)
        meta["dim"] = int(emb.shape[1])
    faiss.write_index(index, str(tmp / dense.DenseRetriever.FAISS_FILE))


def open_index(directory: str | os.PathLike, device: str | None = None, n_threads: int = 1) -> Retriever:
    """Open an index directory written by `build_index` (BM25 matrices and faiss file memory-mapped)."""
    meta = read_meta(directory)
    docs = DocStore(directory=directory)
    if meta.get("method") == "bm25":
        from searche1.retrieval.bm25 import BM25Retriever

        return BM25Retriever.load(directory, docs, n_threads=n_threads)
    if meta.get("method") == "dense":
        from searche1.retrieval.dense import DenseRetriever

        return DenseRetriever.load(directory, docs, meta["model"], device=device)
    raise InputError(directory, f"unknown index method {meta.get('method')!r} in meta.json")
