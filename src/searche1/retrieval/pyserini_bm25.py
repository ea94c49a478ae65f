"""BM25 over an existing pyserini (Lucene) index, as Search-R1's retrieval server does it.

Search-R1 users may have a Lucene index of wiki-18 built with `python -m pyserini.index.lucene --collection
JsonCollection ... --storeRaw`. This serves it through pyserini's `LuceneSearcher` (its default BM25 parameters, as
Search-R1 uses them): each hit's `docid` and `score`, and the document from `searcher.doc(docid).raw()`, the JSON
of the corpus line. An index built without `--storeRaw` has no raw documents; then the corpus jsonl it was built
from supplies them, looked up by docid (for wiki-18 the docid is the line number).

pyserini is an optional extra (`pip install 'searche1[pyserini]'`) and needs a Java 21 JDK.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from searche1.data.corpus import Document
from searche1.fileio import InputError
from searche1.retrieval.base import DocStore, Hit, check_queries, check_topk, document_from_line

INSTALL_HINT = "pip install 'searche1[pyserini]' (pyserini needs a Java 21 JDK; point JAVA_HOME at it)"


class PyseriniUnavailable(RuntimeError):
    """pyserini is not installed, or it is but could not start its JVM."""


def lucene_searcher_class():
    """pyserini's LuceneSearcher, or PyseriniUnavailable saying how to get it."""
    try:
        from pyserini.search.lucene import LuceneSearcher
    except ImportError as e:
        raise PyseriniUnavailable(f"--pyserini-index needs pyserini, which is not installed ({e}): "
                                  f"{INSTALL_HINT}") from None
    except Exception as e:  # pyserini starts the JVM on import: a missing or too old Java fails here
        raise PyseriniUnavailable(f"pyserini is installed but failed to import ({type(e).__name__}: {e}); "
                                  f"{INSTALL_HINT}") from None
    return LuceneSearcher


class PyseriniBM25Retriever:
    """`search(queries, topk)` through a LuceneSearcher (or anything with its interface: `search(q, k)`,
    `batch_search(queries, qids, k, threads)`, `doc(docid)` -> object with `raw()`, and `num_docs`)."""

    # pyserini calls into the JVM through pyjnius on the calling thread; the server runs it inline, on one thread,
    # rather than handing the JVM a thread pyjnius has not attached.
    search_releases_gil = False

    def __init__(self, searcher, source: str | os.PathLike, docs: DocStore | None = None, threads: int = 1):
        """`source`: the index directory, named in errors. `docs`: the corpus, used only for hits without a stored
        raw document. `threads` > 1: a batch of queries goes through `batch_search` with that many threads."""
        self.searcher, self.source, self.docs, self.threads = searcher, Path(source), docs, threads
        self._row_by_id: dict[str, int] | None = None  # built on first need: a full pass over the corpus

    def search(self, queries: Sequence[str], topk: int) -> list[list[Hit]]:
        queries = check_queries(queries)
        k = check_topk(topk, max(1, int(self.searcher.num_docs)))
        if not queries:
            return []
        if self.threads > 1 and len(queries) > 1:
            qids = [str(i) for i in range(len(queries))]
            by_qid = self.searcher.batch_search(queries, qids, k=k, threads=self.threads)
            hit_lists = [by_qid.get(qid, []) for qid in qids]
        else:
            hit_lists = [self.searcher.search(q, k=k) for q in queries]
        # Fewer than k hits is possible (a query matching few documents); Search-R1 returns those too.
        return [[Hit(self._document(str(h.docid)), float(h.score)) for h in hits[:k]] for hits in hit_lists]

    def _document(self, docid: str) -> Document:
        stored = self.searcher.doc(docid)
        raw = stored.raw() if stored is not None else None
        if raw is not None:
            return document_from_line(raw.encode("utf-8"), self.source, f"docid {docid}")
        if self.docs is None:
            raise InputError(self.source, f"docid {docid} has no stored raw document (index built without "
                                          "--storeRaw): pass --corpus, the jsonl the index was built from")
        return self.docs[self._row_of(docid)]

    def _row_of(self, docid: str) -> int:
        """Corpus row of a docid: wiki-18's docids are row numbers, so try that first (checking the id matches),
        else map every id once."""
        row = int(docid) if docid.isdigit() else -1
        if 0 <= row < len(self.docs) and self.docs[row].id == docid:
            return row
        if self._row_by_id is None:
            self._row_by_id = {d.id: i for i, d in enumerate(self.docs)}
        if docid not in self._row_by_id:
            raise InputError(self.docs.path or "the corpus", f"no document with id {docid!r}, which the Lucene "
                                                             f"index {self.source} returned: is it the corpus the "
                                                             "index was built from?")
        return self._row_by_id[docid]


def stores_raw(searcher) -> bool:
    """Whether the index keeps each document's raw JSON (Search-R1's test: the first document's raw())."""
    first = searcher.doc(0) if searcher.num_docs else None
    return first is not None and first.raw() is not None


def open_pyserini(index_dir: str | os.PathLike, corpus: str | os.PathLike | None = None, threads: int = 1,
                  show_progress: bool = True) -> PyseriniBM25Retriever:
    """Open a pyserini Lucene index directory; `corpus` is needed when the index stores no raw documents."""
    if not Path(index_dir).is_dir():
        raise InputError(index_dir, "no such Lucene index directory")
    if corpus is not None and not Path(corpus).is_file():
        raise InputError(corpus, "no such corpus file")
    searcher_class = lucene_searcher_class()
    try:
        searcher = searcher_class(str(index_dir))
    except Exception as e:  # a Java exception, through pyjnius
        raise InputError(index_dir, f"pyserini cannot open it as a Lucene index ({type(e).__name__}: {e})") from None
    if searcher.num_docs == 0:
        raise InputError(index_dir, "the Lucene index holds no documents")
    if corpus is None and not stores_raw(searcher):
        raise InputError(index_dir, "stores no raw documents (built without --storeRaw): pass --corpus "
                                    "CORPUS.jsonl, the jsonl the index was built from")
    docs = DocStore(corpus=corpus, show_progress=show_progress) if corpus is not None else None
    return PyseriniBM25Retriever(searcher, index_dir, docs, threads)
