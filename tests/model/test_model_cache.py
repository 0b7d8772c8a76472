"""KV-cache semantics: chunked prefill and decode reproduce the full causal forward (generation is tested in
tests/rollout/test_rollout_generate.py).

Every forward here is jitted with few distinct shapes: compilation dominates the run time on CPU.
"""
import functools

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from rao_jax.model.kv_cache import KVCache, PrefixTable, SharedPrefix

LENGTHS = np.array([6, 3, 1])  # prompt lengths per row
DECODE_STEPS = 4


@pytest.fixture(scope="module")
def model(toy_config, random_model):
  return random_model(toy_config)


@nnx.jit
def _cached_forward(model, tokens, cache, cache_lengths, token_mask):
  return model(tokens, cache=cache, cache_lengths=cache_lengths, token_mask=token_mask)


@nnx.jit
def _full_forward(model, tokens, token_mask):
  return model(tokens, token_mask=token_mask)[0]


def test_prefill_then_decode_matches_full_forward(model, toy_config, rng):
  batch = len(LENGTHS)
  sequences = rng.integers(0, toy_config.vocab_size, size=(batch, 16)).astype(np.int32)
  # Prefill padded to a bucket of 8 (padding holds junk tokens that must not leak), then decode per row.
  prompt_mask = np.arange(8)[None] < LENGTHS[:, None]
  logits, cache = _cached_forward(model, jnp.asarray(sequences[:, :8]), KVCache.init(toy_config, batch, 16),
                                  jnp.zeros(batch, jnp.int32), jnp.asarray(prompt_mask))
  lengths = LENGTHS.copy()
  cached = [np.asarray(logits)[b, :LENGTHS[b]] for b in range(batch)]
  for _ in range(DECODE_STEPS):
    step_tokens = sequences[np.arange(batch), lengths][:, None]
    logits, cache = _cached_forward(model, jnp.asarray(step_tokens), cache, jnp.asarray(lengths, jnp.int32),
                                    jnp.ones((batch, 1), bool))
    for b in range(batch):
      cached[b] = np.concatenate([cached[b], np.asarray(logits)[b]])
    lengths += 1

  full_mask = np.arange(16)[None] < lengths[:, None]
  full = np.asarray(_full_forward(model, jnp.asarray(sequences), jnp.asarray(full_mask)))
  for b in range(batch):
    np.testing.assert_allclose(cached[b], full[b, :lengths[b]], atol=2e-5, rtol=0)


def test_chunked_prefill_masked_rows_and_cache_overflow(model, toy_config, rng):
  tokens = jnp.asarray(rng.integers(0, toy_config.vocab_size, size=(3, 16)), jnp.int32)
  whole = _full_forward(model, tokens, jnp.ones((3, 16), bool))
  cache = KVCache.init(toy_config, 3, 16)
  first, cache = _cached_forward(model, tokens[:, :8], cache, jnp.zeros(3, jnp.int32), jnp.ones((3, 8), bool))
  # Row 1 has no real token in the second chunk: its cache must not change. Row 2 starts its second
  # chunk at 12 so 4 of its 8 tokens fall past the cache end: they are dropped, the rest are exact.
  row1_before = [np.asarray(layer[1]) for layer in cache.k]
  mask = jnp.array([[True] * 8, [False] * 8, [True] * 8])
  second_tokens = jnp.stack([tokens[0, 8:], tokens[1, 8:], tokens[2, 4:12]])
  second, cache = _cached_forward(model, second_tokens, cache, jnp.array([8, 8, 4], jnp.int32), mask)
  for layer, before in zip(cache.k, row1_before):
    np.testing.assert_array_equal(np.asarray(layer[1]), before)
  np.testing.assert_allclose(np.concatenate([first[0], second[0]]), whole[0], atol=2e-5, rtol=0)
  np.testing.assert_allclose(first[1], whole[1, :8], atol=2e-5, rtol=0)
  np.testing.assert_allclose(second[2], whole[2, 4:12], atol=2e-5, rtol=0)

  overflow, _ = _cached_forward(model, tokens[:, 8:], cache, jnp.full(3, 12, jnp.int32), jnp.ones((3, 8), bool))
  row0 = jnp.concatenate([tokens[0, :12], tokens[0, 8:12]])[None].repeat(3, 0)
  reference = _full_forward(model, row0, jnp.ones((3, 16), bool))
  np.testing.assert_allclose(overflow[0, :4], reference[0, 12:], atol=2e-5, rtol=0)


def test_forward_rejects_inconsistent_arguments(model, toy_config):
  tokens = jnp.zeros((2, 3), jnp.int32)
  cache = KVCache.init(toy_config, 2, 8)
  with pytest.raises(ValueError, match="needs cache_lengths"):
    model(tokens, cache=cache)
  with pytest.raises(ValueError, match="only supported without a cache"):
    model(tokens, segment_ids=jnp.ones((2, 3), jnp.int32), cache=cache, cache_lengths=jnp.zeros(2, jnp.int32))
  with pytest.raises(ValueError, match="cache has 1 rows but tokens have 2"):
    model(tokens, cache=KVCache.init(toy_config, 1, 8), cache_lengths=jnp.zeros(2, jnp.int32))
  with pytest.raises(ValueError, match=r"positions must have shape \(2, 3\)"):
    model(tokens, jnp.zeros((2, 4), jnp.int32))
  with pytest.raises(ValueError, match="cache_lengths was given without a cache"):
    model(tokens, cache_lengths=jnp.zeros(2, jnp.int32))
  with pytest.raises(ValueError, match="tokens must be"):
    model(jnp.zeros(3, jnp.int32))
  with pytest.raises(ValueError, match="positive batch and max_len"):
    KVCache.init(toy_config, 0, 8)


@nnx.jit
def _rows_forward(model, tokens, cache, cache_lengths, token_mask, cache_rows):
  return model(tokens, cache=cache, cache_lengths=cache_lengths, token_mask=token_mask, cache_rows=cache_rows)


def test_cache_rows_use_chosen_rows_of_a_larger_cache_in_place(model, toy_config, rng):
  """Token rows aimed at rows 3 and 1 of a 5-row cache (and one padding row, 5) give the logits of the
  same rows in a cache of their own, write exactly those rows, and leave the others as they were."""
  big = KVCache.init(toy_config, 5, 16)
  filled = rng.standard_normal(big.k[0].shape).astype(np.float32)
  big = KVCache(k=tuple(jnp.asarray(filled) + i for i in range(len(big.k))),
                v=tuple(jnp.asarray(filled) - i for i in range(len(big.v))))
  tokens = jnp.asarray(rng.integers(0, toy_config.vocab_size, size=(3, 6)), jnp.int32)
  lengths = jnp.asarray([4, 2, 0], jnp.int32)  # tokens already cached per row
  mask = jnp.asarray([[True] * 6, [True] * 3 + [False] * 3, [False] * 6])
  rows = jnp.asarray([3, 1, 5], jnp.int32)
  logits, written = _rows_forward(model, tokens, big, lengths, mask, rows)

  own = KVCache(k=tuple(layer[np.array([3, 1, 4])] for layer in big.k),
                v=tuple(layer[np.array([3, 1, 4])] for layer in big.v))
  expected, own_written = _cached_forward(model, tokens, own, lengths, mask)
  np.testing.assert_array_equal(np.asarray(logits)[:2], np.asarray(expected)[:2])
  for layer, (after, before, own_after) in enumerate(zip(written.k, big.k, own_written.k)):
    np.testing.assert_array_equal(np.asarray(after)[[3, 1]], np.asarray(own_after)[:2])
    np.testing.assert_array_equal(np.asarray(after)[[0, 2, 4]], np.asarray(before)[[0, 2, 4]])
    assert not np.array_equal(np.asarray(after)[3], np.asarray(before)[3]), layer


def test_cache_rows_are_checked(model, toy_config):
  tokens = jnp.zeros((2, 3), jnp.int32)
  with pytest.raises(ValueError, match=r"cache_rows must have shape \(2,\)"):
    model(tokens, cache=KVCache.init(toy_config, 4, 8), cache_lengths=jnp.zeros(2, jnp.int32),
          cache_rows=jnp.zeros(3, jnp.int32))
  with pytest.raises(ValueError, match="cache_rows was given without a cache"):
    model(tokens, cache_rows=jnp.zeros(2, jnp.int32))
  with pytest.raises(ValueError, match=r"cache has 4 rows but tokens have 2 \(give cache_rows"):
    model(tokens, cache=KVCache.init(toy_config, 4, 8), cache_lengths=jnp.zeros(2, jnp.int32))


@functools.partial(nnx.jit, static_argnames="query_chunk_size")
def _shared_forward(model, tokens, cache, cache_lengths, token_mask, shared, query_chunk_size=0):
  return model(tokens, cache=cache, cache_lengths=cache_lengths, token_mask=token_mask,
               shared_prefix=shared, query_chunk_size=query_chunk_size)


@pytest.mark.parametrize("query_chunk_size", [0, 4])
def test_shared_prefixes_give_the_full_forward(model, toy_config, rng, query_chunk_size):
  """Cascade attention: rows continuing two prompt prefixes that share their first 3 tokens (stored once
  in a `PrefixTable`: the common part, then each tail) and a row with none, through a chunked prefill
  and decode steps, give the logits of the full causal forward."""
  prefix_lengths = np.array([5, 9])
  sequences = rng.integers(0, toy_config.vocab_size, size=(4, 20)).astype(np.int32)
  prompts = np.zeros((2, 9), np.int32)
  prompts[:, :3] = rng.integers(0, toy_config.vocab_size, 3)
  for n, length in enumerate(prefix_lengths):
    prompts[n, 3:length] = rng.integers(0, toy_config.vocab_size, length - 3)
  index = np.array([0, 1, 1, 0])
  shared_length = np.array([5, 9, 4, 0])  # row 2 reads only part of prompt 1; row 3 reads nothing
  for b in range(4):
    sequences[b, :shared_length[b]] = prompts[index[b], :shared_length[b]]
  _, prompt_cache = _cached_forward(model, jnp.asarray(prompts), KVCache.init(toy_config, 2, 9),
                                    jnp.zeros(2, jnp.int32),
                                    jnp.asarray(np.arange(9)[None] < prefix_lengths[:, None]))
  rows = np.array([0, 0, 0] + [0] * 2 + [1] * 6)
  positions = np.array([0, 1, 2, 3, 4, 3, 4, 5, 6, 7, 8])
  owner = np.array([-1, -1, -1, 0, 0, 1, 1, 1, 1, 1, 1])
  flat = lambda buffers: tuple(b[rows, :, positions][None].swapaxes(1, 2) for b in buffers)
  table = PrefixTable(KVCache(k=flat(prompt_cache.k), v=flat(prompt_cache.v)), jnp.asarray(owner, jnp.int32),
                      jnp.asarray(positions, jnp.int32))
  shared = SharedPrefix(table, jnp.asarray(index, jnp.int32), jnp.asarray(shared_length, jnp.int32))
  own = KVCache.init(toy_config, 4, 20 - 4)  # each row's own cache is short by the shortest shared part
  # Prefill up to position 12 in one padded chunk (rows start at different positions), then decode.
  chunk = np.zeros((4, 12), np.int32)
  chunk_mask = np.zeros((4, 12), bool)
  for b in range(4):
    rest = sequences[b, shared_length[b]:12]
    chunk[b, :len(rest)], chunk_mask[b, :len(rest)] = rest, True
  logits, own = _shared_forward(model, jnp.asarray(chunk), own, jnp.asarray(shared_length, jnp.int32),
                                jnp.asarray(chunk_mask), shared, query_chunk_size)
  cached = [np.asarray(logits)[b, :12 - shared_length[b]] for b in range(4)]
  for position in range(12, 16):
    logits, own = _shared_forward(model, jnp.asarray(sequences[:, position:position + 1]), own,
                                  jnp.full((4,), position, jnp.int32), jnp.ones((4, 1), bool), shared)
    cached = [np.concatenate([c, np.asarray(logits)[b]]) for b, c in enumerate(cached)]
  full = np.asarray(_full_forward(model, jnp.asarray(sequences[:, :16]), jnp.ones((4, 16), bool)))
  for b in range(4):
    np.testing.assert_allclose(cached[b], full[b, shared_length[b]:16], atol=2e-5, rtol=0)


def test_shared_prefix_needs_a_cache_and_row_shapes(model, toy_config):
  shared = SharedPrefix(PrefixTable.init(toy_config, 4), jnp.zeros(2, jnp.int32), jnp.zeros(2, jnp.int32))
  tokens = jnp.zeros((3, 2), jnp.int32)
  with pytest.raises(ValueError, match="shared_prefix was given without a cache"):
    model(tokens, shared_prefix=shared)
  with pytest.raises(ValueError, match=r"shared_prefix.length must have shape \(3,\)"):
    model(tokens, cache=KVCache.init(toy_config, 3, 8), cache_lengths=jnp.zeros(3, jnp.int32),
          shared_prefix=shared)
