"""A trajectories jsonl (eval.trajectories.jsonl, an OFSD pool.jsonl) opened for browsing: one pass finds each
line's byte offset and the fields the viewer filters on, without parsing the lines; a page parses only its rows.

A line holds the token ids and log-probs (tens of KB at 500 tokens), so json-parsing 50k lines takes seconds
while finding a few keys in them takes a fraction of one (benchmarks/viewer.py measures both). The keys are
found where `Trajectory.to_json` writes them; a line that does not look so is parsed in full instead, so a file
written by another tool still opens, only slower.
"""

from __future__ import annotations

import mmap
import os
import re
from pathlib import Path

import numpy as np

from searche1.fileio import InputError, parse_jsonl_line
from searche1.rollout.trajectory import Trajectory

HEAD_PATTERN = re.compile(rb'\{"group_id": "((?:[^"\\]|\\.)*)", "sample_index": (\d+),')
_EM = b'"em": '
_SEARCHES = b'"n_searches": '


def benchmark_of(group_id: str) -> str:
    """The dataset part of a group id ("{dataset}/{id}", QAExample.group_id)."""
    return group_id.split("/", 1)[0]


class TrajectoryIndex:
    def __init__(self, path: str | Path):
        from searche1.retrieval.base import scan_corpus_lines

        self.path = Path(path)
        self._file = open(self.path, "rb")
        try:
            size = os.fstat(self._file.fileno()).st_size
            offsets, _ = scan_corpus_lines(self.path, show_progress=False)
            if offsets[-1] != size or os.stat(self.path).st_ino != os.fstat(self._file.fileno()).st_ino:
                raise InputError(self.path, "changed while it was being indexed; open it again")
            self._offsets = offsets
            n = len(offsets) - 1
            self.group_ids: list[str] = []
            self.sample_index = np.zeros(n, np.int32)
            self.em = np.zeros(n, np.float32)
            self.searches = np.zeros(n, np.int32)
            self._map = mmap.mmap(self._file.fileno(), 0, access=mmap.ACCESS_READ) if n else None
            for i, (a, b) in enumerate(zip(offsets[:-1].tolist(), offsets[1:].tolist())):
                group_id, sample, em, searches = self._fast_fields(a, b) or self._slow_fields(i)
                self.group_ids.append(group_id)
                self.sample_index[i], self.em[i], self.searches[i] = sample, em, searches
        except BaseException:
            self.close()
            raise
        datasets = [benchmark_of(g) for g in self.group_ids]
        self.benchmarks = sorted(set(datasets))
        code = {name: c for c, name in enumerate(self.benchmarks)}
        self._benchmark_code = np.array([code[d] for d in datasets], np.int32)
        self._by_key: dict[tuple[str, int], int] | None = None

    def _fast_fields(self, a: int, b: int):
        mm = self._map
        head = HEAD_PATTERN.match(mm, a, b)
        i = mm.find(_EM, a, b)
        k = mm.rfind(_SEARCHES, a, b)
        if head is None or i < 0 or k < 0 or b'\\' in head.group(1):
            return None
        try:
            em = float(mm[i + len(_EM):mm.find(b",", i, b)])
            searches = int(mm[k + len(_SEARCHES):mm.find(b"}", k, b)])
        except ValueError:
            return None
        return head.group(1).decode("utf-8"), int(head.group(2)), em, searches

    def _slow_fields(self, i: int):
        t = self.trajectory(i)
        return t.group_id, t.sample_index, t.em, t.n_searches

    def __len__(self) -> int:
        return len(self._offsets) - 1

    def close(self) -> None:
        if getattr(self, "_map", None) is not None:
            self._map.close()
        self._file.close()

    def row(self, i: int) -> dict:
        """Line i (0-based) as parsed JSON."""
        if not 0 <= i < len(self):
            raise IndexError(f"{self.path}: no trajectory {i} (the file holds {len(self)})")
        a, b = int(self._offsets[i]), int(self._offsets[i + 1])
        return parse_jsonl_line(self._map[a:b], self.path, self.line_number(i))

    def line_number(self, i: int) -> int:
        """The file line (1-based, blank lines counted) of trajectory i: for error messages."""
        start = int(self._offsets[i])
        return int(np.count_nonzero(np.frombuffer(self._map, np.uint8, count=start) == 10)) + 1 if start else 1

    def trajectory(self, i: int) -> Trajectory:
        row = self.row(i)
        try:
            return Trajectory.from_json(row)
        except (TypeError, ValueError) as e:
            raise InputError(self.path, f"not a trajectory ({e})", self.line_number(i)) from None

    def find(self, group_id: str, sample_index: int) -> int:
        """The line of one sample (the OFSD pairs name their trajectories so)."""
        if self._by_key is None:
            self._by_key = {(g, int(s)): i for i, (g, s) in enumerate(zip(self.group_ids, self.sample_index))}
        try:
            return self._by_key[group_id, sample_index]
        except KeyError:
            raise KeyError(f"{self.path}: no trajectory {group_id}#{sample_index}") from None

    def select(self, benchmark: str | None = None, correct: bool | None = None,
               searches: int | None = None) -> np.ndarray:
        """Line numbers of the trajectories that pass every filter given (None = any)."""
        keep = np.ones(len(self), bool)
        if benchmark is not None:
            code = self.benchmarks.index(benchmark) if benchmark in self.benchmarks else -1
            keep &= self._benchmark_code == code
        if correct is not None:
            keep &= (self.em > 0) == correct
        if searches is not None:
            keep &= self.searches == searches
        return np.flatnonzero(keep)
