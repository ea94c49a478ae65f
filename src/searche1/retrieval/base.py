"""What every retriever shares: hits, the document store, and the `search` interface."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Protocol, Sequence

import numpy as np

from searche1.data.corpus import Document, document_from_json
from searche1.fileio import InputError, atomic_write, parse_jsonl_line, write_json
from searche1.progress import progress

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
    """Documents by position: in memory, or read lazily by byte offset from a jsonl file, so a 21M-passage corpus
    is not held in RAM. The file is either `docs.jsonl` of an index dir (offsets precomputed in `doc_offsets.npy`)
    or a corpus jsonl given directly (`corpus=`: offsets found by one scan at start, `scan_corpus_lines`)."""

    FILE, OFFSETS = "docs.jsonl", "doc_offsets.npy"

    def __init__(self, docs: Sequence[Document] | None = None, directory: str | os.PathLike | None = None,
                 corpus: str | os.PathLike | None = None, show_progress: bool = True):
        if sum(x is not None for x in (docs, directory, corpus)) != 1:
            raise ValueError("DocStore needs exactly one of docs, directory or corpus")
        self._docs = list(docs) if docs is not None else None
        self._file = None
        self.path: Path | None = None  # the jsonl file documents are read from (None: in memory)
        if directory is not None:
            self.path = Path(directory) / self.FILE
            self._offsets = np.load(Path(directory) / self.OFFSETS, mmap_mode="r")
            self._blank_before = np.zeros(0, np.int64)
        elif corpus is not None:
            self.path = Path(corpus)
            self._offsets, self._blank_before = scan_corpus_lines(corpus, show_progress)
        if self._docs is None:
            self._file = open(self.path, "rb")

    def __len__(self) -> int:
        return len(self._docs) if self._docs is not None else len(self._offsets) - 1

    def __getitem__(self, i: int) -> Document:
        if self._docs is not None:
            return self._docs[i]
        start, end = int(self._offsets[i]), int(self._offsets[i + 1])
        # os.pread: no shared file position, so concurrent server threads cannot race. The span may run on over
        # blank lines up to the next document; the line itself ends at the first newline.
        raw = os.pread(self._file.fileno(), end - start, start).split(b"\n", 1)[0]
        return document_from_line(raw, self.path, self.line_number(i))

    def __iter__(self):
        return (self[i] for i in range(len(self)))

    def line_number(self, i: int) -> int:
        """1-based line of document i in its file (blank lines are skipped, as `data.corpus.iter_corpus` does)."""
        return i + 1 + int(np.searchsorted(self._blank_before, i, side="right"))

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


def document_from_line(raw: bytes, path: str | os.PathLike, lineno: int | str) -> Document:
    """One corpus line (or a stored raw JSON document) -> Document, by the rules of `data.corpus.iter_corpus`
    (which streams a whole file; ids are not checked for uniqueness here, since lines are read one at a time).
    `lineno`: the line number, or a place such as "docid 7", for the error message."""
    obj = parse_jsonl_line(raw, path, lineno)
    if obj is None:
        raise InputError(path, "an empty line where a document should be", lineno)
    return document_from_json(obj, path, lineno)


SCAN_CHUNK_BYTES = 16 * 1024 * 1024
_NEWLINE, _OPEN_BRACE = ord("\n"), ord("{")


def scan_corpus_lines(path: str | os.PathLike, show_progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Byte offsets of a jsonl file's documents in one pass: (offsets [n+1] int64: start of each non-blank line,
    then the file size; blank_before [b] int64: for each blank line, how many documents precede it).

    numpy finds the newlines chunk by chunk. A line whose first byte is "{" holds text, so only the rare others
    are read again to decide whether they are blank (whitespace only: skipped, as `iter_corpus` skips them). A
    last line without a newline counts like any other."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "no such file")
    size = path.stat().st_size
    starts, suspects = [], []
    buf = np.empty(SCAN_CHUNK_BYTES, np.uint8)
    with open(path, "rb", buffering=0) as f, progress(disable=not show_progress) as bar:
        task = bar.add_task(f"finding the lines of {path.name} (MB)", total=max(1, -(-size // 10**6)),
                            visible=show_progress)
        base, line_starts_here = 0, size > 0  # line 1 starts at byte 0
        while base < size:
            n = f.readinto(memoryview(buf))
            if n == 0:
                break
            chunk = buf[:n]
            after_newline = np.flatnonzero(chunk == _NEWLINE) + 1
            local = after_newline[after_newline < n]  # a newline ending the chunk starts a line in the next one
            if line_starts_here:
                local = np.concatenate(([0], local))
            suspects.append(local[chunk[local] != _OPEN_BRACE] + base)
            starts.append(local + base)
            line_starts_here = chunk[n - 1] == _NEWLINE
            base += n
            bar.update(task, completed=base // 10**6)
        bar.update(task, completed=max(1, -(-size // 10**6)))
    starts = np.concatenate(starts).astype(np.int64) if starts else np.zeros(0, np.int64)
    suspects = np.concatenate(suspects) if suspects else np.zeros(0, np.int64)
    blank_idx = []
    with open(path, "rb") as f:
        for line_idx in np.searchsorted(starts, suspects):
            start = int(starts[line_idx])
            end = int(starts[line_idx + 1]) if line_idx + 1 < len(starts) else size
            try:
                blank = not os.pread(f.fileno(), end - start, start).decode("utf-8").strip()
            except UnicodeDecodeError:  # not blank: reading that document names the line
                blank = False
            if blank:
                blank_idx.append(line_idx)
    blank_idx = np.asarray(blank_idx, np.int64)
    if len(blank_idx):
        starts = np.delete(starts, blank_idx)
    return np.append(starts, size), blank_idx - np.arange(len(blank_idx))


META_FILE = "meta.json"
FORMAT_VERSION = 1
"""The index directory layout this searche1 writes and reads (meta.json's format_version)."""


def write_meta(directory: str | os.PathLike, meta: dict) -> None:
    write_json(Path(directory) / META_FILE, meta)


def read_meta(directory: str | os.PathLike) -> dict:
    path = Path(directory) / META_FILE
    if not path.is_file():
        raise InputError(directory, f"not a searche1 index (no {META_FILE}); build one with `searche1 index`")
    try:
        meta = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise InputError(path, f"invalid JSON ({e.msg})") from None
    if not isinstance(meta, dict) or meta.get("format_version") != FORMAT_VERSION:
        found = meta.get("format_version") if isinstance(meta, dict) else None
        raise InputError(path, f"format_version={found!r}: this searche1 reads index format {FORMAT_VERSION}; "
                               "rebuild the index with `searche1 index`")
    return meta
