"""Is a change in held-out success beyond noise? Paired per-task comparison of two greedy evaluations.

  python scripts/compare_evals.py --workdir workdir/long_context_tiny            # first vs last evaluation
  python scripts/compare_evals.py --before A.jsonl --after B.jsonl                # any two trees files
  python scripts/compare_evals.py --before RUN/trees/x.jsonl --after BASELINE/trees/y.jsonl   # two policies

Evaluations are greedy, one tree per task, tasks in the same order, so tree i of both files is the same
task. Per difficulty it prints the mean root success of each, the mean paired difference d = after − before
with its standard error SE = sd(d) / √n, a 95% interval d ± 1.96·SE, and the share of a sign-flip
permutation test's 10,000 draws whose |mean| reaches |d| (two-sided p). "Beyond noise" here means the
interval excludes 0.
"""
from __future__ import annotations

import argparse
import collections
import glob
import math
import os
import random
import statistics
import sys

from rao_jax.rollout.trees import read_jsonl


def root_scores(path: str) -> list[tuple[str, float]]:
  """(difficulty, root success) of every tree of a trees file, in file order."""
  scores = []
  for tree in read_jsonl(path):
    root = next(node for node in tree["nodes"] if node["parent"] < 0)
    success = root["success"]
    scores.append((tree.get("difficulty") or "all", 0.0 if success is None else float(success)))
  return scores


def paired(before: list[float], after: list[float], draws: int = 10_000, seed: int = 0) -> dict[str, float]:
  """Means, the paired difference's mean, SE, 95% interval and sign-flip permutation p-value."""
  if len(before) != len(after) or not before:
    raise ValueError(f"need two equally long, non-empty score lists, got {len(before)} and {len(after)}")
  diffs = [a - b for a, b in zip(after, before)]
  n = len(diffs)
  mean = statistics.fmean(diffs)
  se = statistics.stdev(diffs) / math.sqrt(n) if n > 1 else math.nan
  rng = random.Random(seed)
  extreme = sum(abs(sum(d if rng.random() < 0.5 else -d for d in diffs)) / n >= abs(mean) - 1e-12
                for _ in range(draws))
  return {"n": n, "before": statistics.fmean(before), "after": statistics.fmean(after), "diff": mean,
          "se": se, "low": mean - 1.96 * se, "high": mean + 1.96 * se, "p": extreme / draws}


def compare(before_path: str, after_path: str) -> dict[str, dict[str, float]]:
  before, after = root_scores(before_path), root_scores(after_path)
  if [d for d, _ in before] != [d for d, _ in after]:
    raise ValueError(f"{before_path} and {after_path} do not hold the same tasks in the same order")
  by_tier: dict[str, tuple[list[float], list[float]]] = collections.defaultdict(lambda: ([], []))
  for (tier, b), (_, a) in zip(before, after):
    by_tier[tier][0].append(b)
    by_tier[tier][1].append(a)
  result = {tier: paired(b, a) for tier, (b, a) in by_tier.items()}
  result["all"] = paired([s for _, s in before], [s for _, s in after])
  return result


def table(result: dict[str, dict[str, float]]) -> str:
  rows = ["| tier | tasks | before | after | after − before (95% interval) | p (sign flip) |", "|---|---|---|---|---|---|"]
  for tier, r in result.items():
    rows.append(f"| {tier} | {r['n']} | {r['before']:.3f} | {r['after']:.3f} | {r['diff']:+.3f} "
                f"({r['low']:+.3f}, {r['high']:+.3f}) | {r['p']:.4f} |")
  return "\n".join(rows)


def _eval_files(workdir: str) -> tuple[str, str]:
  files = sorted(glob.glob(os.path.join(workdir, "trees", "eval_*_step*.jsonl")))
  if len(files) < 2:
    raise ValueError(f"{workdir}/trees holds {len(files)} evaluation(s); need two")
  return files[0], files[-1]


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--workdir", help="compare this run's first and last evaluation")
  parser.add_argument("--before", help="trees file of the first evaluation")
  parser.add_argument("--after", help="trees file of the second evaluation")
  args = parser.parse_args(argv)
  if not (args.workdir or (args.before and args.after)):
    parser.error("give --workdir, or --before and --after")
  try:
    before, after = _eval_files(args.workdir) if args.workdir else (args.before, args.after)
    result = compare(before, after)
  except (OSError, ValueError, KeyError) as error:  # a missing, unfinished or malformed trees file
    print(f"error: {error}", file=sys.stderr)
    return 2
  print(f"before: {before}\nafter:  {after}")
  print(table(result))
  return 0


if __name__ == "__main__":
  sys.exit(main())
