"""Tree rewards and advantages (RAO paper Eq. 1, 3 and 4) as one jitted function of flat node arrays.

Every quantity is a segment reduction over node arrays (children by parent id, roots by tree and group
id, nodes by depth), so the cost is O(N) with no Python loop over nodes and no assumption about node
order. Nodes excluded from a reduction are sent to segment id `num_segments`, which `segment_sum`
drops (mode "drop"); gathers read index 0 for excluded nodes and mask the result.

Preconditions for real nodes (`node_mask` true), checked eagerly by `validate_forest`:
`0 <= tree < num_trees`, `0 <= group < num_groups`, `0 <= depth <= max_depth`, `parent` is −1 for
exactly one node per tree (its root) and otherwise a real node of the same tree, one level shallower,
every node of a tree carries the same group, and `success` is a finite number in [0, 1] (a violation of
this last one alone raises `BadRewardError`, so that a caller can skip the batch instead of failing).
Padding rows may hold anything.
"""
from __future__ import annotations

import dataclasses
import functools

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from rao_jax.rollout.trees import Trees

BONUS_REDUCTIONS = ("mean", "sum")
REWARD_MODES = ("local", "root")
BASELINES = ("leave_one_out", "group_mean", "none")
DEPTH_WEIGHTINGS = ("inverse_frequency", "gamma", "none")


def _check_choice(field: str, value: str, choices: tuple[str, ...]) -> None:
  if value not in choices:
    raise ValueError(f"AdvantageConfig.{field}={value!r}; expected one of {', '.join(choices)}")


@dataclasses.dataclass(frozen=True)
class AdvantageConfig:
  """How node rewards, baselines and depth weights are formed (hashable: a static jit argument).

  Paper settings: TextCraft-Synth and DeepDive use the defaults (λ = 0); Oolong uses bonus_weight=0.4.
  The early code's bonus, +0.2 per successful child capped at 0.4, is
  `bonus_weight=0.2, bonus_reduce="sum", bonus_cap=0.4`.
  """

  bonus_weight: float = 0.0                  # λ in R(X) = s(X) + λ · reduce_c s(c)
  bonus_reduce: str = "mean"                 # "mean" (paper Eq. 1) | "sum" (ablation)
  bonus_cap: float | None = None             # "sum" only: the bonus λ · Σ s(c) is capped at this value
  reward_mode: str = "local"                 # "local" (Eq. 1) | "root" (team reward: R(X) = s(root), no bonus)
  baseline: str = "leave_one_out"            # "leave_one_out" (Eq. 3) | "group_mean" | "none"
  drop_zero_variance_groups: bool = True     # mask groups whose root rewards are all equal
  zero_variance_tolerance: float = 1e-6      # "all equal" means max − min <= this (float32 sums)
  depth_weighting: str = "inverse_frequency"  # "inverse_frequency" (Eq. 4) | "gamma" | "none"
  gamma: float = 1.0                         # depth_weighting="gamma": w = gamma ** depth

  def __post_init__(self):
    _check_choice("bonus_reduce", self.bonus_reduce, BONUS_REDUCTIONS)
    _check_choice("reward_mode", self.reward_mode, REWARD_MODES)
    _check_choice("baseline", self.baseline, BASELINES)
    _check_choice("depth_weighting", self.depth_weighting, DEPTH_WEIGHTINGS)
    if not np.isfinite(self.bonus_weight):
      raise ValueError(f"AdvantageConfig.bonus_weight must be finite, got {self.bonus_weight}")
    if self.bonus_cap is not None:
      if self.bonus_reduce != "sum":
        raise ValueError("AdvantageConfig.bonus_cap applies only to bonus_reduce='sum' "
                         f"(got bonus_reduce={self.bonus_reduce!r})")
      if not self.bonus_cap >= 0:
        raise ValueError(f"AdvantageConfig.bonus_cap must be >= 0, got {self.bonus_cap}")
    if not self.zero_variance_tolerance >= 0:
      raise ValueError("AdvantageConfig.zero_variance_tolerance must be >= 0, "
                       f"got {self.zero_variance_tolerance}")
    if not (np.isfinite(self.gamma) and self.gamma > 0):
      raise ValueError(f"AdvantageConfig.gamma must be finite and > 0, got {self.gamma}")


@flax.struct.dataclass
class NodeAdvantages:
  """Per-node outputs of `tree_advantages`; padding rows are 0 / False."""

  reward: jax.Array        # [N] float32 R(X)
  baseline: jax.Array      # [N] float32 b of the node's tree
  advantage: jax.Array     # [N] float32 w(depth) · (R(X) − b), 0 where not valid
  valid: jax.Array         # [N] bool: the node carries loss (False for dropped groups and padding)
  depth_weight: jax.Array  # [N] float32 w(depth), 0 where not valid


def _segment_sum(values: jax.Array, segment_ids: jax.Array, include: jax.Array,
                 num_segments: int) -> jax.Array:
  """Σ values per segment over nodes with `include`; the rest go to a dropped out-of-range segment."""
  ids = jnp.where(include, segment_ids, num_segments)
  return jax.ops.segment_sum(jnp.where(include, values, 0), ids, num_segments, mode="drop")


def _gather(table: jax.Array, ids: jax.Array, include: jax.Array) -> jax.Array:
  """table[ids] where `include`, 0 elsewhere (excluded ids may be out of range)."""
  return jnp.where(include, table[jnp.where(include, ids, 0)], 0)


def node_rewards(parent: jax.Array, tree: jax.Array, success: jax.Array, node_mask: jax.Array,
                 *, num_trees: int, config: AdvantageConfig) -> jax.Array:
  """R(X) per node (paper Eq. 1; method spec §3).

  local:  R(X) = s(X) + λ · mean_{c ∈ children(X)} s(c) if X has children, else s(X); the bonus uses the
          children's own success s(c), never their R(c), so bonuses do not compound. With "sum" the bonus
          is λ · Σ_c s(c), capped at `bonus_cap` when set.
  root:   R(X) = s(root of X's tree) for every node (team reward: the root's own success; the bonus
          settings do not apply).

  Args: parent, tree [N] int32; success [N] float; node_mask [N] bool. Returns [N] float32, 0 at padding.
  """
  n = parent.shape[0]
  success = jnp.where(node_mask, success.astype(jnp.float32), 0.0)  # [N]
  if config.reward_mode == "root":
    is_root = node_mask & (parent < 0)
    return _gather(_segment_sum(success, tree, is_root, num_trees), tree, node_mask)  # [N]
  is_child = node_mask & (parent >= 0)  # [N]
  child_success_sum = _segment_sum(success, parent, is_child, n)  # [N] indexed by parent
  child_count = _segment_sum(jnp.ones_like(success), parent, is_child, n)  # [N]
  if config.bonus_reduce == "mean":
    bonus = child_success_sum / jnp.maximum(child_count, 1.0)  # 0 for childless nodes
  else:
    bonus = child_success_sum
  bonus = config.bonus_weight * bonus
  if config.bonus_cap is not None:
    bonus = jnp.minimum(bonus, config.bonus_cap)
  return jnp.where(node_mask, success + bonus, 0.0)


def tree_baselines(parent: jax.Array, tree: jax.Array, group: jax.Array, rewards: jax.Array,
                   node_mask: jax.Array, *, num_trees: int, num_groups: int,
                   config: AdvantageConfig) -> tuple[jax.Array, jax.Array]:
  """Per node: the baseline b of its tree, and whether its tree's group has zero variance.

  Baselines use root rewards only (paper Eq. 3). For tree g in group k with G_k trees and root-reward
  sum S_k: leave_one_out b_g = (S_k − R_root(g)) / (G_k − 1), and b_g = 0 when G_k = 1 (no other tree
  to compare with; such a group has zero variance and is dropped by default); group_mean b_g = S_k / G_k;
  none b_g = 0. A group has zero variance when max − min of its root rewards <= the tolerance.

  Returns (baseline [N] float32, zero_variance [N] bool), both 0 / False at padding.
  """
  is_root = node_mask & (parent < 0)  # [N]
  group_sum = _segment_sum(rewards, group, is_root, num_groups)  # [num_groups]
  group_size = _segment_sum(jnp.ones_like(rewards), group, is_root, num_groups)  # [num_groups]
  root_ids = jnp.where(is_root, group, num_groups)
  group_max = jax.ops.segment_max(jnp.where(is_root, rewards, -jnp.inf), root_ids, num_groups,
                                  mode="drop")  # [num_groups]
  group_min = jax.ops.segment_min(jnp.where(is_root, rewards, jnp.inf), root_ids, num_groups,
                                  mode="drop")  # [num_groups]
  zero_variance = group_max - group_min <= config.zero_variance_tolerance  # [num_groups]

  root_reward = _gather(_segment_sum(rewards, tree, is_root, num_trees), tree, node_mask)  # [N]
  sum_k = _gather(group_sum, group, node_mask)  # [N]
  size_k = _gather(group_size, group, node_mask)  # [N]
  if config.baseline == "leave_one_out":
    baseline = jnp.where(size_k > 1, (sum_k - root_reward) / jnp.maximum(size_k - 1, 1.0), 0.0)
  elif config.baseline == "group_mean":
    baseline = sum_k / jnp.maximum(size_k, 1.0)
  else:
    baseline = jnp.zeros_like(rewards)
  node_zero_variance = _gather(zero_variance, group, node_mask).astype(bool)
  return jnp.where(node_mask, baseline, 0.0), node_zero_variance


def depth_weights(depth: jax.Array, valid: jax.Array, *, max_depth: int,
                  config: AdvantageConfig) -> jax.Array:
  """w(depth) per valid node (paper Eq. 4), 0 for the rest.

  inverse_frequency: with N_d valid nodes at depth d, V = Σ_d N_d and D the number of depths present,
  w(d) = 1 / N_d renormalised to mean 1 over valid nodes, i.e. w(d) = V / (D · N_d): every depth level
  present gets the same total weight V / D. gamma: w(d) = γ^d (not renormalised; roots weigh 1). none: 1.
  """
  if config.depth_weighting == "inverse_frequency":
    per_depth = _segment_sum(jnp.ones(depth.shape, jnp.float32), depth, valid, max_depth + 1)  # [D+1]
    num_valid = jnp.sum(per_depth)
    levels = jnp.sum(per_depth > 0)
    weight_of_depth = jnp.where(per_depth > 0, num_valid / (levels * jnp.maximum(per_depth, 1.0)), 0.0)
    weights = _gather(weight_of_depth, depth, valid)
  elif config.depth_weighting == "gamma":
    weights = jnp.asarray(config.gamma, jnp.float32) ** depth.astype(jnp.float32)
  else:
    weights = jnp.ones(depth.shape, jnp.float32)
  return jnp.where(valid, weights, 0.0)


@functools.partial(jax.jit, static_argnames=("num_trees", "num_groups", "max_depth", "config"))
def tree_advantages(parent: jax.Array, tree: jax.Array, group: jax.Array, depth: jax.Array,
                    success: jax.Array, node_mask: jax.Array, *, num_trees: int, num_groups: int,
                    max_depth: int, config: AdvantageConfig) -> NodeAdvantages:
  """Rewards, baselines and advantages of every node of a padded forest (paper Eq. 1, 3, 4).

  A(X) = w(depth(X)) · (R(X) − b_{tree(X)}) for valid nodes, 0 otherwise: see `node_rewards`,
  `tree_baselines` and `depth_weights`. A node is valid when it is real and its group is kept (groups
  whose root rewards are all equal carry no signal and are dropped when `drop_zero_variance_groups`).
  No reward or advantage normalisation, no critic.

  Args:
    parent: [N] int32 parent node index, −1 for roots.
    tree, group, depth: [N] int32 tree id, root-task id, depth (root = 0).
    success: [N] float own success s(X) in [0, 1].
    node_mask: [N] bool, true at real nodes (false at padding).
    num_trees, num_groups, max_depth: static bounds: tree < num_trees, group < num_groups,
      0 <= depth <= max_depth at real nodes (larger bounds are fine; they fix the compiled shape).
    config: `AdvantageConfig`.
  """
  node_mask = node_mask.astype(bool)
  rewards = node_rewards(parent, tree, success, node_mask, num_trees=num_trees, config=config)
  baseline, zero_variance = tree_baselines(parent, tree, group, rewards, node_mask,
                                           num_trees=num_trees, num_groups=num_groups, config=config)
  valid = node_mask
  if config.drop_zero_variance_groups:
    valid = valid & ~zero_variance
  weights = depth_weights(depth, valid, max_depth=max_depth, config=config)
  advantage = jnp.where(valid, weights * (rewards - baseline), 0.0)
  return NodeAdvantages(reward=rewards, baseline=baseline, advantage=advantage, valid=valid,
                        depth_weight=weights)


class BadRewardError(ValueError):
  """A well-formed forest whose successes are not all finite numbers in [0, 1] (a misbehaving judge)."""


def _check_ids(name: str, ids: np.ndarray, bound: int | None, bound_name: str) -> None:
  """0 <= ids, and ids < bound when one is given; else ValueError naming the first offenders."""
  bad = (ids < 0) if bound is None else (ids < 0) | (ids >= bound)
  if np.any(bad):
    where = np.flatnonzero(bad)[:5]
    rule = "must be >= 0" if bound is None else f"must lie in [0, {bound}) ({bound_name})"
    raise ValueError(f"{name} {rule}; nodes {where.tolist()} hold {ids[where].tolist()}")


def validate_forest(parent: np.ndarray, tree: np.ndarray, group: np.ndarray, depth: np.ndarray,
                    success: np.ndarray, *, num_trees: int | None = None, num_groups: int | None = None,
                    max_depth: int | None = None) -> None:
  """Checks the module preconditions on [N] host arrays describing the real nodes of a forest.

  Raises ValueError for a malformed forest: a shape mismatch, a negative id, a tree id >= num_trees, a
  group id >= num_groups or a depth > max_depth (the static bounds of `tree_advantages`, which would
  otherwise drop or misroute those nodes silently; None: no bound), a parent that is neither −1 nor a
  node of the same tree one level shallower, a tree without exactly one root, or a tree whose nodes
  disagree on the group. Then raises `BadRewardError` (a ValueError) if some success is NaN, infinite
  or outside [0, 1]: the structure is sound but the rewards are not usable.
  """
  arrays = dict(parent=parent, tree=tree, group=group, depth=depth, success=success)
  n = parent.shape[0]
  for name, array in arrays.items():
    if array.shape != (n,):
      raise ValueError(f"{name} has shape {array.shape}; expected ({n},) like parent")
  _check_ids("tree ids", tree, num_trees, "num_trees")
  _check_ids("group ids", group, num_groups, "num_groups")
  _check_ids("depth", depth, None if max_depth is None else max_depth + 1, "up to max_depth")
  if np.any((parent < -1) | (parent >= n)):
    raise ValueError(f"parent must be -1 (root) or a node index in [0, {n})")
  is_root = parent < 0
  tree_ids, tree_index = np.unique(tree, return_inverse=True)  # [T] ids present, [N] position of each
  roots_per_tree = np.bincount(tree_index[is_root], minlength=len(tree_ids))  # [T]
  if np.any(roots_per_tree != 1):
    bad = tree_ids[roots_per_tree != 1][:5].tolist()
    raise ValueError(f"every tree needs exactly one root (parent = -1); trees {bad} do not")
  if np.any(depth[is_root] != 0):
    raise ValueError("roots must have depth 0")
  child = np.flatnonzero(~is_root)
  parent_of_child = parent[child]
  if np.any(tree[parent_of_child] != tree[child]):
    raise ValueError("a node's parent must belong to the same tree")
  if np.any(depth[parent_of_child] + 1 != depth[child]):
    raise ValueError("a node must be exactly one level deeper than its parent")
  root_group = np.empty(len(tree_ids), group.dtype)
  root_group[tree_index[is_root]] = group[is_root]
  if np.any(root_group[tree_index] != group):
    raise ValueError("all nodes of a tree must carry its root's group")
  bad = ~(np.isfinite(success) & (success >= 0) & (success <= 1))  # NaN fails every comparison
  if np.any(bad):
    where = np.flatnonzero(bad)[:5]
    raise BadRewardError(f"success must be a finite number in [0, 1]; {int(bad.sum())} of {n} nodes are "
                         f"not (nodes {where.tolist()} hold {success[where].tolist()})")


def advantages_from_trees(trees: Trees, config: AdvantageConfig, *,
                          pad_to: int | None = None) -> NodeAdvantages:
  """Validates a host `Trees` batch and runs `tree_advantages` on it; outputs are [pad_to or N].

  Segment bounds are all set to the padded node count P (a forest of P nodes has at most P trees and
  depth levels), so the function compiles once per `pad_to` whatever the forest's shape; tree and group
  ids must therefore be below P (`validate_forest` rejects larger ones). Raises `BadRewardError` for a
  well-formed forest with unusable successes, ValueError for a malformed one.
  """
  n = trees.num_nodes
  size = n if pad_to is None else pad_to
  if size < n:
    raise ValueError(f"pad_to={pad_to} is smaller than the number of nodes ({n})")
  if size == 0:
    raise ValueError("Trees holds no nodes")
  validate_forest(trees.parent, trees.tree, trees.group, trees.depth, trees.success, num_trees=size,
                  num_groups=size, max_depth=size - 1)

  def padded(array: np.ndarray, fill, dtype) -> jax.Array:
    out = np.full(size, fill, dtype)
    out[:n] = array
    return jnp.asarray(out)

  return tree_advantages(
      padded(trees.parent, -1, np.int32), padded(trees.tree, 0, np.int32),
      padded(trees.group, 0, np.int32), padded(trees.depth, 0, np.int32),
      padded(trees.success, 0.0, np.float32), padded(np.ones(n, bool), False, bool),
      num_trees=size, num_groups=size, max_depth=size - 1, config=config)
