"""Fixtures for the train tests: tiny models filled from numpy (fast to build on CPU), random sequences, and
stand-in advantages for end-to-end runs of an untrained policy."""
import numpy as np
import pytest

from rao_jax.model.config import ModelConfig
from rao_jax.model.random_init import random_normal_model
from rao_jax.model.transformer import Transformer
from rao_jax.rl.advantages import NodeAdvantages

TINY = ModelConfig(vocab_size=64, hidden_size=32, num_layers=1, num_heads=4, num_kv_heads=2, head_dim=8,
                   intermediate_size=48, rope_theta=10_000.0)


def random_model(config: ModelConfig = TINY, seed: int = 0) -> Transformer:
  """A Transformer with N(0, 0.1) weights and norm scales near 1 (no per-shape initialiser compiles)."""
  return random_normal_model(config, seed)


def random_sequences(lengths, vocab_size: int = TINY.vocab_size, seed: int = 0, model_fraction: float = 0.6):
  """(tokens, loss_mask, sampler log-probs) per length; the first token is a prompt token, the last a policy one."""
  rng = np.random.default_rng(seed)
  sequences = []
  for length in lengths:
    tokens = rng.integers(0, vocab_size, length).astype(np.int32)
    mask = rng.random(length) < model_fraction
    mask[0] = False
    mask[-1] = length > 1  # every sequence longer than one token has something to train on
    log_probs = np.where(mask, -rng.random(length) * 4, 0.0).astype(np.float32)
    sequences.append((tokens, mask, log_probs))
  return sequences


@pytest.fixture(scope="session")
def make_model():
  """Factory: make_model(config=TINY, seed=0) -> Transformer with random weights."""
  return random_model


@pytest.fixture(scope="session")
def make_sequences():
  """Factory: make_sequences(lengths, vocab_size=64, seed=0) -> [(tokens, loss_mask, log-probs)]."""
  return random_sequences


def alternating_advantages(trees, config, *, pad_to=None) -> NodeAdvantages:
  """Stands in for `advantages_from_trees`: +1 for the nodes of even trees, −1 for odd ones, so a step has a
  real gradient whatever a random policy scores (its groups would otherwise have no variance)."""
  del config
  n = pad_to or trees.num_nodes
  sign = np.zeros(n, np.float32)
  sign[:trees.num_nodes] = np.where(trees.tree % 2 == 0, 1.0, -1.0)
  valid = np.arange(n) < trees.num_nodes
  return NodeAdvantages(reward=sign, baseline=np.zeros(n, np.float32), advantage=sign, valid=valid,
                        depth_weight=valid.astype(np.float32))


@pytest.fixture(scope="session")
def stand_in_advantages():
  """`alternating_advantages` (a replacement for `policy_update.advantages_from_trees`)."""
  return alternating_advantages
