"""The paper's TextCraft-Synth figures, in shape, from the work directories of a RAO run and its baseline.

  python scripts/plot_figures.py --workdir workdir/textcraft_tiny --baseline workdir/textcraft_tiny_linear

  python scripts/plot_figures.py --workdir workdir/long_context_tiny --baseline workdir/long_context_tiny_flat \
      --parallel_runs workdir/long_context_tiny,workdir/chained_research_tiny

Writes four PNGs into --out (default: {workdir}/figures):
  success_per_tier.png    greedy held-out success per tier against the RL step, RAO (solid) and the
                          single-agent baseline (dashed);
  depth_distribution.png  the depth of the solved held-out hard trees of the final evaluation against
                          the depth of the solved training trees (every logged training step,
                          `config.log.train_trees_every`);
  delegation_rate.png     the share of nodes that launch a child, against the RL step (training rollouts
                          at temperature 1, and the greedy evaluations);
  parallelism.png         per run of --parallel_runs (default: --workdir), at its final evaluation: the
                          parallel fraction of child launches, and the critical path against all tokens
                          generated per tree (the paper's wall-clock argument: independent children
                          overlap, chained ones cannot).
Everything is read from metrics.jsonl and trees/*.jsonl, so the figures regenerate from finished runs.
"""
from __future__ import annotations

import argparse
import collections
import glob
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the file backend)

from rao_jax.rollout.trees import read_jsonl  # noqa: E402
from rao_jax.train.metrics_log import read_records  # noqa: E402
from rao_jax.train.report import eval_records, tiers_of  # noqa: E402


def _number(value: float | None) -> float:
  """A logged scalar as a float: metrics.jsonl writes NaN as null, which matplotlib draws as a gap."""
  return float("nan") if value is None else float(value)


def _solved_tree_depths(path: str, difficulty: str | None = None) -> list[int]:
  """Depth (deepest node) of every solved tree (its root succeeded) in a trees JSON-lines file, of one
  difficulty if given. Failed trees are left out: a policy that delegates a wrong item can recurse to the
  depth cap, and such a chain says nothing about how deep solutions go."""
  depths = []
  for tree in read_jsonl(path):  # a NaN success (a misbehaving judge's, written as null) is no solve
    root = next(node for node in tree["nodes"] if node["parent"] < 0)
    if root["success"] > 0 and (difficulty is None or tree.get("difficulty") == difficulty):
      depths.append(max(node["depth"] for node in tree["nodes"]))
  return depths


def _save(figure, out: str, name: str) -> str:
  figure.tight_layout()
  path = os.path.join(out, name)
  figure.savefig(path, dpi=120)
  plt.close(figure)
  return path


def plot_success(runs: dict[str, str], out: str) -> str:
  evals = {name: [r for r in eval_records(workdir) if any(k.startswith("tasks/") for k in r)]
           for name, workdir in runs.items()}
  first = next(iter(evals.values()))
  if not first:
    raise ValueError(f"no evaluations in {next(iter(runs.values()))}/metrics.jsonl")
  tiers = tiers_of(first[-1])
  figure, axes = plt.subplots(1, len(tiers), figsize=(3.2 * len(tiers), 3.0), sharey=True, squeeze=False)
  for axis, tier in zip(axes[0], tiers):
    for (name, records), style in zip(evals.items(), ("-o", "--s")):
      # A success logged as null (NaN) is drawn as a gap in the line, not dropped or joined across.
      points = [(r["step"], _number(r[f"success/{tier}"])) for r in records if f"success/{tier}" in r]
      if points:
        axis.plot(*zip(*points), style, label=name)
    axis.set_title(tier)
    axis.set_xlabel("RL step")
    axis.set_ylim(-0.03, 1.03)
  axes[0][0].set_ylabel("greedy held-out success")
  axes[0][-1].legend(loc="best")
  return _save(figure, out, "success_per_tier.png")


def plot_depths(workdir: str, out: str, tier: str | None = None) -> str:
  """`tier` defaults to "hard" (TextCraft-Synth's), else the last tier of the run's final evaluation."""
  evals = eval_records(workdir)
  if not evals:
    raise ValueError(f"no evaluations in {workdir}/metrics.jsonl")
  tiers = tiers_of(evals[-1])
  tier = tier or ("hard" if "hard" in tiers else tiers[-1])
  split_files = sorted(glob.glob(os.path.join(workdir, "trees", f"eval_*_step{evals[-1]['step']:06d}.jsonl")))
  held_out = [d for path in split_files for d in _solved_tree_depths(path, tier)]
  training = [d for path in sorted(glob.glob(os.path.join(workdir, "trees", "train_step*.jsonl")))
              for d in _solved_tree_depths(path)]
  if not held_out or not training:
    raise ValueError(f"{workdir}/trees needs solved {tier} trees of the final evaluation and solved logged "
                     "training trees")
  figure, axis = plt.subplots(figsize=(5.0, 3.2))
  top = max(held_out + training)
  for values, label, offset in ((training, "solved training trees", -0.2),
                                (held_out, f"solved held-out {tier} trees (final evaluation)", 0.2)):
    counts = collections.Counter(values)
    axis.bar([d + offset for d in range(top + 1)], [counts[d] / len(values) for d in range(top + 1)],
             width=0.4, label=label)
  axis.set_xlabel("tree depth (deepest node; root = 0)")
  axis.set_ylabel("share of trees")
  axis.set_xticks(range(top + 1))
  axis.set_ylim(0, 1.05)
  axis.legend(loc="upper right", fontsize="small")
  return _save(figure, out, "depth_distribution.png")


def plot_delegation(runs: dict[str, str], out: str) -> str:
  figure, axis = plt.subplots(figsize=(5.0, 3.2))
  for (name, workdir), color in zip(runs.items(), ("tab:blue", "tab:orange")):
    records = read_records(os.path.join(workdir, "metrics.jsonl"))
    train = [(r["step"], _number(r["rollout/delegation_rate"])) for r in records
             if r.get("kind") == "train" and "rollout/delegation_rate" in r]
    evals = [(r["step"], _number(r["delegation_rate"])) for r in records
             if r.get("kind") == "eval" and "delegation_rate" in r]
    if train:
      axis.plot(*zip(*train), "-", color=color, alpha=0.6, label=f"{name}: training (T = 1)")
    if evals:
      axis.plot(*zip(*evals), "o--", color=color, label=f"{name}: greedy evaluation")
  axis.set_xlabel("RL step")
  axis.set_ylabel("share of nodes that launch a child")
  axis.set_ylim(-0.03, 1.03)
  axis.legend(loc="best", fontsize="small")
  return _save(figure, out, "delegation_rate.png")


def plot_parallelism(workdirs: list[str], out: str) -> str:
  finals = {}
  for workdir in workdirs:
    evals = [r for r in eval_records(workdir) if "parallel_fraction" in r]
    if not evals:
      raise ValueError(f"no evaluations in {workdir}/metrics.jsonl")
    finals[os.path.basename(os.path.normpath(workdir))] = evals[-1]
  names = list(finals)
  figure, (left, right) = plt.subplots(1, 2, figsize=(9.0, 3.2))
  left.bar(names, [_number(finals[n]["parallel_fraction"]) for n in names], color="tab:blue")
  left.set_ylabel("parallel fraction of launches")
  left.set_ylim(0, 1.05)
  positions = range(len(names))
  right.bar([p - 0.2 for p in positions], [_number(finals[n]["total_tokens_per_tree"]) for n in names],
            width=0.4, label="all tokens generated")
  right.bar([p + 0.2 for p in positions], [_number(finals[n]["critical_path_tokens"]) for n in names],
            width=0.4, label="critical path")
  right.set_xticks(list(positions), names)
  right.set_ylabel("tokens per tree (final evaluation)")
  right.legend(loc="best", fontsize="small")
  for axis in (left, right):
    axis.tick_params(axis="x", labelrotation=15)
  return _save(figure, out, "parallelism.png")


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--workdir", required=True, help="the RAO run's work directory")
  parser.add_argument("--baseline", help="the single-agent baseline's work directory (tiny_linear)")
  parser.add_argument("--out", help="where to write the PNGs (default: {workdir}/figures)")
  parser.add_argument("--parallel_runs", default="", help="comma-separated work directories for parallelism.png")
  args = parser.parse_args(argv)
  out = args.out or os.path.join(args.workdir, "figures")
  os.makedirs(out, exist_ok=True)
  runs = {"RAO": args.workdir}
  if args.baseline:
    runs["single agent"] = args.baseline
  parallel_runs = [w for w in args.parallel_runs.split(",") if w] or [args.workdir]
  for path in (plot_success(runs, out), plot_depths(args.workdir, out), plot_delegation(runs, out),
               plot_parallelism(parallel_runs, out)):
    print(path)
  return 0


if __name__ == "__main__":
  sys.exit(main())
