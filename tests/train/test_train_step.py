"""The train step: next-token shift on packed rows, exact gradient accumulation, the non-finite skip and
the sampler-vs-trainer log-prob gap."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from rao_jax import sharding
from rao_jax.train import packing
from rao_jax.train import train_step as ts


def _log_probs(model, batch, **kwargs):
  return ts.token_log_probs(model, jnp.asarray(batch.tokens), jnp.asarray(batch.positions),
                            jnp.asarray(batch.segment_ids), **kwargs)


def _step(model, tx, batch, config):
  mesh = sharding.make_mesh()
  graphdef, state = ts.create_train_state(model, tx, mesh)
  step = ts.make_train_step(graphdef, state, tx, config, mesh)
  return step, state


def _rl_batch(make_sequences, lengths=(9, 5, 12, 7, 3, 10), rows=4, row_length=16, seed=0):
  advantages = np.linspace(-1.0, 1.5, len(lengths)).astype(np.float32)
  return packing.pack_sequences(make_sequences(lengths, seed=seed), rows, row_length,
                                node_advantages=advantages)[0]


def test_packed_log_probs_equal_each_sequence_scored_alone(make_model, make_sequences):
  model = make_model()
  sequences = make_sequences([6, 9, 4, 11])
  batch, _ = packing.pack_sequences(sequences, num_rows=2, row_length=16)
  packed = np.asarray(_log_probs(model, batch))
  for i, (tokens, _, _) in enumerate(sequences):
    logits, _ = model(jnp.asarray(tokens)[None])  # [1, L, V], the sequence on its own
    log_softmax = np.asarray(jax.nn.log_softmax(logits[0], axis=-1))
    # Token t is scored by the logits at t - 1; the first token has no target.
    expected = np.concatenate([[0.0], log_softmax[np.arange(len(tokens) - 1), tokens[1:]]])
    np.testing.assert_allclose(packed[batch.node_index == i], expected, atol=2e-5)
  assert (packed[batch.segment_ids == 0] == 0).all()


def test_has_target_marks_tokens_after_the_first_of_each_segment():
  segments = jnp.array([[1, 1, 1, 2, 2, 0], [1, 2, 3, 3, 0, 0]])
  np.testing.assert_array_equal(ts.has_target(segments),
                                [[0, 1, 1, 0, 1, 0], [0, 0, 0, 1, 0, 0]])


def test_chunked_vocabulary_projection_matches_values_and_gradients(make_model, make_sequences):
  model = make_model()
  batch = _rl_batch(make_sequences)
  graphdef, params = nnx.split(model)

  def total(params, chunk_size):
    return jnp.sum(_log_probs(nnx.merge(graphdef, params), batch, chunk_size=chunk_size) * batch.loss_mask)

  full, full_grads = jax.value_and_grad(total)(params, 0)
  chunked, chunked_grads = jax.value_and_grad(total)(params, 4)
  np.testing.assert_allclose(chunked, full, rtol=1e-6)
  for a, b in zip(jax.tree.leaves(chunked_grads), jax.tree.leaves(full_grads)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
  with pytest.raises(ValueError, match="must divide"):
    _log_probs(model, batch, chunk_size=5)


def test_vocab_limit_renormalises_over_the_allowed_ids(make_model, make_sequences):
  model = make_model()
  batch, _ = packing.pack_sequences(make_sequences([8], vocab_size=40), 1, 8)
  limited = np.asarray(_log_probs(model, batch, vocab_limit=40))
  logits, _ = model(jnp.asarray(batch.tokens))
  log_softmax = np.asarray(jax.nn.log_softmax(logits[0, :, :40], axis=-1))
  tokens = batch.tokens[0]
  np.testing.assert_allclose(limited[0, 1:], log_softmax[np.arange(7), tokens[1:]], atol=2e-5)


@pytest.mark.parametrize("loss", ["cispo", "cross_entropy"])
def test_accumulating_micro_batches_equals_one_big_batch(make_model, make_sequences, loss):
  batch = _rl_batch(make_sequences)
  tx = optax.sgd(1.0)  # params move by exactly -grad, so the comparison sees the gradients themselves
  results = []
  for num_micro in (1, 2, 4):
    step, state = _step(make_model(), tx, batch, ts.TrainStepConfig(loss=loss, num_micro_batches=num_micro))
    state, metrics = step(state, batch)
    results.append((jax.device_get(state.params), jax.device_get(metrics)))
  (params_1, metrics_1), *others = results
  for params_m, metrics_m in others:
    for a, b in zip(jax.tree.leaves(params_m), jax.tree.leaves(params_1)):
      np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    for key in ("loss", "grad_norm", "tokens", "log_prob_gap_mean", "log_prob_gap_max", "ratio_mean"):
      np.testing.assert_allclose(metrics_m[key], metrics_1[key], rtol=1e-5)
  assert metrics_1["tokens"] == batch.loss_mask.sum()


def test_cross_entropy_loss_is_the_token_mean_negative_log_likelihood(make_model, make_sequences):
  model = make_model()
  batch = _rl_batch(make_sequences)
  expected = -np.sum(np.asarray(_log_probs(model, batch)) * batch.loss_mask) / batch.loss_mask.sum()
  step, state = _step(model, optax.sgd(0.1), batch, ts.TrainStepConfig(loss="cross_entropy"))
  _, metrics = step(state, batch)
  np.testing.assert_allclose(metrics["loss"], expected, rtol=1e-5)


def test_non_finite_loss_skips_the_update_and_leaves_params_bit_identical(make_model, make_sequences):
  batch = _rl_batch(make_sequences)
  poisoned = np.array(batch.advantages)
  poisoned[np.argwhere(batch.loss_mask)[0][0], np.argwhere(batch.loss_mask)[0][1]] = np.nan
  tx = optax.adamw(1e-2)
  step, state = _step(make_model(), tx, batch, ts.TrainStepConfig(loss="cispo", num_micro_batches=2))
  before = jax.device_get(state)
  state, metrics = step(state, batch.replace(advantages=poisoned))
  after = jax.device_get(state)
  assert int(metrics["skipped"]) == 1 and not np.isfinite(metrics["loss"])
  assert int(after.step) == 1  # the batch was consumed
  for a, b in zip(jax.tree.leaves(after.params) + jax.tree.leaves(after.opt_state),
                  jax.tree.leaves(before.params) + jax.tree.leaves(before.opt_state)):
    np.testing.assert_array_equal(a, b)
  state, metrics = step(state, batch)  # a finite batch afterwards is applied
  assert int(metrics["skipped"]) == 0 and int(state.step) == 2
  moved = [not np.array_equal(a, b) for a, b in zip(jax.tree.leaves(jax.device_get(state.params)),
                                                   jax.tree.leaves(before.params))]
  assert all(moved)


def test_log_prob_gap_is_zero_on_policy_and_large_off_policy(make_model, make_sequences):
  model = make_model()
  batch = _rl_batch(make_sequences)
  own = np.where(batch.loss_mask, np.asarray(_log_probs(model, batch)), 0.0).astype(np.float32)
  step, state = _step(model, optax.sgd(0.0), batch, ts.TrainStepConfig(loss="cispo"))
  state, on_policy = step(state, batch.replace(old_log_probs=own))
  assert float(on_policy["log_prob_gap_mean"]) < 1e-5 and float(on_policy["log_prob_gap_max"]) < 1e-4
  np.testing.assert_allclose([on_policy["ratio_min"], on_policy["ratio_mean"], on_policy["ratio_max"]], 1.0,
                             atol=1e-4)
  _, off_policy = step(state, batch.replace(old_log_probs=own - 0.5 * batch.loss_mask))
  np.testing.assert_allclose(off_policy["log_prob_gap_mean"], 0.5, atol=1e-4)
  np.testing.assert_allclose(off_policy["ratio_mean"], np.exp(0.5), rtol=1e-4)


def test_bad_configs_raise_clear_errors(make_model, make_sequences):
  batch = _rl_batch(make_sequences)
  with pytest.raises(ValueError, match="unknown loss"):
    _step(make_model(), optax.sgd(0.1), batch, ts.TrainStepConfig(loss="dpo"))
  step, state = _step(make_model(), optax.sgd(0.1), batch, ts.TrainStepConfig(num_micro_batches=3))
  with pytest.raises(ValueError, match="micro-batches"):
    step(state, batch)
  with pytest.raises(ValueError, match="num_micro_batches"):
    ts.TrainStepConfig(num_micro_batches=0)


def test_create_train_state_keeps_the_model_usable(make_model, make_sequences):
  model = make_model()
  batch = _rl_batch(make_sequences)
  reference = np.asarray(_log_probs(model, batch))
  step, state = _step(model, optax.sgd(0.1), batch, ts.TrainStepConfig(loss="cross_entropy"))
  step(state, batch)  # donates the state's buffers, not the model's
  np.testing.assert_array_equal(np.asarray(_log_probs(model, batch)), reference)
