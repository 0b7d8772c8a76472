"""Token-level policy-gradient losses (RAO paper §5), selectable by name.

Every loss maps per-token arrays [B, T] to `(loss_sum, token_count)`: the loss summed over masked
tokens and the number of masked tokens, both float32 scalars. Summing both over micro-batches and data-
parallel shards and dividing once (`token_mean`) gives the exact token-mean over every generated token
of the batch, as the paper prescribes (not a mean of per-sequence means).

Notation: ρ_t = exp(log π_θ(a_t) − log π_old(a_t)) with π_old the sampler's log-probabilities, A_t the
advantage of the node that generated token t, sg the stop-gradient. Masked-out positions are replaced
by zeros before any arithmetic, so padding holding −inf or NaN yields neither NaN losses nor NaN
gradients.
"""
from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp


# (log_probs, old_log_probs, advantages, mask, *, hyper-parameters) -> (loss_sum, token_count).
PolicyLoss = Callable[..., tuple[jax.Array, jax.Array]]


def _masked_inputs(log_probs: jax.Array, advantages: jax.Array,
                   mask: jax.Array) -> tuple[jax.Array, jax.Array]:
  """log π_θ and A as float32 with 0 at masked-out positions, so padding holding −inf or NaN can poison
  neither the loss nor, through `where`'s zero cotangent times an infinite factor, its gradient."""
  return (jnp.where(mask, log_probs.astype(jnp.float32), 0.0),
          jnp.where(mask, advantages.astype(jnp.float32), 0.0))


def _masked_sum(per_token: jax.Array, mask: jax.Array) -> tuple[jax.Array, jax.Array]:
  """(Σ per_token over mask, number of masked tokens), float32 scalars."""
  return (jnp.sum(jnp.where(mask, per_token, 0.0), dtype=jnp.float32),
          jnp.sum(mask, dtype=jnp.float32))


def _importance_ratio(log_probs: jax.Array, old_log_probs: jax.Array, mask: jax.Array) -> jax.Array:
  """ρ_t = exp(log π_θ − log π_old) at masked tokens, 1 elsewhere. [B, T] float32."""
  log_ratio = jnp.where(mask, log_probs.astype(jnp.float32) - old_log_probs.astype(jnp.float32), 0.0)
  return jnp.exp(log_ratio)


def _check_shapes(log_probs: jax.Array, old_log_probs: jax.Array, advantages: jax.Array,
                  mask: jax.Array) -> None:
  shapes = dict(log_probs=log_probs.shape, old_log_probs=old_log_probs.shape,
                advantages=advantages.shape, mask=mask.shape)
  if len(set(shapes.values())) != 1:
    raise ValueError(f"loss inputs must share one [B, T] shape, got {shapes}")


def cispo_loss(log_probs: jax.Array, old_log_probs: jax.Array, advantages: jax.Array,
               mask: jax.Array, *, clip_max: float = 5.0) -> tuple[jax.Array, jax.Array]:
  """CISPO: L = − Σ_t sg(clip(ρ_t, 0, clip_max)) · A_t · log π_θ(a_t) over masked tokens.

  The clipped ratio is a constant weight, so the gradient is − Σ_t sg(clip ρ_t) · A_t · ∇ log π_θ(a_t):
  clipping bounds the step size but, unlike PPO, never zeroes a token's gradient.

  Args: log_probs, old_log_probs, advantages [B, T] float; mask [B, T] bool; clip_max > 0.
  """
  _check_shapes(log_probs, old_log_probs, advantages, mask)
  if not clip_max > 0:
    raise ValueError(f"clip_max must be > 0, got {clip_max}")
  weight = jax.lax.stop_gradient(jnp.clip(_importance_ratio(log_probs, old_log_probs, mask),
                                          0.0, clip_max))  # [B, T]
  log_probs, advantages = _masked_inputs(log_probs, advantages, mask)
  return _masked_sum(-weight * advantages * log_probs, mask)


def ppo_clip_loss(log_probs: jax.Array, old_log_probs: jax.Array, advantages: jax.Array,
                  mask: jax.Array, *, epsilon_low: float = 0.2,
                  epsilon_high: float = 0.26) -> tuple[jax.Array, jax.Array]:
  """PPO-clip: L = − Σ_t min(ρ_t A_t, clip(ρ_t, 1 − ε_low, 1 + ε_high) A_t) over masked tokens.

  The gradient flows through ρ_t and vanishes where the clipped term is the smaller one (ρ > 1 + ε_high
  with A > 0, or ρ < 1 − ε_low with A < 0).

  Args: log_probs, old_log_probs, advantages [B, T] float; mask [B, T] bool; 0 <= ε_low < 1, ε_high >= 0.
  """
  _check_shapes(log_probs, old_log_probs, advantages, mask)
  if not (0 <= epsilon_low < 1 and epsilon_high >= 0):
    raise ValueError(f"need 0 <= epsilon_low < 1 and epsilon_high >= 0, got {epsilon_low}, {epsilon_high}")
  ratio = _importance_ratio(log_probs, old_log_probs, mask)  # [B, T]
  _, advantages = _masked_inputs(log_probs, advantages, mask)
  clipped = jnp.clip(ratio, 1.0 - epsilon_low, 1.0 + epsilon_high)
  return _masked_sum(-jnp.minimum(ratio * advantages, clipped * advantages), mask)


def reinforce_loss(log_probs: jax.Array, old_log_probs: jax.Array, advantages: jax.Array,
                   mask: jax.Array) -> tuple[jax.Array, jax.Array]:
  """REINFORCE: L = − Σ_t A_t · log π_θ(a_t) over masked tokens (old_log_probs unused: on-policy)."""
  _check_shapes(log_probs, old_log_probs, advantages, mask)
  log_probs, advantages = _masked_inputs(log_probs, advantages, mask)
  return _masked_sum(-advantages * log_probs, mask)


LOSSES: dict[str, PolicyLoss] = {
    "cispo": cispo_loss,
    "ppo_clip": ppo_clip_loss,
    "reinforce": reinforce_loss,
}


def get_loss(name: str) -> PolicyLoss:
  """The loss registered as `name`; ValueError naming the choices otherwise."""
  try:
    return LOSSES[name]
  except KeyError:
    raise ValueError(f"unknown loss {name!r}; expected one of {', '.join(sorted(LOSSES))}") from None


def token_mean(loss_sum: jax.Array, token_count: jax.Array) -> jax.Array:
  """loss_sum / token_count, 0 for a batch without tokens (sum both over shards first)."""
  return loss_sum / jnp.maximum(token_count, 1.0)


def log_prob_gap(log_probs: jax.Array, old_log_probs: jax.Array,
                 mask: jax.Array) -> dict[str, jax.Array]:
  """Trainer-vs-sampler health metrics over masked tokens: mean and max of |log π_θ − log π_old| and
  the mean of ρ = exp(log π_θ − log π_old). All 0 when the mask is empty. Values are float32 scalars."""
  gap = jnp.where(mask, jnp.abs(log_probs.astype(jnp.float32) - old_log_probs.astype(jnp.float32)),
                  0.0)  # [B, T]
  count = jnp.sum(mask, dtype=jnp.float32)
  ratio = _importance_ratio(log_probs, old_log_probs, mask)
  return {
      "mean_abs": jnp.sum(gap) / jnp.maximum(count, 1.0),
      "max_abs": jnp.max(gap, initial=0.0),
      "ratio_mean": jnp.sum(jnp.where(mask, ratio, 0.0)) / jnp.maximum(count, 1.0),
  }

