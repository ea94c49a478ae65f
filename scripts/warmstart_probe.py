"""Probe (docs/warmstart.md, "A testbed that learns"): `searche1 warmstart`, then `searche1 eval` of the result, with
two changes the project has no option for, each switched on by a flag:

    --short-prompt  the prompt is "Question: <q>?\\n" alone, not the Search-R1 instruction (training and eval)
    --flawless      the scripted searcher makes none of its deliberate mistakes (no guessing without a search,
                    no poor query, no repeated search, no misread)

    python scripts/warmstart_probe.py --short-prompt --flawless --out runs/p19/e --world runs/p19/w777L1 \\
        --index runs/p19/w777L1idx -- --minutes 8 --level 1 --quote none --no-loss-on-observations --drills 0 \\
        --copy-drills 0 --episodes 16 --max-hops 1

Everything after `--` goes to `searche1 warmstart`. The evaluation is greedy over WORLD/test with
rollout.max_response_length=96 and writes OUT.eval.json beside the model. --eval-only evaluates an existing OUT.
"""

import argparse

from searche1 import protocol
from searche1.data.toyworld.demos import Imperfections


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True)
    parser.add_argument("--world", required=True, help="an evaluation world folder (searche1 world --out)")
    parser.add_argument("--index", required=True, help="its index (searche1 index)")
    parser.add_argument("--short-prompt", action="store_true")
    parser.add_argument("--flawless", action="store_true")
    parser.add_argument("--eval-only", action="store_true")
    parser.add_argument("warmstart_args", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    if args.short_prompt:  # the engine and the warm start both build prompts through protocol.make_prompt
        protocol.make_prompt = lambda question, tokenizer=None: \
            f"{protocol.QUESTION_MARKER}{protocol.normalize_question(question)}\n"
    import searche1.toy.episodes as episodes

    if args.flawless:
        episodes.Imperfections = lambda *a, **k: Imperfections(0.0, 0.0, 0.0, 0.0)
    from searche1.cli import main as searche1

    rest = [a for a in args.warmstart_args if a != "--"]
    if not args.eval_only and searche1(["--threads", "2", "warmstart", "--out", args.out] + rest):
        raise SystemExit("warm start failed")
    searche1(["--threads", "2", "eval", "--model", args.out, "--data", f"{args.world}/test", "--index", args.index,
              "--out", f"{args.out}.eval.json", "--batch-size", "128", "rollout.max_response_length=96"])


if __name__ == "__main__":
    main()
