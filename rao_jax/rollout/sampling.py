"""Token sampling for the decode loop: temperature, nucleus (top-p) and greedy.

All functions work on a batch of slots at once and return the chosen token together with its
log-probability under the *sampling* distribution's base policy, log softmax(logits / 1). RL needs the
log-probability of the behaviour policy π_old(a_t) at temperature 1, which is what training recomputes;
with temperature ≠ 1 or top-p < 1 the actual sampling distribution differs, and the returned value is
still the temperature-1 log-prob so that sampler and trainer log-probs are comparable.
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from rao_jax.errors import FieldError


@dataclasses.dataclass(frozen=True)
class SamplingConfig:
  """How the next token is chosen.

  Attributes:
    temperature: softmax temperature; 0 means greedy (argmax).
    top_p: nucleus mass in (0, 1]; 1 disables the (costly, a sort over the vocabulary) nucleus filter.
  """

  temperature: float = 1.0
  top_p: float = 1.0

  def __post_init__(self):
    if self.temperature < 0:
      raise FieldError("temperature", self.temperature, "must be >= 0")
    if not 0.0 < self.top_p <= 1.0:
      raise FieldError("top_p", self.top_p, "must be in (0, 1]")

  @property
  def greedy(self) -> bool:
    return self.temperature == 0.0


def _nucleus_filter(logits: jax.Array, top_p: float) -> jax.Array:
  """Sets logits outside the smallest set with cumulative probability ≥ top_p to -inf.

  logits: [S, V] float32. The most likely token is always kept.
  """
  sorted_logits = jnp.sort(logits, axis=-1)[:, ::-1]
  cumulative = jnp.cumsum(jax.nn.softmax(sorted_logits, axis=-1), axis=-1)
  # Index of the first sorted token at which the cumulative mass reaches top_p.
  cutoff_index = jnp.sum(cumulative < top_p, axis=-1, keepdims=True)
  cutoff_logit = jnp.take_along_axis(sorted_logits, cutoff_index, axis=-1)
  return jnp.where(logits < cutoff_logit, -jnp.inf, logits)


def sample_tokens(logits: jax.Array, rng: jax.Array, config: SamplingConfig) -> jax.Array:
  """Chooses one token per slot.

  Args:
    logits: [S, V] float32 next-token logits.
    rng: a PRNG key.
    config: static sampling settings.

  Returns:
    tokens: [S] int32.
  """
  logits = logits.astype(jnp.float32)
  if config.greedy:
    return jnp.argmax(logits, axis=-1).astype(jnp.int32)
  scaled = logits / config.temperature
  if config.top_p < 1.0:
    scaled = _nucleus_filter(scaled, config.top_p)
  return jax.random.categorical(rng, scaled, axis=-1).astype(jnp.int32)


def token_log_probs(logits: jax.Array, tokens: jax.Array) -> jax.Array:
  """log softmax(logits)[token] at temperature 1: logits [S, V], tokens [S] -> [S] float32."""
  log_softmax = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
  return jnp.take_along_axis(log_softmax, tokens[:, None], axis=-1)[:, 0]
