"""The train step: next-token shift on packed rows, exact gradient accumulation, the non-finite skip and
the sampler-vs-trainer log-prob gap."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from rao_jax import sharding
from rao_jax.model.config import ModelConfig
from rao_jax.train import packing
from rao_jax.train import train_step as ts


@functools.partial(jax.jit, static_argnums=(0,), static_argnames=("chunk_size", "vocab_limit"))
def _jit_log_probs(graphdef, params, tokens, positions, segment_ids, *, chunk_size=0, vocab_limit=None):
  return ts.token_log_probs(nnx.merge(graphdef, params), tokens, positions, segment_ids,
                            chunk_size=chunk_size, vocab_limit=vocab_limit)


def _log_probs(model, batch, **kwargs):
  graphdef, params = nnx.split(model)
  return np.asarray(_jit_log_probs(graphdef, params, batch.tokens, batch.positions, batch.segment_ids,
                                   **kwargs))


def _rl_batch(make_sequences, lengths=(9, 5, 12, 7, 3, 10), rows=4, row_length=16):
  """A packed batch and its node advantages [8] (padded past the 6 nodes) and validity."""
  advantages = np.zeros(8, np.float32)
  advantages[:len(lengths)] = np.linspace(-1.0, 1.5, len(lengths))
  nodes = (advantages, np.arange(8) < len(lengths))
  return packing.pack_sequences(make_sequences(lengths), rows, row_length)[0], nodes


def _compiled(model, tx, config):
  mesh = sharding.make_mesh()
  graphdef, state = ts.create_train_state(model, tx, mesh)
  return ts.make_train_step(graphdef, state, tx, config, mesh), state


@pytest.fixture(scope="module")
def cispo_setup(make_model, make_sequences):
  """One compiled CISPO step (2 micro-batches, chunked logits), its initial state, model and batch.

  SGD with momentum: the first update is exactly −lr · grad, and there is an optimiser state to check.
  """
  model = make_model()
  batch, nodes = _rl_batch(make_sequences)
  config = ts.TrainStepConfig(loss="cispo", num_micro_batches=2, logits_chunk_size=4)
  step, state = _compiled(model, optax.sgd(1.0, momentum=0.9), config)
  return step, state, model, batch, nodes


def _fresh(state):
  return jax.tree.map(jnp.copy, state)  # the step donates its input state


def test_packed_log_probs_equal_each_sequence_scored_alone(make_model, make_sequences):
  model = make_model()
  sequences = make_sequences([6, 9, 4, 11])
  batch, _ = packing.pack_sequences(sequences, num_rows=2, row_length=16)
  packed = _log_probs(model, batch)
  # Each sequence alone in its own row (padding after it cannot change it: attention is causal).
  alone = np.zeros((len(sequences), 16), np.int32)
  for i, (tokens, _, _) in enumerate(sequences):
    alone[i, :len(tokens)] = tokens
  graphdef, params = nnx.split(model)
  logits = jax.jit(lambda p, t: nnx.merge(graphdef, p)(t)[0])(params, alone)  # [4, 16, V]
  log_softmax = np.asarray(jax.nn.log_softmax(logits, axis=-1))
  limited_log_softmax = np.asarray(jax.nn.log_softmax(logits[..., :40], axis=-1))
  limited = _log_probs(model, batch, vocab_limit=40)
  for i, (tokens, _, _) in enumerate(sequences):
    # Token t is scored by the logits at t - 1; the first token has no target.
    previous, targets = np.arange(len(tokens) - 1), tokens[1:]
    expected = np.concatenate([[0.0], log_softmax[i, previous, targets]])
    np.testing.assert_allclose(packed[batch.node_index == i], expected, atol=2e-5)
    # vocab_limit renormalises over the allowed ids, as the sampler does.
    allowed = targets < 40
    np.testing.assert_allclose(limited[batch.node_index == i][1:][allowed],
                               limited_log_softmax[i, previous, np.minimum(targets, 39)][allowed], atol=2e-5)
  assert (packed[batch.segment_ids == 0] == 0).all()
  np.testing.assert_allclose(_log_probs(model, batch, chunk_size=4), packed, atol=1e-6)
  with pytest.raises(ValueError, match="must divide"):
    _log_probs(model, batch, chunk_size=5)


def test_has_target_marks_tokens_after_the_first_of_each_segment():
  segments = jnp.array([[1, 1, 1, 2, 2, 0], [1, 2, 3, 3, 0, 0]])
  np.testing.assert_array_equal(ts.has_target(segments),
                                [[0, 1, 1, 0, 1, 0], [0, 0, 0, 1, 0, 0]])


def test_token_cross_entropy_is_the_masked_negative_log_likelihood_sum():
  log_probs = jnp.array([[-1.0, -2.0, -0.5], [-3.0, -4.0, jnp.nan]])
  mask = jnp.array([[True, False, True], [True, False, False]])
  loss_sum, count = ts.token_cross_entropy(log_probs, jnp.zeros_like(log_probs), jnp.ones_like(log_probs), mask)
  np.testing.assert_allclose([loss_sum, count], [4.5, 3.0])
  assert ts.resolve_loss("cross_entropy") is ts.token_cross_entropy


def test_micro_batches_and_chunked_logits_give_the_full_batch_gradients(cispo_setup, make_model):
  step_2, initial, _, batch, nodes = cispo_setup
  step_1, state_1 = _compiled(make_model(), optax.sgd(1.0, momentum=0.9),
                              ts.TrainStepConfig(loss="cispo", num_micro_batches=1, logits_chunk_size=0))
  state_1, metrics_1 = step_1(state_1, batch, *nodes)
  state_2, metrics_2 = step_2(_fresh(initial), batch, *nodes)
  # Params moved by exactly −grad, so this compares the gradients themselves.
  for a, b in zip(jax.tree.leaves(jax.device_get(state_2.params)), jax.tree.leaves(jax.device_get(state_1.params))):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
  for key in ("loss", "grad_norm", "tokens", "log_prob_gap_mean", "log_prob_gap_max", "ratio_mean"):
    np.testing.assert_allclose(metrics_2[key], metrics_1[key], rtol=1e-5)
  assert metrics_1["tokens"] == batch.loss_mask.sum() and metrics_1["grad_norm"] > 0


def test_non_finite_loss_skips_the_update_and_leaves_params_bit_identical(cispo_setup):
  step, initial, _, batch, (advantages, valid) = cispo_setup
  poisoned = advantages.copy()
  poisoned[batch.node_index[batch.loss_mask][0]] = np.nan  # a node with loss tokens
  state = _fresh(initial)
  before = jax.device_get(state)
  state, metrics = step(state, batch, poisoned, valid)
  after = jax.device_get(state)
  assert int(metrics["skipped"]) == 1 and int(metrics["updated"]) == 0 and not np.isfinite(metrics["loss"])
  assert int(after.step) == 1  # the batch was consumed
  for a, b in zip(jax.tree.leaves(after.params) + jax.tree.leaves(after.opt_state),
                  jax.tree.leaves(before.params) + jax.tree.leaves(before.opt_state)):
    np.testing.assert_array_equal(a, b)
  state, metrics = step(state, batch, advantages, valid)  # a finite batch afterwards is applied
  assert int(metrics["skipped"]) == 0 and int(metrics["updated"]) == 1 and int(state.step) == 2
  after = jax.device_get(state.params)
  assert all(not np.array_equal(a, b) for a, b in zip(jax.tree.leaves(after), jax.tree.leaves(before.params)))


def test_tokens_take_their_nodes_advantage_and_tokens_of_invalid_nodes_leave_the_mask():
  node_index = jnp.array([[0, 0, 2, 2, -1], [1, 1, 1, 3, 3]])
  loss_mask = jnp.array([[0, 1, 0, 1, 0], [0, 1, 1, 0, 1]], bool)
  advantages, mask = ts.token_advantages(node_index, loss_mask, jnp.array([0.5, -1.0, 2.0, 3.0]),
                                         jnp.array([True, False, True, True]))
  np.testing.assert_array_equal(advantages[0, :4], [0.5, 0.5, 2.0, 2.0])
  np.testing.assert_array_equal(advantages[1], [-1.0, -1.0, -1.0, 3.0, 3.0])
  np.testing.assert_array_equal(mask, [[0, 1, 0, 1, 0], [0, 0, 0, 0, 1]])  # node 1 is invalid


def test_invalid_nodes_give_the_update_of_a_batch_without_them(cispo_setup, make_sequences):
  """Masking nodes inside the step = packing only the others (SGD: the params compare the gradients)."""
  step, initial, _, batch, (advantages, valid) = cispo_setup
  dropped = np.array([1, 3])
  valid = valid.copy()
  valid[dropped] = False
  masked_state, masked = step(_fresh(initial), batch, advantages, valid)
  kept = np.flatnonzero(valid[:6])
  sequences = make_sequences((9, 5, 12, 7, 3, 10))
  alone = packing.pack_sequences([sequences[i] for i in kept], 4, 16)[0]
  alone_state, alone_metrics = step(_fresh(initial), alone, advantages[kept], np.ones(len(kept), bool))
  assert masked["tokens"] == alone_metrics["tokens"] == alone.loss_mask.sum() < batch.loss_mask.sum()
  for key in ("loss", "grad_norm", "log_prob_gap_mean", "ratio_mean"):
    np.testing.assert_allclose(masked[key], alone_metrics[key], rtol=1e-5)
  for a, b in zip(jax.tree.leaves(jax.device_get(masked_state.params)),
                  jax.tree.leaves(jax.device_get(alone_state.params))):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_a_batch_without_loss_tokens_leaves_params_and_optimizer_state_alone(cispo_setup):
  step, initial, _, batch, (advantages, valid) = cispo_setup
  state, _ = step(_fresh(initial), batch, advantages, valid)  # momentum is non-zero from here on
  before = jax.device_get(state)
  state, metrics = step(state, batch, advantages, np.zeros_like(valid))
  after = jax.device_get(state)
  assert int(metrics["updated"]) == 0 and int(metrics["skipped"]) == 0 and float(metrics["tokens"]) == 0
  assert float(metrics["loss"]) == 0 and int(after.step) == 2
  for a, b in zip(jax.tree.leaves(after.params) + jax.tree.leaves(after.opt_state),
                  jax.tree.leaves(before.params) + jax.tree.leaves(before.opt_state)):
    np.testing.assert_array_equal(a, b)


def test_log_prob_gap_is_zero_on_policy_and_measured_off_policy(cispo_setup):
  step, initial, model, batch, nodes = cispo_setup
  own = np.where(batch.loss_mask, _log_probs(model, batch), 0.0).astype(np.float32)
  _, on_policy = step(_fresh(initial), batch.replace(old_log_probs=own), *nodes)
  assert float(on_policy["log_prob_gap_mean"]) < 1e-5 and float(on_policy["log_prob_gap_max"]) < 1e-4
  np.testing.assert_allclose([on_policy["ratio_min"], on_policy["ratio_mean"], on_policy["ratio_max"]], 1.0,
                             atol=1e-4)
  _, off_policy = step(_fresh(initial), batch.replace(old_log_probs=own - 0.5 * batch.loss_mask), *nodes)
  np.testing.assert_allclose(off_policy["log_prob_gap_mean"], 0.5, atol=1e-4)
  np.testing.assert_allclose(off_policy["ratio_mean"], np.exp(0.5), rtol=1e-4)


def test_the_step_donates_only_its_state_never_the_model(cispo_setup):
  step, initial, model, batch, nodes = cispo_setup
  reference = _log_probs(model, batch)
  step(_fresh(initial), batch, *nodes)
  np.testing.assert_array_equal(_log_probs(model, batch), reference)
  assert not any(leaf.is_deleted() for leaf in jax.tree.leaves(initial))


def test_bad_configs_raise_clear_errors(cispo_setup):
  step, initial, model, batch, (advantages, valid) = cispo_setup
  graphdef = nnx.split(model)[0]
  mesh = sharding.make_mesh()
  with pytest.raises(ValueError, match="unknown loss"):
    ts.make_train_step(graphdef, initial, optax.sgd(0.1, momentum=0.9), ts.TrainStepConfig(loss="dpo"), mesh)
  with pytest.raises(ValueError, match="micro-batches"):
    step(_fresh(initial), batch.replace(**{f: getattr(batch, f)[:3] for f in (
        "tokens", "positions", "segment_ids", "loss_mask", "old_log_probs", "node_index")}), advantages, valid)
  with pytest.raises(ValueError, match="needs node_advantages and node_valid"):
    step(_fresh(initial), batch)
  with pytest.raises(ValueError, match=r"P > every node_index of the batch \(largest 5\)"):
    step(_fresh(initial), batch, advantages[:5], valid[:5])
  with pytest.raises(ValueError, match="must both be"):
    step(_fresh(initial), batch, advantages, valid[:7])
  cross_entropy = ts.make_train_step(graphdef, initial, optax.sgd(0.1),
                                     ts.TrainStepConfig(loss="cross_entropy"), mesh)
  with pytest.raises(ValueError, match="takes no node advantages"):
    cross_entropy(_fresh(initial), batch, advantages, valid)
  with pytest.raises(ValueError, match="num_micro_batches"):
    ts.TrainStepConfig(num_micro_batches=0)
  with pytest.raises(ValueError, match=r"train.attention_chunk_size=-1 must be >= 0"):
    ts.TrainStepConfig(attention_chunk_size=-1)
  with pytest.raises(ValueError, match=r"train.remat='yes' must be True or False"):
    ts.TrainStepConfig(remat="yes")



@pytest.mark.parametrize("param_dtype, moves", [("float32", True), ("bfloat16", False)])
def test_small_adam_steps_need_float32_master_weights(make_model, make_sequences, param_dtype, moves):
  """The paper's lr 3e-6 moves float32 master weights (bfloat16 compute); stored in bfloat16, nearly every
  step rounds away.

  This is why `settings_from_config` rejects a half-precision `param_dtype` for training.
  """
  config = ModelConfig(vocab_size=64, hidden_size=32, num_layers=1, num_heads=4, num_kv_heads=2, head_dim=8,
                       intermediate_size=48, param_dtype=param_dtype, dtype="bfloat16")
  model = make_model(config)
  tx = optax.adam(3e-6, b1=0.9, b2=0.95)
  step, state = _compiled(model, tx, ts.TrainStepConfig(loss="cispo"))
  before = jax.tree.map(np.asarray, state.params)
  batch, nodes = _rl_batch(make_sequences)
  state, metrics = step(state, batch, *nodes)
  assert int(metrics["skipped"]) == 0 and float(metrics["grad_norm"]) > 0
  pairs = list(zip(jax.tree.leaves(before), jax.tree.leaves(state.params)))
  moved = sum(int((a != np.asarray(b)).sum()) for a, b in pairs) / sum(a.size for a, _ in pairs)
  # Only weights within ~512 × lr of zero can take a bfloat16 step. In float32 every weight with a
  # gradient moves: all but the embedding rows of the 64 ids that the batch does not contain.
  assert moved > 0.8 if moves else moved < 0.02


def test_attention_chunks_and_remat_change_memory_not_results(make_model, make_sequences):
  """The same step (loss, gradient norm, new parameters) with a fraction of the compiled temporary memory."""
  model = make_model()
  batch = packing.pack_sequences(make_sequences([120, 82, 66, 50, 36, 18]), 2, 256)[0]
  nodes = (np.linspace(-1.0, 1.0, 6).astype(np.float32), np.ones(6, bool))
  tx = optax.adam(1e-3)
  results = {}
  for chunk, remat in ((0, False), (16, True)):
    step, state = _compiled(model, tx, ts.TrainStepConfig(loss="cispo", attention_chunk_size=chunk, remat=remat))
    compiled = step.jitted.lower(state, batch.micro_batches(1), *nodes).compile()
    new_state, metrics = step(state, batch, *nodes)
    results[chunk] = (compiled.memory_analysis().temp_size_in_bytes, metrics, new_state.params)
  (full_bytes, full, full_params), (chunked_bytes, chunked, chunked_params) = results[0], results[16]
  np.testing.assert_allclose(float(chunked["loss"]), float(full["loss"]), rtol=1e-5)
  np.testing.assert_allclose(float(chunked["grad_norm"]), float(full["grad_norm"]), rtol=1e-4)
  for a, b in zip(jax.tree.leaves(chunked_params), jax.tree.leaves(full_params)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-6, rtol=0)
  assert chunked_bytes < 0.35 * full_bytes, (chunked_bytes, full_bytes)
