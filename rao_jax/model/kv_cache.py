"""The key/value cache: fixed-shape per-layer buffers written in place during prefill and decode."""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

from rao_jax.model.config import ModelConfig

# Logical axis names of `KVCache.k` and `KVCache.v`, for the sharding module.
CACHE_LOGICAL_AXES = ("layers", "cache_batch", "cache_sequence", "kv_heads", "head_dim")


@struct.dataclass
class KVCache:
  """Keys and values of every layer for `batch` rows of at most `max_len` tokens.

  Slot s of row b holds the token at sequence index s of that row. How many slots of each row are filled
  (`cache_lengths`) is tracked by the caller, not here, so the cache stays a pair of donatable arrays.
  """
  k: jax.Array  # [layers, batch, max_len, kv_heads, head_dim]
  v: jax.Array  # [layers, batch, max_len, kv_heads, head_dim]

  @classmethod
  def init(cls, config: ModelConfig, batch: int, max_len: int, dtype: jnp.dtype | str | None = None) -> KVCache:
    """An all-zero cache; `dtype` defaults to the model's compute dtype."""
    if batch <= 0 or max_len <= 0:
      raise ValueError(f"KVCache needs positive batch and max_len, got batch={batch}, max_len={max_len}")
    shape = (config.num_layers, batch, max_len, config.num_kv_heads, config.head_dim)
    dtype = jnp.dtype(dtype or config.dtype)
    return cls(k=jnp.zeros(shape, dtype), v=jnp.zeros(shape, dtype))

  @property
  def batch(self) -> int:
    return self.k.shape[1]

  @property
  def max_len(self) -> int:
    return self.k.shape[2]

  def write(self, layer: int, slots: jax.Array, k: jax.Array, v: jax.Array) -> KVCache:
    """Writes a chunk's keys/values ([B, T, K, D]) of `layer` at cache slots `slots` ([B, T] int32).

    Slots outside [0, max_len) are dropped, which is how padded tokens and overflow are skipped; the update
    is a scatter into the (donatable) full buffer, so it happens in place under jit.
    """
    rows = jnp.arange(k.shape[0])[:, None]  # [B, 1]
    return KVCache(k=self.k.at[layer, rows, slots].set(k.astype(self.k.dtype), mode="drop"),
                   v=self.v.at[layer, rows, slots].set(v.astype(self.v.dtype), mode="drop"))
