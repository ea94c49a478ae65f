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

# Peak memory is VmHWM of the child: ru_maxrss would carry over the parent's peak across exec on Linux.
PEAK_RSS = "int(next(l for l in open('/proc/self/status') if l.startswith('VmHWM')).split()[1]) / 1024"
BUILD_CHILD = f"""
import json, sys, time
from searche1.retrieval.index import IndexOptions, build_index
t0 = time.perf_counter()
build_index(sys.argv[1], sys.argv[2], IndexOptions(sys.argv[3]), show_progress=False)
print(json.dumps({{"seconds": time.perf_counter() - t0, "peak_rss_mb": {PEAK_RSS}}}))
"""
IMPORT_CHILD = f"""
import json, sys
import searche1.retrieval.index, searche1.retrieval.bm25
if sys.argv[1] == "dense":
    from searche1.retrieval.dense import load_encoder
    load_encoder("minilm")
print(json.dumps({PEAK_RSS}))
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


def build_in_child(corpus: Path, out: Path, method: str = "bm25") -> dict:
    """Build in a fresh process so its peak RSS is the build's; a second child that only imports (and loads the
    encoder, for dense) gives the base to subtract."""
    res = subprocess.run([sys.executable, "-c", BUILD_CHILD, str(corpus), str(out), method],
                         env=CHILD_ENV, check=True, capture_output=True, text=True)
    build = json.loads(res.stdout.strip().splitlines()[-1])
    base = json.loads(subprocess.run([sys.executable, "-c", IMPORT_CHILD, method], env=CHILD_ENV, check=True,
                                     capture_output=True, text=True).stdout.strip().splitlines()[-1])
    return {"build_seconds": build["seconds"], "build_peak_rss_mb": build["peak_rss_mb"], "import_rss_mb": base}


def inprocess_qps(index_dir: Path, queries: list[str], topk: int = 3) -> dict:
    from searche1.retrieval.index import open_index

    r = open_index(index_dir)
    r.search(queries[:8], topk)  # warm up (numba JIT, first encoder call)
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


def start_server(index_dir: Path, workers: int = 1) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "searche1.cli", "--threads", "1", "serve", "--index",
                             str(index_dir), "--port", str(port), "--workers", str(workers)], env=CHILD_ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                if workers > 1:
                    time.sleep(10)  # /health answers once one worker is up; give the others time to warm up
                return proc, url
        except httpx.TransportError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("server did not start: " + proc.stderr.read().decode())


async def _client_run(url: str, queries: list[str], topk: int, n_clients: int,
                      per_request: int = 1) -> tuple[float, int, list]:
    """n_clients, each on its own keep-alive connection, sending its share of the queries `per_request` at a time,
    one request after the other (n_clients=1: one client sending them all serially). The same client code serves
    every measurement, so the ratios are the server's."""
    import aiohttp

    results: list = [None] * len(queries)
    errors = 0

    async def one_client(session, idx: list[int]):
        nonlocal errors
        for start in range(0, len(idx), per_request):
            chunk = idx[start:start + per_request]
            try:
                async with session.post(url + "/retrieve", json={"queries": [queries[i] for i in chunk],
                                                                 "topk": topk, "return_scores": False}) as r:
                    r.raise_for_status()
                    for i, docs in zip(chunk, (await r.json())["result"]):
                        results[i] = [d["id"] for d in docs]
            except Exception:
                errors += len(chunk)

    connector = aiohttp.TCPConnector(limit=n_clients)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60)) as session:
        await asyncio.gather(*[one_client(session, [0]) for _ in range(n_clients)])  # open the connections
        errors, t0 = 0, time.perf_counter()
        await asyncio.gather(*[one_client(session, list(range(k, len(queries), n_clients)))
                               for k in range(n_clients)])
        seconds = time.perf_counter() - t0
    return len(queries) / seconds, errors, results


def run_clients(url: str, queries: list[str], topk: int, n_clients: int,
                per_request: int = 1) -> tuple[float, int, list]:
    return asyncio.run(_client_run(url, queries, topk, n_clients, per_request))


def bench_corpus(name: str, docs, queries: list[str], args, tmp: Path, method: str = "bm25", workers: int = 1) -> dict:
    from searche1.data.corpus import write_corpus

    corpus = tmp / f"{name}.jsonl"
    if not corpus.exists():
        write_corpus(corpus, docs)
    index = tmp / f"{name}-{method}-idx"
    row = {"corpus": name, "method": method, "workers": workers, "n_docs": len(docs), "n_queries": len(queries)}
    if not index.exists():
        print(f"[{name} {method}] building index over {len(docs)} passages ...", flush=True)
        row.update(build_in_child(corpus, index, method))
        print(f"[{name} {method}] in-process queries/s ...", flush=True)
        row.update(inprocess_qps(index, queries, args.topk))
    print(f"[{name} {method}] server ({workers} worker(s)): serial client, then {args.clients} concurrent clients",
          flush=True)
    proc, url = start_server(index, workers)
    try:
        run_clients(url, queries[:50], args.topk, 1)  # warm up
        s_qps, s_err, s_res = run_clients(url, queries, args.topk, 1)
        c_qps, c_err, c_res = run_clients(url, queries, args.topk, args.clients)
        # What the rollout engine does: one request carries a whole turn's queries (here 32).
        b_qps, b_err, b_res = run_clients(url, queries, args.topk, 1, per_request=32)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    mismatches = sum(a != b or a != c for a, b, c in zip(s_res, c_res, b_res))
    row.update(server_serial_qps=s_qps, server_concurrent_qps=c_qps, concurrent_vs_serial=c_qps / s_qps,
               server_batch32_qps=b_qps, batch32_vs_serial=b_qps / s_qps,
               errors=s_err + c_err + b_err, concurrent_results_differ=mismatches)
    return row


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n-docs", type=int, default=100_000, help="synthetic corpus size")
    ap.add_argument("--queries", type=int, default=2000, help="queries per measurement")
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--topk", type=int, default=3)
    ap.add_argument("--workers", type=lambda s: [int(x) for x in s.split(",")], default=[1, 2],
                    help="server worker counts measured on the synthetic corpus, e.g. 1,2,4")
    ap.add_argument("--no-dense", action="store_true", help="skip the dense (MiniLM) rows")
    ap.add_argument("--out", default=str(HERE / "results" / "retrieval.json"))
    args = ap.parse_args()

    rows = []
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        docs, questions = toy_corpus()
        reps = -(-args.queries // len(questions))
        toy_queries = (questions * reps)[:args.queries]
        rows.append(bench_corpus("toy", docs, toy_queries, args, tmp))
        if not args.no_dense:  # dense (MiniLM, CPU): the encoder dominates, so batching matters most here
            rows.append(bench_corpus("toy", docs, toy_queries, args, tmp, method="dense"))
        docs = synthetic_corpus(args.n_docs)
        rng = np.random.default_rng(1)
        picks = rng.integers(0, len(docs), size=args.queries)
        queries = [" ".join(docs[i].contents.split("\n", 1)[1].split()[5:11]) for i in picks]
        name = f"synthetic-{args.n_docs // 1000}k"
        for workers in args.workers:
            rows.append(bench_corpus(name, docs, queries, args, tmp, workers=workers))

    cols = [("corpus", "{}"), ("method", "{}"), ("workers", "{}"), ("n_docs", "{}"), ("build_seconds", "{:.1f}"),
            ("build_peak_rss_mb", "{:.0f}"),
            ("import_rss_mb", "{:.0f}"), ("inprocess_single_qps", "{:.0f}"), ("inprocess_batch256_qps", "{:.0f}"),
            ("server_serial_qps", "{:.0f}"), ("server_concurrent_qps", "{:.0f}"), ("concurrent_vs_serial", "{:.2f}x"),
            ("server_batch32_qps", "{:.0f}"), ("batch32_vs_serial", "{:.2f}x"),
            ("errors", "{}"), ("concurrent_results_differ", "{}")]
    print("\n| " + " | ".join(c for c, _ in cols) + " |\n|" + "---|" * len(cols))
    for r in rows:
        print("| " + " | ".join(f.format(r[c]) if c in r else "-" for c, f in cols) + " |")
    meta = {"cpu_count": os.cpu_count(), "python": platform.python_version(), "machine": platform.machine(),
            "clients": args.clients, "topk": args.topk, "command": " ".join(sys.argv)}
    from searche1.fileio import write_json

    write_json(args.out, {"meta": meta, "rows": rows})
    print(f"\nwrote {args.out}")
    goal = all(r["concurrent_vs_serial"] >= 5 and r["errors"] == 0 for r in rows)
    print(f"goal (concurrent >= 5x serial, 0 errors): {'met' if goal else 'NOT met'}")


if __name__ == "__main__":
    main()
