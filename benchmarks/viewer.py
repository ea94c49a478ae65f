"""Viewer benchmark: how long `searche1 view` takes to show the trajectory list of a large run, against parsing every
line (the naive way), measured in the same run.

    python benchmarks/viewer.py [--source TRAJECTORIES.jsonl] [--n 50000]

A run of one phase holding --n trajectories is written to a temp dir: real lines of --source (default: the demo
run's OFSD pool, `make demo`), repeated with their group ids made unique. Then, in process (FastAPI's TestClient,
no sockets):
  open    make_app, GET /, GET /api/run, GET /api/trajectories (page 1 of every phase), GET /api/trajectory (the
          first row, turn by turn, tokenizer load included): what a user waits for from start to a trajectory
          (goal: < 2 s at 50k)
  filter  GET /api/trajectories with a filter, index already built
  naive   json.loads of every line (what a viewer without the index would do before showing a list)
The file is in the page cache (just written); a cold disk adds its read time to both. Prints a table; --out JSON.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SOURCE = REPO / "runs" / "demo" / "evolve" / "phases" / "02-ofsd-r1" / "pool.jsonl"
GOAL_SECONDS = 2.0


def write_large_run(source: Path, n: int, out: Path) -> Path:
    from searche1.view.trajindex import HEAD_PATTERN

    lines = [line for line in source.read_bytes().splitlines() if line.strip()]
    if not lines:
        raise SystemExit(f"{source} holds no trajectories")
    phase = out / "phases" / "00-base"
    phase.mkdir(parents=True)
    with open(phase / "eval.trajectories.jsonl", "wb") as f:
        for i in range(n):
            line = lines[i % len(lines)]
            end = HEAD_PATTERN.match(line).end(1)  # the group id's closing quote
            f.write(line[:end] + f"-copy{i // len(lines)}".encode() + line[end:] + b"\n")
    (phase / "phase.json").write_text(json.dumps({"phase": "base", "kind": "base", "round": 0,
                                                  "model": str(source.parent / "final"), "em": {}, "average_em": 0}))
    return phase / "eval.trajectories.jsonl"


def time_open(run: Path) -> tuple[float, dict]:
    from fastapi.testclient import TestClient

    from searche1.view.app import make_app

    start = time.perf_counter()
    client = TestClient(make_app(run))
    assert client.get("/").status_code == 200
    client.get("/api/run").raise_for_status()
    page = client.get("/api/trajectories").json()
    first = page["rows"][0]
    client.get("/api/trajectory", params={"phase": first["phase"], "index": first["index"]}).raise_for_status()
    seconds = time.perf_counter() - start
    start = time.perf_counter()
    filtered = client.get("/api/trajectories", params={"correct": "false", "searches": 1}).json()
    return seconds, {"total": page["total"], "filter_seconds": time.perf_counter() - start,
                     "filtered": filtered["total"]}


def time_naive(path: Path) -> float:
    start = time.perf_counter()
    with open(path, "rb") as f:
        for line in f:
            json.loads(line)
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--source", type=Path, default=DEFAULT_SOURCE, help="a trajectories jsonl to repeat")
    ap.add_argument("--n", type=int, default=50_000, help="trajectories in the run")
    ap.add_argument("--out", type=Path, default=None, help="write the figures as JSON here")
    args = ap.parse_args()
    if not args.source.is_file():
        raise SystemExit(f"no {args.source}: run `make demo` first, or pass --source FILE")
    from searche1.runtime import configure_threads

    configure_threads(2)
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        path = write_large_run(args.source, args.n, run)
        size_mb = path.stat().st_size / 1e6
        open_seconds, figures = time_open(run)
        naive_seconds = time_naive(path)
    result = {"n": args.n, "file_mb": round(size_mb, 1), "open_seconds": round(open_seconds, 3),
              "filter_seconds": round(figures["filter_seconds"], 3), "naive_parse_seconds": round(naive_seconds, 3),
              "naive_over_open": round(naive_seconds / open_seconds, 2), "goal_seconds": GOAL_SECONDS,
              "goal_met": open_seconds < GOAL_SECONDS, "machine": platform.machine()}
    assert figures["total"] == args.n
    print(f"viewer on {args.n} trajectories ({size_mb:.0f} MB, source {args.source}):")
    print("| what | seconds |\n|---|---|")
    print(f"| open: start, page, list, first trajectory | {open_seconds:.2f} |")
    print(f"| a filter, index built | {figures['filter_seconds']:.3f} |")
    print(f"| naive: json.loads of every line | {naive_seconds:.2f} |")
    print(f"naive / open = {result['naive_over_open']:.1f}x; goal open < {GOAL_SECONDS:.0f} s: "
          f"{'met' if result['goal_met'] else 'NOT met'}")
    if args.out:
        args.out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
