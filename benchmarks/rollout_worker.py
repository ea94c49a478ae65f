"""The engine half of benchmarks/rollout.py, run by another checkout's code (`rollout.py --against COMMIT`).

    PYTHONPATH=OLD/src python benchmarks/rollout_worker.py --model DIR --questions 32 --max-turns 4 ...

Loads the batch with whatever `searche1` is first on the path, warms up, prints a JSON line {"ready": its
searche1 module file, "generated_tokens", "questions_sha"}, then times one engine run for every line read on stdin
and prints its seconds. The parent interleaves these rounds with its own, so both see the same spell of a shared
machine. Only the public API that every commit since the engine's has kept is used.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from rollout_setup import add_batch_arguments, load_batch, questions_sha, run_engine


def main() -> None:
    ap = argparse.ArgumentParser()
    add_batch_arguments(ap)
    args = ap.parse_args()
    batch = load_batch(args)
    import searche1

    generated = sum(t.n_generated for t in run_engine(batch, args))
    print(json.dumps({"ready": searche1.__file__, "generated_tokens": generated,
                      "questions_sha": questions_sha(batch.examples)}), flush=True)
    for _ in sys.stdin:
        start = time.perf_counter()
        run_engine(batch, args)
        print(json.dumps({"seconds": time.perf_counter() - start}), flush=True)


if __name__ == "__main__":
    main()
