"""BM25 with bm25s: English stopwords + Snowball stemmer (PyStemmer), index saved and memory-mapped on load.

Retrieval uses bm25s's numba backend when numba is installed (a core dependency): in a probe on 100k passages it
answered batches 5x faster than the numpy backend. The first search of a process pays the JIT compile (a few
seconds); `warmup` does it up front.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

# bm25s imports jax when it is installed (GPU images often have it), and jax's first use grabs 75% of the GPU,
# which a retriever running beside vLLM or training must not take. Respect an explicit setting.
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import bm25s  # noqa: E402
import numpy as np  # noqa: E402
import Stemmer  # noqa: E402

from searche1.data.corpus import Document
from searche1.retrieval.base import DocStore, Hit, check_queries, check_topk


def _backend() -> str:
    try:
        import numba  # noqa: F401
    except ImportError:
        return "numpy"
    return "numba"


def _tokenizer() -> bm25s.tokenization.Tokenizer:
    return bm25s.tokenization.Tokenizer(stopwords="en", stemmer=Stemmer.Stemmer("english"))


class BM25Retriever:
    """Build in memory with `build`, persist with `save`, reopen with `load` (mmap)."""

    search_releases_gil = False  # mostly Python (tokenizing, building hits): the server runs it inline

    def __init__(self, model: bm25s.BM25, tokenizer, docs: DocStore, n_threads: int = 1):
        self.model, self.tokenizer, self.docs = model, tokenizer, docs
        self.n_threads = n_threads
        # bm25s's return_as="string" rebuilds this reverse map on every call (O(vocabulary)); build it once.
        vocab = tokenizer.get_vocab_dict()
        self._id_to_token = {i: t for t, i in vocab.items()}
        # bm25s gives a text with no indexable word the token "": a query of unknown words or stopwords only would
        # then match exactly the documents without words. Such a query must match nothing.
        self._empty_id = vocab.get("")

    @classmethod
    def build(cls, docs: Sequence[Document], show_progress: bool = False, n_threads: int = 1) -> "BM25Retriever":
        if not docs:
            raise ValueError("cannot index an empty corpus")
        tokenizer = _tokenizer()
        tokens = tokenizer.tokenize([d.contents for d in docs], return_as="tuple", show_progress=show_progress)
        model = bm25s.BM25(backend=_backend())
        model.index(tokens, show_progress=show_progress)
        return cls(model, tokenizer, DocStore(docs), n_threads)

    def save(self, directory: str | os.PathLike) -> None:
        """Write the BM25 matrices and the tokenizer vocabulary (docs are written by the caller's DocStore)."""
        directory = Path(directory)
        self.model.save(str(directory / "bm25"))
        self.tokenizer.save_vocab(str(directory / "bm25"))
        self.tokenizer.save_stopwords(str(directory / "bm25"))

    @classmethod
    def load(cls, directory: str | os.PathLike, docs: DocStore, n_threads: int = 1) -> "BM25Retriever":
        directory = Path(directory)
        model = bm25s.BM25.load(str(directory / "bm25"), mmap=True, show_progress=False)
        model.backend = _backend()  # the saved params name the build machine's backend
        tokenizer = _tokenizer()
        tokenizer.load_vocab(str(directory / "bm25"))
        tokenizer.load_stopwords(str(directory / "bm25"))
        return cls(model, tokenizer, docs, n_threads)

    def warmup(self) -> None:
        """Compile the numba kernels now rather than on the first request."""
        self.search(["warmup"], 1)

    def search(self, queries: Sequence[str], topk: int) -> list[list[Hit]]:
        queries = check_queries(queries)
        k = check_topk(topk, len(self.docs))
        if not queries:
            return []
        # Words never seen in the corpus are dropped (update_vocab=False). A query left with no word matches nothing:
        # it gets the first k documents with score 0, so every query has exactly k hits like the dense index.
        ids = self.tokenizer.tokenize(queries, update_vocab=False, return_as="ids", show_progress=False)
        tokens = [[self._id_to_token[i] for i in q if i != self._empty_id] for q in ids]
        rows = [i for i, t in enumerate(tokens) if t]
        out: list = [None] * len(tokens)
        for i in (i for i, t in enumerate(tokens) if not t):
            out[i] = [Hit(self.docs[j], 0.0) for j in range(k)]
        if rows:  # bm25s rejects empty token lists
            idx, scores = self.model.retrieve([tokens[i] for i in rows], k=k, show_progress=False,
                                              n_threads=self.n_threads)
            for row, row_i, row_s in zip(rows, np.asarray(idx), np.asarray(scores)):
                out[row] = [Hit(self.docs[int(i)], float(s)) for i, s in zip(row_i, row_s)]
        return out
