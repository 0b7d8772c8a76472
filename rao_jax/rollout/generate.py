"""`generate`: continuations of a batch of prompts, sampled by the rollout engine's device program.

There is one sampler in rao_jax, `rollout/device.py`; this is a thin batch interface to it. Prompt b goes
to slot b of a `DecodeState` whose context window is `max_len`; one `prefill` appends every prompt (right-
padded to a bucketed width) and one `decode` call samples all slots until each has stopped: its sequence
ends with one of `stop_sequences` (kept in the output), it has `max_new_tokens` new tokens, or prompt +
new tokens fill the window. Sampling (greedy at temperature 0, else temperature and top-p) is
`rollout/sampling.py`, driven by the state's PRNG key, so a fixed `rng` gives the same samples.
"""
from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from rao_jax.rollout.decode_state import DecodeState
from rao_jax.rollout.device import DeviceProgram
from rao_jax.rollout.sampling import SamplingConfig

_MIN_BUCKET = 16


def bucket_length(n: int) -> int:
  """Smallest power of two >= max(n, 16): padded lengths take few values, so few programs are compiled."""
  return max(_MIN_BUCKET, 1 << (max(n, 1) - 1).bit_length())


def generate(model: nnx.Module, prompts: Sequence[Sequence[int]], *, max_new_tokens: int,
             temperature: float = 0.0, top_p: float = 1.0, rng: jax.Array | None = None,
             stop_sequences: Sequence[Sequence[int]] = (), max_len: int | None = None,
             vocab_limit: int | None = None) -> list[list[int]]:
  """The new tokens of every prompt (a list of token ids per prompt), sampled with a KV cache.

  Args:
    model: a `Transformer` (anything with its call signature and a `config`).
    prompts: B token-id lists of any lengths >= 1.
    temperature: 0 samples greedily; otherwise `rng` is required.
    stop_sequences: token sequences that end a row when its output ends with one (e.g. `[[eos_id]]`).
    max_len: the context window, prompt included (default: longest prompt + max_new_tokens, bucketed).
    vocab_limit: ids >= it are never sampled (a model's vocabulary may be padded past its tokenizer's).
  """
  sampling = SamplingConfig(temperature=temperature, top_p=top_p)
  chunks, lengths, max_len = _padded_prompts(model.config.vocab_size, prompts, max_new_tokens, max_len)
  if not sampling.greedy and rng is None:
    raise ValueError("sampling with temperature > 0 needs an rng key")
  if max_new_tokens == 0:
    return [[] for _ in prompts]
  graphdef, params = nnx.split(model)
  program = DeviceProgram.cached(graphdef, sampling, vocab_limit)
  batch = len(prompts)
  slots = jnp.arange(batch, dtype=jnp.int32)
  state = DecodeState.init(model.config, batch, max_len, 1, jax.random.key(0) if rng is None else rng)
  state = program.prefill(params, state, slots, jnp.asarray(chunks), jnp.asarray(lengths),
                          jnp.ones(batch, bool), jnp.full(batch, max_new_tokens, jnp.int32),
                          jnp.zeros((batch, 1), jnp.int32), jnp.zeros(batch, jnp.int32))
  state, _ = program.decode(params, state, jnp.asarray(_stop_array(stop_sequences)), jnp.int32(max_new_tokens),
                            jnp.int32(batch))
  tokens, ends = jax.device_get((state.tokens, state.lengths))
  return [row[start:end].tolist() for row, start, end in zip(tokens, lengths, ends)]


def _stop_array(stop_sequences: Sequence[Sequence[int]]) -> np.ndarray:
  """[N, K] int32 stop sequences left-padded with -1, the layout `device.decode` takes ([[-1]]: none)."""
  width = max((len(s) for s in stop_sequences), default=1)
  array = np.full((max(len(stop_sequences), 1), width), -1, np.int32)
  for row, sequence in zip(array, stop_sequences):
    row[width - len(sequence):] = sequence
  return array


def _padded_prompts(vocab_size: int, prompts: Sequence[Sequence[int]], max_new_tokens: int,
                    max_len: int | None) -> tuple[np.ndarray, np.ndarray, int]:
  """Checks the prompts; returns them right-padded [B, C] int32 (C: bucketed, at most max_len), their
  lengths [B] int32 and max_len."""
  if not prompts:
    raise ValueError("prompts is empty")
  lengths = np.array([len(p) for p in prompts], np.int32)
  if lengths.min() == 0:
    raise ValueError(f"prompt {int(np.argmin(lengths))} is empty; every prompt needs at least one token")
  if max_new_tokens < 0:
    raise ValueError(f"max_new_tokens={max_new_tokens} must be >= 0")
  longest = int(lengths.max())
  if max_len is None:
    max_len = bucket_length(longest + max_new_tokens)
  if longest >= max_len:
    raise ValueError(f"the longest prompt has {longest} tokens; max_len={max_len} leaves no room to generate")
  chunks = np.zeros((len(prompts), min(bucket_length(longest), max_len)), np.int32)
  for row, prompt in zip(chunks, prompts):
    row[:len(prompt)] = prompt
  if chunks.min() < 0 or chunks.max() >= vocab_size:
    raise ValueError(f"prompt token ids must lie in [0, {vocab_size})")
  return chunks, lengths, max_len
