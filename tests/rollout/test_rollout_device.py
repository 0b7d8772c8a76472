"""The device half of the rollout engine: prefill/decode against full forwards of the same model."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from rao_jax.model.config import ModelConfig
from rao_jax.model.transformer import Transformer
from rao_jax.rollout.decode_state import DecodeState, StopReason
from rao_jax.rollout.device import DeviceProgram
from rao_jax.rollout.sampling import SamplingConfig

CONFIG = ModelConfig(vocab_size=64, hidden_size=32, num_layers=2, num_heads=4, num_kv_heads=2,
                     head_dim=16, intermediate_size=48, rope_theta=10_000.0)
WINDOW, WIDTH, SLOTS = 48, 16, 4
NO_STOP = jnp.asarray([[-1, -1, -1]], jnp.int32)  # an all-padding stop sequence never matches


@pytest.fixture(scope="module")
def model():
  return Transformer(CONFIG, rngs=nnx.Rngs(0))


@pytest.fixture(scope="module")
def program(model):
  graphdef, _ = nnx.split(model)
  return DeviceProgram(graphdef, SamplingConfig(temperature=0.0))


_FORWARDS = {}


def _full_forward(model):
  """The model's logits for one row of WINDOW tokens, jitted once (causal: padding after a prefix does
  not change the prefix's logits)."""
  if id(model) not in _FORWARDS:
    graphdef, params = nnx.split(model)
    forward = jax.jit(lambda tokens: nnx.merge(graphdef, params)(tokens[None])[0][0])
    _FORWARDS[id(model)] = forward
  return _FORWARDS[id(model)]


def _greedy_reference(model, prompt, num_tokens):
  """Greedy continuation and its log-probs by repeated full forwards (no cache)."""
  forward = _full_forward(model)
  tokens = list(prompt)
  log_probs = []
  for _ in range(num_tokens):
    row = np.zeros(WINDOW, np.int32)
    row[:len(tokens)] = tokens
    last = jax.nn.log_softmax(forward(jnp.asarray(row))[len(tokens) - 1])
    token = int(jnp.argmax(last))
    tokens.append(token)
    log_probs.append(float(last[token]))
  return tokens[len(prompt):], log_probs


def _prefill(program, params, state, slots, chunks, reset, limit=WIDTH, forced=None):
  """Prefills with padding to SLOTS rows and WINDOW columns (one compiled program for the module)."""
  rows = SLOTS
  slots = list(slots) + [SLOTS] * (rows - len(slots))
  reset = list(reset) + [False] * (rows - len(reset))
  chunk_array = np.zeros((rows, WINDOW), np.int32)
  for i, c in enumerate(chunks):
    chunk_array[i, :len(c)] = c
  forced_array = np.zeros((rows, WIDTH), np.int32)
  forced_lengths = np.zeros((rows,), np.int32)
  for i, f in enumerate(forced or [[]] * rows):
    forced_array[i, :len(f)] = f
    forced_lengths[i] = len(f)
  return program.prefill(params, state, np.asarray(slots, np.int32), chunk_array,
                         np.asarray([len(c) for c in chunks] + [0] * (rows - len(chunks)), np.int32),
                         np.asarray(reset),
                         np.full((rows,), limit, np.int32), forced_array, forced_lengths)


def _turn(program, state, slot):
  tokens, log_probs = program.read_turns(state, np.asarray([slot], np.int32), WIDTH)
  count = int(state.lengths[slot] - state.turn_start[slot])
  return np.asarray(tokens[0, :count]).tolist(), np.asarray(log_probs[0, :count])


def test_prefill_then_decode_matches_full_forwards(model, program):
  _, params = nnx.split(model)
  prompts = [[5, 9, 11], [7, 3, 2, 8, 30, 31, 12], [40]]
  state = DecodeState.init(CONFIG, SLOTS, WINDOW, WIDTH, jax.random.key(0))
  # Slot 3 stays empty; rows are given out of order and with different lengths.
  state = _prefill(program, params, state, [2, 0, 1], prompts, [True] * 3, limit=6)
  state, stats = program.decode(params, state, NO_STOP, np.int32(100), np.int32(SLOTS))
  assert int(stats.steps) == 6 and int(stats.useful_tokens) == 18
  for slot, prompt in zip([2, 0, 1], prompts):
    tokens, log_probs = _turn(program, state, slot)
    expected_tokens, expected_log_probs = _greedy_reference(model, prompt, 6)
    assert tokens == expected_tokens
    np.testing.assert_allclose(log_probs, expected_log_probs, atol=1e-5)
    assert int(state.stop_reason[slot]) == StopReason.COMPLETION_LIMIT
  assert int(state.lengths[3]) == 0


def test_observation_appended_after_turn_and_rebuild_after_eviction(model, program):
  """A turn, an observation chunk, a second turn: same tokens with a kept or a rebuilt cache."""
  _, params = nnx.split(model)
  prompt, observation = [5, 9, 11, 20], [33, 34, 35]
  state = DecodeState.init(CONFIG, SLOTS, WINDOW, WIDTH, jax.random.key(0))
  state = _prefill(program, params, state, [0], [prompt], [True], limit=4)
  state, _ = program.decode(params, state, NO_STOP, np.int32(100), np.int32(1))
  first, _ = _turn(program, state, 0)
  # Kept cache: append the observation to slot 0.
  kept = _prefill(program, params, state, [0], [observation], [False], limit=5)
  kept, _ = program.decode(params, kept, NO_STOP, np.int32(100), np.int32(1))
  second_kept, _ = _turn(program, kept, 0)
  # Evicted: rebuild the whole sequence into another slot.
  history = prompt + first + observation
  fresh = DecodeState.init(CONFIG, SLOTS, WINDOW, WIDTH, jax.random.key(0))
  fresh = _prefill(program, params, fresh, [3], [history], [True], limit=5)
  fresh, _ = program.decode(params, fresh, NO_STOP, np.int32(100), np.int32(1))
  second_rebuilt, _ = _turn(program, fresh, 3)
  expected, _ = _greedy_reference(model, history, 5)
  assert second_kept == expected
  assert second_rebuilt == expected


def test_stop_sequence_forced_turns_and_context_window(model, program):
  _, params = nnx.split(model)
  forced = [10, 11, 12, 13, 14]
  stop = jnp.asarray([[-1, 12, 13]], jnp.int32)  # the forced turn contains the stop sequence
  state = DecodeState.init(CONFIG, SLOTS, WINDOW, WIDTH, jax.random.key(0))
  state = _prefill(program, params, state, [0, 1], [[1, 2, 3], [4] * (WINDOW - 3)], [True, True],
                   forced=[forced, []])
  state, _ = program.decode(params, state, stop, np.int32(100), np.int32(2))
  tokens, log_probs = _turn(program, state, 0)
  assert tokens == [10, 11, 12, 13]
  assert int(state.stop_reason[0]) == StopReason.STOP_SEQUENCE
  # Forced tokens carry the model's own log-probs of them.
  logits, _ = model(jnp.asarray([[1, 2, 3, 10, 11, 12]], jnp.int32))
  expected = jax.nn.log_softmax(logits[0, 2:6])[jnp.arange(4), jnp.asarray([10, 11, 12, 13])]
  np.testing.assert_allclose(log_probs, expected, atol=1e-5)
  # Slot 1 fills the window after 3 tokens.
  assert int(state.lengths[1]) == WINDOW
  assert int(state.stop_reason[1]) == StopReason.CONTEXT_FULL


def test_decode_returns_control_when_enough_slots_stopped(model, program):
  _, params = nnx.split(model)
  state = DecodeState.init(CONFIG, SLOTS, WINDOW, WIDTH, jax.random.key(0))
  state = _prefill(program, params, state, [0, 1], [[1, 2], [3, 4]], [True, True])
  state = _prefill(program, params, state, [0], [[1, 2]], [True], limit=2)  # slot 0: 2 tokens only
  state, stats = program.decode(params, state, NO_STOP, np.int32(100), np.int32(1))
  assert int(stats.steps) == 2
  assert bool(state.generating[1]) and not bool(state.generating[0])
  compiled = program.num_compiled()
  state, stats = program.decode(params, state, NO_STOP, np.int32(3), np.int32(1))
  assert int(stats.steps) == 3  # bounded by max_steps
  assert program.num_compiled() == compiled  # step budgets are traced values, not new programs
