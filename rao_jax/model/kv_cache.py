"""The key/value cache: fixed-shape per-layer buffers written in place during prefill and decode.

Each layer has its own pair of buffers rather than one [layers, ...] array: a layer's attention then reads
the buffer its write just updated in place, where a slice of a stacked array written in the same step
is materialised first (on CPU XLA copied every layer's slice every decode step, `docs/performance.md`).
A buffer is [batch, kv_heads, max_len, head_dim], heads before positions: each (row, KV head) owns a
contiguous [max_len, head_dim] block, and a decode step's scores are one tall-skinny matmul per block
([max_len, head_dim] @ [head_dim, query heads per KV head]) with no transpose of the cache: on CPU about
2x faster than the best form over a [batch, max_len, kv_heads, head_dim] layout and 2.5x faster than the
broadcast-multiply-reduce used before (`scripts/probe_decode_attention.py`, `docs/performance.md`).

`SharedPrefix` lets many rows continue a few prompt prefixes whose keys and values are stored once
(cascade attention): row b's first `length[b]` positions are read from prompt `index[b]` of a
`PrefixTable`, and its own buffer holds positions length[b], length[b] + 1, ... from index 0. A decode
step then reads the table once for all rows instead of once per row, and each row's buffer is shorter
by the shared part.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

from rao_jax.model.config import ModelConfig

# Logical axis names of each layer's buffer in `KVCache.k` and `KVCache.v`, for the sharding module.
CACHE_LOGICAL_AXES = ("cache_batch", "kv_heads", "cache_sequence", "head_dim")


@struct.dataclass
class KVCache:
  """Keys and values of every layer for `batch` rows of at most `max_len` tokens.

  Slot s of row b holds the token at sequence index s of that row. How many slots of each row are filled
  (`cache_lengths`) is tracked by the caller, not here, so the cache stays a pytree of donatable arrays.
  """
  k: tuple[jax.Array, ...]  # one [batch, kv_heads, max_len, head_dim] buffer per layer
  v: tuple[jax.Array, ...]  # the same

  @classmethod
  def init(cls, config: ModelConfig, batch: int, max_len: int, dtype: jnp.dtype | str | None = None) -> KVCache:
    """An all-zero cache; `dtype` defaults to the model's compute dtype."""
    if batch <= 0 or max_len <= 0:
      raise ValueError(f"KVCache needs positive batch and max_len, got batch={batch}, max_len={max_len}")
    shape = (batch, config.num_kv_heads, max_len, config.head_dim)
    dtype = jnp.dtype(dtype or config.dtype)
    zeros = lambda: tuple(jnp.zeros(shape, dtype) for _ in range(config.num_layers))
    return cls(k=zeros(), v=zeros())

  @property
  def num_layers(self) -> int:
    return len(self.k)

  @property
  def batch(self) -> int:
    return self.k[0].shape[0]

  @property
  def max_len(self) -> int:
    return self.k[0].shape[2]

  @property
  def dtype(self) -> jnp.dtype:
    return self.k[0].dtype

  def write(self, layer: int, slots: jax.Array, k: jax.Array, v: jax.Array,
            rows: jax.Array | None = None) -> KVCache:
    """Writes a chunk's keys/values ([B, T, K, D]) of `layer` at cache slots `slots` ([B, T] int32) of
    cache rows `rows` ([B] int32; default row b for chunk row b).

    Slots outside [0, max_len) and rows outside [0, batch) are dropped, which is how padded tokens, padded
    rows and overflow are skipped; the update is a scatter into the layer's (donatable) buffer, so it
    happens in place under jit.
    """
    rows = jnp.arange(k.shape[0]) if rows is None else rows
    rows = rows[:, None, None]  # [B, 1, 1]
    heads = jnp.arange(k.shape[2])[None, None, :]  # [1, 1, K]
    # buffer[rows, heads, slots[..., None]] is [B, T, K, D], the layout of k and v.
    write = lambda buffers, new: (*buffers[:layer],
                                  buffers[layer].at[rows, heads, slots[:, :, None]].set(
                                      new.astype(buffers[layer].dtype), mode="drop"),
                                  *buffers[layer + 1:])
    return KVCache(k=write(self.k, k), v=write(self.v, v))

  def read(self, layer: int, rows: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
    """`layer`'s keys and values [B, K, max_len, D]: every row, or cache rows `rows` ([B] int32; rows past
    the end read the last row, for padding)."""
    if rows is None:
      return self.k[layer], self.v[layer]
    rows = jnp.minimum(rows, self.batch - 1)
    return self.k[layer][rows], self.v[layer][rows]


@struct.dataclass
class PrefixTable:
  """The keys and values of N prompt prefixes, each position stored once.

  Positions all prompts share (their common beginning) come first, owned by every prompt; then each
  prompt's own tail. Position j belongs to prompt `owner[j]` (-1: to all; -2: padding, to none) and is
  position `position[j]` of it.

  cache: batch 1, max_len P (the table as one row); owner, position: [P] int32.
  """
  cache: KVCache
  owner: jax.Array
  position: jax.Array

  @classmethod
  def init(cls, config: ModelConfig, size: int, dtype: jnp.dtype | str | None = None) -> PrefixTable:
    """An all-zero table of `size` positions shared by every prompt (position j is position j of each):
    the shape to fill (`rollout.device.prefix_table`) or to probe a decode step with."""
    return cls(KVCache.init(config, 1, size, dtype), jnp.full((size,), -1, jnp.int32),
               jnp.arange(size, dtype=jnp.int32))

  @property
  def size(self) -> int:
    return self.cache.max_len


@struct.dataclass
class SharedPrefix:
  """Which prompt of a `PrefixTable` each of B rows continues, and how much of it.

  index: [B] int32, the prompt of each row (any value when length is 0).
  length: [B] int32, positions 0 .. length - 1 of row b are prompt index[b]'s; 0 = no shared prefix.
  Row b's own cache slot i then holds sequence position length[b] + i.
  """
  table: PrefixTable
  index: jax.Array
  length: jax.Array

  def visible(self) -> jax.Array:
    """[B, P] bool: which table positions row b attends (all of them precede the row's own tokens)."""
    owner, position = self.table.owner[None, :], self.table.position[None, :]
    mine = (owner == -1) | (owner == self.index[:, None])
    return mine & (position < self.length[:, None])
