"""A run directory, read-only: its phases, their figures and metrics, their trajectories and OFSD pairs.

What `searche1 view` and `searche1 report` both read, so that the two show the same numbers. A run is what
`searche1 train` writes (RUN/phases/NN-name/), what `searche1 demo` writes (RUN/evolve/phases/...), or a single
phase directory (`searche1 train grpo` / `train ofsd` output, or a directory holding eval.json). Phases still
running are listed with what they have written so far.
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path

from searche1.fileio import InputError, read_jsonl
from searche1.view.trajindex import TrajectoryIndex

SOURCES = {"eval": "eval.trajectories.jsonl", "pool": "pool.jsonl"}  # what a phase's trajectories are
_PHASE_DIR = re.compile(r"^\d+-(base|grpo|ofsd)(?:-r(\d+))?$")
_PHASE_FILES = ("phase.json", "eval.json", "metrics.jsonl", "pool.jsonl", "eval.trajectories.jsonl")


@dataclass
class Phase:
    key: str  # the directory name, unique in the run (e.g. 01-grpo-r1)
    name: str  # as the phase table names it (grpo-r1)
    kind: str  # base | grpo | ofsd | eval
    round: int
    path: Path
    record: dict = field(default_factory=dict)  # phase.json: EM per benchmark, cost; {} while the phase runs
    report: str = "eval.json"  # the phase's eval report (a lone `searche1 eval --out D/e.json` names its own)

    @property
    def finished(self) -> bool:
        return bool(self.record)

    def source_path(self, source: str) -> Path | None:
        name = SOURCES[source] if source != "eval" else Path(self.report).stem + ".trajectories.jsonl"
        path = self.path / name
        return path if path.is_file() else None


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise InputError(path, f"not JSON ({e.msg})", e.lineno) from None


def _phase(path: Path, report: str = "eval.json") -> Phase:
    record = _read_json(path / "phase.json") if (path / "phase.json").is_file() else {}
    m = _PHASE_DIR.match(path.name)
    if record:
        kind, round_, name = record.get("kind", "eval"), int(record.get("round", 0)), record.get("phase", path.name)
    elif m:
        kind, round_, name = m.group(1), int(m.group(2) or 0), path.name.split("-", 1)[1]
    else:  # a lone phase directory: what it holds says what it is
        kind = "ofsd" if (path / "pool.jsonl").is_file() else "grpo" if (path / "checkpoints").is_dir() else "eval"
        round_, name = 0, path.name
    key = path.name
    if report != "eval.json":  # one of the eval reports a user wrote into a directory: named by its file
        key = name = Path(report).stem
    if not record and (path / report).is_file():  # finished evaluation, no phase record (a lone eval dir)
        evaluation = _read_json(path / report)
        if "benchmarks" in evaluation:
            record = {"phase": name, "kind": kind, "round": round_,
                      "em": {b: v["em"] for b, v in evaluation["benchmarks"].items()},
                      "average_em": evaluation.get("average_em", 0.0), "model": evaluation.get("model")}
    return Phase(key, name, kind, round_, path, record, report)


def _eval_reports(directory: Path) -> list[str]:
    """The `searche1 eval` reports in a directory, whatever the user named them: X.json with its
    X.trajectories.jsonl beside it."""
    return sorted(f.name for f in directory.glob("*.json")
                  if f.with_name(f.stem + ".trajectories.jsonl").is_file())


class RunDir:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._indexes: dict[Path, tuple[tuple, TrajectoryIndex]] = {}
        self._pairs: dict[Path, tuple[tuple, list[dict]]] = {}
        self._lock = threading.Lock()  # the viewer's requests run on threads; an index is built once
        self._tokenizer = None
        self.refresh()

    def refresh(self) -> None:
        """Read the phases again (a run still training adds phases and records; trajectory indexes are kept and
        rebuilt only for files that changed)."""
        if self.path.is_file() and self.path.suffix == ".json":  # an eval report itself
            if not self.path.with_name(self.path.stem + ".trajectories.jsonl").is_file():
                raise InputError(self.path, f"not a searche1 eval report: no {self.path.stem}.trajectories.jsonl "
                                            "beside it")
            self.phases_root = self.path.parent
            self.phases = [_phase(self.path.parent, self.path.name)]
            return
        if not self.path.is_dir():
            raise InputError(self.path, "no such run directory")
        for base in (self.path / "phases", self.path / "evolve" / "phases"):
            if base.is_dir():
                self.phases_root = base
                self.phases = [_phase(p) for p in sorted(p for p in base.iterdir() if p.is_dir())]
                return
        self.phases_root = self.path
        if any((self.path / f).is_file() for f in _PHASE_FILES):
            self.phases = [_phase(self.path)]
        elif reports := _eval_reports(self.path):
            self.phases = [_phase(self.path, r) for r in reports]
        else:
            raise InputError(self.path, "not a searche1 run: no phases/, evolve/phases/, a phase's files "
                                        f"({', '.join(_PHASE_FILES)}), or an eval report (X.json with "
                                        "X.trajectories.jsonl)")

    def stamp(self) -> tuple:
        """Changes when any phase's record, metrics or pairs change (the viewer redraws its figures then)."""
        files = [p.path / f for p in self.phases for f in ("phase.json", p.report, "metrics.jsonl", "pairs.jsonl")]
        return tuple((str(f), f.stat().st_mtime_ns) for f in files if f.is_file())

    @property
    def name(self) -> str:
        return self.path.resolve().name

    def phase(self, key: str) -> Phase:
        for p in self.phases:
            if p.key == key:
                return p
        raise KeyError(f"no phase {key!r} in {self.path} (phases: {', '.join(p.key for p in self.phases)})")

    def sources(self) -> list[dict]:
        """Every trajectories file of the run: [{phase, source, path}] in phase order."""
        return [{"phase": p.key, "source": s, "path": p.source_path(s)} for p in self.phases for s in SOURCES
                if p.source_path(s) is not None]

    def index(self, phase_key: str, source: str) -> TrajectoryIndex:
        """The index of one phase's trajectories, built on first use and again only when the file changed."""
        if source not in SOURCES:
            raise KeyError(f"unknown trajectory source {source!r} ({' | '.join(SOURCES)})")
        path = self.phase(phase_key).source_path(source)
        if path is None:
            raise KeyError(f"phase {phase_key} has no {SOURCES[source]}")
        stat = path.stat()
        stamp = (stat.st_size, stat.st_mtime_ns)
        with self._lock:
            cached = self._indexes.get(path)
            if cached is None or cached[0] != stamp:  # (an old index is not closed: a request may still read it)
                self._indexes[path] = (stamp, TrajectoryIndex(path))
            return self._indexes[path][1]

    def metrics(self, phase: Phase) -> list[dict]:
        """The phase's training records ({step, name: value} with its kind's prefix removed) in step order; [] if
        none. A resumed phase logs the steps after its checkpoint again: the last record of a step counts."""
        from searche1.plots import read_steps

        path = phase.path / "metrics.jsonl"
        if phase.kind not in ("grpo", "ofsd") or not path.is_file():
            return []
        return read_steps(path, phase.kind)

    def pairs(self, phase_key: str) -> list[dict]:
        """pairs.jsonl of an OFSD phase (one record per pair: group_id, reference and student sample indices,
        the student's KL, and, from runs made since the viewer, its per-token KL, the question and the privileged
        prompt). Read again only when the file changed."""
        path = self.phase(phase_key).path / "pairs.jsonl"
        if not path.is_file():
            return []
        stat = path.stat()
        stamp = (stat.st_size, stat.st_mtime_ns)
        with self._lock:
            cached = self._pairs.get(path)
            if cached is None or cached[0] != stamp:
                self._pairs[path] = (stamp, [row for _, row in read_jsonl(path)])
            return self._pairs[path][1]

    def overview(self) -> dict:
        """The per-phase table (EM per benchmark, average, behaviour, cost) that the viewer and the report show."""
        benchmarks: list[str] = []
        for p in self.phases:
            benchmarks += [b for b in p.record.get("em", {}) if b not in benchmarks]
        rows = []
        for p in self.phases:
            r = p.record
            train_s = r.get("train_seconds")
            rows.append({
                "key": p.key, "phase": p.name, "kind": p.kind, "round": p.round, "finished": p.finished,
                "model": r.get("model"), "em": {b: r.get("em", {}).get(b) for b in benchmarks},
                "average_em": r.get("average_em"), "searches": r.get("searches"),
                "generated_tokens": r.get("generated_tokens"), "answers_changed": r.get("answers_changed"),
                "train_seconds": train_s, "eval_seconds": r.get("eval_seconds"), "rollouts": r.get("rollouts"),
                "train_tokens": r.get("train_tokens"), "pairs": r.get("pairs"),
                "train_tokens_per_second": (r["train_tokens"] / train_s if r.get("train_tokens") and train_s
                                            else None),
                "steps": len(self.metrics(p)) if p.kind == "grpo" else None})
        return {"name": self.name, "path": str(self.path), "benchmarks": benchmarks, "phases": rows}

    def tokenizer(self):
        """The run's tokenizer (every phase shares the start model's), to cut trajectories into turns and tokens:
        from the first model folder of the run that holds one, else the start model named in its config. Anything
        with `decode(ids, skip_special_tokens=True)`."""
        if self._tokenizer is None:
            source = self._tokenizer_source()
            if source is None:
                raise FileNotFoundError(f"no tokenizer found for {self.path}: no model folder in the run, and "
                                        "its config names none that is on this machine")
            if (Path(source) / "tokenizer.json").is_file():  # the fast tokenizer alone: importing transformers
                from tokenizers import Tokenizer  # costs seconds, and decoding is all the viewer does

                self._tokenizer = Tokenizer.from_file(str(Path(source) / "tokenizer.json"))
            else:
                from transformers import AutoTokenizer

                self._tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=True)
        return self._tokenizer

    def _tokenizer_source(self) -> str | None:
        from searche1 import models

        # the names the package resolves are looked up where they would be made, never made by a viewer
        made_once = {models.TOY_BASE: models.toy_base_path(),
                     models.SMOLLM2: models.cache_dir() / models.SMOLLM2_FOLDER,
                     models.SMOLLM2_SEARCHER: models.cache_dir() / models.SMOLLM2_SEARCHER}
        candidates = []
        for p in self.phases:
            if p.record.get("model"):  # a phase's record, or an eval report's "model" (toy-base, a folder)
                candidates.append(made_once.get(p.record["model"], Path(p.record["model"])))
            candidates += [p.path / "final", *sorted((p.path / "checkpoints").glob("step-*"))]
        candidates.append(self.path / "final")
        for folder in candidates:
            if (folder / "tokenizer.json").is_file() or (folder / "tokenizer_config.json").is_file():
                return str(folder)
        # no model folder yet (a first phase still running): the start model its config names, if it is here
        for config in (self.path / "config.yaml", self.phases_root.parent / "config.yaml",
                       *(p.path / "config.yaml" for p in self.phases)):
            if config.is_file():
                import yaml

                cfg = yaml.safe_load(config.read_text()) or {}
                name = (cfg.get("grpo") or {}).get("model") or (cfg.get("ofsd") or {}).get("model")
                folder = made_once.get(name, Path(name) if name else None)
                if folder is not None and folder.is_dir():
                    return str(folder)
                if name and name not in made_once:
                    return name  # a hub id: AutoTokenizer reads it from the local HF cache, if it is there
        return None
