"""`DecodeState`: everything the device keeps about S decoding slots, as one donatable pytree.

A *slot* holds one node's token sequence (prompt, its generated turns and the observations between
them) in a buffer of the context window T, with the matching KV cache. Invariant: the cache holds the
first `lengths - 1` tokens of the buffer; the last token is *pending*, i.e. it is the input of the next
model call. Keeping one token pending means neither prefill nor decode has to carry logits around:

    buffer:  [p0 p1 p2 ... p7 | g0 g1]      lengths = 10
    cache:   [p0 ............. p7   g0]     9 positions; g1 is fed to the next decode step.

Generation state per slot: `generating` (the slot is producing a turn), `turn_start` (buffer index of
the turn's first generated token), `completion_limit` (tokens this turn may generate) and `stop_reason`
(why the last turn ended; `StopReason.NONE` while generating or idle).

*Forced turns* (teacher forcing): a slot whose `forced_length` is positive emits `forced[:length]`
instead of sampling, still recording the model's log-probs of those tokens, and ends its turn after
them. Scripted policies (replaying expert transcripts through the real engine) use this.
"""
from __future__ import annotations

import enum

import flax.struct
import jax
import jax.numpy as jnp
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from rao_jax import sharding
from rao_jax.model.config import ModelConfig
from rao_jax.model.kv_cache import CACHE_LOGICAL_AXES, KVCache


class StopReason(enum.IntEnum):
  """Why a slot's turn ended (stored as int32 on device)."""

  NONE = 0
  STOP_SEQUENCE = 1      # produced `</python>` (or another configured stop sequence)
  COMPLETION_LIMIT = 2   # generated `completion_limit` tokens in this turn
  CONTEXT_FULL = 3       # the buffer reached the context window T


@flax.struct.dataclass
class DecodeState:
  """Device state of S slots with context window T (shapes below)."""

  tokens: jax.Array            # [S, T] int32 token buffer
  log_probs: jax.Array         # [S, T] float32 sampler log-prob of generated tokens, 0 elsewhere
  lengths: jax.Array           # [S] int32 tokens in the buffer (the cache holds lengths - 1)
  cache: KVCache               # k, v: per layer [S, kv_heads, T, head_dim]
  rng: jax.Array               # PRNG key for sampling
  generating: jax.Array        # [S] bool
  turn_start: jax.Array        # [S] int32
  completion_limit: jax.Array  # [S] int32
  stop_reason: jax.Array       # [S] int32 (StopReason)
  forced: jax.Array            # [S, W] int32 forced turn tokens (W = completion width)
  forced_length: jax.Array     # [S] int32, 0 = sample freely

  @property
  def num_slots(self) -> int:
    return self.tokens.shape[0]

  @property
  def context_window(self) -> int:
    return self.tokens.shape[1]

  @classmethod
  def init(cls, config: ModelConfig, num_slots: int, context_window: int, completion_width: int,
           rng: jax.Array, cache_dtype=None) -> "DecodeState":
    """Empty slots: nothing in the buffers, nobody generating."""
    s, t = num_slots, context_window
    return cls(
        tokens=jnp.zeros((s, t), jnp.int32),
        log_probs=jnp.zeros((s, t), jnp.float32),
        lengths=jnp.zeros((s,), jnp.int32),
        cache=KVCache.init(config, s, t, dtype=cache_dtype),
        rng=rng,
        generating=jnp.zeros((s,), bool),
        turn_start=jnp.zeros((s,), jnp.int32),
        completion_limit=jnp.zeros((s,), jnp.int32),
        stop_reason=jnp.zeros((s,), jnp.int32),
        forced=jnp.zeros((s, completion_width), jnp.int32),
        forced_length=jnp.zeros((s,), jnp.int32),
    )


def decode_state_shardings(state: DecodeState, mesh: Mesh) -> DecodeState:
  """Where each field of `state` lives on `mesh`: slots over the data axes, KV heads over "tensor".

  Per-slot arrays split their slot dimension over ("data", "fsdp"); the cache follows the logical
  rules of `rao_jax.sharding` (`CACHE_LOGICAL_AXES`), with a KV-head count that "tensor" does not
  divide left replicated; the RNG key is replicated.
  """
  slot_ways = mesh.shape["data"] * mesh.shape["fsdp"]
  if state.num_slots % slot_ways:
    raise ValueError(f"rollout.num_slots={state.num_slots} must be divisible by the mesh's data x fsdp "
                     f"size {slot_ways}")
  cache_spec = list(sharding.logical_to_mesh_spec(CACHE_LOGICAL_AXES))
  kv_heads = state.cache.k[0].shape[1]
  if kv_heads % mesh.shape["tensor"]:
    cache_spec[1] = None
  cache = NamedSharding(mesh, PartitionSpec(*cache_spec))
  replicated = NamedSharding(mesh, PartitionSpec())
  per_slot = lambda x: sharding.batch_sharding(mesh, x.ndim) if x.ndim else replicated
  shardings = jax.tree.map(per_slot, state)
  layers = (cache,) * state.cache.num_layers
  return shardings.replace(cache=KVCache(k=layers, v=layers), rng=replicated)
