"""Per-difficulty statistics of a trees file: the counts docs/results.md quotes from an evaluation.

  python scripts/tree_stats.py --trees workdir/long_context_tiny/trees/eval_val_step000010.jsonl
  python scripts/tree_stats.py --trees FILE --json          # one JSON object instead of the table

The input is a `Trees.to_jsonl` file (the trainer writes one per evaluation and per RL step under
`{workdir}/trees/`). For each difficulty tag (trees without one are "all"), and over every tree:

  trees             number of trees
  root score        mean success of the roots
  roots delegating  roots that launched at least one child
  nodes / tree      mean nodes per tree
  child exact       share of children whose success is 1 (a child's own grade)
  parallel          the parallel fraction of the children (`rollout.metrics.parallel_fraction`)
  critical path     mean critical-path tokens of a tree (`rollout.metrics.critical_path_tokens`)
  tokens / tree     mean tokens generated per tree
"""
from __future__ import annotations

import argparse
import json
import sys
import types
from collections import defaultdict
from typing import Any

import numpy as np

from rao_jax.rollout import metrics
from rao_jax.rollout.trees import read_jsonl

_COLUMNS = ("trees", "root score", "roots delegating", "nodes / tree", "child exact", "parallel",
            "critical path", "tokens / tree")


def _arrays(nodes: list[dict[str, Any]]) -> types.SimpleNamespace:
  """The node fields `rollout.metrics` reads, as arrays indexed by position in `nodes` (parents
  re-indexed the same way)."""
  position = {node["id"]: i for i, node in enumerate(nodes)}
  field = lambda name: np.array([node[name] for node in nodes], np.int64)
  return types.SimpleNamespace(
      parent=np.array([position.get(node["parent"], -1) for node in nodes], np.int64),
      launch_cell=field("launch_cell"), depth=field("depth"), tokens_generated=field("tokens_generated"))


def tree_stats(trees: list[dict[str, Any]]) -> dict[str, float]:
  """The statistics of the module docstring over `trees` (dicts as `read_jsonl` returns them)."""
  nodes = [node for tree in trees for node in tree["nodes"]]
  arrays = _arrays(nodes)
  roots = np.flatnonzero(arrays.parent < 0)
  children = [node for node in nodes if node["parent"] >= 0]
  critical = metrics.critical_path_tokens(arrays)
  return {
      "trees": len(trees),
      "root score": float(np.nanmean([nodes[r]["success"] for r in roots])) if roots.size else 0.0,
      "roots delegating": int(sum(nodes[r]["num_children"] > 0 for r in roots)),
      "nodes / tree": len(nodes) / max(1, len(trees)),
      "child exact": float(np.mean([c["success"] == 1.0 for c in children])) if children else 0.0,
      "parallel": metrics.parallel_fraction(arrays),
      "critical path": float(critical[roots].mean()) if roots.size else 0.0,
      "tokens / tree": float(arrays.tokens_generated.sum()) / max(1, len(trees)),
  }


def stats_by_difficulty(trees: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
  """`tree_stats` per difficulty tag, then over all trees ("all")."""
  groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
  for tree in trees:
    groups[str(tree.get("difficulty", "all"))].append(tree)
  table = {name: tree_stats(group) for name, group in sorted(groups.items())}
  if len(groups) > 1 or "all" not in groups:
    table["all"] = tree_stats(trees)
  return table


def _format(value: float) -> str:
  return str(value) if isinstance(value, int) else f"{value:.3f}"


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--trees", required=True, help="a Trees.to_jsonl file")
  parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
  args = parser.parse_args(argv)
  try:
    trees = read_jsonl(args.trees)
  except (OSError, ValueError, KeyError) as error:
    print(f"error: cannot read {args.trees}: {error}", file=sys.stderr)
    return 2
  if not trees:
    print(f"error: {args.trees} holds no tree", file=sys.stderr)
    return 2
  table = stats_by_difficulty(trees)
  if args.json:
    print(json.dumps(table, indent=1))
    return 0
  print("| difficulty | " + " | ".join(_COLUMNS) + " |")
  print("|---" * (len(_COLUMNS) + 1) + "|")
  for name, row in table.items():
    print(f"| {name} | " + " | ".join(_format(row[c]) for c in _COLUMNS) + " |")
  return 0


if __name__ == "__main__":
  sys.exit(main())
