"""Policy losses: values and gradients against hand-derived formulas, masking, the (sum, count) contract."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rao_jax.rl.losses import LOSSES
from rao_jax.rl.losses import cispo_loss
from rao_jax.rl.losses import get_loss
from rao_jax.rl.losses import log_prob_gap
from rao_jax.rl.losses import ppo_clip_loss
from rao_jax.rl.losses import reinforce_loss
from rao_jax.rl.losses import token_mean


def random_batch(seed: int, batch: int = 4, length: int = 6):
  """log π_θ, log π_old (ratios spread over ~[0.05, 20] so clipping triggers), advantages, ragged mask."""
  rng = np.random.default_rng(seed)
  old = -rng.uniform(0.1, 3.0, (batch, length))
  log_probs = old + rng.uniform(-3.0, 3.0, (batch, length))
  advantages = np.repeat(rng.normal(size=(batch, 1)), length, axis=1)  # one advantage per sequence
  lengths = rng.integers(1, length + 1, batch)
  mask = np.arange(length)[None, :] < lengths[:, None]
  return (jnp.asarray(log_probs, jnp.float32), jnp.asarray(old, jnp.float32),
          jnp.asarray(advantages, jnp.float32), jnp.asarray(mask))


def grad_of_sum(loss_fn, log_probs, old, advantages, mask, **kwargs):
  return jax.grad(lambda lp: loss_fn(lp, old, advantages, mask, **kwargs)[0])(log_probs)


def test_cispo_value_and_gradient_do_not_flow_through_ratio():
  log_probs, old, advantages, mask = random_batch(0)
  weight = np.clip(np.exp(log_probs - old), 0, 5)
  loss_sum, count = cispo_loss(log_probs, old, advantages, mask)
  expected = -np.sum(np.where(mask, weight * advantages * log_probs, 0))
  assert float(loss_sum) == pytest.approx(expected, rel=1e-5)
  assert float(count) == np.sum(mask)
  # d/dlogπ of −sg(clip ρ)·A·logπ is −clip(ρ)·A; a gradient through ρ would add −ρ·A·logπ (unclipped).
  grad = grad_of_sum(cispo_loss, log_probs, old, advantages, mask)
  np.testing.assert_allclose(grad, np.where(mask, -weight * advantages, 0), rtol=1e-5, atol=1e-6)


def test_cispo_clips_ratio_at_clip_max_but_keeps_gradient():
  log_probs = jnp.array([[-1.0, -1.0]])
  old = log_probs - jnp.log(jnp.array([[10.0, 0.5]]))  # ρ = 10 (clipped to 5) and 0.5 (kept)
  advantages, mask = jnp.array([[2.0, 2.0]]), jnp.array([[True, True]])
  loss_sum, _ = cispo_loss(log_probs, old, advantages, mask)
  assert float(loss_sum) == pytest.approx(-(5 * 2 * -1) - (0.5 * 2 * -1), rel=1e-5)
  grad = grad_of_sum(cispo_loss, log_probs, old, advantages, mask)
  np.testing.assert_allclose(grad, [[-10.0, -1.0]], rtol=1e-5)
  grad = grad_of_sum(cispo_loss, log_probs, old, advantages, mask, clip_max=2.0)
  np.testing.assert_allclose(grad, [[-4.0, -1.0]], rtol=1e-5)


@pytest.mark.parametrize("ratio, advantage, clipped", [
    (1.5, 1.0, True),     # A > 0, ρ > 1 + ε_high: clipped, no gradient
    (1.1, 1.0, False),    # inside the trust region
    (0.5, 1.0, False),    # A > 0, ρ < 1 − ε_low: min picks ρA, gradient kept
    (0.5, -1.0, True),    # A < 0, ρ < 1 − ε_low: clipped, no gradient
    (1.5, -1.0, False),   # A < 0, ρ > 1 + ε_high: min picks ρA, gradient kept
    (0.9, -1.0, False),
])
def test_ppo_clip_both_sides(ratio, advantage, clipped):
  log_probs = jnp.array([[-0.7]])
  old = log_probs - jnp.log(ratio)
  advantages, mask = jnp.array([[advantage]]), jnp.array([[True]])
  loss_sum, count = ppo_clip_loss(log_probs, old, advantages, mask)
  bounded = min(max(ratio, 0.8), 1.26)
  assert float(loss_sum) == pytest.approx(-min(ratio * advantage, bounded * advantage), rel=1e-5)
  assert float(count) == 1
  grad = grad_of_sum(ppo_clip_loss, log_probs, old, advantages, mask)
  # dρ/dlogπ = ρ, so an unclipped token has gradient −ρ·A.
  np.testing.assert_allclose(grad, [[0.0 if clipped else -ratio * advantage]], rtol=1e-5, atol=1e-7)


def test_ppo_clip_epsilons_are_asymmetric_and_configurable():
  log_probs, mask, advantages = jnp.array([[-1.0]]), jnp.array([[True]]), jnp.array([[1.0]])
  old = log_probs - jnp.log(1.24)  # inside (1 − 0.2, 1 + 0.26), outside 1 + 0.2
  assert float(grad_of_sum(ppo_clip_loss, log_probs, old, advantages, mask)[0, 0]) != 0
  assert float(grad_of_sum(ppo_clip_loss, log_probs, old, advantages, mask, epsilon_high=0.2)[0, 0]) == 0


def test_reinforce_value_and_gradient():
  log_probs, old, advantages, mask = random_batch(1)
  loss_sum, count = reinforce_loss(log_probs, old, advantages, mask)
  assert float(loss_sum) == pytest.approx(-np.sum(np.where(mask, advantages * log_probs, 0)), rel=1e-5)
  assert float(count) == np.sum(mask)
  grad = grad_of_sum(reinforce_loss, log_probs, old, advantages, mask)
  np.testing.assert_allclose(grad, np.where(mask, -advantages, 0), rtol=1e-6)


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_masked_positions_are_ignored_even_when_non_finite(name):
  loss_fn = get_loss(name)
  log_probs, old, advantages, mask = random_batch(2)
  reference = loss_fn(log_probs, old, advantages, mask)
  reference_grad = grad_of_sum(loss_fn, log_probs, old, advantages, mask)
  garbage = lambda x, value: jnp.where(mask, x, value)
  poisoned = (garbage(log_probs, -jnp.inf), garbage(old, jnp.nan), garbage(advantages, jnp.nan), mask)
  np.testing.assert_allclose(loss_fn(*poisoned), reference, rtol=1e-6)
  grad = grad_of_sum(loss_fn, *poisoned)
  np.testing.assert_allclose(grad, reference_grad, rtol=1e-6)
  assert np.all(np.asarray(grad)[~np.asarray(mask)] == 0)


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_micro_batch_sums_and_counts_give_the_full_batch_token_mean(name):
  loss_fn = jax.jit(get_loss(name))
  log_probs, old, advantages, mask = random_batch(3, batch=6)
  full = token_mean(*loss_fn(log_probs, old, advantages, mask))
  sums, counts = zip(*[loss_fn(log_probs[i:i + 2], old[i:i + 2], advantages[i:i + 2], mask[i:i + 2])
                       for i in range(0, 6, 2)])
  assert float(token_mean(sum(sums), sum(counts))) == pytest.approx(float(full), rel=1e-5)
  # Token-mean = per-sequence means weighted by their token counts (not their plain average).
  per_sequence = [loss_fn(log_probs[i:i + 1], old[i:i + 1], advantages[i:i + 1], mask[i:i + 1])
                  for i in range(6)]
  lengths = np.array([float(c) for _, c in per_sequence])
  means = np.array([float(token_mean(s, c)) for s, c in per_sequence])
  assert float(full) == pytest.approx(np.sum(lengths * means) / np.sum(lengths), rel=1e-5)


def test_token_mean_of_empty_batch_is_zero():
  log_probs, old, advantages, mask = random_batch(4)
  loss_sum, count = cispo_loss(log_probs, old, advantages, jnp.zeros_like(mask))
  assert float(loss_sum) == 0 and float(count) == 0 and float(token_mean(loss_sum, count)) == 0


def test_get_loss_registry():
  assert get_loss("cispo") is cispo_loss
  assert get_loss("ppo_clip") is ppo_clip_loss
  assert get_loss("reinforce") is reinforce_loss
  with pytest.raises(ValueError, match="unknown loss 'grpo'; expected one of cispo, ppo_clip, reinforce"):
    get_loss("grpo")


def test_bad_inputs_raise():
  log_probs, old, advantages, mask = random_batch(5)
  with pytest.raises(ValueError, match="share one"):
    cispo_loss(log_probs, old[:, :3], advantages, mask)
  with pytest.raises(ValueError, match="clip_max"):
    cispo_loss(log_probs, old, advantages, mask, clip_max=0.0)
  with pytest.raises(ValueError, match="epsilon_low"):
    ppo_clip_loss(log_probs, old, advantages, mask, epsilon_low=1.0)


def test_log_prob_gap():
  log_probs = jnp.array([[-1.0, -2.0, -jnp.inf]])
  old = jnp.array([[-1.5, -1.0, 3.0]])
  mask = jnp.array([[True, True, False]])
  gap = log_prob_gap(log_probs, old, mask)
  assert float(gap["mean_abs"]) == pytest.approx(0.75)
  assert float(gap["max_abs"]) == pytest.approx(1.0)
  assert float(gap["ratio_mean"]) == pytest.approx((np.exp(0.5) + np.exp(-1.0)) / 2, rel=1e-6)
  empty = log_prob_gap(log_probs, old, jnp.zeros_like(mask))
  assert all(float(v) == 0 for v in empty.values())
