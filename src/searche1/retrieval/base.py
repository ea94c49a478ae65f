"""What every retriever shares: hits, the document store, and the `search` interface."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Protocol, Sequence

import numpy as np

from searche1.data.corpus import Document
from searche1.fileio import InputError, atomic_write, write_json

MAX_TOPK = 100


@dataclass(frozen=True)
class Hit:
    doc: Document
    score: float

    def to_json(self, return_scores: bool) -> dict:
        """One doc of the /retrieve response: with scores `{"document": ..., "score": s}`, else the document."""
        document = self.doc.to_json()
        return {"document": document, "score": float(self.score)} if return_scores else document


class Retriever(Protocol):
    def search(self, queries: Sequence[str], topk: int) -> list[list[Hit]]:
        """Top-k hits per query, best first."""
        ...


def check_queries(queries: Sequence[str]) -> list[str]:
    """A list of query strings; a bare string would otherwise be searched character by character."""
    if isinstance(queries, str):
        raise TypeError("queries must be a list of strings, got one string; wrap it: [query]")
    queries = list(queries)
    for q in queries:
        if not isinstance(q, str):
            raise TypeError(f"queries must be strings, got {type(q).__name__}")
    return queries


def check_topk(topk: int, n_docs: int) -> int:
    if isinstance(topk, bool) or not isinstance(topk, int) or not 1 <= topk <= MAX_TOPK:
        raise ValueError(f"topk must be an integer in 1..{MAX_TOPK}, got {topk!r}")
    return min(topk, n_docs)


class DocStore:
    """Documents by position: in memory, or read lazily from `docs.jsonl` + `doc_offsets.npy` in an index dir
    (so a 21M-passage corpus is not held in RAM)."""

    FILE, OFFSETS = "docs.jsonl", "doc_offsets.npy"

    def __init__(self, docs: Sequence[Document] | None = None, directory: str | os.PathLike | None = None):
        self._docs = list(docs) if docs is not None else None
        self._dir = Path(directory) if directory is not None else None
        self._offsets = None
        self._file = None
        if self._docs is None:
            if self._dir is None:
                raise ValueError("DocStore needs docs or a directory")
            self._offsets = np.load(self._dir / self.OFFSETS, mmap_mode="r")
            self._file = open(self._dir / self.FILE, "rb")

    def __len__(self) -> int:
        return len(self._docs) if self._docs is not None else len(self._offsets) - 1

    def __getitem__(self, i: int) -> Document:
        if self._docs is not None:
            return self._docs[i]
        start, end = int(self._offsets[i]), int(self._offsets[i + 1])
        # os.pread: no shared file position, so concurrent server threads cannot race.
        obj = json.loads(os.pread(self._file.fileno(), end - start, start))
        return Document(obj["id"], obj["contents"])

    def __iter__(self):
        return (self[i] for i in range(len(self)))

    @staticmethod
    def write(directory: str | os.PathLike, docs: Iterable[Document]) -> int:
        """Write docs.jsonl and its byte offsets (n+1 entries) into `directory`."""
        directory = Path(directory)
        offsets = [0]
        with atomic_write(directory / DocStore.FILE, "wb") as f:
            for d in docs:
                line = (json.dumps(d.to_json(), ensure_ascii=False) + "\n").encode("utf-8")
                f.write(line)
                offsets.append(offsets[-1] + len(line))
        with atomic_write(directory / DocStore.OFFSETS, "wb") as f:
            np.save(f, np.asarray(offsets, dtype=np.int64))
        return len(offsets) - 1

    def close(self):
        if self._file is not None:
            self._file.close()


META_FILE = "meta.json"


def write_meta(directory: str | os.PathLike, meta: dict) -> None:
    write_json(Path(directory) / META_FILE, meta)


def read_meta(directory: str | os.PathLike) -> dict:
    path = Path(directory) / META_FILE
    if not path.is_file():
        raise InputError(directory, f"not a searche1 index (no {META_FILE}); build one with `searche1 index`")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise InputError(path, f"invalid JSON ({e.msg})") from None
