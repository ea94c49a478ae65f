"""Evaluation: greedy rollouts over QA files, EM per benchmark and their average (plus sub-EM, F1, searches,
generated tokens, answer rate), as a markdown table and a JSON file.

    searche1 eval --model MODEL --data DIR_OR_FILES... --index INDEX --out results.json
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Sequence

import torch

from searche1.config import RolloutConfig
from searche1.data.qa import BENCHMARKS, QAExample, load_qa
from searche1.fileio import InputError, atomic_files, write_jsonl_lines
from searche1.metrics import mean
from searche1.progress import progress
from searche1.retrieval.client import RetrievalClient
from searche1.rollout.backends.base import Backend, SamplingParams
from searche1.rollout.engine import rollout
from searche1.rollout.trajectory import FinishReason, Trajectory


def find_qa_files(paths: Sequence[str | os.PathLike]) -> list[Path]:
    """Files as given; a directory contributes every .jsonl / .parquet below it (sorted)."""
    files = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(x for x in p.rglob("*") if x.suffix in (".jsonl", ".parquet") and x.is_file())
            if not found:
                raise InputError(p, "holds no .jsonl or .parquet QA file")
            files += found
        elif p.is_file():
            files.append(p)
        else:
            raise InputError(p, "no such file or directory")
    return files


def _paper_order(name: str) -> tuple[int, str]:
    """The paper's column order (nq, triviaqa, popqa, hotpotqa, 2wiki, musique, bamboogle), `toy-` names alike."""
    base = name.removeprefix("toy-")
    return (BENCHMARKS.index(base) if base in BENCHMARKS else len(BENCHMARKS), name)


def load_benchmarks(paths: Sequence[str | os.PathLike], limit: int | None = None) -> dict[str, list[QAExample]]:
    """name -> examples (the name is the dataset: `nq`, `toy-nq`, ...) in the paper's column order; `limit` keeps
    the first N of each. A file holding several datasets (Search-R1's merged test.parquet, by its data_source
    column) gives one benchmark per dataset."""
    if limit is not None and limit < 1:  # examples[:0] would be nothing, examples[:-1] all but the last
        raise ValueError(f"limit must be >= 1 (or None: every question), got {limit}")
    out: dict[str, list[QAExample]] = {}
    for f in find_qa_files(paths):
        in_file: dict[str, list[QAExample]] = {}
        for ex in load_qa(f):
            in_file.setdefault(ex.dataset, []).append(ex)
        for name, examples in in_file.items():
            if name in out:
                raise InputError(f, f"a second file for benchmark {name!r}; pass one file per benchmark")
            out[name] = examples if limit is None else examples[:limit]
    return {name: out[name] for name in sorted(out, key=_paper_order)}


def benchmark_figures(trajectories: Sequence[Trajectory]) -> dict:
    """The figures of one benchmark; with G > 1 samples each question's samples all count."""
    n = len(trajectories)
    if n == 0:
        return {"em": 0.0, "n": 0}

    groups: dict[str, set[float]] = {}
    for t in trajectories:
        groups.setdefault(t.group_id, set()).add(t.em)
    return {"em": mean(t.em for t in trajectories), "n": n, "sub_em": mean(t.sub_em for t in trajectories),
            "f1": mean(t.f1 for t in trajectories), "mean_searches": mean(t.n_searches for t in trajectories),
            "mean_generated_tokens": mean(t.n_generated for t in trajectories),
            "answer_rate": mean(t.finish_reason is FinishReason.ANSWER for t in trajectories),
            # retrieval failed (retrieval.on_failure=skip): scored 0, counted here so a 0 is never silent
            "failed": sum(t.finish_reason is FinishReason.ERROR for t in trajectories),
            # questions whose samples got both EM 1 and EM 0: the ones that carry a GRPO signal (needs G > 1)
            "mixed_fraction": sum(len(ems) > 1 for ems in groups.values()) / len(groups)}


def failed_samples(report: dict) -> tuple[int, int]:
    """(samples whose search failed, samples) of an evaluation report."""
    return (sum(r.get("failed", 0) for r in report["benchmarks"].values()),
            sum(r["n"] for r in report["benchmarks"].values()))


def evaluate(benchmarks: dict[str, list[QAExample]], backend: Backend, tokenizer, client: RetrievalClient,
             rollout_cfg: RolloutConfig, sampling: SamplingParams | None = None, n_samples: int = 1,
             batch_size: int = 32, seed: int = 0, show_progress: bool = True,
             on_retrieval_failure: str = "stop") -> tuple[dict, list[Trajectory]]:
    """Greedy by default, within `rollout_cfg`'s turn and token limits. Returns ({"benchmarks": {name: figures},
    "average_em": mean over benchmarks}, all trajectories)."""
    sampling = sampling or SamplingParams(greedy=True)
    generator = torch.Generator().manual_seed(seed)
    results, everything = {}, []
    with progress() as bar:
        for name, examples in benchmarks.items():
            task = bar.add_task(f"eval {name}", total=len(examples), visible=show_progress)
            # batch_size questions (x n_samples) in flight; finished samples are replaced at once
            trajs = rollout(examples, backend, tokenizer, client, rollout_cfg, sampling, n_samples, generator,
                            max_batch=batch_size * n_samples, on_retrieval_failure=on_retrieval_failure,
                            on_finish=lambda n, task=task: bar.advance(task, n / n_samples))
            results[name] = benchmark_figures(trajs)
            everything += trajs
    average = sum(r["em"] for r in results.values()) / len(results) if results else 0.0
    return {"benchmarks": results, "average_em": average}, everything


def markdown_table(report: dict) -> str:
    """One row of EM per benchmark plus the average; a second block with the other figures."""
    names = list(report["benchmarks"])
    head = "| " + " | ".join(names + ["average"]) + " |\n|" + "---|" * (len(names) + 1) + "\n"
    ems = "| " + " | ".join(f"{report['benchmarks'][n]['em']:.3f}" for n in names)
    table = head + ems + f" | {report['average_em']:.3f} |\n"
    detail = "\n| benchmark | n | EM | sub-EM | F1 | searches | generated tokens | answer rate | mixed groups | " \
             "retrieval failed |\n|---|---|---|---|---|---|---|---|---|---|\n"
    for n in names:
        r = report["benchmarks"][n]
        detail += (f"| {n} | {r['n']} | {r['em']:.3f} | {r['sub_em']:.3f} | {r['f1']:.3f} | "
                   f"{r['mean_searches']:.2f} | {r['mean_generated_tokens']:.1f} | {r['answer_rate']:.3f} | "
                   f"{r['mixed_fraction']:.2f} | {r.get('failed', 0)} |\n")
    return table + detail


def write_eval_report(path: str | os.PathLike, report: dict, trajectories: Sequence[Trajectory]) -> Path:
    """The JSON report at `path` and the trajectories beside it (`<stem>.trajectories.jsonl`)."""
    path = Path(path)
    traj_path = trajectories_path(path)
    with atomic_files(path, traj_path) as (f, ft):  # both or neither: the viewer reads them as a pair
        json.dump(report, f, indent=2)
        f.write("\n")
        write_jsonl_lines(ft, (t.to_json() for t in trajectories))
    return traj_path


def trajectories_path(report_path: str | os.PathLike) -> Path:
    """Where an eval report's trajectories lie: `<stem>.trajectories.jsonl` beside it."""
    path = Path(report_path)
    return path.with_name(path.stem + ".trajectories.jsonl")
