"""One metrics writer per run: JSONL records `{"step", "time", "<prefix>/<name>": value, ...}`.

Built once by the command and passed down; every phase logs through it with its prefix (world/, retrieval/,
rollout/, grpo/, ofsd/, eval/).
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path


class MetricsWriter:
    def __init__(self, path: str | os.PathLike, append: bool = False):
        """append=False starts the file afresh (a new run); True continues it (a resumed run). The file is a log:
        written line by line and flushed, not atomically, so a crash keeps every completed record."""
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._f = open(self.path, "a" if append else "w", encoding="utf-8")
        self._t0 = time.time()

    def log(self, metrics: dict, step: int, prefix: str) -> dict:
        """Append one record; non-finite floats become null (JSON has no NaN)."""
        record = {"step": step, "time": round(time.time() - self._t0, 3)}
        for name, value in metrics.items():
            if isinstance(value, float) and not math.isfinite(value):
                value = None
            record[f"{prefix}/{name}"] = value
        self._f.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._f.flush()
        return record

    def close(self):
        self._f.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
