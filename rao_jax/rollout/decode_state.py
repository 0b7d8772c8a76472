"""`DecodeState`: everything the device keeps about S decoding slots, as one donatable pytree.

A *slot* holds one node's token sequence (prompt, its generated turns and the observations between
them) in a buffer of the context window T, with the matching KV cache. Invariant: the cache holds the
first `lengths - 1` tokens of the buffer; the last token is *pending*, i.e. it is the input of the next
model call. Keeping one token pending means neither prefill nor decode has to carry logits around:

    buffer:  [p0 p1 p2 ... p7 | g0 g1]      lengths = 10
    cache:   [p0 ............. p7   g0]     9 positions; g1 is fed to the next decode step.

*Shared prompt prefixes* (cascade attention): `prefixes` holds the keys and values of the prompt
prefixes many nodes start with, each position stored once (`PrefixTable`: their common beginning, then
each prompt's tail). A slot started from prompt `prefix_index` reads its first
`prefix_length` positions from that table, and its own cache holds the positions after them, from
slot 0 on: its own cache is shorter by the shared part (`own_window`), and a decode step reads each
prefix once for all slots instead of once per slot. A slot with `prefix_length` 0 holds everything
itself and so has `own_window` tokens of context, not T (`capacity`).

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
from rao_jax.model.kv_cache import CACHE_LOGICAL_AXES, KVCache, PrefixTable


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
  cache: KVCache               # k, v: per layer [S, kv_heads, T_own, head_dim], T_own = T - shared positions
  rng: jax.Array               # PRNG key for sampling
  generating: jax.Array        # [S] bool
  turn_start: jax.Array        # [S] int32
  completion_limit: jax.Array  # [S] int32
  stop_reason: jax.Array       # [S] int32 (StopReason)
  forced: jax.Array            # [S, W] int32 forced turn tokens (W = completion width)
  forced_length: jax.Array     # [S] int32, 0 = sample freely
  prefix_index: jax.Array      # [S] int32 shared prefix the slot continues
  prefix_length: jax.Array     # [S] int32 positions read from it (0: none)
  prefixes: PrefixTable | None = None  # cache per layer [1, kv_heads, P, head_dim]; None: no sharing
  # Positions a slot may hold in its own cache (T − shared positions). The buffers may be shorter
  # (`resize_own_cache`: a bucket covering what is live); static, so it is part of the compiled shape.
  own_window: int = flax.struct.field(pytree_node=False, default=0)

  @property
  def num_slots(self) -> int:
    return self.tokens.shape[0]

  @property
  def context_window(self) -> int:
    return self.tokens.shape[1]

  def capacity(self, prefix_length: jax.Array) -> jax.Array:
    """Tokens a slot with `prefix_length` shared positions can hold: min(T, shared + own window)."""
    return jnp.minimum(self.context_window, prefix_length + self.own_window)

  @classmethod
  def init(cls, config: ModelConfig, num_slots: int, context_window: int, completion_width: int,
           rng: jax.Array, cache_dtype=None, prefixes: PrefixTable | None = None,
           shared_positions: int = 0) -> "DecodeState":
    """Empty slots: nothing in the buffers, nobody generating.

    `prefixes`: shared prompt prefixes (`rollout.device.prefix_table`); `shared_positions`: the fewest
    positions a slot started from one of them reads from it. Own caches hold T − shared_positions.
    """
    s, t = num_slots, context_window
    if not 0 <= shared_positions < t:
      raise ValueError(f"shared_positions={shared_positions} must be in [0, context_window={t})")
    if shared_positions and prefixes is None:
      raise ValueError("shared_positions > 0 needs the prefixes they are read from")
    return cls(
        tokens=jnp.zeros((s, t), jnp.int32),
        log_probs=jnp.zeros((s, t), jnp.float32),
        lengths=jnp.zeros((s,), jnp.int32),
        cache=KVCache.init(config, s, t - shared_positions, dtype=cache_dtype),
        rng=rng,
        generating=jnp.zeros((s,), bool),
        turn_start=jnp.zeros((s,), jnp.int32),
        completion_limit=jnp.zeros((s,), jnp.int32),
        stop_reason=jnp.zeros((s,), jnp.int32),
        forced=jnp.zeros((s, completion_width), jnp.int32),
        forced_length=jnp.zeros((s,), jnp.int32),
        prefix_index=jnp.zeros((s,), jnp.int32),
        prefix_length=jnp.zeros((s,), jnp.int32),
        prefixes=prefixes,
        own_window=t - shared_positions,
    )


def resize_own_cache(state: DecodeState, window: int) -> DecodeState:
  """The state with own-cache buffers of `window` positions (a bucket ≤ `own_window`), cut or zero-padded
  at the end.

  Cutting is only right if no slot holds a position at or past `window` (the engine sizes the bucket
  from every busy slot's tokens plus a whole next turn); padded positions are past every slot's length,
  so they are never read.
  """
  if not 0 < window <= state.own_window:
    raise ValueError(f"window={window} must be in (0, own_window={state.own_window}]")
  def fit(buffer: jax.Array) -> jax.Array:  # [S, K, W, D]
    current = buffer.shape[2]
    if window <= current:
      return buffer[:, :, :window]
    return jnp.pad(buffer, ((0, 0), (0, 0), (0, window - current), (0, 0)))
  return state.replace(cache=jax.tree.map(fit, state.cache))


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
  prefixes = None
  if state.prefixes is not None:  # one row every slot reads: replicated over the data axes
    prefix_layers = (NamedSharding(mesh, PartitionSpec(None, *cache_spec[1:])),) * state.cache.num_layers
    prefixes = PrefixTable(KVCache(k=prefix_layers, v=prefix_layers), replicated, replicated)
  return shardings.replace(cache=KVCache(k=layers, v=layers), rng=replicated, prefixes=prefixes)
