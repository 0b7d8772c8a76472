"""The Qwen3 decoder: one forward for training on packed rows, chunked prefill and single-token decode."""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from rao_jax.model.attention import Attention
from rao_jax.model.config import ModelConfig
from rao_jax.model.kv_cache import KVCache, SharedPrefix
from rao_jax.model.layers import Embedding, LMHead, RMSNorm, SwiGLU


class DecoderLayer(nnx.Module):
  """Pre-norm block: h = x + attn(rms(x)); out = h + mlp(rms(h))."""

  def __init__(self, config: ModelConfig, *, rngs: nnx.Rngs):
    norm = lambda: RMSNorm(config.hidden_size, eps=config.rms_norm_eps, param_dtype=config.params_dtype,
                           rngs=rngs)
    self.input_norm = norm()
    self.attention = Attention(config, rngs=rngs)
    self.post_attention_norm = norm()
    self.mlp = SwiGLU(config.hidden_size, config.intermediate_size, param_dtype=config.params_dtype,
                      dtype=config.compute_dtype, rngs=rngs)

  def __call__(self, x: jax.Array, positions: jax.Array, mask: jax.Array, cache: KVCache | None,
               layer: int, cache_slots: jax.Array | None, query_chunk_size: int = 0,
               cache_rows: jax.Array | None = None, shared: SharedPrefix | None = None,
               shared_visible: jax.Array | None = None) -> tuple[jax.Array, KVCache | None]:
    attended, cache = self.attention(self.input_norm(x), positions, mask, cache, layer, cache_slots,
                                     query_chunk_size, cache_rows, shared, shared_visible)
    h = x + attended
    return h + self.mlp(self.post_attention_norm(h)), cache


class Transformer(nnx.Module):
  """Decoder-only transformer covering the Qwen3 dense family."""

  def __init__(self, config: ModelConfig, *, rngs: nnx.Rngs):
    self.config = config.validate()
    self.embed = Embedding(config.vocab_size, config.hidden_size, param_dtype=config.params_dtype,
                           dtype=config.compute_dtype, rngs=rngs)
    self.layers = nnx.List([DecoderLayer(config, rngs=rngs) for _ in range(config.num_layers)])
    self.final_norm = RMSNorm(config.hidden_size, eps=config.rms_norm_eps, param_dtype=config.params_dtype,
                              rngs=rngs)
    self.lm_head = None if config.tie_embeddings else LMHead(
        config.hidden_size, config.vocab_size, param_dtype=config.params_dtype, dtype=config.compute_dtype,
        rngs=rngs)

  def __call__(
      self,
      tokens: jax.Array,  # [B, T] int32
      positions: jax.Array | None = None,  # [B, T] int32
      *,
      segment_ids: jax.Array | None = None,  # [B, T] int32, 0 = padding; only without a cache
      cache: KVCache | None = None,
      cache_lengths: jax.Array | None = None,  # [B] int32 tokens already in each row's cache
      token_mask: jax.Array | None = None,  # [B, T] bool, real tokens first in each row
      query_chunk_size: int = 0,
      remat: bool = False,
      cache_rows: jax.Array | None = None,  # [B] int32 cache row of each token row (default: row b)
      shared_prefix: SharedPrefix | None = None,  # per token row: the shared prompt prefix it continues
  ) -> tuple[jax.Array, KVCache | None]:
    """Returns logits [B, T, V] float32 and the cache with this chunk written (None without a cache).

    Without a cache (training, scoring): token t attends to tokens s <= t of its own segment (segment_ids;
    default one segment per row; tokens outside token_mask are padding, segment 0); default positions count
    from 0 within each segment.
    With a cache (prefill, decode): token t of row b is written at slot cache_lengths[b] + t if
    token_mask[b, t] (slots >= max_len are dropped) and attends to slots <= cache_lengths[b] + t; default
    positions are cache_lengths[b] + t. Real tokens must come first in each row of token_mask. The caller
    advances its lengths: new_lengths = cache_lengths + token_mask.sum(-1). `cache_rows` lets B token rows
    use chosen rows of a larger cache in place (a prefill of some decode slots): row b reads and writes
    cache row cache_rows[b]; rows >= cache.batch are padding and write nothing.
    `shared_prefix` (with a cache): the first shared_prefix.length[b] positions of row b are read from a
    table of prompt prefixes stored once (`PrefixTable`); `cache_lengths` still counts them, and the row's own cache slot i
    holds position shared_prefix.length[b] + i (see `SharedPrefix`).
    Memory knobs (same results up to float rounding): `query_chunk_size` > 0 computes attention over
    blocks of that many queries (`grouped_attention`); `remat` (training forwards, no cache) recomputes
    each layer in the backward pass, keeping only its input [B, T, H].
    """
    hidden, cache = self.hidden_states(tokens, positions, segment_ids=segment_ids, cache=cache,
                                       cache_lengths=cache_lengths, token_mask=token_mask,
                                       query_chunk_size=query_chunk_size, remat=remat, cache_rows=cache_rows,
                                       shared_prefix=shared_prefix)
    return self.logits(hidden), cache

  def logits(self, hidden: jax.Array) -> jax.Array:  # [..., H] final hidden states -> [..., V] float32
    return self.embed.attend(hidden) if self.lm_head is None else self.lm_head(hidden)

  def hidden_states(
      self,
      tokens: jax.Array,  # [B, T] int32
      positions: jax.Array | None = None,  # [B, T] int32
      *,
      segment_ids: jax.Array | None = None,  # [B, T] int32
      cache: KVCache | None = None,
      cache_lengths: jax.Array | None = None,  # [B] int32
      token_mask: jax.Array | None = None,  # [B, T] bool
      query_chunk_size: int = 0,
      remat: bool = False,
      cache_rows: jax.Array | None = None,  # [B] int32 cache row of each token row (default: row b)
      shared_prefix: SharedPrefix | None = None,
  ) -> tuple[jax.Array, KVCache | None]:
    """`__call__` without the vocabulary projection: final-normed hidden states [B, T, H] and the cache.

    Lets callers project only the positions they need (e.g. the last prompt token after a prefill).
    """
    if tokens.ndim != 2:
      raise ValueError(f"tokens must be [batch, length], got shape {tokens.shape}")
    batch, length = tokens.shape
    _check_shape("positions", positions, (batch, length))
    _check_shape("segment_ids", segment_ids, (batch, length))
    _check_shape("token_mask", token_mask, (batch, length))

    cache_slots, shared_visible = None, None
    if cache is None:
      if cache_lengths is not None:
        raise ValueError("cache_lengths was given without a cache")
      if segment_ids is None:
        segment_ids = jnp.ones((batch, length), jnp.int32)
      if token_mask is not None:
        segment_ids = jnp.where(token_mask, segment_ids, 0)
      if positions is None:
        positions = segment_positions(segment_ids)
      mask = packed_causal_mask(segment_ids)
    else:
      if segment_ids is not None:
        raise ValueError("segment_ids (packed rows) are only supported without a cache")
      if cache_lengths is None:
        raise ValueError("a cache needs cache_lengths ([batch] int32 tokens already cached per row)")
      _check_shape("cache_lengths", cache_lengths, (batch,))
      _check_shape("cache_rows", cache_rows, (batch,))
      if cache_rows is None and cache.batch != batch:
        raise ValueError(f"cache has {cache.batch} rows but tokens have {batch} (give cache_rows to use "
                         "some rows of a larger cache)")
      chunk_index = cache_lengths[:, None] + jnp.arange(length, dtype=jnp.int32)  # [B, T] sequence positions
      if positions is None:
        positions = chunk_index
      if shared_prefix is not None:
        _check_shape("shared_prefix.length", shared_prefix.length, (batch,))
        _check_shape("shared_prefix.index", shared_prefix.index, (batch,))
        chunk_index = chunk_index - shared_prefix.length[:, None]  # slots of the rows' own caches
        chunk_index = jnp.where(chunk_index < 0, cache.max_len, chunk_index)  # never written, never read
        shared_visible = shared_prefix.visible()  # [B, P]
      cache_slots = chunk_index if token_mask is None else jnp.where(token_mask, chunk_index, cache.max_len)
      mask = jnp.arange(cache.max_len)[None, None, :] <= chunk_index[:, :, None]  # [B, T, max_len]

    if cache_rows is not None and cache is None:
      raise ValueError("cache_rows was given without a cache")
    if shared_prefix is not None and cache is None:
      raise ValueError("shared_prefix was given without a cache")
    if remat and cache is not None:
      raise ValueError("remat is for training forwards; a forward with a cache keeps no activations")
    x = self.embed(tokens)  # [B, T, H]
    for i, layer in enumerate(self.layers):
      if remat:
        x = nnx.remat(lambda block, h: block(h, positions, mask, None, 0, None, query_chunk_size)[0])(layer, x)
      else:
        x, cache = layer(x, positions, mask, cache, i, cache_slots, query_chunk_size, cache_rows, shared_prefix,
                         shared_visible)
    return self.final_norm(x), cache


def packed_causal_mask(segment_ids: jax.Array) -> jax.Array:
  """[B, T] int32 -> [B, T, T] bool: key s visible to query t iff s <= t and both are in the same segment != 0.

  E.g. segment_ids [1 1 2 0] gives query 2 only key 2, and query 3 (padding) no key.
  """
  length = segment_ids.shape[1]
  causal = jnp.tril(jnp.ones((length, length), jnp.bool_))
  same = segment_ids[:, :, None] == segment_ids[:, None, :]
  return causal[None] & same & (segment_ids[:, None, :] != 0)


def segment_positions(segment_ids: jax.Array) -> jax.Array:
  """[B, T] int32 -> [B, T] int32 index of each token within its contiguous segment ([1 1 2 2 2] -> [0 1 0 1 2])."""
  batch, length = segment_ids.shape
  index = jnp.broadcast_to(jnp.arange(length, dtype=jnp.int32), (batch, length))
  starts_segment = jnp.concatenate(
      [jnp.ones((batch, 1), jnp.bool_), segment_ids[:, 1:] != segment_ids[:, :-1]], axis=1)
  segment_start = jax.lax.cummax(jnp.where(starts_segment, index, 0), axis=1)
  return index - segment_start


def _check_shape(name: str, value: jax.Array | None, shape: tuple[int, ...]) -> None:
  if value is not None and tuple(value.shape) != shape:
    raise ValueError(f"{name} must have shape {shape}, got {tuple(value.shape)}")
