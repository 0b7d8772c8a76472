"""Per-batch statistics of a `Trees` record (RAO method spec, section 6).

Definitions:
  delegation rate: the share of nodes that launched at least one child.
  max depth solved: the depth of the deepest tree whose root succeeded (0 if none did).
  parallel fraction: the share of child launches that ran concurrently with at least one sibling
    launched in the same cell of the same parent (siblings awaited together by one `gather`).
  critical path: the longest chain of dependent decode steps. A node's own generated tokens are
    sequential; a cell that launched children waits for the slowest of them, so
        critical(x) = tokens(x) + Σ_{cells c of x that launched} max_{children y of c} critical(y).
    Its ratio to the total tokens generated is the speed-up that parallel children make possible.
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from rao_jax.rollout.trees import EndReason, Trees


def parallel_fraction(trees: Trees) -> float:
  """Share of child launches with ≥ 1 sibling from the same launching cell."""
  children = np.flatnonzero(trees.parent >= 0)
  if children.size == 0:
    return 0.0
  cells: dict[tuple[int, int], int] = defaultdict(int)
  for i in children:
    cells[(int(trees.parent[i]), int(trees.launch_cell[i]))] += 1
  in_parallel = sum(1 for i in children if cells[(int(trees.parent[i]), int(trees.launch_cell[i]))] > 1)
  return in_parallel / children.size


def critical_path_tokens(trees: Trees) -> np.ndarray:
  """critical(x) for every node x, [N] int64 (see the module docstring)."""
  critical = trees.tokens_generated.astype(np.int64).copy()
  # A child is one level below its parent: fold levels from the deepest up, so every child's value
  # is final before it is added to its parent.
  for depth in range(int(trees.depth.max(initial=0)), 0, -1):
    slowest: dict[tuple[int, int], int] = {}
    for i in np.flatnonzero(trees.depth == depth):
      key = (int(trees.parent[i]), int(trees.launch_cell[i]))
      slowest[key] = max(slowest.get(key, 0), int(critical[i]))
    for (parent, _), value in slowest.items():
      critical[parent] += value
  return critical


def children_per_launching_cell(trees: Trees) -> float:
  children = np.flatnonzero(trees.parent >= 0)
  cells = {(int(trees.parent[i]), int(trees.launch_cell[i])) for i in children}
  return children.size / len(cells) if cells else 0.0


def batch_metrics(trees: Trees, difficulty_of_group: Sequence[str] | None = None) -> dict[str, float]:
  """Success by difficulty and tree statistics for one batch of trees."""
  roots = trees.roots()
  tree_depth = np.zeros(trees.num_trees, np.int64)  # [num_trees] depth of each tree's deepest node
  np.maximum.at(tree_depth, trees.tree, trees.depth)
  metrics: dict[str, float] = {
      "success": float(trees.success[roots].mean()) if roots.size else 0.0,
      "nodes_per_tree": trees.num_nodes / max(1, roots.size),
      "max_depth_mean": float(np.mean(tree_depth[trees.tree[roots]]))
                        if roots.size else 0.0,
      "max_depth": float(trees.depth.max(initial=0)),
      "children_per_launching_cell": children_per_launching_cell(trees),
      "parallel_fraction": parallel_fraction(trees),
      "steps_per_node": float(trees.steps.mean()) if trees.num_nodes else 0.0,
      "child_success": float(trees.success[trees.parent >= 0].mean()) if (trees.parent >= 0).any() else 0.0,
      "delegation_rate": float(np.mean(trees.num_children > 0)) if trees.num_nodes else 0.0,
  }
  critical = critical_path_tokens(trees)
  total = trees.tokens_generated.sum()
  metrics["critical_path_tokens"] = float(critical[roots].mean()) if roots.size else 0.0
  metrics["total_tokens_per_tree"] = float(total) / max(1, roots.size)
  metrics["critical_path_fraction"] = float(critical[roots].sum() / total) if total else 0.0
  for reason in EndReason:
    metrics[f"end_{reason.name.lower()}"] = float(np.mean(trees.end_reason == reason)) if trees.num_nodes else 0.0
  solved_roots = roots[trees.success[roots] > 0]
  metrics["max_depth_solved"] = float(tree_depth[trees.tree[solved_roots]].max(initial=0))
  if difficulty_of_group is not None:
    by_difficulty: dict[str, list[int]] = defaultdict(list)
    for r in roots:
      by_difficulty[difficulty_of_group[int(trees.group[r])]].append(int(r))
    for name, tier_roots in sorted(by_difficulty.items()):
      solved = float(trees.success[tier_roots].sum())
      metrics[f"success/{name}"] = solved / len(tier_roots)
      metrics[f"solved/{name}"] = solved
      metrics[f"tasks/{name}"] = float(len(tier_roots))
      metrics[f"max_depth/{name}"] = float(tree_depth[trees.tree[tier_roots]].max())
      solved_tier = [r for r in tier_roots if trees.success[r] > 0]
      metrics[f"max_depth_solved/{name}"] = float(tree_depth[trees.tree[solved_tier]].max(initial=0))
  return metrics


def timing_metrics(timings: Any) -> Mapping[str, float]:
  """Wall-clock split and slot utilisation of one engine run (`RolloutTimings`)."""
  return {
      "time/decode_s": timings.decode_s, "time/prefill_s": timings.prefill_s,
      "time/interpreter_s": timings.interpreter_s, "time/host_s": timings.host_s,
      "time/total_s": timings.total_s, "decode_rounds": float(timings.rounds),
      "decode_steps": float(timings.decode_steps), "slot_utilisation": timings.slot_utilisation,
  }
