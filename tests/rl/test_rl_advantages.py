"""Tree advantages: hand-computed examples per variant, and hypothesis forests against a loop reference."""
from __future__ import annotations

import collections
import dataclasses

import hypothesis
import hypothesis.strategies as st
import jax.numpy as jnp
import numpy as np
import pytest

from rao_jax.rl.advantages import AdvantageConfig
from rao_jax.rl.advantages import BadRewardError
from rao_jax.rl.advantages import advantages_from_trees
from rao_jax.rl.advantages import tree_advantages
from rao_jax.rl.advantages import validate_forest
from rao_jax.rollout.trees import Trees

# Fixed padded sizes so every hypothesis example reuses one compilation per config.
PAD_NODES = 80
NUM_TREE_IDS = 16
NUM_GROUP_IDS = 8
MAX_DEPTH = 7


# ---------------------------------------------------------------------------------------------------
# Plain-Python reference (loops and dicts, float64), written from the paper's equations.
# ---------------------------------------------------------------------------------------------------

def reference_advantages(nodes: dict[int, dict], config: AdvantageConfig) -> dict[int, dict]:
  """nodes: id -> dict(parent, tree, group, depth, success). Returns id -> outputs of that node."""
  children = collections.defaultdict(list)
  root_of_tree = {}
  for i, node in nodes.items():
    if node["parent"] == -1:
      root_of_tree[node["tree"]] = i
    else:
      children[node["parent"]].append(i)

  local_reward = {}
  for i, node in nodes.items():
    kids = children[i]
    if not kids:
      local_reward[i] = node["success"]
      continue
    kid_successes = [nodes[c]["success"] for c in kids]
    if config.bonus_reduce == "mean":
      bonus = config.bonus_weight * sum(kid_successes) / len(kid_successes)
    else:
      bonus = config.bonus_weight * sum(kid_successes)
      if config.bonus_cap is not None:
        bonus = min(bonus, config.bonus_cap)
    local_reward[i] = node["success"] + bonus

  reward = {}
  for i, node in nodes.items():
    if config.reward_mode == "root":  # team reward: the root's own success (method spec §3), no bonus
      reward[i] = nodes[root_of_tree[node["tree"]]]["success"]
    else:
      reward[i] = local_reward[i]

  trees_of_group = collections.defaultdict(list)
  for tree_id, root in root_of_tree.items():
    trees_of_group[nodes[root]["group"]].append(tree_id)

  tree_baseline, group_dropped = {}, {}
  for group_id, tree_ids in trees_of_group.items():
    root_rewards = {t: reward[root_of_tree[t]] for t in tree_ids}
    group_dropped[group_id] = (config.drop_zero_variance_groups and
                               max(root_rewards.values()) - min(root_rewards.values())
                               <= config.zero_variance_tolerance)
    for t in tree_ids:
      others = [root_rewards[u] for u in tree_ids if u != t]
      if config.baseline == "leave_one_out":
        tree_baseline[t] = sum(others) / len(others) if others else 0.0
      elif config.baseline == "group_mean":
        tree_baseline[t] = sum(root_rewards.values()) / len(tree_ids)
      else:
        tree_baseline[t] = 0.0

  valid = {i: not group_dropped[node["group"]] for i, node in nodes.items()}
  weight = {}
  if config.depth_weighting == "inverse_frequency":
    count_at_depth = collections.Counter(nodes[i]["depth"] for i in nodes if valid[i])
    raw = {i: 1.0 / count_at_depth[nodes[i]["depth"]] for i in nodes if valid[i]}
    scale = len(raw) / sum(raw.values()) if raw else 0.0
    weight = {i: raw[i] * scale if valid[i] else 0.0 for i in nodes}
  elif config.depth_weighting == "gamma":
    weight = {i: config.gamma ** nodes[i]["depth"] if valid[i] else 0.0 for i in nodes}
  else:
    weight = {i: 1.0 if valid[i] else 0.0 for i in nodes}

  out = {}
  for i, node in nodes.items():
    baseline = tree_baseline[node["tree"]]
    out[i] = dict(reward=reward[i], baseline=baseline, valid=valid[i], depth_weight=weight[i],
                  advantage=weight[i] * (reward[i] - baseline) if valid[i] else 0.0)
  return out


# ---------------------------------------------------------------------------------------------------
# Helpers.
# ---------------------------------------------------------------------------------------------------

def run_padded(nodes: dict[int, dict], config: AdvantageConfig, *,
               padding_rng: np.random.Generator | None = None):
  """Runs tree_advantages on `nodes` (ids are rows of a [PAD_NODES] array); the other rows are padding,
  zeros or (with `padding_rng`) garbage ids and successes, in range or not."""
  rng, size = padding_rng or np.random.default_rng(0), PAD_NODES
  parent = rng.integers(-3, size + 3, size) if padding_rng else np.full(size, -1)
  tree = rng.integers(-2, 40, size) if padding_rng else np.zeros(size, int)
  group = rng.integers(-2, 40, size) if padding_rng else np.zeros(size, int)
  depth = rng.integers(-2, 40, size) if padding_rng else np.zeros(size, int)
  success = rng.uniform(-5, 5, size) if padding_rng else np.zeros(size)
  mask = np.zeros(size, bool)
  for i, node in nodes.items():
    parent[i], tree[i], group[i] = node["parent"], node["tree"], node["group"]
    depth[i], success[i], mask[i] = node["depth"], node["success"], True
  result = tree_advantages(jnp.asarray(parent, jnp.int32), jnp.asarray(tree, jnp.int32),
                           jnp.asarray(group, jnp.int32), jnp.asarray(depth, jnp.int32),
                           jnp.asarray(success, jnp.float32), jnp.asarray(mask), num_trees=NUM_TREE_IDS,
                           num_groups=NUM_GROUP_IDS, max_depth=MAX_DEPTH, config=config)
  return {k: np.asarray(v) for k, v in dataclasses.asdict(result).items()}, mask


def assert_matches_reference(nodes: dict[int, dict], config: AdvantageConfig, got: dict,
                             mask: np.ndarray) -> None:
  want = reference_advantages(nodes, config)
  for field in ("reward", "baseline", "depth_weight", "advantage"):
    expected = np.array([want[i][field] for i in sorted(nodes)])
    np.testing.assert_allclose(got[field][sorted(nodes)], expected, rtol=1e-5, atol=1e-5,
                               err_msg=f"{field} with {config}")
    assert np.all(got[field][~mask] == 0), f"{field} must be 0 at padding"
  expected_valid = np.array([want[i]["valid"] for i in sorted(nodes)])
  np.testing.assert_array_equal(got["valid"][sorted(nodes)], expected_valid, err_msg=str(config))
  assert not got["valid"][~mask].any()


def forest_from_lists(parents, trees, groups, successes) -> dict[int, dict]:
  """Builds node dicts (depth derived from parents, which may come after their children)."""
  def depth_of(i):
    return 0 if parents[i] == -1 else 1 + depth_of(parents[i])
  return {i: dict(parent=parents[i], tree=trees[i], group=groups[i], depth=depth_of(i),
                  success=float(successes[i])) for i in range(len(parents))}


# Hand example (ids in brackets). Group 0: tree 0 = a[0](s=1) with children a1[1](1), a2[2](0), and
# a1's child a11[3](1); tree 1 = b[4](0) with child b1[5](1); tree 2 = c[6](0) alone.
# Group 1: trees 3, 4 = single roots d[7](1), e[8](1) (all equal). Group 2: tree 5 = f[9](0.5) alone.
HAND = forest_from_lists(parents=[-1, 0, 0, 1, -1, 4, -1, -1, -1, -1],
                         trees=[0, 0, 0, 0, 1, 1, 2, 3, 4, 5],
                         groups=[0, 0, 0, 0, 0, 0, 0, 1, 1, 2],
                         successes=[1, 1, 0, 1, 0, 1, 0, 1, 1, 0.5])


# Every config used in this file (each one is a compilation, so the hand tests reuse these).
PAPER = AdvantageConfig()
MEAN_BONUS = AdvantageConfig(bonus_weight=0.4)
MEAN_BONUS_KEEP_ALL = AdvantageConfig(bonus_weight=0.4, drop_zero_variance_groups=False,
                                      depth_weighting="none")
SUM_BONUS_CAPPED = AdvantageConfig(bonus_weight=0.2, bonus_reduce="sum", bonus_cap=0.4)
SUM_BONUS = AdvantageConfig(bonus_weight=0.3, bonus_reduce="sum", depth_weighting="none")
ROOT_REWARD = AdvantageConfig(bonus_weight=0.4, reward_mode="root", depth_weighting="none")
GROUP_MEAN = AdvantageConfig(baseline="group_mean", depth_weighting="none")
NO_BASELINE = AdvantageConfig(baseline="none", drop_zero_variance_groups=False, depth_weighting="none")
GAMMA = AdvantageConfig(depth_weighting="gamma", gamma=0.5)
PROPERTY_CONFIGS = (PAPER, MEAN_BONUS, MEAN_BONUS_KEEP_ALL, SUM_BONUS_CAPPED, SUM_BONUS, ROOT_REWARD,
                    GROUP_MEAN, NO_BASELINE, GAMMA)


def run_hand(config: AdvantageConfig) -> dict:
  got, _ = run_padded(HAND, config)
  return got


# ---------------------------------------------------------------------------------------------------
# Hand-computed examples.
# ---------------------------------------------------------------------------------------------------

def test_paper_default_loo_and_inverse_frequency_weights():
  got = run_hand(PAPER)
  # Root rewards of group 0: [1, 0, 0] -> LOO baselines [0, 0.5, 0.5]. Groups 1 and 2 are dropped.
  np.testing.assert_allclose(got["reward"][:10], [1, 1, 0, 1, 0, 1, 0, 1, 1, 0.5])
  np.testing.assert_allclose(got["baseline"][:7], [0, 0, 0, 0, 0.5, 0.5, 0.5])
  np.testing.assert_array_equal(got["valid"][:10], [True] * 7 + [False] * 3)
  # Valid nodes per depth: 3, 3, 1 (V = 7, D = 3) -> w = 7/9, 7/9, 7/3 (mean 1 over valid nodes).
  w0, w2 = 7 / 9, 7 / 3
  np.testing.assert_allclose(got["depth_weight"][:10], [w0, w0, w0, w2, w0, w0, w0, 0, 0, 0], rtol=1e-6)
  np.testing.assert_allclose(got["advantage"][:10],
                             [w0, w0, 0, w2, -0.5 * w0, 0.5 * w0, -0.5 * w0, 0, 0, 0], rtol=1e-6)
  assert got["depth_weight"][got["valid"]].mean() == pytest.approx(1.0)


def test_mean_bonus_uses_childrens_own_success():
  got = run_hand(MEAN_BONUS_KEEP_ALL)
  # R(a) = 1 + 0.4 * mean(s(a1)=1, s(a2)=0) = 1.2 (not R(a1) = 1.4); R(a1) = 1.4; R(b) = 0.4.
  np.testing.assert_allclose(got["reward"][:7], [1.2, 1.4, 0, 1, 0.4, 1, 0], rtol=1e-6)
  # Root rewards [1.2, 0.4, 0] -> LOO baselines [0.2, 0.6, 0.8].
  np.testing.assert_allclose(got["baseline"][:7], [0.2] * 4 + [0.6] * 2 + [0.8], rtol=1e-6)
  np.testing.assert_allclose(got["advantage"][:7], [1.0, 1.2, -0.2, 0.8, -0.2, 0.4, -0.8],
                             rtol=1e-5, atol=1e-6)


def test_sum_bonus_with_cap():
  # One root with three successful children and one with a single successful child.
  nodes = forest_from_lists(parents=[-1, 0, 0, 0, -1, 4], trees=[0, 0, 0, 0, 1, 1],
                            groups=[0] * 6, successes=[0, 1, 1, 1, 0, 1])
  got, _ = run_padded(nodes, SUM_BONUS_CAPPED)  # λ = 0.2, cap 0.4
  np.testing.assert_allclose(got["reward"][:6], [0.4, 1, 1, 1, 0.2, 1], rtol=1e-6)  # 0.6 capped to 0.4
  np.testing.assert_allclose(got["baseline"][:6], [0.2] * 4 + [0.4] * 2, rtol=1e-6)
  got, _ = run_padded(nodes, SUM_BONUS)  # λ = 0.3, no cap
  np.testing.assert_allclose(got["reward"][:6], [0.9, 1, 1, 1, 0.3, 1], rtol=1e-6)


def test_root_mode_gives_every_node_its_roots_success_not_its_bonus_reward():
  got = run_hand(ROOT_REWARD)  # λ = 0.4, but team reward is the root's own success s(root)
  # s(a) = 1, s(b) = 0, s(c) = 0 (R_local would be 1.2, 0.4, 0: the bonus must not reach the team reward).
  np.testing.assert_allclose(got["reward"][:7], [1.0] * 4 + [0.0] * 2 + [0.0], rtol=1e-6)
  # Root rewards [1, 0, 0] -> LOO baselines [0, 0.5, 0.5].
  np.testing.assert_allclose(got["baseline"][:7], [0.0] * 4 + [0.5] * 3, rtol=1e-6)
  np.testing.assert_allclose(got["advantage"][:7], [1.0] * 4 + [-0.5] * 3, rtol=1e-5)


def test_group_mean_and_no_baseline():
  got = run_hand(GROUP_MEAN)
  np.testing.assert_allclose(got["baseline"][:7], [1 / 3] * 7, rtol=1e-6)
  np.testing.assert_allclose(got["advantage"][:7], np.array([1, 1, 0, 1, 0, 1, 0]) - 1 / 3, rtol=1e-6)
  got = run_hand(NO_BASELINE)
  np.testing.assert_array_equal(got["baseline"][:10], 0)
  np.testing.assert_allclose(got["advantage"][:10], [1, 1, 0, 1, 0, 1, 0, 1, 1, 0.5])


def test_keeping_zero_variance_groups_and_singleton_group_baseline():
  got = run_hand(MEAN_BONUS_KEEP_ALL)  # the bonus does not touch these childless roots
  assert got["valid"][:10].all()
  # Group 1 (all equal): LOO baseline 1, advantage 0. Group 2 (one tree): baseline 0, advantage R.
  np.testing.assert_allclose(got["baseline"][7:10], [1, 1, 0])
  np.testing.assert_allclose(got["advantage"][7:10], [0, 0, 0.5])


def test_gamma_depth_weighting():
  got = run_hand(GAMMA)
  np.testing.assert_allclose(got["depth_weight"][:10], [1, .5, .5, .25, 1, .5, 1, 0, 0, 0])
  np.testing.assert_allclose(got["advantage"][:7], [1, .5, 0, .25, -.5, .25, -.5])


def test_everything_dropped_gives_zero_weights_not_nan():
  nodes = forest_from_lists(parents=[-1, -1, 1], trees=[0, 1, 1], groups=[0, 0, 0], successes=[1, 1, 0])
  got, _ = run_padded(nodes, PAPER)
  assert not got["valid"].any()
  assert np.all(np.isfinite(got["depth_weight"])) and np.all(got["advantage"] == 0)


# ---------------------------------------------------------------------------------------------------
# Property tests on random forests.
# ---------------------------------------------------------------------------------------------------


# Generating a forest takes many draws; on a loaded CI machine that must not count as a failure.
PROPERTY_SETTINGS = dict(deadline=None, suppress_health_check=[hypothesis.HealthCheck.too_slow])


@st.composite
def forests(draw) -> tuple[dict[int, dict], int]:
  """Random forests: chains, fans and random trees; binary or graded success; copied (all-equal)
  groups; singleton groups; arbitrary tree/group ids; nodes shuffled over padded rows."""
  graded = draw(st.booleans())
  success = (st.integers(0, 1000).map(lambda k: k / 1000) if graded
             else st.integers(0, 1).map(float))
  tree_ids = iter(draw(st.permutations(range(NUM_TREE_IDS))))
  group_ids = draw(st.permutations(range(NUM_GROUP_IDS)))
  trees = []  # (tree id, group id, parents, successes) with parents local to the tree
  for group_id in group_ids[:draw(st.integers(1, 3))]:
    num_trees = draw(st.integers(1, 4))
    copies = draw(st.booleans())  # every tree of the group identical -> zero variance
    for k in range(num_trees):
      if k == 0 or not copies:
        size = draw(st.integers(1, 6))
        shape = draw(st.sampled_from(["chain", "fan", "random"]))
        parents = [-1] + [j - 1 if shape == "chain" else 0 if shape == "fan"
                          else draw(st.integers(0, j - 1)) for j in range(1, size)]
        successes = [draw(success) for _ in range(size)]
      trees.append((next(tree_ids), group_id, parents, successes))
  total = sum(len(t[2]) for t in trees)
  rows = draw(st.permutations(range(PAD_NODES)))[:total]  # where each node lands in the padded array
  nodes, cursor = {}, 0
  for tree_id, group_id, parents, successes in trees:
    local_rows = rows[cursor:cursor + len(parents)]
    depths = [0] * len(parents)
    for j in range(1, len(parents)):
      depths[j] = depths[parents[j]] + 1
    for j, row in enumerate(local_rows):
      nodes[row] = dict(parent=-1 if parents[j] == -1 else local_rows[parents[j]], tree=tree_id,
                        group=group_id, depth=depths[j], success=successes[j])
    cursor += len(parents)
  return nodes, draw(st.integers(0, 2**31 - 1))


@hypothesis.settings(max_examples=30, **PROPERTY_SETTINGS)
@hypothesis.given(forests())
def test_matches_reference_on_random_forests(forest):
  nodes, seed = forest
  for config in PROPERTY_CONFIGS:
    got, mask = run_padded(nodes, config, padding_rng=np.random.default_rng(seed))
    assert_matches_reference(nodes, config, got, mask)


@hypothesis.settings(max_examples=20, **PROPERTY_SETTINGS)
@hypothesis.given(forests())
def test_inverse_frequency_weights_have_mean_one_and_equal_mass_per_depth(forest):
  nodes, _ = forest
  got, _ = run_padded(nodes, PAPER)
  rows = [i for i in nodes if got["valid"][i]]
  hypothesis.assume(rows)
  weights, depths = got["depth_weight"][rows], np.array([nodes[i]["depth"] for i in rows])
  assert weights.mean() == pytest.approx(1.0, rel=1e-5)
  mass = [weights[depths == d].sum() for d in np.unique(depths)]
  np.testing.assert_allclose(mass, mass[0], rtol=1e-5)


# ---------------------------------------------------------------------------------------------------
# Trees convenience entry and input validation.
# ---------------------------------------------------------------------------------------------------

def make_trees(nodes: dict[int, dict]) -> Trees:
  n = len(nodes)
  field = lambda name, dtype: np.array([nodes[i][name] for i in range(n)], dtype)
  zeros = np.zeros(n, np.int32)
  return Trees(tree=field("tree", np.int32), group=field("group", np.int32),
               parent=field("parent", np.int32), depth=field("depth", np.int32),
               success=field("success", np.float32), num_children=zeros, launch_cell=zeros,
               end_reason=zeros, steps=zeros, tokens_generated=zeros, first_round=zeros,
               last_round=zeros, first_step=zeros.astype(np.int64), last_step=zeros.astype(np.int64),
               token_offsets=np.zeros(n + 1, np.int64), tokens=np.zeros(0, np.int32),
               loss_mask=np.zeros(0, bool), sampler_log_probs=np.zeros(0, np.float32))


def test_advantages_from_trees_pads_and_matches_reference():
  config = MEAN_BONUS
  got = advantages_from_trees(make_trees(HAND), config, pad_to=16)
  assert got.advantage.shape == (16,)
  got = {k: np.asarray(v) for k, v in dataclasses.asdict(got).items()}
  mask = np.arange(16) < len(HAND)
  assert_matches_reference(HAND, config, got, mask)
  unpadded = advantages_from_trees(make_trees(HAND), config)
  np.testing.assert_allclose(np.asarray(unpadded.advantage), got["advantage"][:10], rtol=1e-6)


def test_advantages_from_trees_rejects_bad_padding():
  with pytest.raises(ValueError, match="pad_to=5 is smaller"):
    advantages_from_trees(make_trees(HAND), AdvantageConfig(), pad_to=5)


def _broken(**changes) -> dict[str, np.ndarray]:
  arrays = dict(parent=np.array([-1, 0, 0, -1]), tree=np.array([0, 0, 0, 1]),
                group=np.array([0, 0, 0, 0]), depth=np.array([0, 1, 1, 0]),
                success=np.array([1.0, 0.0, 1.0, 0.0]))
  arrays.update({k: np.array(v) for k, v in changes.items()})
  return arrays


@pytest.mark.parametrize("changes, message", [
    (dict(parent=[-1, 0, 7, -1]), "parent must be -1"),
    (dict(parent=[-1, 0, 0, 0]), "exactly one root"),
    (dict(parent=[-1, -1, 0, -1], depth=[0, 0, 1, 0]), "exactly one root"),
    (dict(parent=[-1, 0, 3, -1]), "same tree"),
    (dict(depth=[0, 1, 2, 0]), "one level deeper"),
    (dict(depth=[1, 2, 2, 0]), "roots must have depth 0"),
    (dict(group=[0, 1, 0, 0]), "root's group"),
    (dict(tree=[0, 0, 0, -1]), r"tree ids must be >= 0; nodes \[3\] hold \[-1\]"),
    (dict(group=[-2, -2, -2, 0]), "group ids must be >= 0"),
    (dict(depth=[0, 1, 1, -1]), "depth must be >= 0"),
    (dict(parent=[-2, 0, 0, -1]), "parent must be -1"),
    (dict(depth=[0, 1]), "shape"),
    # A malformed forest is reported as such even when its rewards are bad too.
    (dict(tree=[0, 0, 0, -1], success=[1.0, np.nan, 0.0, 0.0]), "tree ids must be >= 0"),
])
def test_validate_forest_errors(changes, message):
  with pytest.raises(ValueError, match=message) as raised:
    validate_forest(**_broken(**changes))
  assert not isinstance(raised.value, BadRewardError)


@pytest.mark.parametrize("bounds, changes, message", [
    (dict(num_trees=2), dict(tree=[0, 0, 0, 2]), r"tree ids must lie in \[0, 2\) \(num_trees\); nodes \[3\]"),
    (dict(num_groups=1), dict(group=[0, 0, 0, 1]), r"group ids must lie in \[0, 1\) \(num_groups\)"),
    (dict(max_depth=1), dict(parent=[-1, 0, 1, -1], depth=[0, 1, 2, 0]), r"depth must lie in \[0, 2\)"),
])
def test_validate_forest_checks_the_static_bounds(bounds, changes, message):
  validate_forest(**_broken(**changes))  # a well-formed forest, but over the bounds of `tree_advantages`
  with pytest.raises(ValueError, match=message):
    validate_forest(**_broken(**changes), **bounds)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf, -0.5, 1.5])
def test_validate_forest_reports_unusable_success_as_a_bad_reward(bad):
  with pytest.raises(BadRewardError, match=r"success must be a finite number in \[0, 1\]; 1 of 4 nodes"):
    validate_forest(**_broken(success=[1.0, 0.0, bad, 0.0]))
  assert issubclass(BadRewardError, ValueError)


def test_validate_forest_accepts_gaps_in_tree_ids():
  validate_forest(**_broken(tree=[0, 0, 0, 5]))
  validate_forest(**_broken(tree=[0, 0, 0, 5]), num_trees=6, num_groups=1, max_depth=1)


def test_advantages_from_trees_rejects_ids_at_or_above_the_padded_size():
  """Segment ops drop ids >= the padded size: such a tree would vanish from its group's baseline."""
  hand = {i: dict(node) for i, node in HAND.items()}
  hand[9]["tree"] = 10  # tree f: its own group, alone
  with pytest.raises(ValueError, match=r"tree ids must lie in \[0, 10\)"):
    advantages_from_trees(make_trees(hand), AdvantageConfig())
  got = advantages_from_trees(make_trees(hand), MEAN_BONUS, pad_to=16)  # fits once padded
  want = advantages_from_trees(make_trees(HAND), MEAN_BONUS, pad_to=16)
  np.testing.assert_array_equal(np.asarray(got.advantage), np.asarray(want.advantage))
  hand[9]["tree"], hand[9]["group"] = 5, 12
  with pytest.raises(ValueError, match=r"group ids must lie in \[0, 10\)"):
    advantages_from_trees(make_trees(hand), AdvantageConfig())
  with pytest.raises(BadRewardError):
    advantages_from_trees(make_trees({**HAND, 3: {**HAND[3], "success": float("nan")}}), AdvantageConfig())


@pytest.mark.parametrize("kwargs, message", [
    (dict(bonus_reduce="max"), "bonus_reduce='max'; expected one of mean, sum"),
    (dict(reward_mode="team"), "reward_mode"),
    (dict(baseline="critic"), "baseline"),
    (dict(depth_weighting="log"), "depth_weighting"),
    (dict(bonus_cap=0.4), "bonus_cap applies only"),
    (dict(bonus_reduce="sum", bonus_cap=-1.0), "bonus_cap must be >= 0"),
    (dict(gamma=0.0), "gamma"),
    (dict(bonus_weight=float("nan")), "bonus_weight"),
    (dict(zero_variance_tolerance=-1.0), "zero_variance_tolerance"),
])
def test_config_rejects_bad_values(kwargs, message):
  with pytest.raises(ValueError, match=message):
    AdvantageConfig(**kwargs)
