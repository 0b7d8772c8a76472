"""The device half of the rollout engine: prefill/decode against full forwards of the same model."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from rao_jax.errors import FieldError
from rao_jax.model.config import ModelConfig
from rao_jax.model.kv_cache import KVCache, PrefixTable
from rao_jax.model.transformer import Transformer
from rao_jax.rollout.config import RolloutConfig
from rao_jax.rollout.decode_state import DecodeState, StopReason
from rao_jax.rollout.device import DeviceProgram
from rao_jax.rollout.engine import prefix_table_layout
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


def _prefix_state(program, params, prompts):
  """A state whose slots may start from `prompts` (a prefix table), own caches short by the shortest."""
  width = max(map(len, prompts))
  tokens = np.zeros((len(prompts), width), np.int32)
  for row, prompt in enumerate(prompts):
    tokens[row, :len(prompt)] = prompt
  lengths = np.asarray([len(p) for p in prompts], np.int32)
  empty = KVCache.init(CONFIG, len(prompts), width)
  table = program.prefix_table(params, tokens, lengths, *prefix_table_layout(prompts), empty)
  shared = min(map(len, prompts)) - 1
  state = DecodeState.init(CONFIG, SLOTS, WINDOW, WIDTH, jax.random.key(0), prefixes=table,
                           shared_positions=shared)
  return state, tokens, lengths


def test_slots_started_from_shared_prefixes_match_full_forwards(model, program):
  """Slots installed from either of two prefixes (keys and values stored once), a slot prefilled in full,
  then a decode: each slot's greedy turn is the full forward's, and the own caches are short."""
  _, params = nnx.split(model)
  prefixes = [[5, 9, 11, 20, 21, 22], [5, 9, 2, 8, 30, 31, 12, 40, 41]]  # a common beginning
  state, tokens, lengths = _prefix_state(program, params, prefixes)
  assert state.cache.max_len == WINDOW - 5
  state = program.install_prefix(state, np.asarray([0, 2, SLOTS, SLOTS], np.int32),
                                 np.asarray([1, 0, 0, 0], np.int32), tokens, lengths)
  rests = [[33, 34], [35], [1, 2, 3]]
  state = _prefill(program, params, state, [0, 2, 3], rests, [False, False, True], limit=6)
  state, _ = program.decode(params, state, NO_STOP, np.int32(100), np.int32(SLOTS))
  for slot, prompt in ((0, prefixes[1] + rests[0]), (2, prefixes[0] + rests[1]), (3, rests[2])):
    expected, expected_log_probs = _greedy_reference(model, prompt, 6)
    turn, log_probs = _turn(program, state, slot)
    assert turn == expected
    np.testing.assert_allclose(log_probs, expected_log_probs, atol=1e-5)
  np.testing.assert_array_equal(np.asarray(state.prefix_length), [8, 0, 5, 0])


def test_a_slot_without_a_shared_prefix_has_a_shorter_window(model, program):
  """Own caches are WINDOW - 5 long: a slot that reads no prefix fills at WINDOW - 5 tokens (never
  writing past its cache), one that reads 5 shared positions at WINDOW."""
  _, params = nnx.split(model)
  state, tokens, lengths = _prefix_state(program, params, [[5, 9, 11, 20, 21, 22]])
  state = program.install_prefix(state, np.asarray([1, SLOTS, SLOTS, SLOTS], np.int32),
                                 np.zeros(4, np.int32), tokens, lengths)
  state = _prefill(program, params, state, [0, 1], [[4] * (WINDOW - 8), [4] * (WINDOW - 9)],
                   [True, False])
  state, _ = program.decode(params, state, NO_STOP, np.int32(100), np.int32(2))
  assert int(state.lengths[0]) == WINDOW - 5 and int(state.lengths[1]) == WINDOW
  assert int(state.stop_reason[0]) == int(state.stop_reason[1]) == StopReason.CONTEXT_FULL
  # A chunk longer than the capacity is cut to it.
  state = _prefill(program, params, state, [2], [[4] * WINDOW], [True])
  assert int(state.lengths[2]) == WINDOW - 5 and not bool(state.generating[2])


def test_prefix_arguments_are_checked():
  with pytest.raises(ValueError, match="needs the prefixes"):
    DecodeState.init(CONFIG, SLOTS, WINDOW, WIDTH, jax.random.key(0), shared_positions=3)
  with pytest.raises(ValueError, match="must be in"):
    DecodeState.init(CONFIG, SLOTS, WINDOW, WIDTH, jax.random.key(0),
                     prefixes=PrefixTable.init(CONFIG, 4), shared_positions=WINDOW)


def test_own_cache_resizes_keep_what_is_live(model, program):
  """A slot decoded with its own cache cut to a bucket, grown back between turns, continues exactly as
  with the whole window; a bucket past the own window is refused."""
  _, params = nnx.split(model)
  prompt = [5, 9, 11, 20]
  state = DecodeState.init(CONFIG, SLOTS, WINDOW, WIDTH, jax.random.key(0))
  state = program.resize(state, 16)
  assert state.cache.max_len == 16 and state.own_window == WINDOW
  state = _prefill(program, params, state, [1], [prompt], [True], limit=6)
  state, _ = program.decode(params, state, NO_STOP, np.int32(100), np.int32(1))
  first, _ = _turn(program, state, 1)
  state = program.resize(state, 32)
  state = _prefill(program, params, state, [1], [[33, 34]], [False], limit=6)
  state, _ = program.decode(params, state, NO_STOP, np.int32(100), np.int32(1))
  second, _ = _turn(program, state, 1)
  assert first == _greedy_reference(model, prompt, 6)[0]
  assert second == _greedy_reference(model, prompt + first + [33, 34], 6)[0]
  with pytest.raises(ValueError, match="must be in"):
    program.resize(state, WINDOW + 1)


@pytest.mark.parametrize("buckets, message", [((64, 32), "increasing"), ((0, 8), "increasing"),
                                              ((64, 256), "smaller than context_window")])
def test_cache_window_buckets_are_checked(buckets, message):
  with pytest.raises(FieldError, match=message):
    RolloutConfig(context_window=256, completion_limit=32, cache_window_buckets=buckets)


def test_prefix_table_stores_each_position_once():
  rows, positions, owner = prefix_table_layout([(1, 2, 3, 4, 5), (1, 2, 9, 9), (1, 2, 3, 7)])
  # cached positions: 4, 3 and 3; the first 2 are common to all
  np.testing.assert_array_equal(rows, [0, 0, 0, 0, 1, 2])
  np.testing.assert_array_equal(positions, [0, 1, 2, 3, 2, 2])
  np.testing.assert_array_equal(owner, [-1, -1, 0, 0, 1, 2])
