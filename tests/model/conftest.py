"""Fixtures for the model tests: small random Hugging Face Qwen3 checkpoints written with `transformers`."""
import dataclasses
import pathlib

import numpy as np
import pytest
import torch
import transformers

from rao_jax.model.config import ModelConfig
from rao_jax.model.random_init import random_normal_model


@dataclasses.dataclass(frozen=True)
class HFCheckpoint:
  path: pathlib.Path
  torch_model: object  # transformers.Qwen3ForCausalLM in eval mode


def _write_hf_checkpoint(path: pathlib.Path, seed: int, max_shard_size: int | None, **hf_kwargs) -> HFCheckpoint:
  torch.manual_seed(seed)
  hf_config = transformers.Qwen3Config(**hf_kwargs)
  model = transformers.Qwen3ForCausalLM(hf_config).eval()
  with torch.no_grad():  # Norm weights away from 1 and larger projections, so every tensor matters.
    for name, param in model.named_parameters():
      if name.endswith("norm.weight"):
        param.copy_(1.0 + 0.2 * torch.randn_like(param))
      else:
        param.copy_(0.08 * torch.randn_like(param))
  kwargs = {} if max_shard_size is None else {"max_shard_size": max_shard_size}
  model.save_pretrained(path, safe_serialization=True, **kwargs)
  return HFCheckpoint(path=path, torch_model=model)


@pytest.fixture(scope="session")
def tied_checkpoint(tmp_path_factory) -> HFCheckpoint:
  """Tied embeddings, num_kv_heads == num_heads, head_dim == hidden / heads, one safetensors file."""
  return _write_hf_checkpoint(
      tmp_path_factory.mktemp("hf_tied"), seed=0, max_shard_size=None, vocab_size=96, hidden_size=32,
      num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4, head_dim=8, intermediate_size=64,
      tie_word_embeddings=True, rope_theta=10_000.0, rms_norm_eps=1e-6)


@pytest.fixture(scope="session")
def gqa_checkpoint(tmp_path_factory) -> HFCheckpoint:
  """Untied, grouped-query (6 heads over 2 KV heads), head_dim 16 != 48 / 6, sharded with an index file."""
  return _write_hf_checkpoint(
      tmp_path_factory.mktemp("hf_gqa"), seed=1, max_shard_size=20_000, vocab_size=112, hidden_size=48,
      num_hidden_layers=2, num_attention_heads=6, num_key_value_heads=2, head_dim=16, intermediate_size=80,
      tie_word_embeddings=False, rope_theta=1_000_000.0, rms_norm_eps=1e-5)


@pytest.fixture(scope="session")
def toy_config() -> ModelConfig:
  """A fast-compiling config for the cache tests (GQA, head_dim != hidden / heads)."""
  return ModelConfig(vocab_size=64, hidden_size=32, num_layers=2, num_heads=4, num_kv_heads=2, head_dim=16,
                     intermediate_size=48, rope_theta=10_000.0)


_random_model = random_normal_model


@pytest.fixture(scope="session")
def random_model():
  """Factory: random_model(config, seed=0) -> Transformer with random weights (see `_random_model`)."""
  return _random_model


@pytest.fixture
def rng() -> np.random.Generator:
  return np.random.default_rng(0)
