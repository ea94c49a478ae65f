"""The engine of another commit, timed in a process of its own (benchmarks/rollout_worker.py on that commit's src/)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent


class OtherCommitEngine:
    """Starts the worker on COMMIT's `src/` (from `git archive`), waits for its warm-up; each call() times one
    engine run there and returns its seconds."""

    def __init__(self, commit: str, worker_args: list[str]):
        self.commit, self._tmp = commit, tempfile.TemporaryDirectory(prefix="searche1-bench-")
        archive = Path(self._tmp.name) / "src.tar"
        subprocess.run(["git", "-C", str(HERE.parent), "archive", "-o", str(archive), commit, "src"], check=True)
        with tarfile.open(archive) as tar:
            tar.extractall(self._tmp.name, filter="data")
        env = {**os.environ, "PYTHONPATH": str(Path(self._tmp.name) / "src")}
        self._proc = subprocess.Popen([sys.executable, str(HERE / "rollout_worker.py"), *worker_args], env=env,
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.ready = self._read()
        if not self.ready["ready"].startswith(self._tmp.name):
            raise RuntimeError(f"the worker imported {self.ready['ready']}, not commit {commit}'s code")

    def _read(self) -> dict:
        """The worker's next JSON line (anything else a library printed is skipped)."""
        for line in self._proc.stdout:
            if line.startswith("{"):
                return json.loads(line)
        raise RuntimeError(f"the worker for commit {self.commit} stopped (exit code {self._proc.wait()})")

    def __call__(self) -> float:
        self._proc.stdin.write("go\n")
        self._proc.stdin.flush()
        return float(self._read()["seconds"])

    def close(self) -> None:
        self._proc.stdin.close()
        self._proc.wait()
        self._tmp.cleanup()
