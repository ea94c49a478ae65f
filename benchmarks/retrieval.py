"""Retrieval benchmark: index build time and peak memory, in-process BM25 queries/s, and server queries/s with
32 concurrent clients vs one client sending the same queries serially. All figures are measured in this run.

    python benchmarks/retrieval.py                      # toy corpus + 100k-passage synthetic corpus
    python benchmarks/retrieval.py --n-docs 20000 --queries 500   # quicker

Prints a table and writes the figures as JSON (--out). The server and its clients run on this machine; on a
2-core box they share the cores, so the ratio is a lower bound of what separate machines would see.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

HERE = Path(__file__).resolve().parent
CHILD_ENV = {**os.environ, "OMP_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}

BUILD_CHILD = """
import json, resource, sys, time
from searche1.retrieval.index import IndexOptions, build_index
{pre}
t0 = time.perf_counter()
build_index(sys.argv[1], sys.argv[2], IndexOptions("bm25"), show_progress=False)
seconds = time.perf_counter() - t0
print(json.dumps({{"seconds": seconds, "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""


def synthetic_corpus(n_docs: int, seed: int = 0):
    """Wikipedia-sized passages (60 words) over a Zipf vocabulary of 30k pseudo-words; queries are 6-word snippets."""
    from searche1.data.corpus import Document, make_contents

    rng = np.random.default_rng(seed)
    letters_c, letters_v = list("bcdfghklmnprstvz"), list("aeiou")
    vocab = ["".join(rng.choice(letters_c) + rng.choice(letters_v) for _ in range(rng.integers(2, 5)))
             for _ in range(30000)]
    p = 1.0 / np.arange(1, len(vocab) + 1)
    words = rng.choice(len(vocab), size=(n_docs, 60), p=p / p.sum())
    docs = [Document(str(i), make_contents(vocab[row[0]].title(), " ".join(vocab[j] for j in row)))
            for i, row in enumerate(words)]
    return docs


def toy_corpus():
    from searche1.data.toyworld.generator import WorldConfig, generate_world

    world = generate_world(WorldConfig(seed=0))
    questions = [ex.question for ex in world.train] + [ex.question for s in world.tests.values() for ex in s]
    return world.docs, questions


def build_in_child(corpus: Path, out: Path) -> dict:
    """Build in a fresh process so its peak RSS is the build's; a second child that only imports gives the base."""
    res = subprocess.run([sys.executable, "-c", BUILD_CHILD.format(pre=""), str(corpus), str(out)],
                         env=CHILD_ENV, check=True, capture_output=True, text=True)
    build = json.loads(res.stdout.strip().splitlines()[-1])
    base_code = ("import json, resource; import searche1.retrieval.index, searche1.retrieval.bm25; "
                 "print(json.dumps(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024))")
    base = json.loads(subprocess.run([sys.executable, "-c", base_code], env=CHILD_ENV, check=True,
                                     capture_output=True, text=True).stdout)
    return {"build_seconds": build["seconds"], "build_peak_rss_mb": build["maxrss_mb"], "import_rss_mb": base}


def inprocess_qps(index_dir: Path, queries: list[str], topk: int = 3) -> dict:
    from searche1.retrieval.index import open_index

    r = open_index(index_dir)
    r.warmup()
    single = queries[: min(len(queries), 500)]
    t0 = time.perf_counter()
    for q in single:
        r.search([q], topk)
    single_qps = len(single) / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    for start in range(0, len(queries), 256):
        r.search(queries[start:start + 256], topk)
    batch_qps = len(queries) / (time.perf_counter() - t0)
    return {"inprocess_single_qps": single_qps, "inprocess_batch256_qps": batch_qps}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(index_dir: Path) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "searche1.cli", "--threads", "1", "serve", "--index",
                             str(index_dir), "--port", str(port)], env=CHILD_ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                return proc, url
        except httpx.TransportError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("server did not start: " + proc.stderr.read().decode())


def serial_client(url: str, queries: list[str], topk: int) -> tuple[float, int, list]:
    errors, results = 0, []
    with httpx.Client(timeout=30) as c:
        t0 = time.perf_counter()
        for q in queries:
            try:
                r = c.post(url + "/retrieve", json={"queries": [q], "topk": topk, "return_scores": False})
                r.raise_for_status()
                results.append([d["id"] for d in r.json()["result"][0]])
            except Exception:
                errors += 1
                results.append(None)
        return len(queries) / (time.perf_counter() - t0), errors, results


def concurrent_clients(url: str, queries: list[str], topk: int, n_clients: int) -> tuple[float, int, list]:
    """n_clients, each with its own connection, sending its share of the queries one request at a time."""
    results: list = [None] * len(queries)
    errors = 0

    async def one_client(c: httpx.AsyncClient, idx: list[int]):
        nonlocal errors
        for i in idx:
            try:
                r = await c.post(url + "/retrieve", json={"queries": [queries[i]], "topk": topk,
                                                          "return_scores": False})
                r.raise_for_status()
                results[i] = [d["id"] for d in r.json()["result"][0]]
            except Exception:
                errors += 1

    async def main():
        limits = httpx.Limits(max_connections=n_clients, max_keepalive_connections=n_clients)
        async with httpx.AsyncClient(timeout=60, limits=limits) as c:
            await c.get(url + "/health")
            t0 = time.perf_counter()
            await asyncio.gather(*[one_client(c, list(range(k, len(queries), n_clients)))
                                   for k in range(n_clients)])
            return time.perf_counter() - t0

    seconds = asyncio.run(main())
    return len(queries) / seconds, errors, results


def bench_corpus(name: str, docs, queries: list[str], args, tmp: Path) -> dict:
    from searche1.data.corpus import write_corpus

    corpus = tmp / f"{name}.jsonl"
    write_corpus(corpus, docs)
    row = {"corpus": name, "n_docs": len(docs), "n_queries": len(queries)}
    print(f"[{name}] building index over {len(docs)} passages ...", flush=True)
    row.update(build_in_child(corpus, tmp / f"{name}-idx"))
    print(f"[{name}] in-process queries/s ...", flush=True)
    row.update(inprocess_qps(tmp / f"{name}-idx", queries, args.topk))
    print(f"[{name}] server: serial client, then {args.clients} concurrent clients ...", flush=True)
    proc, url = start_server(tmp / f"{name}-idx")
    try:
        serial_client(url, queries[:50], args.topk)  # warm the connection and caches
        s_qps, s_err, s_res = serial_client(url, queries, args.topk)
        c_qps, c_err, c_res = concurrent_clients(url, queries, args.topk, args.clients)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    mismatches = sum(a != b for a, b in zip(s_res, c_res))
    row.update(server_serial_qps=s_qps, server_concurrent_qps=c_qps, concurrent_vs_serial=c_qps / s_qps,
               errors=s_err + c_err, concurrent_results_differ=mismatches)
    return row


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n-docs", type=int, default=100_000, help="synthetic corpus size")
    ap.add_argument("--queries", type=int, default=2000, help="queries per measurement")
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--topk", type=int, default=3)
    ap.add_argument("--out", default=str(HERE / "results" / "retrieval.json"))
    args = ap.parse_args()

    rows = []
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        docs, questions = toy_corpus()
        reps = -(-args.queries // len(questions))
        rows.append(bench_corpus("toy", docs, (questions * reps)[:args.queries], args, tmp))
        docs = synthetic_corpus(args.n_docs)
        rng = np.random.default_rng(1)
        picks = rng.integers(0, len(docs), size=args.queries)
        queries = [" ".join(docs[i].contents.split("\n", 1)[1].split()[5:11]) for i in picks]
        rows.append(bench_corpus(f"synthetic-{args.n_docs // 1000}k", docs, queries, args, tmp))

    cols = [("corpus", "{}"), ("n_docs", "{}"), ("build_seconds", "{:.1f}"), ("build_peak_rss_mb", "{:.0f}"),
            ("import_rss_mb", "{:.0f}"), ("inprocess_single_qps", "{:.0f}"), ("inprocess_batch256_qps", "{:.0f}"),
            ("server_serial_qps", "{:.0f}"), ("server_concurrent_qps", "{:.0f}"), ("concurrent_vs_serial", "{:.2f}x"),
            ("errors", "{}"), ("concurrent_results_differ", "{}")]
    print("\n| " + " | ".join(c for c, _ in cols) + " |\n|" + "---|" * len(cols))
    for r in rows:
        print("| " + " | ".join(f.format(r[c]) for c, f in cols) + " |")
    meta = {"cpu_count": os.cpu_count(), "python": platform.python_version(), "machine": platform.machine(),
            "clients": args.clients, "topk": args.topk, "command": " ".join(sys.argv)}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    from searche1.fileio import atomic_write

    with atomic_write(args.out) as f:
        json.dump({"meta": meta, "rows": rows}, f, indent=2)
    print(f"\nwrote {args.out}")
    goal = all(r["concurrent_vs_serial"] >= 5 and r["errors"] == 0 for r in rows)
    print(f"goal (concurrent >= 5x serial, 0 errors): {'met' if goal else 'NOT met'}")


if __name__ == "__main__":
    main()
