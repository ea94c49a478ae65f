"""Load: `searche1 serve` over a toy-world BM25 index, on loopback, with 32 concurrent clients
for 60 s ($SEARCHE1_LOAD_SECONDS to change it). Asserts 0 errors, no hung client, and a flat server memory after
its first 10 s (allocator and caches filling: 135 -> 256 MB here, then flat for minutes); prints the request rate
and the p50/p99 latency (measured, never asserted: this machine is shared)."""

import json
import os
import random
import subprocess
import sys
import threading
import time

import httpx

from test_server import _free_port, _wait_healthy

CLIENTS = 32


def _rss_mb(pid: int) -> float:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def test_32_clients_for_60_seconds(tmp_path):
    from searche1.config import load_config
    from searche1.data.qa import read_qa_jsonl
    from searche1.data.toyworld.generator import generate_world, write_world
    from searche1.retrieval.index import IndexOptions, build_index

    seconds = float(os.environ.get("SEARCHE1_LOAD_SECONDS", "60"))
    write_world(generate_world(load_config("toy").world), tmp_path / "world")
    build_index(tmp_path / "world" / "corpus.jsonl", tmp_path / "idx", IndexOptions())
    questions = [ex.question for f in sorted((tmp_path / "world" / "test").glob("*.jsonl"))
                 for ex in read_qa_jsonl(f)]
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "searche1.cli", "--threads", "1", "serve", "--index",
                             str(tmp_path / "idx"), "--port", str(port)], env={**os.environ, "OMP_NUM_THREADS": "1"},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, proc)
        latencies, errors, memory = [], [], []
        stop = time.monotonic() + seconds

        def client(seed: int):
            rng = random.Random(seed)
            with httpx.Client(timeout=30) as http:
                while time.monotonic() < stop:
                    payload = {"queries": rng.sample(questions, rng.randint(1, 4)), "topk": 3, "return_scores": True}
                    t0 = time.perf_counter()
                    try:
                        r = http.post(url + "/retrieve", json=payload)
                        if r.status_code != 200 or len(r.json()["result"]) != len(payload["queries"]):
                            errors.append(f"HTTP {r.status_code}: {r.text[:100]}")
                    except (httpx.HTTPError, ValueError, KeyError) as e:
                        errors.append(repr(e))
                    latencies.append(time.perf_counter() - t0)

        threads = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)]
        for t in threads:
            t.start()
        start = time.monotonic()
        while time.monotonic() < stop:
            memory.append((time.monotonic() - start, _rss_mb(proc.pid)))
            time.sleep(min(2.0, max(stop - time.monotonic(), 0.01)))
        for t in threads:
            t.join(timeout=60)
        assert not any(t.is_alive() for t in threads), "a client hung"
        memory.append((time.monotonic() - start, _rss_mb(proc.pid)))
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    latencies.sort()
    pick = lambda q: latencies[min(int(q * len(latencies)), len(latencies) - 1)]  # noqa: E731
    # the server's allocator and caches fill in the first seconds; after that, memory must stay flat
    warm = [mb for t, mb in memory if t >= min(10.0, seconds / 4)] or [memory[-1][1]]
    third = max(len(warm) // 3, 1)
    early, late = sorted(warm[:third])[len(warm[:third]) // 2], max(warm[-third:])
    figures = {"clients": CLIENTS, "seconds": seconds, "requests": len(latencies), "errors": len(errors),
               "requests_per_second": round(len(latencies) / seconds, 1), "p50_ms": round(pick(0.5) * 1000, 1),
               "p99_ms": round(pick(0.99) * 1000, 1), "rss_mb_start": round(memory[0][1], 1),
               "rss_mb_after_warmup": round(early, 1), "rss_mb_end_max": round(late, 1)}
    print("load:", json.dumps(figures))
    (tmp_path / "load.json").write_text(json.dumps(figures))
    assert not errors, errors[:5]
    assert len(latencies) > CLIENTS
    assert late <= early * 1.05 + 5, f"server memory grew from {early:.0f} MB to {late:.0f} MB after its warm-up"
