"""`rollout.generate`: batches of prompts of different lengths through the engine's device program, against a
step-by-step argmax over full forwards; stop sequences, the context window, seeded sampling, bad arguments."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from rao_jax.model.config import ModelConfig
from rao_jax.model.random_init import random_normal_model
from rao_jax.rollout.generate import generate

CONFIG = ModelConfig(vocab_size=64, hidden_size=32, num_layers=2, num_heads=4, num_kv_heads=2, head_dim=16,
                     intermediate_size=48, rope_theta=10_000.0)
PROMPTS = [[5, 9, 2, 7, 1], [3], [8, 8, 4]]
NEW_TOKENS = 8
REFERENCE_WIDTH = 16  # every reference forward has this width: one compiled program


@pytest.fixture(scope="module")
def model():
  return random_normal_model(CONFIG)


@nnx.jit
def _last_logits(model, tokens, lengths):
  """Logits at position lengths - 1 of a full causal forward over right-padded tokens [B, L]."""
  logits, _ = model(tokens)
  return jnp.take_along_axis(logits, (lengths - 1)[:, None, None], axis=1)[:, 0]


def greedy_reference(model, prompts, max_new_tokens, max_len=REFERENCE_WIDTH):
  """Argmax continuations, one full forward of every sequence so far per new token (no cache)."""
  sequences = np.zeros((len(prompts), REFERENCE_WIDTH), np.int32)
  for row, prompt in zip(sequences, prompts):
    row[:len(prompt)] = prompt
  lengths = np.array([len(p) for p in prompts])
  outputs = [[] for _ in prompts]
  for _ in range(max_new_tokens):
    tokens = np.asarray(_last_logits(model, jnp.asarray(sequences), jnp.asarray(lengths))).argmax(-1)
    for b, token in enumerate(tokens):
      if lengths[b] < max_len:
        outputs[b].append(int(token))
        sequences[b, lengths[b]] = token
        lengths[b] += 1
  return outputs


def test_greedy_matches_step_by_step_argmax(model):
  greedy = generate(model, PROMPTS, max_new_tokens=NEW_TOKENS)
  assert [len(row) for row in greedy] == [NEW_TOKENS] * len(PROMPTS)
  assert greedy == greedy_reference(model, PROMPTS, NEW_TOKENS)


def test_stop_sequences_and_context_window(model):
  greedy = generate(model, PROMPTS, max_new_tokens=NEW_TOKENS)
  eos = greedy[1][2]
  with_eos = generate(model, PROMPTS, max_new_tokens=NEW_TOKENS, stop_sequences=[[eos]])
  for row, out in zip(greedy, with_eos):
    assert out == (row[:row.index(eos) + 1] if eos in row else row)  # the stop token is kept
  assert any(len(out) < NEW_TOKENS for out in with_eos)
  pair = greedy[0][2:4]  # a two-token stop sequence ends row 0 after its 4th token
  assert generate(model, PROMPTS, max_new_tokens=NEW_TOKENS, stop_sequences=[pair, [CONFIG.vocab_size]])[0] == \
      greedy[0][:4]
  windowed = generate(model, PROMPTS, max_new_tokens=NEW_TOKENS, max_len=8)
  assert windowed == [row[:8 - len(p)] for row, p in zip(greedy, PROMPTS)]
  assert windowed == greedy_reference(model, PROMPTS, NEW_TOKENS, max_len=8)


def test_sampling_is_reproducible_at_a_fixed_seed(model):
  sample = lambda key, **kw: generate(model, PROMPTS, max_new_tokens=NEW_TOKENS, temperature=1.0, rng=key, **kw)
  sampled = sample(jax.random.key(3))
  assert sampled == sample(jax.random.key(3))
  assert sampled != sample(jax.random.key(4))
  assert sampled != generate(model, PROMPTS, max_new_tokens=NEW_TOKENS)
  limited = sample(jax.random.key(3), vocab_limit=8)
  assert all(0 <= token < 8 for row in limited for token in row)


@pytest.mark.parametrize("kwargs, message", [
    (dict(prompts=[[1], []]), "prompt 1 is empty"),
    (dict(prompts=[[1, 64]]), r"token ids must lie in \[0, 64\)"),
    (dict(prompts=[[1]], temperature=0.5), "needs an rng key"),
    (dict(prompts=[[1, 2, 3]], max_len=3), "leaves no room"),
    (dict(prompts=[[1]], temperature=-1.0), "temperature"),
    (dict(prompts=[[1]], max_new_tokens=-1), "max_new_tokens"),
    (dict(prompts=[]), "prompts is empty"),
])
def test_rejects_bad_arguments(model, kwargs, message):
  kwargs = {"max_new_tokens": 2, **kwargs}
  with pytest.raises(ValueError, match=message):
    generate(model, **kwargs)
