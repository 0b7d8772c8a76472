"""KV-cache semantics: chunked prefill and decode reproduce the full causal forward; greedy generation.

Every forward here is jitted with few distinct shapes: compilation dominates the run time on CPU.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from rao_jax.model.generation import generate, generate_uncached
from rao_jax.model.kv_cache import KVCache

LENGTHS = np.array([6, 3, 1])  # prompt lengths per row
DECODE_STEPS = 4
PROMPTS = [[5, 9, 2, 7, 1], [3], [8, 8, 4]]
NEW_TOKENS = 8


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
  row1_before = np.asarray(cache.k[:, 1])
  mask = jnp.array([[True] * 8, [False] * 8, [True] * 8])
  second_tokens = jnp.stack([tokens[0, 8:], tokens[1, 8:], tokens[2, 4:12]])
  second, cache = _cached_forward(model, second_tokens, cache, jnp.array([8, 8, 4], jnp.int32), mask)
  np.testing.assert_array_equal(np.asarray(cache.k[:, 1]), row1_before)
  np.testing.assert_allclose(np.concatenate([first[0], second[0]]), whole[0], atol=2e-5, rtol=0)
  np.testing.assert_allclose(first[1], whole[1, :8], atol=2e-5, rtol=0)
  np.testing.assert_allclose(second[2], whole[2, 4:12], atol=2e-5, rtol=0)

  overflow, _ = _cached_forward(model, tokens[:, 8:], cache, jnp.full(3, 12, jnp.int32), jnp.ones((3, 8), bool))
  row0 = jnp.concatenate([tokens[0, :12], tokens[0, 8:12]])[None].repeat(3, 0)
  reference = _full_forward(model, row0, jnp.ones((3, 16), bool))
  np.testing.assert_allclose(overflow[0, :4], reference[0, 12:], atol=2e-5, rtol=0)


def test_greedy_generate_matches_uncached(model, toy_config):
  cached = generate(model, toy_config, PROMPTS, max_new_tokens=NEW_TOKENS)
  assert [len(c) for c in cached] == [NEW_TOKENS] * len(PROMPTS)
  assert cached == generate_uncached(model, toy_config, PROMPTS, max_new_tokens=NEW_TOKENS)


def test_generate_stops_at_eos_and_context_window(model, toy_config):
  greedy = generate(model, toy_config, PROMPTS, max_new_tokens=NEW_TOKENS)
  eos = greedy[1][2]
  with_eos = generate(model, toy_config, PROMPTS, max_new_tokens=NEW_TOKENS, eos_id=eos)
  for row, out in zip(greedy, with_eos):
    assert out == (row[:row.index(eos) + 1] if eos in row else row)
  assert any(len(out) < NEW_TOKENS for out in with_eos)
  windowed = generate(model, toy_config, PROMPTS, max_new_tokens=NEW_TOKENS, max_len=8)
  assert windowed == [row[:8 - len(p)] for row, p in zip(greedy, PROMPTS)]
  assert windowed == generate_uncached(model, toy_config, PROMPTS, max_new_tokens=NEW_TOKENS, max_len=8)


def test_sampling_is_reproducible_and_matches_uncached(model, toy_config):
  key = jax.random.key(3)
  sample = lambda fn, key: fn(model, toy_config, PROMPTS, max_new_tokens=NEW_TOKENS, temperature=1.0, rng=key)
  sampled = sample(generate, key)
  assert sampled == sample(generate, key)
  assert sampled == sample(generate_uncached, key)
  assert sampled != sample(generate, jax.random.key(4))


@pytest.mark.parametrize("kwargs, message", [
    (dict(prompts=[[1], []]), "prompt 1 is empty"),
    (dict(prompts=[[1, 64]]), r"token ids must lie in \[0, 64\)"),
    (dict(prompts=[[1]], temperature=0.5), "needs an rng key"),
    (dict(prompts=[[1, 2, 3]], max_len=3), "leaves no room"),
    (dict(prompts=[[1]], temperature=-1.0), "temperature"),
    (dict(prompts=[]), "prompts is empty"),
])
def test_generate_rejects_bad_arguments(model, toy_config, kwargs, message):
  kwargs = {"max_new_tokens": 2, **kwargs}
  with pytest.raises(ValueError, match=message):
    generate(model, toy_config, **kwargs)


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
