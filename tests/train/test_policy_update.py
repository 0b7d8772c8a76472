"""PolicyUpdater: one RAO update moves the policy toward the nodes that beat their baseline, and groups
without reward variance carry no loss."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from rao_jax.rl.advantages import AdvantageConfig
from rao_jax.rollout.trees import Trees, concatenate_sequences
from rao_jax.sharding import make_mesh
from rao_jax.train.optimizer import OptimizerConfig
from rao_jax.train.policy_update import PolicyUpdater, UpdateConfig
from rao_jax.train.train_step import TrainStepConfig, token_log_probs


def _trees(sequences, success, group) -> Trees:
  """One single-node tree per sequence."""
  n = len(sequences)
  offsets, tokens, mask, log_probs = concatenate_sequences(sequences)
  ids = np.arange(n, dtype=np.int32)
  zeros = np.zeros(n, np.int32)
  return Trees(tree=ids, group=np.asarray(group, np.int32), parent=np.full(n, -1, np.int32), depth=zeros,
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


def _updater(model, loss):
  options = (("clip_max", 5.0),) if loss == "cispo" else ()
  config = UpdateConfig(advantage=AdvantageConfig(depth_weighting="none"),
                        train_step=TrainStepConfig(loss=loss, loss_options=options),
                        optimizer=OptimizerConfig(learning_rate=1e-2, weight_decay=0.0), row_length=32,
                        rows_per_micro_batch=2)
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
  start = jax.tree.map(np.asarray, updater.params)
  for success in ([1.0, 1.0, 0.0, 0.0], [0.0] * 4):
    metrics = updater.update(_trees(sequences, success=success, group=[0, 0, 1, 1]))
    assert metrics["train/updated"] == 0.0 and metrics["adv/kept_node_fraction"] == 0.0
  for a, b in zip(jax.tree.leaves(start), jax.tree.leaves(updater.params)):
    np.testing.assert_array_equal(a, np.asarray(b))
  assert int(updater.state.step) == 0
