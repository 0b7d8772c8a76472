"""batch_metrics: per-tier counts, tree depths (of solved trees too) and the delegation rate."""
import numpy as np
import pytest

from rao_jax.rollout.metrics import batch_metrics
from rao_jax.rollout.trees import Trees


def _trees(parent, tree, group, depth, success, num_children) -> Trees:
  n = len(parent)
  zeros = np.zeros(n, np.int32)
  return Trees(tree=np.asarray(tree, np.int32), group=np.asarray(group, np.int32),
               parent=np.asarray(parent, np.int32), depth=np.asarray(depth, np.int32),
               success=np.asarray(success, np.float32), num_children=np.asarray(num_children, np.int32),
               launch_cell=zeros + 2, end_reason=zeros, steps=zeros + 3, tokens_generated=zeros + 5,
               first_round=zeros, last_round=zeros, first_step=zeros.astype(np.int64),
               last_step=zeros.astype(np.int64), token_offsets=np.zeros(n + 1, np.int64),
               tokens=np.zeros(0, np.int32), loss_mask=np.zeros(0, bool), sampler_log_probs=np.zeros(0, np.float32))


def test_tiers_count_solved_trees_and_the_depth_of_solutions():
  # Tree 0 (easy): a solved root with one child. Tree 1 (hard): a failed chain of depth 3.
  # Tree 2 (hard): a solved root with a child of its own.
  trees = _trees(parent=[-1, 0, -1, 2, 3, 4, -1, 6], tree=[0, 0, 1, 1, 1, 1, 2, 2], group=[0, 0, 1, 1, 1, 1, 2, 2],
                 depth=[0, 1, 0, 1, 2, 3, 0, 1], success=[1, 1, 0, 0, 0, 0, 1, 1],
                 num_children=[1, 0, 1, 1, 1, 0, 1, 0])
  metrics = batch_metrics(trees, ["easy", "hard", "hard"])
  assert (metrics["solved/easy"], metrics["tasks/easy"], metrics["success/easy"]) == (1.0, 1.0, 1.0)
  assert (metrics["solved/hard"], metrics["tasks/hard"], metrics["success/hard"]) == (1.0, 2.0, 0.5)
  assert metrics["max_depth/hard"] == 3.0 and metrics["max_depth_solved/hard"] == 1.0
  assert metrics["max_depth_solved"] == 1.0 and metrics["max_depth"] == 3.0
  assert metrics["max_depth_mean"] == pytest.approx(5 / 3)
  assert metrics["delegation_rate"] == pytest.approx(5 / 8)


def test_a_tier_without_solutions_has_solved_depth_zero():
  trees = _trees(parent=[-1, 0], tree=[0, 0], group=[0, 0], depth=[0, 1], success=[0, 1], num_children=[1, 0])
  metrics = batch_metrics(trees, ["medium"])
  assert metrics["solved/medium"] == 0.0 and metrics["max_depth_solved/medium"] == 0.0
  assert metrics["max_depth/medium"] == 1.0
