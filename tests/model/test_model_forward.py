"""Forward-pass properties: packed rows, query-chunked attention and remat, bfloat16, logical axis annotations,
rotary embedding."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from rao_jax.model.attention import grouped_attention
from rao_jax.model.config import ModelConfig
from rao_jax.model.kv_cache import KVCache
from rao_jax.model.layers import apply_rope
from rao_jax.model.transformer import Transformer, packed_causal_mask, segment_positions

EXPECTED_AXES = {
    "table": ("vocab", "embed"), "kernel": ("embed", "vocab"), "scale": ("norm",),
    "q_proj": ("embed", "heads", "head_dim"), "k_proj": ("embed", "kv_heads", "head_dim"),
    "v_proj": ("embed", "kv_heads", "head_dim"), "o_proj": ("heads", "head_dim", "embed"),
    "gate": ("embed", "mlp"), "up": ("embed", "mlp"), "down": ("mlp", "embed"),
}


@nnx.jit
def _forward(model, tokens, positions, segment_ids):
  return model(tokens, positions, segment_ids=segment_ids)[0]


def test_packed_row_matches_segments_run_alone(toy_config, random_model, rng):
  model = random_model(toy_config)
  a = rng.integers(0, toy_config.vocab_size, 5)
  b = rng.integers(0, toy_config.vocab_size, 7)
  # Row 0 packs a, b and two padding tokens; rows 1 and 2 hold a and b alone, right-padded.
  tokens = np.zeros((3, 14), np.int32)
  tokens[0, :12] = np.concatenate([a, b])
  tokens[1, :5], tokens[2, :7] = a, b
  segment_ids = np.zeros((3, 14), np.int32)
  segment_ids[0, :5], segment_ids[0, 5:12], segment_ids[1, :5], segment_ids[2, :7] = 1, 2, 1, 1
  positions = np.asarray(segment_positions(jnp.asarray(segment_ids)))
  np.testing.assert_array_equal(positions[0, :12], np.concatenate([np.arange(5), np.arange(7)]))
  logits = np.asarray(_forward(model, jnp.asarray(tokens), jnp.asarray(positions), jnp.asarray(segment_ids)))
  assert np.isfinite(logits).all()  # padding rows attend to nothing but stay finite
  np.testing.assert_allclose(logits[0, :5], logits[1, :5], atol=2e-5, rtol=0)
  np.testing.assert_allclose(logits[0, 5:12], logits[2, :7], atol=2e-5, rtol=0)
  # Default positions restart at each segment, so omitting them gives the same logits.
  default = np.asarray(nnx.jit(lambda m, t, s: m(t, segment_ids=s)[0])(
      model, jnp.asarray(tokens), jnp.asarray(segment_ids)))
  np.testing.assert_allclose(default[0, :12], logits[0, :12], atol=1e-6, rtol=0)


@pytest.mark.parametrize("length, chunk", [(13, 4), (16, 4), (16, 16), (5, 8)])
def test_query_chunked_attention_equals_dense(rng, length, chunk):
  """Blocks of queries (the last one padded when C does not divide T) give the dense result, including
  queries that may attend to nothing (padding) and keys longer than queries (a cache)."""
  q = jnp.asarray(rng.standard_normal((2, length, 4, 8)), jnp.float32)
  k = jnp.asarray(rng.standard_normal((2, 2, length + 3, 8)), jnp.float32)  # [B, K, S, D]
  v = jnp.asarray(rng.standard_normal((2, 2, length + 3, 8)), jnp.float32)
  mask = jnp.asarray(rng.random((2, length, length + 3)) < 0.6).at[1, -1].set(False)
  dense = grouped_attention(q, k, v, mask)
  chunked = grouped_attention(q, k, v, mask, query_chunk_size=chunk)
  assert chunked.shape == dense.shape == (2, length, 4, 8)
  np.testing.assert_allclose(np.asarray(chunked), np.asarray(dense), atol=1e-6, rtol=0)


def test_chunked_attention_and_remat_give_the_same_logits_and_gradients(toy_config, random_model, rng):
  model = random_model(toy_config)
  tokens = jnp.asarray(rng.integers(0, toy_config.vocab_size, (2, 14)), jnp.int32)
  segment_ids = jnp.asarray([[1] * 6 + [2] * 6 + [0] * 2, [1] * 14], jnp.int32)

  @nnx.jit(static_argnums=(3, 4))
  def loss_and_grads(m, t, s, chunk, remat):
    def loss(m):
      return jnp.mean(m(t, segment_ids=s, query_chunk_size=chunk, remat=remat)[0] ** 2)
    return nnx.value_and_grad(loss)(m)

  plain_loss, plain_grads = loss_and_grads(model, tokens, segment_ids, 0, False)
  for chunk, remat in ((4, False), (0, True), (4, True)):
    loss, grads = loss_and_grads(model, tokens, segment_ids, chunk, remat)
    np.testing.assert_allclose(float(loss), float(plain_loss), rtol=1e-5)
    for a, b in zip(jax.tree.leaves(grads), jax.tree.leaves(plain_grads)):
      np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5, rtol=1e-4)


def test_remat_with_a_cache_is_refused(toy_config, random_model):
  model = random_model(toy_config)
  cache = KVCache.init(toy_config, 1, 8)
  with pytest.raises(ValueError, match="remat is for training forwards"):
    model(jnp.zeros((1, 2), jnp.int32), cache=cache, cache_lengths=jnp.zeros((1,), jnp.int32), remat=True)


def test_packed_causal_mask_example():
  mask = np.asarray(packed_causal_mask(jnp.array([[1, 1, 2, 0]])))[0]
  np.testing.assert_array_equal(mask, [[1, 0, 0, 0], [1, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 0]])


def test_bfloat16_forward_is_close_to_float32(toy_config, random_model, rng):
  model = random_model(toy_config)
  bf16_config = ModelConfig.from_dict({**toy_config.to_dict(), "param_dtype": "bfloat16", "dtype": "bfloat16"})
  graphdef, params = nnx.split(random_model(bf16_config))
  params = jax.tree.map(lambda x, y: x.astype(y.dtype), nnx.state(model), params)
  bf16_model = nnx.merge(graphdef, params)
  assert all(x.dtype == jnp.bfloat16 for x in jax.tree.leaves(nnx.state(bf16_model, nnx.Param)))
  tokens = jnp.asarray(rng.integers(0, toy_config.vocab_size, (2, 12)), jnp.int32)
  forward = nnx.jit(lambda m, t: m(t)[0])
  ref, out = forward(model, tokens), forward(bf16_model, tokens)
  assert out.dtype == jnp.float32
  err = np.abs(np.asarray(out) - np.asarray(ref))
  assert err.max() < 0.05 * np.abs(np.asarray(ref)).max(), err.max()
  assert np.mean(np.argmax(out, -1) == np.argmax(ref, -1)) > 0.8


@pytest.mark.parametrize("tie", [True, False])
def test_every_parameter_has_logical_axes(tie):
  config = ModelConfig(vocab_size=64, hidden_size=32, num_layers=2, num_heads=4, num_kv_heads=2, head_dim=16,
                       intermediate_size=48, tie_embeddings=tie)
  params = nnx.state(nnx.eval_shape(lambda: Transformer(config, rngs=nnx.Rngs(0))), nnx.Param)
  names = set()
  for path, variable in nnx.to_flat_state(params):
    axes = variable.get_metadata()["out_sharding"]
    assert axes == EXPECTED_AXES[path[-1]], path
    assert len(axes) == variable.get_value().ndim
    names.add(path[-1])
  assert ("kernel" in names) == (not tie)
  with nnx.logical_axis_rules([("vocab", "tensor"), ("embed", "fsdp"), ("heads", "tensor"),
                               ("kv_heads", "tensor"), ("mlp", "tensor"), ("head_dim", None)]):
    specs = nnx.get_partition_spec(params)
  assert specs["layers"][0]["attention"]["q_proj"].get_value() == jax.sharding.PartitionSpec(
      "fsdp", "tensor", None)


def test_rope_matches_rotate_half_reference(rng):
  x = rng.standard_normal((1, 3, 2, 8)).astype(np.float32)
  positions = np.array([[0, 1, 7]])
  inv_freq = 1.0 / (100.0 ** (np.arange(0, 8, 2) / 8))
  angles = np.concatenate([positions[..., None] * inv_freq] * 2, -1)[:, :, None, :]
  rotate_half = np.concatenate([-x[..., 4:], x[..., :4]], -1)
  expected = x * np.cos(angles) + rotate_half * np.sin(angles)
  np.testing.assert_allclose(np.asarray(apply_rope(jnp.asarray(x), jnp.asarray(positions), 100.0)), expected,
                             atol=1e-5)
  np.testing.assert_allclose(np.asarray(apply_rope(jnp.asarray(x), jnp.zeros((1, 3), jnp.int32), 100.0)), x)
