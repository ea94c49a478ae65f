"""Pool several ablations' raw reports: ARM against VS over all their seeds (seeds matched by number).

    python scripts/pool_reports.py --arm grpo-only --vs search-e1 \
        docs/results/weak_start/report.json docs/results/weak_start/seed-2/report.json

Prints the seed-by-seed difference in final greedy EM with its paired t-test, and the questions won and lost (sign
test) summed over the reports that compared the two arms directly. Use it when seeds were run as separate commands
(`seed=K --seeds 1`) or an arm was run after the reference (train/ablate_report.py pool_reports says how).
"""

import argparse
import json
import sys

from searche1.train.ablate_report import pool_reports


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("reports", nargs="+", help="report.json files written by `searche1 ablate`")
    parser.add_argument("--arm", required=True)
    parser.add_argument("--vs", required=True, help="the reference arm")
    args = parser.parse_args()
    reports = []
    for path in args.reports:
        try:
            with open(path) as f:
                reports.append(json.load(f))
        except (OSError, json.JSONDecodeError) as e:
            sys.exit(f"{path}: {e}")
        if not isinstance(reports[-1], dict) or "arms" not in reports[-1] or "config" not in reports[-1]:
            sys.exit(f"{path}: not a report.json of `searche1 ablate` (no 'arms' and 'config')")
    try:
        got = pool_reports(reports, args.arm, args.vs)
    except ValueError as e:
        sys.exit(str(e))
    better, worse = got["seeds_better"], got["seeds_worse"]
    print(f"{args.arm} vs {args.vs}, seeds {got['seeds']}: final EM {got['seed_diff_mean']:+.3f} ± "
          f"{got['seed_diff_std']:.3f} ({better} better / {worse} worse, paired t p = {got['seed_p']:.2g})")
    if got["questions_from_seeds"]:
        print(f"questions won / lost (seeds {got['questions_from_seeds']}): {got['won']} / {got['lost']} "
              f"(sign test p = {got['p']:.2g})")
    else:
        print("questions won / lost: no report compared the two arms directly")


if __name__ == "__main__":
    main()
