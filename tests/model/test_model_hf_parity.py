"""Logit parity with transformers' Qwen3ForCausalLM, and lossless export / re-import."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers
from flax import nnx

from rao_jax.model import hf_checkpoint
from rao_jax.model.hf_checkpoint import load_hf_checkpoint, save_hf_checkpoint

LENGTHS = (9, 5, 1, 7)


def _right_padded_batch(vocab_size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
  tokens = rng.integers(0, vocab_size, size=(len(LENGTHS), max(LENGTHS)))
  valid = np.arange(max(LENGTHS))[None, :] < np.array(LENGTHS)[:, None]
  return np.where(valid, tokens, 0), valid


@pytest.mark.parametrize("checkpoint_name", ["tied_checkpoint", "gqa_checkpoint"])
def test_logits_match_transformers(checkpoint_name, request, rng):
  checkpoint = request.getfixturevalue(checkpoint_name)
  model, config = load_hf_checkpoint(checkpoint.path)
  tokens, valid = _right_padded_batch(config.vocab_size, rng)
  with torch.no_grad():
    expected = checkpoint.torch_model(input_ids=torch.tensor(tokens),
                                      attention_mask=torch.tensor(valid.astype(np.int64))).logits.numpy()
  logits, cache = nnx.jit(lambda m, t, v: m(t, token_mask=v))(model, jnp.asarray(tokens, jnp.int32),
                                                               jnp.asarray(valid))
  assert cache is None
  assert logits.dtype == jnp.float32
  diff = np.abs(np.asarray(logits) - expected)[valid]
  assert diff.max() < 1e-4, diff.max()
  assert np.abs(expected[valid]).max() > 0.1  # the comparison is not between two near-zero tensors


def test_config_read_from_checkpoint(tied_checkpoint, gqa_checkpoint):
  _, tied = load_hf_checkpoint(tied_checkpoint.path)
  assert tied.tie_embeddings and tied.num_kv_heads == tied.num_heads == 4
  _, gqa = load_hf_checkpoint(gqa_checkpoint.path)
  assert not gqa.tie_embeddings
  assert (gqa.num_heads, gqa.num_kv_heads, gqa.head_dim, gqa.hidden_size) == (6, 2, 16, 48)
  assert gqa.rms_norm_eps == 1e-5 and gqa.rope_theta == 1e6
  assert (gqa_checkpoint.path / hf_checkpoint.INDEX_FILE).exists()


@pytest.mark.parametrize("max_shard_bytes", [None, 4_000])
def test_export_then_import_is_lossless(gqa_checkpoint, tmp_path, max_shard_bytes):
  model, config = load_hf_checkpoint(gqa_checkpoint.path)
  save_hf_checkpoint(model, config, tmp_path, max_shard_bytes=max_shard_bytes)
  assert (tmp_path / hf_checkpoint.INDEX_FILE).exists() == (max_shard_bytes is not None)
  reloaded, reloaded_config = load_hf_checkpoint(tmp_path)
  assert reloaded_config == config
  original = nnx.to_flat_state(nnx.state(model, nnx.Param))
  again = dict(nnx.to_flat_state(nnx.state(reloaded, nnx.Param)))
  assert len(original) == len(again) == len(hf_checkpoint._tensor_layouts(config))
  for path, variable in original:
    np.testing.assert_array_equal(np.asarray(variable[...]), np.asarray(again[path][...]), err_msg=str(path))


def test_export_loads_in_transformers(tied_checkpoint, tmp_path, rng):
  model, config = load_hf_checkpoint(tied_checkpoint.path)
  save_hf_checkpoint(model, config, tmp_path)
  assert not (tmp_path / hf_checkpoint.INDEX_FILE).exists()
  torch_model = transformers.Qwen3ForCausalLM.from_pretrained(tmp_path).eval()
  tokens = rng.integers(0, config.vocab_size, size=(2, 6))
  with torch.no_grad():
    expected = tied_checkpoint.torch_model(torch.tensor(tokens)).logits.numpy()
    exported = torch_model(torch.tensor(tokens)).logits.numpy()
  np.testing.assert_array_equal(exported, expected)


def test_dtype_override_loads_bfloat16(tied_checkpoint):
  model, config = load_hf_checkpoint(tied_checkpoint.path, dtype="bfloat16")
  assert config.param_dtype == config.dtype == "bfloat16"
  assert all(x.dtype == jnp.bfloat16 for x in jax.tree.leaves(nnx.state(model, nnx.Param)))


def test_master_weights_override_keeps_the_compute_dtype(tied_checkpoint):
  model, config = load_hf_checkpoint(tied_checkpoint.path, dtype="bfloat16", param_dtype="float32")
  assert (config.param_dtype, config.dtype) == ("float32", "bfloat16")
  assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(nnx.state(model, nnx.Param)))
  logits, _ = model(jnp.asarray([[1, 2, 3]]), jnp.arange(3)[None])
  bf16_model, _ = load_hf_checkpoint(tied_checkpoint.path, dtype="bfloat16")
  bf16_logits, _ = bf16_model(jnp.asarray([[1, 2, 3]]), jnp.arange(3)[None])
  # Every layer casts its weights to the compute dtype: the same numbers as bfloat16 storage.
  np.testing.assert_array_equal(np.asarray(logits), np.asarray(bf16_logits))
