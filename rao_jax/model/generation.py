"""Batched autoregressive generation: a padded prefill, then a jitted `lax.while_loop` over KV-cached steps.

Both `generate` and the cache-free reference `generate_uncached` stop a row at `eos_id` (which is kept in
its output), after `max_new_tokens`, or when prompt + generated tokens reach `max_len`. Sampling draws
step i of every row from `fold_in(rng, i)`, so the two agree exactly when greedy and in distribution
otherwise.
"""
from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx, struct

from rao_jax.model.config import ModelConfig
from rao_jax.model.kv_cache import KVCache
from rao_jax.model.transformer import Transformer

_MIN_BUCKET = 16
_NO_EOS = -1


def bucket_length(n: int) -> int:
  """Smallest power of two >= max(n, 16): padded lengths take few values, so few programs are compiled."""
  return max(_MIN_BUCKET, 1 << (max(n, 1) - 1).bit_length())


def sample_tokens(logits: jax.Array, rng: jax.Array, step: jax.Array, temperature: float | jax.Array,
                  greedy: bool) -> jax.Array:
  """[B, V] float32 logits -> [B] int32: argmax if greedy, else a draw from softmax(logits / temperature)."""
  if greedy:
    return jnp.argmax(logits, axis=-1).astype(jnp.int32)
  return jax.random.categorical(jax.random.fold_in(rng, step), logits / temperature).astype(jnp.int32)


@struct.dataclass
class _DecodeState:
  """Carry of the decode loop; `tokens[b, :num_generated[b]]` is row b's output so far."""
  cache: KVCache
  cache_lengths: jax.Array  # [B] int32 tokens in the cache (prompt + generated - 1 while running)
  tokens: jax.Array  # [B, max_len] int32 generated tokens (a row generates fewer than max_len)
  num_generated: jax.Array  # [B] int32
  done: jax.Array  # [B] bool
  step: jax.Array  # [] int32 number of sampling steps taken


def _is_done(token: jax.Array, num_generated: jax.Array, sequence_length: jax.Array, eos_id: jax.Array,
             max_new_tokens: jax.Array, max_len: int) -> jax.Array:
  """[B] bool: the row just sampled eos, has max_new_tokens tokens, or its sequence fills the context."""
  return (token == eos_id) | (num_generated >= max_new_tokens) | (sequence_length >= max_len)


@functools.partial(jax.jit, static_argnames=("graphdef", "max_len", "greedy"))
def _generate_cached(graphdef: nnx.GraphDef, params: nnx.State, prompt: jax.Array, prompt_lengths: jax.Array,
                     rng: jax.Array, temperature: jax.Array, eos_id: jax.Array, max_new_tokens: jax.Array, *,
                     max_len: int, greedy: bool) -> tuple[jax.Array, jax.Array]:
  """prompt: [B, P] int32 right-padded; prompt_lengths: [B] int32; eos_id, max_new_tokens: [] int32.

  Returns the generated tokens [B, max_len] int32 and how many of them are valid per row [B] int32. Only
  shapes, `max_len` and `greedy` select the compiled program; the other arguments are traced.
  """
  model = nnx.merge(graphdef, params)
  batch, prompt_len = prompt.shape
  cache = KVCache.init(model.config, batch, max_len)
  token_mask = jnp.arange(prompt_len)[None, :] < prompt_lengths[:, None]  # [B, P]
  hidden, cache = model.hidden_states(prompt, cache=cache, cache_lengths=jnp.zeros_like(prompt_lengths),
                                      token_mask=token_mask)
  last_hidden = jnp.take_along_axis(hidden, (prompt_lengths - 1)[:, None, None], axis=1)  # [B, 1, H]
  first = sample_tokens(model.logits(last_hidden)[:, 0], rng, jnp.int32(0), temperature, greedy)  # [B]
  ones = jnp.ones_like(prompt_lengths)
  state = _DecodeState(
      cache=cache, cache_lengths=prompt_lengths,
      tokens=jnp.zeros((batch, max_len), jnp.int32).at[:, 0].set(first),
      num_generated=ones, step=jnp.int32(1),
      done=_is_done(first, ones, prompt_lengths + 1, eos_id, max_new_tokens, cache.max_len))

  def keep_going(state: _DecodeState) -> jax.Array:
    return (state.step < max_new_tokens) & ~jnp.all(state.done)

  def decode_step(state: _DecodeState) -> _DecodeState:
    active = ~state.done  # [B]
    last = jnp.take_along_axis(state.tokens, (state.num_generated - 1)[:, None], axis=1)  # [B, 1]
    logits, cache = model(last, cache=state.cache, cache_lengths=state.cache_lengths,
                          token_mask=active[:, None])
    token = sample_tokens(logits[:, 0], rng, state.step, temperature, greedy)  # [B]
    tokens = state.tokens.at[jnp.arange(batch), state.num_generated].set(
        jnp.where(active, token, 0), mode="drop")
    cache_lengths = state.cache_lengths + active
    num_generated = state.num_generated + active
    done = state.done | _is_done(token, num_generated, cache_lengths + 1, eos_id, max_new_tokens,
                                 cache.max_len)
    return _DecodeState(cache=cache, cache_lengths=cache_lengths, tokens=tokens, num_generated=num_generated,
                        done=done, step=state.step + 1)

  state = jax.lax.while_loop(keep_going, decode_step, state)
  return state.tokens, state.num_generated


def generate(model: Transformer, config: ModelConfig, prompts: Sequence[Sequence[int]], *, max_new_tokens: int,
             temperature: float = 0.0, rng: jax.Array | None = None, eos_id: int | None = None,
             max_len: int | None = None) -> list[list[int]]:
  """Generates a continuation of every prompt with a KV cache; greedy when temperature == 0.

  Prompts of different lengths are right-padded to a bucketed length and prefilled in one call (padding is
  masked out of the cache); then one compiled `lax.while_loop` decodes all rows until every row is done.
  `max_len` (default: longest prompt + max_new_tokens, bucketed) is the cache size and context window.
  """
  prompt_array, prompt_lengths, max_len, rng = _prepare(config, prompts, max_new_tokens, temperature, rng,
                                                         max_len)
  if max_new_tokens == 0:
    return [[] for _ in prompts]
  graphdef, params = nnx.split(model)
  tokens, num_generated = _generate_cached(
      graphdef, params, jnp.asarray(prompt_array), jnp.asarray(prompt_lengths), rng,
      jnp.float32(temperature), jnp.int32(_NO_EOS if eos_id is None else eos_id), jnp.int32(max_new_tokens),
      max_len=max_len, greedy=temperature == 0)
  tokens, num_generated = jax.device_get((tokens, num_generated))
  return [row[:n].tolist() for row, n in zip(tokens, num_generated)]


@functools.partial(jax.jit, static_argnames=("graphdef", "greedy"))
def _uncached_step(graphdef: nnx.GraphDef, params: nnx.State, tokens: jax.Array, lengths: jax.Array,
                   rng: jax.Array, step: jax.Array, temperature: jax.Array, *, greedy: bool) -> jax.Array:
  """Full causal forward over right-padded tokens [B, L]; samples [B] int32 from position lengths - 1."""
  model = nnx.merge(graphdef, params)
  hidden, _ = model.hidden_states(tokens)
  last_hidden = jnp.take_along_axis(hidden, (lengths - 1)[:, None, None], axis=1)  # [B, 1, H]
  return sample_tokens(model.logits(last_hidden)[:, 0], rng, step, temperature, greedy)


def generate_uncached(model: Transformer, config: ModelConfig, prompts: Sequence[Sequence[int]], *,
                      max_new_tokens: int, temperature: float = 0.0, rng: jax.Array | None = None,
                      eos_id: int | None = None, max_len: int | None = None) -> list[list[int]]:
  """Reference for `generate`: every step re-runs the full forward over the sequences so far.

  Sequences are right-padded to a power-of-two bucket of the current longest row, so the cost per step
  grows with the sequence (within 2x of the exact length) and only a few programs are compiled.
  """
  prompt_array, prompt_lengths, max_len, rng = _prepare(config, prompts, max_new_tokens, temperature, rng,
                                                         max_len)
  graphdef, params = nnx.split(model)
  batch = len(prompts)
  sequences = np.zeros((batch, bucket_length(max_len)), np.int32)
  sequences[:, :prompt_array.shape[1]] = prompt_array
  lengths = prompt_lengths.copy()
  outputs: list[list[int]] = [[] for _ in prompts]
  done = np.zeros(batch, bool)
  for step in range(max_new_tokens):
    if done.all():
      break
    padded = bucket_length(int(lengths.max()))
    token = np.asarray(_uncached_step(graphdef, params, jnp.asarray(sequences[:, :padded]), jnp.asarray(lengths),
                                      rng, jnp.int32(step), jnp.float32(temperature), greedy=temperature == 0))
    for b in np.flatnonzero(~done):
      outputs[b].append(int(token[b]))
      sequences[b, lengths[b]] = token[b]
      lengths[b] += 1
      done[b] = ((eos_id is not None and token[b] == eos_id) or len(outputs[b]) >= max_new_tokens
                 or lengths[b] >= max_len)
  return outputs


def _prepare(config: ModelConfig, prompts: Sequence[Sequence[int]], max_new_tokens: int, temperature: float,
             rng: jax.Array | None, max_len: int | None) -> tuple[np.ndarray, np.ndarray, int, jax.Array]:
  """Validates the arguments; returns right-padded prompts [B, bucket] int32, lengths [B], max_len, rng."""
  if not prompts:
    raise ValueError("prompts is empty")
  lengths = np.array([len(p) for p in prompts], np.int32)
  if lengths.min() == 0:
    raise ValueError(f"prompt {int(np.argmin(lengths))} is empty; every prompt needs at least one token")
  if max_new_tokens < 0:
    raise ValueError(f"max_new_tokens={max_new_tokens} must be >= 0")
  if temperature < 0:
    raise ValueError(f"temperature={temperature} must be >= 0")
  if temperature > 0 and rng is None:
    raise ValueError("sampling with temperature > 0 needs an rng key")
  if max_len is None:
    max_len = bucket_length(int(lengths.max()) + max_new_tokens)
  if lengths.max() >= max_len:
    raise ValueError(f"the longest prompt has {lengths.max()} tokens; max_len={max_len} leaves no room "
                     "to generate")
  padded = np.zeros((len(prompts), bucket_length(int(lengths.max()))), np.int32)
  for row, prompt in zip(padded, prompts):
    row[:len(prompt)] = prompt
  if padded.min() < 0 or padded.max() >= config.vocab_size:
    raise ValueError(f"prompt token ids must lie in [0, {config.vocab_size})")
  return padded, lengths, max_len, rng if rng is not None else jax.random.key(0)
