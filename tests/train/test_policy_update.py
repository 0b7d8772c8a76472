"""PolicyUpdater: one RAO update moves the policy toward the nodes that beat their baseline, groups
without reward variance carry no loss, the on-device path equals the host-gather reference, and bad
rewards skip the update."""
import dataclasses
import functools
import logging

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from rao_jax.rl.advantages import AdvantageConfig, advantages_from_trees
from rao_jax.rl.losses import get_loss
from rao_jax.rollout.trees import Trees, concatenate_sequences
from rao_jax.sharding import make_mesh
from rao_jax.train import packing
from rao_jax.train.optimizer import OptimizerConfig, make_optimizer
from rao_jax.train.policy_update import PolicyUpdater, UpdateConfig, _padded_node_count
from rao_jax.train.train_step import TrainStepConfig, token_log_probs


def _trees(sequences, success, group, *, parent=None, tree=None) -> Trees:
  """A forest over the sequences (node i = sequence i); by default one single-node tree per sequence."""
  n = len(sequences)
  offsets, tokens, mask, log_probs = concatenate_sequences(sequences)
  parent = np.full(n, -1, np.int32) if parent is None else np.asarray(parent, np.int32)
  depth = np.zeros(n, np.int32)
  for i in range(n):  # parents come first
    depth[i] = 0 if parent[i] < 0 else depth[parent[i]] + 1
  zeros = np.zeros(n, np.int32)
  return Trees(tree=np.arange(n, dtype=np.int32) if tree is None else np.asarray(tree, np.int32),
               group=np.asarray(group, np.int32), parent=parent, depth=depth,
               success=np.asarray(success, np.float32), num_children=zeros, launch_cell=zeros - 1,
               end_reason=zeros, steps=zeros + 1, tokens_generated=zeros, first_round=zeros, last_round=zeros,
               first_step=zeros.astype(np.int64), last_step=zeros.astype(np.int64), token_offsets=offsets,
               tokens=tokens, loss_mask=mask, sampler_log_probs=log_probs)


def _log_prob_fn(graphdef):
  @jax.jit
  def log_probs(params, tokens):
    positions = jnp.arange(tokens.shape[0])[None]
    model = nnx.merge(graphdef, params)
    return token_log_probs(model, tokens[None], positions, jnp.ones_like(positions))[0]
  return log_probs


def _sequence_log_prob(log_probs, params, sequence) -> float:
  tokens, mask, _ = sequence
  return float(jnp.sum(jnp.where(jnp.asarray(mask), log_probs(params, jnp.asarray(tokens)), 0.0)))


def _with_sampler_log_probs(log_probs, params, sequences):
  """The sequences with the model's own log-probs as the sampler's (an on-policy batch)."""
  return [(tokens, mask, np.where(mask, np.asarray(log_probs(params, jnp.asarray(tokens))), 0.0).astype(np.float32))
          for tokens, mask, _ in sequences]


def _updater(model, loss, *, advantage=AdvantageConfig(depth_weighting="none"),
             optimizer=OptimizerConfig(learning_rate=1e-2, weight_decay=0.0)):
  options = (("clip_max", 5.0),) if loss == "cispo" else ()
  config = UpdateConfig(advantage=advantage, train_step=TrainStepConfig(loss=loss, loss_options=options),
                        optimizer=optimizer, row_length=32, rows_per_micro_batch=2)
  return PolicyUpdater(model, config, make_mesh())


@pytest.mark.parametrize("loss", ["cispo", "ppo_clip", "reinforce"])
def test_an_update_raises_the_successful_nodes_and_lowers_the_failed(make_model, make_sequences, loss):
  model = make_model()
  updater = _updater(model, loss)
  log_probs = _log_prob_fn(updater.graphdef)
  sequences = _with_sampler_log_probs(log_probs, updater.params, make_sequences([24] * 4, seed=3))
  # Group 0: tree 0 succeeded, tree 1 failed. Group 1: both failed (no signal, no loss).
  trees = _trees(sequences, success=[1.0, 0.0, 0.0, 0.0], group=[0, 0, 1, 1])
  before = [_sequence_log_prob(log_probs, updater.params, s) for s in sequences]
  metrics = updater.update(trees)
  after = [_sequence_log_prob(log_probs, updater.params, s) for s in sequences]
  assert metrics["train/updated"] == 1.0 and metrics["adv/kept_node_fraction"] == 0.5
  assert after[0] > before[0] and after[1] < before[1], (before, after)
  assert int(updater.state.step) == 1


def test_a_batch_without_reward_variance_leaves_the_policy_alone(make_model, make_sequences):
  model = make_model()
  sequences = make_sequences([20, 24, 18, 22], seed=4)
  updater = _updater(model, "cispo")
  start = jax.device_get((updater.params, updater.state.opt_state))
  for success in ([1.0, 1.0, 0.0, 0.0], [0.0] * 4):
    metrics = updater.update(_trees(sequences, success=success, group=[0, 0, 1, 1]))
    assert metrics["train/updated"] == 0.0 and metrics["adv/kept_node_fraction"] == 0.0
    assert metrics["train/tokens"] == 0.0 and metrics["train/skipped_nonfinite"] == 0.0
  for a, b in zip(jax.tree.leaves(start), jax.tree.leaves((updater.params, updater.state.opt_state))):
    np.testing.assert_array_equal(a, np.asarray(b))
  assert int(updater.state.step) == 2  # both batches were consumed, neither applied


def test_nodes_without_signal_are_not_packed(make_model, make_sequences):
  """Group 1 has no reward variance: its nodes cost no rows, so 2 rows (1 micro-batch) hold the batch
  instead of 4 (2 micro-batches), and the update equals the one on group 0 alone."""
  sequences = make_sequences([24, 24, 24, 24], seed=7)
  with_idle = _updater(make_model(), "cispo")
  metrics = with_idle.update(_trees(sequences, success=[1.0, 0.0, 1.0, 1.0], group=[0, 0, 1, 1]))
  assert metrics["train/micro_batches"] == 1.0 and metrics["train/updated"] == 1.0
  alone = _updater(make_model(), "cispo")
  alone.update(_trees(sequences[:2], success=[1.0, 0.0], group=[0, 0]))
  for a, b in zip(jax.tree.leaves(with_idle.params), jax.tree.leaves(alone.params)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-7)


def test_batches_of_different_node_counts_share_one_compiled_step(make_model, make_sequences):
  """Node arrays are padded to one P up to 1024 nodes, so the step compiles once per micro-batch count."""
  updater = _updater(make_model(), "cispo")
  for lengths in ([24, 24, 24, 24], [24, 24, 24, 4, 4], [24, 24, 24, 4, 4, 4]):  # 3 or 4 rows: 2 micro-batches
    n = len(lengths)
    success = np.arange(n) % 2 == 0
    metrics = updater.update(_trees(make_sequences(lengths, seed=n), success=success, group=[0] * n))
    assert metrics["train/updated"] == 1.0 and metrics["train/micro_batches"] == 2.0
  assert updater._compiled_step(2).jitted._cache_size() == 1

# A forest of 12 nodes: group 0 has signal (trees 0-2, with children), group 1 has none (roots 1 and 1),
# group 2 has signal and a node without a generated token (10).
FOREST = dict(parent=[-1, 0, 0, -1, 3, -1, -1, -1, 7, -1, 9, -1],
              tree=[0, 0, 0, 1, 1, 2, 3, 4, 4, 5, 5, 6],
              group=[0, 0, 0, 0, 0, 0, 1, 1, 1, 2, 2, 2],
              success=[1, 1, 0, 0, 1, 0, 1, 1, 0, 0.5, 1, 0])
FOREST_LENGTHS = [24, 12, 30, 9, 17, 21, 14, 26, 8, 19, 11, 28]


def _forest(make_sequences) -> Trees:
  sequences = make_sequences(FOREST_LENGTHS, seed=7)
  tokens, _, log_probs = sequences[10]
  sequences[10] = (tokens, np.zeros(len(tokens), bool), np.zeros_like(log_probs))
  return _trees(sequences, FOREST["success"], FOREST["group"], parent=FOREST["parent"], tree=FOREST["tree"])


def _host_gather_reference(updater, params, trees):
  """The update the old way: node advantages fetched to the host, only kept nodes packed, per-token
  advantages gathered on the host; one full-batch gradient and one optimiser step. Returns (params,
  loss, gradient norm, loss tokens, kept node ids, node advantages)."""
  config = updater.config
  result = advantages_from_trees(trees, config.advantage, pad_to=16)
  advantage = np.asarray(result.advantage)[:trees.num_nodes]
  valid = np.asarray(result.valid)[:trees.num_nodes]
  sequences = packing.trees_sequences(trees)
  kept = [i for i in np.flatnonzero(valid) if sequences[i][1].any()]
  batch, _ = packing.pack_sequences([sequences[i] for i in kept], len(kept), config.row_length)
  token_advantages = np.where(batch.node_index >= 0, advantage[kept][np.maximum(batch.node_index, 0)], 0.0)
  loss_fn = functools.partial(get_loss(config.train_step.loss), **dict(config.train_step.loss_options))

  @jax.jit
  def loss(params):
    log_probs = token_log_probs(nnx.merge(updater.graphdef, params), batch.tokens, batch.positions,
                                batch.segment_ids)
    total, count = loss_fn(log_probs, batch.old_log_probs, token_advantages, batch.loss_mask)
    return total / count, count

  (value, count), grads = jax.value_and_grad(loss, has_aux=True)(params)
  tx = make_optimizer(config.optimizer)
  updates, _ = tx.update(grads, tx.init(params), params)
  return optax.apply_updates(params, updates), value, optax.tree.norm(grads), count, kept, advantage


@pytest.mark.parametrize("loss", ["cispo", "ppo_clip"])
def test_the_on_device_update_equals_the_host_gather_reference(make_model, make_sequences, loss):
  """Same trees, same parameters: the update that packs every node once and gathers advantages inside
  the step moves the parameters as the old host path did (ε = 1: the first AdamW step is about lr · g,
  so the parameters compare the gradients themselves, not only their signs)."""
  trees = _forest(make_sequences)
  optimizer = OptimizerConfig(learning_rate=1e-2, eps=1.0, weight_decay=0.0, max_grad_norm=0.0)
  updater = _updater(make_model(), loss, advantage=AdvantageConfig(), optimizer=optimizer)
  start = jax.tree.map(jnp.copy, updater.params)  # the update donates the state
  want_params, want_loss, want_norm, want_tokens, kept, advantage = _host_gather_reference(
      updater, start, trees)
  assert kept == [0, 1, 2, 3, 4, 5, 9, 11]  # group 1 has no variance, node 10 no generated token
  metrics = updater.update(trees)
  assert metrics["train/updated"] == 1.0 and metrics["train/micro_batches"] > 1
  assert metrics["train/tokens"] == want_tokens
  np.testing.assert_allclose(metrics["train/loss"], want_loss, rtol=1e-5)
  np.testing.assert_allclose(metrics["train/grad_norm"], want_norm, rtol=1e-5)
  assert metrics["adv/kept_node_fraction"] == pytest.approx(len(kept) / trees.num_nodes)
  assert metrics["adv/abs_mean"] == pytest.approx(float(np.abs(advantage[kept]).mean()), rel=1e-6)
  assert metrics["adv/reward_mean"] == pytest.approx(float(np.mean(FOREST["success"])), rel=1e-6)
  moved = max(float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
              for a, b in zip(jax.tree.leaves(want_params), jax.tree.leaves(start)))
  for a, b in zip(jax.tree.leaves(updater.params), jax.tree.leaves(want_params)):  # 0.1% of the largest step
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-3 * moved)


def test_bad_rewards_skip_the_update_and_malformed_forests_raise(make_model, make_sequences, caplog):
  trees = _forest(make_sequences)
  updater = _updater(make_model(), "cispo")
  start = jax.device_get(updater.state)
  for bad in (np.nan, np.inf, -0.5, 1.5):
    success = trees.success.copy()
    success[4] = bad
    with caplog.at_level(logging.WARNING):
      metrics = updater.update(dataclasses.replace(trees, success=success))
    assert metrics == {"train/updated": 0.0, "train/skipped_nonfinite": 0.0, "train/skipped_bad_reward": 1.0}
    assert "bad rewards, the update was skipped" in caplog.text and "nodes [4]" in caplog.text
  for a, b in zip(jax.tree.leaves(start), jax.tree.leaves(updater.state)):
    np.testing.assert_array_equal(a, np.asarray(b))
  # No train step ran, so TrainState.step did not count these batches (the trainer's step counts them).
  assert int(updater.state.step) == 0
  # Ids at or above the padded node count P would be dropped by the segment ops: an error.
  size = _padded_node_count(trees.num_nodes)
  for field, value in (("group", size), ("tree", size), ("group", -1), ("tree", -3)):
    ids = getattr(trees, field).copy()
    ids[[3, 4]] = value  # a whole tree, so only the id is wrong
    with pytest.raises(ValueError, match=f"{field} ids must lie in"):
      updater.update(dataclasses.replace(trees, **{field: ids}))
  assert updater.update(trees)["train/skipped_bad_reward"] == 0.0
  assert int(updater.state.step) == 1
