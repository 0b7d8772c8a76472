"""Building blocks of the decoder: RMSNorm, embedding, SwiGLU MLP and rotary position embeddings.

Every parameter carries logical axis names (`out_sharding` metadata, not applied eagerly) so that a sharding
module can map them to mesh axes with `nnx.logical_axis_rules` + `nnx.get_partition_spec`. Logical names:
"vocab", "embed", "heads", "kv_heads", "head_dim", "mlp", "norm".
"""
from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

DEFAULT_INIT = nnx.initializers.normal(stddev=0.02)


def logical_param(rngs: nnx.Rngs, init, shape: Sequence[int], dtype: jnp.dtype,
                  axes: Sequence[str]) -> nnx.Param:
  """A parameter initialised with `init` and annotated with one logical axis name per dimension."""
  if len(axes) != len(shape):
    raise ValueError(f"logical axes {axes} do not match parameter shape {shape}")
  return nnx.Param(init(rngs.params(), tuple(shape), dtype), out_sharding=tuple(axes), eager_sharding=False)


class RMSNorm(nnx.Module):
  """y = w * x / sqrt(mean(x^2) + eps), statistics in float32, output in the input dtype."""

  def __init__(self, size: int, *, eps: float, param_dtype: jnp.dtype, rngs: nnx.Rngs):
    self.eps = eps
    self.scale = logical_param(rngs, nnx.initializers.ones, (size,), param_dtype, ("norm",))

  def __call__(self, x: jax.Array) -> jax.Array:  # [..., size] -> [..., size]
    x32 = x.astype(jnp.float32)
    normed = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + self.eps)
    return self.scale[...].astype(x.dtype) * normed.astype(x.dtype)


class Embedding(nnx.Module):
  """Token embedding table; `attend` computes logits against it when embeddings are tied."""

  def __init__(self, vocab_size: int, hidden_size: int, *, param_dtype: jnp.dtype, dtype: jnp.dtype,
               rngs: nnx.Rngs):
    self.dtype = dtype
    self.table = logical_param(rngs, DEFAULT_INIT, (vocab_size, hidden_size), param_dtype, ("vocab", "embed"))

  def __call__(self, tokens: jax.Array) -> jax.Array:  # [B, T] int32 -> [B, T, H]
    return jnp.take(self.table[...], tokens, axis=0).astype(self.dtype)

  def attend(self, x: jax.Array) -> jax.Array:  # [B, T, H] -> [B, T, V] float32
    return jnp.einsum("bth,vh->btv", x, self.table[...].astype(self.dtype),
                      preferred_element_type=jnp.float32)


class LMHead(nnx.Module):
  """Untied output projection to vocabulary logits (float32)."""

  def __init__(self, hidden_size: int, vocab_size: int, *, param_dtype: jnp.dtype, dtype: jnp.dtype,
               rngs: nnx.Rngs):
    self.dtype = dtype
    self.kernel = logical_param(rngs, DEFAULT_INIT, (hidden_size, vocab_size), param_dtype, ("embed", "vocab"))

  def __call__(self, x: jax.Array) -> jax.Array:  # [B, T, H] -> [B, T, V] float32
    return jnp.einsum("bth,hv->btv", x, self.kernel[...].astype(self.dtype),
                      preferred_element_type=jnp.float32)


class SwiGLU(nnx.Module):
  """down(silu(gate(x)) * up(x))."""

  def __init__(self, hidden_size: int, intermediate_size: int, *, param_dtype: jnp.dtype, dtype: jnp.dtype,
               rngs: nnx.Rngs):
    self.dtype = dtype
    shape_in, shape_out = (hidden_size, intermediate_size), (intermediate_size, hidden_size)
    self.gate = logical_param(rngs, DEFAULT_INIT, shape_in, param_dtype, ("embed", "mlp"))
    self.up = logical_param(rngs, DEFAULT_INIT, shape_in, param_dtype, ("embed", "mlp"))
    self.down = logical_param(rngs, DEFAULT_INIT, shape_out, param_dtype, ("mlp", "embed"))

  def __call__(self, x: jax.Array) -> jax.Array:  # [B, T, H] -> [B, T, H]
    gate = x @ self.gate[...].astype(self.dtype)  # [B, T, I]
    up = x @ self.up[...].astype(self.dtype)  # [B, T, I]
    return (jax.nn.silu(gate) * up) @ self.down[...].astype(self.dtype)


def apply_rope(x: jax.Array, positions: jax.Array, theta: float) -> jax.Array:
  """Rotary embedding, rotate-half convention (as in Hugging Face Qwen3), computed in float32.

  Feature i < D/2 pairs with i + D/2 and is rotated by angle position * theta^(-2i/D).
  x: [B, T, N, D]; positions: [B, T] int32. Returns x's shape and dtype.
  """
  half = x.shape[-1] // 2
  inv_freq = theta ** (-jnp.arange(half, dtype=jnp.float32) / half)  # [D/2]
  angles = positions.astype(jnp.float32)[..., None] * inv_freq  # [B, T, D/2]
  cos = jnp.cos(angles)[:, :, None, :]  # [B, T, 1, D/2]
  sin = jnp.sin(angles)[:, :, None, :]
  x1, x2 = jnp.split(x.astype(jnp.float32), 2, axis=-1)  # [B, T, N, D/2] each
  rotated = jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)
  return rotated.astype(x.dtype)
