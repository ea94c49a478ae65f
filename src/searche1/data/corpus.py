"""Corpus jsonl: `{"id", "contents": "\\"Title\\"\\ntext"}` or `{"id", "title", "text"}`."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterable, Iterator

from searche1.fileio import InputError, read_jsonl, write_jsonl


@dataclass(frozen=True)
class Document:
    id: str
    contents: str  # first line = title (quotes kept as stored), rest = text

    def to_json(self) -> dict:
        return {"id": self.id, "contents": self.contents}


def make_contents(title: str, text: str) -> str:
    """The wiki-18 layout: the title in double quotes on the first line, then the text."""
    return f'"{title}"\n{text}'


def iter_corpus(path: str | os.PathLike) -> Iterator[Document]:
    """Stream documents; malformed lines raise InputError naming file and line. Ids must be unique."""
    seen: set[str] = set()
    for lineno, obj in read_jsonl(path):
        doc = document_from_json(obj, path, lineno)
        if doc.id in seen:
            raise InputError(path, f"duplicate id {doc.id!r}", lineno)
        seen.add(doc.id)
        yield doc


def document_from_json(obj: dict, path: str | os.PathLike, lineno: int | str) -> Document:
    """One corpus object -> Document: `{"id", "contents"}` or `{"id", "title", "text"}`; InputError naming the file
    and `lineno` otherwise."""
    if "id" not in obj:
        raise InputError(path, "missing field 'id'", lineno)
    doc_id = obj["id"]
    if isinstance(doc_id, bool) or not isinstance(doc_id, (str, int)):
        raise InputError(path, f"field 'id' must be a string, got {type(doc_id).__name__}", lineno)
    if "contents" in obj:
        contents = obj["contents"]
        if not isinstance(contents, str):
            raise InputError(path, f"field 'contents' must be a string, got {type(contents).__name__}", lineno)
    elif "title" in obj and "text" in obj:
        title, text = obj["title"], obj["text"]
        for key, value in (("title", title), ("text", text)):
            if not isinstance(value, str):
                raise InputError(path, f"field {key!r} must be a string, got {type(value).__name__}", lineno)
        contents = make_contents(title, text)
    else:
        raise InputError(path, "expected field 'contents', or fields 'title' and 'text'", lineno)
    return Document(str(doc_id), contents)


def read_corpus(path: str | os.PathLike) -> list[Document]:
    return list(iter_corpus(path))


def write_corpus(path: str | os.PathLike, docs: Iterable[Document]) -> int:
    return write_jsonl(path, (d.to_json() for d in docs))
