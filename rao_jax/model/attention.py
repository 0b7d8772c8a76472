"""Grouped-query self-attention with per-head QK RMSNorm and RoPE (Qwen3), with an optional KV cache."""
from __future__ import annotations

import flax.struct
import jax
import jax.numpy as jnp
from flax import nnx

from rao_jax.model.config import ModelConfig
from rao_jax.model.kv_cache import KVCache, SharedPrefix
from rao_jax.model.layers import DEFAULT_INIT, RMSNorm, apply_rope, logical_param

# Masked logits are replaced (not offset) by this value, so a query with no visible key gets a finite,
# uniform distribution instead of NaN.
_MASKED_LOGIT = float(jnp.finfo(jnp.float32).min)


def grouped_attention(q: jax.Array, k: jax.Array, v: jax.Array, mask: jax.Array, *,
                      query_chunk_size: int = 0, shared: SharedKeys | None = None) -> jax.Array:
  """softmax(q k^T / sqrt(D) where mask) v, each group of num_heads / kv_heads query heads sharing a KV head.

  q: [B, T, N, D]; k, v: [B, K, S, D] (the KV cache's layout) with N % K == 0; mask: [B, T, S] bool
  (True = may attend). Logits and softmax in float32. Returns [B, T, N, D] in q's dtype. Query head n
  uses KV head n // (N / K), the same assignment as repeating each KV head N / K times.

  `shared` adds keys every row may attend besides its own (cascade attention over shared prompt
  prefixes): one softmax runs over the concatenation [shared positions row b sees, own positions], so
  the result equals attention over the row's whole sequence laid out in one buffer. The shared keys
  are stored once, and their scores for all B·T queries are one matmul per KV head.

  `query_chunk_size` C > 0 with T > C: queries go C at a time (T padded up to a multiple of C), each block
  under `jax.checkpoint`, so the float32 [B, N, C, S] scores of one block are the largest temporary in the
  forward and the backward pass instead of [B, N, T, S]. The result is the same up to float rounding:
  every query still sees every key it may attend to.
  """
  batch, length, num_heads, head_dim = q.shape
  if length == 1:
    return _single_query_attention(q, k, v, mask, shared)
  if query_chunk_size <= 0 or length <= query_chunk_size:
    return _dense_attention(q, k, v, mask, shared)
  chunks = -(-length // query_chunk_size)
  padding = chunks * query_chunk_size - length
  q = jnp.pad(q, ((0, 0), (0, padding), (0, 0), (0, 0)))
  mask = jnp.pad(mask, ((0, 0), (0, padding), (0, 0)))  # padded queries see nothing
  q_blocks = q.reshape(batch, chunks, query_chunk_size, num_heads, head_dim).swapaxes(0, 1)  # [n, B, C, N, D]
  mask_blocks = mask.reshape(batch, chunks, query_chunk_size, -1).swapaxes(0, 1)  # [n, B, C, S]
  attend = jax.checkpoint(lambda block: _dense_attention(block[0], k, v, block[1], shared))
  out = jax.lax.map(attend, (q_blocks, mask_blocks))  # [n, B, C, N, D]
  return out.swapaxes(0, 1).reshape(batch, chunks * query_chunk_size, num_heads, head_dim)[:, :length]


@flax.struct.dataclass
class SharedKeys:
  """One layer's shared prefix keys and values and which of them each row may attend.

  k, v: [K, P, D] (a `PrefixTable`'s positions); visible: [B, P] bool (the same for every query of a
  row: shared positions precede all of the row's own).
  """
  k: jax.Array
  v: jax.Array
  visible: jax.Array


def _shared_partial(q: jax.Array, shared: SharedKeys) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Unnormalised attention of queries q [B, X, K, G, D] (float32) over the shared positions they see.

  Returns (m, l, o): the largest score m [B, X, K, G], l = Σ_p exp(s_p − m) [B, X, K, G] and
  o = Σ_p exp(s_p − m) v_p [B, X, K, G, D]. Per KV head the B·X·G queries meet the table's P keys in
  one [P, D] @ [D, B·X·G] matmul (the table is read once, however many rows there are).
  """
  batch, extra, num_kv_heads, group, head_dim = q.shape
  size = shared.k.shape[1]
  queries = q.transpose(2, 4, 0, 1, 3).reshape(num_kv_heads, head_dim, -1)               # [K, D, M]
  scores = jnp.einsum("kpd,kdm->kpm", shared.k.astype(q.dtype), queries) * (head_dim ** -0.5)  # [K, P, M]
  visible = jnp.broadcast_to(shared.visible.T[:, :, None, None], (size, batch, extra, group))
  scores = jnp.where(visible.reshape(1, size, -1), scores, _MASKED_LOGIT)
  top = jnp.max(scores, axis=1, keepdims=True)                                          # [K, 1, M]
  weights = jnp.exp(scores - top)
  out = jnp.einsum("kpm,kpd->kmd", weights, shared.v.astype(q.dtype))                   # [K, M, D]
  to_rows = lambda x: jnp.moveaxis(x.reshape(num_kv_heads, batch, extra, group, *x.shape[2:]), 0, 2)
  return to_rows(top[:, 0]), to_rows(jnp.sum(weights, axis=1)), to_rows(out)


def _merge(own: tuple[jax.Array, jax.Array, jax.Array],
           shared: tuple[jax.Array, jax.Array, jax.Array]) -> jax.Array:
  """softmax attention over the union of two key sets from each set's (m, l, o) (`_shared_partial`):
  with m = max(m_a, m_b), out = (o_a e^(m_a − m) + o_b e^(m_b − m)) / (l_a e^(m_a − m) + l_b e^(m_b − m)).
  A set a query sees nothing of has m = the masked logit, so its weight e^(m_a − m) is 0."""
  top = jnp.maximum(own[0], shared[0])
  scale_own, scale_shared = jnp.exp(own[0] - top), jnp.exp(shared[0] - top)
  total = own[1] * scale_own + shared[1] * scale_shared
  return (own[2] * scale_own[..., None] + shared[2] * scale_shared[..., None]) / total[..., None]


def _dense_attention(q: jax.Array, k: jax.Array, v: jax.Array, mask: jax.Array,
                     shared: SharedKeys | None = None) -> jax.Array:
  """`grouped_attention` with all [B, N, T, S] scores at once."""
  batch, length, num_heads, head_dim = q.shape
  num_kv_heads = k.shape[1]
  q = q.reshape(batch, length, num_kv_heads, num_heads // num_kv_heads, head_dim)  # [B, T, K, G, D]
  logits = jnp.einsum("btkgd,bksd->bkgts", q, k, preferred_element_type=jnp.float32)
  logits = logits * (head_dim ** -0.5)
  logits = jnp.where(mask[:, None, None, :, :], logits, _MASKED_LOGIT)  # [B, K, G, T, S]
  if shared is None:
    probs = jax.nn.softmax(logits, axis=-1).astype(v.dtype)
    out = jnp.einsum("bkgts,bksd->btkgd", probs, v)
  else:
    top = jnp.max(logits, axis=-1, keepdims=True)
    weights = jnp.exp(logits - top)                                     # [B, K, G, T, S]
    own = (top[..., 0].transpose(0, 3, 1, 2), jnp.sum(weights, axis=-1).transpose(0, 3, 1, 2),
           jnp.einsum("bkgts,bksd->btkgd", weights, v.astype(jnp.float32)))
    out = _merge(own, _shared_partial(q.astype(jnp.float32), shared)).astype(v.dtype)
  return out.reshape(batch, length, num_heads, head_dim)


def _single_query_attention(q: jax.Array, k: jax.Array, v: jax.Array, mask: jax.Array,
                            shared: SharedKeys | None = None) -> jax.Array:
  """`grouped_attention` for T = 1 (a decode step), in float32.

  One query per row makes attention a memory-bound pass over the cache. Per (row, KV head), the scores
  are the [S, D] block of keys times the [D, G] query heads (keys on the left: a tall-skinny matmul
  over the block as stored), and the output is the [G, S] probabilities times the [S, D] values. On CPU
  this runs about 2.3x faster than the same products with the queries on the left and 2.5-2.7x faster
  than broadcast-multiply-reduce (`scripts/probe_decode_attention.py`). Shared prefix keys are read
  once for all rows (`_shared_partial`) and merged by their softmax statistics (`_merge`).
  """
  batch, _, num_heads, head_dim = q.shape
  num_kv_heads, out_dtype = k.shape[1], q.dtype
  q = q.reshape(batch, num_kv_heads, num_heads // num_kv_heads, head_dim).astype(jnp.float32)  # [B, K, G, D]
  logits = jnp.einsum("bksd,bkgd->bksg", k.astype(jnp.float32), q) * (head_dim ** -0.5)  # [B, K, S, G]
  logits = jnp.where(mask[:, 0, None, :, None], logits, _MASKED_LOGIT)
  if shared is None:
    probs = jax.nn.softmax(logits, axis=2)  # over S
    out = jnp.einsum("bksg,bksd->bkgd", probs, v.astype(jnp.float32))  # [B, K, G, D]
  else:
    top = jnp.max(logits, axis=2, keepdims=True)
    weights = jnp.exp(logits - top)                                     # [B, K, S, G]
    own = (top[:, None, :, 0], jnp.sum(weights, axis=2)[:, None],
           jnp.einsum("bksg,bksd->bkgd", weights, v.astype(jnp.float32))[:, None])
    out = _merge(own, _shared_partial(q[:, None], shared))[:, 0]       # [B, K, G, D]
  return out.reshape(batch, 1, num_heads, head_dim).astype(out_dtype)


class Attention(nnx.Module):
  """Qwen3 self-attention: q/k/v projections, per-head RMSNorm on q and k, RoPE, GQA, output projection."""

  def __init__(self, config: ModelConfig, *, rngs: nnx.Rngs):
    h, n, k, d = config.hidden_size, config.num_heads, config.num_kv_heads, config.head_dim
    pdt = config.params_dtype
    self.dtype = config.compute_dtype
    self.rope_theta = config.rope_theta
    self.q_proj = logical_param(rngs, DEFAULT_INIT, (h, n, d), pdt, ("embed", "heads", "head_dim"))
    self.k_proj = logical_param(rngs, DEFAULT_INIT, (h, k, d), pdt, ("embed", "kv_heads", "head_dim"))
    self.v_proj = logical_param(rngs, DEFAULT_INIT, (h, k, d), pdt, ("embed", "kv_heads", "head_dim"))
    self.o_proj = logical_param(rngs, DEFAULT_INIT, (n, d, h), pdt, ("heads", "head_dim", "embed"))
    self.q_norm = RMSNorm(d, eps=config.rms_norm_eps, param_dtype=pdt, rngs=rngs)
    self.k_norm = RMSNorm(d, eps=config.rms_norm_eps, param_dtype=pdt, rngs=rngs)

  def __call__(
      self,
      x: jax.Array,  # [B, T, H]
      positions: jax.Array,  # [B, T] int32, RoPE positions
      mask: jax.Array,  # [B, T, S] bool; S = T without a cache, S = max_len with one
      cache: KVCache | None = None,
      layer: int = 0,  # this layer's index in `cache`
      cache_slots: jax.Array | None = None,  # [B, T] int32 cache slot of each token; >= max_len: not written
      query_chunk_size: int = 0,  # > 0: attention over blocks of this many queries (`grouped_attention`)
      cache_rows: jax.Array | None = None,  # [B] int32 cache row of each row (default: row b); >= batch: padding
      shared: SharedPrefix | None = None,  # prompt prefixes the rows continue (cascade attention)
      shared_visible: jax.Array | None = None,  # [B, P] bool, `shared.visible()` (computed once per forward)
  ) -> tuple[jax.Array, KVCache | None]:
    """Returns the attention output [B, T, H] and the cache with this chunk's keys/values written.

    Without a cache the queries attend to the chunk itself; with one they attend to the layer's cache
    after the chunk was written into it.
    """
    proj = lambda w: w[...].astype(self.dtype)
    q = self.q_norm(jnp.einsum("bth,hnd->btnd", x, proj(self.q_proj)))
    k = self.k_norm(jnp.einsum("bth,hkd->btkd", x, proj(self.k_proj)))
    v = jnp.einsum("bth,hkd->btkd", x, proj(self.v_proj))
    q = apply_rope(q, positions, self.rope_theta)
    k = apply_rope(k, positions, self.rope_theta)
    if cache is not None:
      cache = cache.write(layer, cache_slots, k, v, cache_rows)
      k, v = cache.read(layer, cache_rows)  # [B, K, max_len, D], the buffers just written
    else:
      k, v = k.swapaxes(1, 2), v.swapaxes(1, 2)  # [B, K, T, D]
    shared_keys = None if shared is None else SharedKeys(
        shared.table.cache.k[layer][0], shared.table.cache.v[layer][0], shared_visible)
    out = grouped_attention(q, k.astype(self.dtype), v.astype(self.dtype), mask,
                            query_chunk_size=query_chunk_size, shared=shared_keys)  # [B, T, N, D]
    return jnp.einsum("btnd,ndh->bth", out, proj(self.o_proj)), cache
