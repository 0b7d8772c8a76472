"""The device half of the rollout engine: pure, jit-compiled prefill and decode over S slots.

Both functions take the model as `(graphdef, params)` (from `nnx.split`) so they are pure functions of
arrays, donate the `DecodeState`, and keep shapes fixed: prefill is compiled once per (rows bucket,
chunk bucket) pair and decode once in all (its step budget and stop threshold are traced values).
See `decode_state.py` for the slot layout and the pending-token invariant.
"""
from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec

from rao_jax.model.kv_cache import KVCache, PrefixTable, SharedPrefix
from rao_jax.rollout.decode_state import DecodeState, StopReason, resize_own_cache
from rao_jax.rollout.sampling import SamplingConfig, sample_tokens, token_log_probs


def _apply_model(graphdef: nnx.GraphDef, params: nnx.State, tokens: jax.Array, positions: jax.Array,
                 cache: KVCache, cache_lengths: jax.Array, token_mask: jax.Array, query_chunk_size: int = 0,
                 cache_rows: jax.Array | None = None,
                 shared_prefix: SharedPrefix | None = None) -> tuple[jax.Array, KVCache]:
  model = nnx.merge(graphdef, params)
  return model(tokens, positions, cache=cache, cache_lengths=cache_lengths, token_mask=token_mask,
               query_chunk_size=query_chunk_size, cache_rows=cache_rows, shared_prefix=shared_prefix)


def _shared_prefix(state: DecodeState, slots: jax.Array, prefix_length: jax.Array) -> SharedPrefix | None:
  """The view of `state.prefixes` for rows at `slots` ([R], in range) that read `prefix_length` [R]."""
  if state.prefixes is None:
    return None
  return SharedPrefix(state.prefixes, state.prefix_index[slots], prefix_length)


def prefill(graphdef: nnx.GraphDef, params: nnx.State, state: DecodeState, slots: jax.Array,
            chunks: jax.Array, chunk_lengths: jax.Array, reset: jax.Array,
            completion_limits: jax.Array, forced: jax.Array, forced_lengths: jax.Array, *,
            query_chunk_size: int = 0) -> DecodeState:
  """Appends a chunk of tokens to each chosen slot and starts a new turn there.

  Args:
    slots: [R] int32 slot indices; padding rows use index S (out of range), which is ignored.
    chunks: [R, C] int32 tokens to append (a prompt, or an observation + the next assistant prefix).
    chunk_lengths: [R] int32 valid tokens per row (≥ 1 for real rows).
    reset: [R] bool; True empties the slot first (a new node, or a resumed node whose cache is rebuilt).
    completion_limits: [R] int32 tokens the new turn may generate.
    forced: [R, W] int32 and forced_lengths: [R] int32, the next turn's forced tokens (length 0:
      sample freely).
    query_chunk_size: > 0 runs the chunk's attention over blocks of this many queries (the float32
      [R, heads, C, context] scores are the largest temporary otherwise).

  The slot's previously pending token and all chunk tokens but the last are written to the KV cache;
  the last chunk token becomes the pending one. Then `generating` is set for the chosen slots. Rows
  whose chunk would not fit the slot's capacity are truncated to it (the host checks budgets first).
  A reset slot no longer reads a shared prefix: its whole conversation goes to its own cache.
  """
  num_slots, window = state.tokens.shape
  rows, chunk_width = chunks.shape
  valid_row = slots < num_slots
  safe_slots = jnp.minimum(slots, num_slots - 1)

  old_lengths = jnp.where(reset, 0, state.lengths[safe_slots])                  # [R]
  prefix_length = jnp.where(reset, 0, state.prefix_length[safe_slots])          # [R]
  capacity = state.capacity(prefix_length)                                       # [R]
  new_lengths = jnp.minimum(old_lengths + chunk_lengths, capacity)               # [R]
  # Write the chunk into the token buffer at [old_length, old_length + chunk_length).
  offsets = jnp.arange(chunk_width)[None, :]                                     # [1, C]
  write_index = old_lengths[:, None] + offsets                                   # [R, C]
  write_ok = (offsets < chunk_lengths[:, None]) & (write_index < capacity[:, None]) & valid_row[:, None]
  row_index = jnp.broadcast_to(slots[:, None], (rows, chunk_width))
  tokens = state.tokens.at[row_index, jnp.where(write_ok, write_index, window)].set(
      chunks, mode="drop")
  log_probs = state.log_probs.at[row_index, jnp.where(write_ok, write_index, window)].set(
      0.0, mode="drop")

  # Run the model over buffer[cache_start : new_length - 1], i.e. the old pending token (if any) and
  # all new tokens but the last; C positions always suffice: (old pending) + (chunk_length - 1) ≤ C.
  cache_start = jnp.maximum(old_lengths - 1, 0)                                  # [R]
  num_inputs = jnp.maximum(new_lengths - 1 - cache_start, 0)                     # [R]
  read_index = jnp.minimum(cache_start[:, None] + offsets, window - 1)           # [R, C]
  inputs = jnp.take_along_axis(tokens[safe_slots], read_index, axis=1)
  input_mask = (offsets < num_inputs[:, None]) & valid_row[:, None]
  # The rows' keys and values are written into their slots in place; each layer reads its rows' windows.
  cache_rows = jnp.where(valid_row, slots, num_slots)
  _, cache = _apply_model(graphdef, params, inputs, cache_start[:, None] + offsets, state.cache,
                          cache_start, input_mask, query_chunk_size, cache_rows,
                          _shared_prefix(state, safe_slots, prefix_length))

  def scatter(field, values):
    return field.at[cache_rows].set(values, mode="drop")

  return state.replace(
      tokens=tokens,
      log_probs=log_probs,
      cache=cache,
      lengths=scatter(state.lengths, new_lengths),
      generating=scatter(state.generating, new_lengths < capacity),
      turn_start=scatter(state.turn_start, new_lengths),
      completion_limit=scatter(state.completion_limit, completion_limits),
      stop_reason=scatter(state.stop_reason,
                          jnp.where(new_lengths < capacity, StopReason.NONE, StopReason.CONTEXT_FULL)),
      forced=state.forced.at[cache_rows].set(forced, mode="drop"),
      forced_length=scatter(state.forced_length, forced_lengths),
      prefix_length=scatter(state.prefix_length, prefix_length),
  )


def prefix_table(graphdef: nnx.GraphDef, params: nnx.State, prompts: jax.Array, lengths: jax.Array,
                 source_rows: jax.Array, source_positions: jax.Array, owner: jax.Array, empty: KVCache, *,
                 query_chunk_size: int = 0) -> PrefixTable:
  """Keys and values of N prompt prefixes shared by many nodes, computed once, for `DecodeState.prefixes`.

  prompts: [N, W] int32 (row n's first lengths[n] tokens are prompt n); empty: a zero cache of batch N and
  max_len W. Only the first lengths[n] − 1 tokens are cached: the last one stays pending, as in every slot
  (see `decode_state.py`), and is written to the slot's own cache by its first prefill. Table position j
  is position source_positions[j] of prompt source_rows[j], owned by owner[j] ([P] int32 each; see
  `PrefixTable`).
  """
  width = prompts.shape[1]
  mask = jnp.arange(width)[None, :] < lengths[:, None] - 1
  positions = jnp.broadcast_to(jnp.arange(width), prompts.shape)
  _, cache = _apply_model(graphdef, params, prompts, positions, empty,
                          jnp.zeros((prompts.shape[0],), jnp.int32), mask, query_chunk_size)
  flat = jax.tree.map(lambda buffer: buffer[source_rows, :, source_positions][None].swapaxes(1, 2), cache)
  return PrefixTable(flat, owner, source_positions)


def install_prefix(state: DecodeState, slots: jax.Array, prefix_ids: jax.Array, prefixes: jax.Array,
                   lengths: jax.Array) -> DecodeState:
  """Starts the chosen slots from a shared prompt prefix instead of prefilling it.

  slots: [R] int32 (padding rows use index S and are ignored); prefix_ids: [R] int32 rows of the table;
  prefixes: [N, W] int32 the prompts' tokens; lengths: [N] int32 their lengths. Afterwards slot s
  holds the prefix's tokens, reads their keys and values from `state.prefixes` (all but the last, which
  is pending) and has an empty own cache: the state a prefill of the same tokens into an empty slot
  leaves, without writing any keys or values.
  """
  num_slots = state.tokens.shape[0]
  rows = jnp.where(slots < num_slots, slots, num_slots)
  length = lengths[prefix_ids]                                                     # [R]
  return state.replace(
      tokens=state.tokens.at[rows, :prefixes.shape[1]].set(prefixes[prefix_ids], mode="drop"),
      log_probs=state.log_probs.at[rows].set(0.0, mode="drop"),
      lengths=state.lengths.at[rows].set(length, mode="drop"),
      generating=state.generating.at[rows].set(False, mode="drop"),
      stop_reason=state.stop_reason.at[rows].set(StopReason.NONE, mode="drop"),
      prefix_index=state.prefix_index.at[rows].set(prefix_ids, mode="drop"),
      prefix_length=state.prefix_length.at[rows].set(length - 1, mode="drop"),
  )


@dataclasses.dataclass(frozen=True)
class DecodeStats:
  """What one `decode` call did (scalars, on device until the host reads them)."""

  steps: jax.Array           # int32: loop iterations (model calls)
  useful_tokens: jax.Array   # int32: tokens generated, summed over slots (≤ steps × S)


jax.tree_util.register_dataclass(DecodeStats, data_fields=["steps", "useful_tokens"], meta_fields=[])


def _matches_stop(tokens: jax.Array, lengths: jax.Array, turn_start: jax.Array,
                  stop_sequences: jax.Array) -> jax.Array:
  """Whether each slot's buffer ends with one of the stop sequences, inside the current turn.

  tokens: [S, T]; lengths, turn_start: [S]; stop_sequences: [N, K] int32, left-padded with -1.
  Returns [S] bool.
  """
  width = stop_sequences.shape[1]
  index = lengths[:, None] - width + jnp.arange(width)[None, :]                  # [S, K]
  tail = jnp.take_along_axis(tokens, jnp.maximum(index, 0), axis=1)              # [S, K]
  real = stop_sequences >= 0                                                      # [N, K]
  equal = (tail[:, None, :] == stop_sequences[None]) | ~real[None]               # [S, N, K]
  long_enough = (lengths - turn_start)[:, None] >= real.sum(-1)[None, :]         # [S, N]
  nonempty = jnp.any(real, axis=-1)[None, :]                                      # [1, N]
  return jnp.any(jnp.all(equal, axis=-1) & long_enough & nonempty, axis=-1)


def decode(graphdef: nnx.GraphDef, params: nnx.State, state: DecodeState, stop_sequences: jax.Array,
           max_steps: jax.Array, min_stopped: jax.Array, *, sampling: SamplingConfig,
           vocab_limit: int | None = None) -> tuple[DecodeState, DecodeStats]:
  """Generates tokens for every generating slot until control should return to the host.

  One `lax.while_loop`; each iteration feeds every slot's pending token (non-generating slots are
  masked), samples the next token (or takes its forced token) and appends it. A slot stops when its
  buffer ends with a stop sequence, when its turn reached `completion_limit` tokens, or when the
  buffer is full. The loop returns after `max_steps` iterations, once `min_stopped` slots have stopped during this call (so the
  host can refill them: continuous batching), or when no slot is generating.

  Args:
    stop_sequences: [N, K] int32 token sequences, left-padded with -1.
    max_steps, min_stopped: int32 scalars (traced: changing them does not recompile).
    sampling: static sampling settings.
    vocab_limit: static; ids ≥ it are never sampled (the model's vocabulary may be padded past the
      tokenizer's, as Qwen's is).
  """
  num_slots, window = state.tokens.shape
  slot_index = jnp.arange(num_slots)

  def keep_going(carry):
    state, stats, stopped = carry
    return (stats.steps < max_steps) & jnp.any(state.generating) & (stopped < min_stopped)

  def step(carry):
    state, stats, stopped = carry
    active = state.generating
    pending_index = jnp.maximum(state.lengths - 1, 0)
    pending = state.tokens[slot_index, pending_index]
    logits, cache = _apply_model(graphdef, params, pending[:, None], pending_index[:, None],
                                 state.cache, pending_index, active[:, None],
                                 shared_prefix=_shared_prefix(state, slot_index, state.prefix_length))
    logits = logits[:, 0]
    if vocab_limit is not None and vocab_limit < logits.shape[-1]:
      logits = jnp.where(jnp.arange(logits.shape[-1]) < vocab_limit, logits, -jnp.inf)
    rng, step_rng = jax.random.split(state.rng)
    turn_position = state.lengths - state.turn_start                              # [S]
    is_forced = turn_position < state.forced_length
    forced_token = jnp.take_along_axis(
        state.forced, jnp.minimum(turn_position, state.forced.shape[1] - 1)[:, None], axis=1)[:, 0]
    new_tokens = jnp.where(is_forced, forced_token, sample_tokens(logits, step_rng, sampling))
    new_log_probs = token_log_probs(logits, new_tokens)
    write_index = jnp.where(active, state.lengths, window)
    tokens = state.tokens.at[slot_index, write_index].set(new_tokens, mode="drop")
    log_probs = state.log_probs.at[slot_index, write_index].set(new_log_probs, mode="drop")
    lengths = state.lengths + active.astype(jnp.int32)

    forced_done = (state.forced_length > 0) & (lengths - state.turn_start >= state.forced_length)
    hit_stop = forced_done | _matches_stop(tokens, lengths, state.turn_start, stop_sequences)
    hit_limit = lengths - state.turn_start >= state.completion_limit
    hit_window = lengths >= state.capacity(state.prefix_length)
    reason = jnp.where(hit_stop, StopReason.STOP_SEQUENCE,
                       jnp.where(hit_limit, StopReason.COMPLETION_LIMIT,
                                 jnp.where(hit_window, StopReason.CONTEXT_FULL, StopReason.NONE)))
    now_stopped = active & (reason != StopReason.NONE)
    new_state = state.replace(
        tokens=tokens, log_probs=log_probs, lengths=lengths, cache=cache, rng=rng,
        generating=active & ~now_stopped,
        stop_reason=jnp.where(now_stopped, reason, state.stop_reason).astype(jnp.int32))
    new_stats = DecodeStats(steps=stats.steps + 1,
                            useful_tokens=stats.useful_tokens + jnp.sum(active, dtype=jnp.int32))
    return new_state, new_stats, stopped + jnp.sum(now_stopped, dtype=jnp.int32)

  zero = jnp.zeros((), jnp.int32)
  state, stats, _ = jax.lax.while_loop(keep_going, step, (state, DecodeStats(zero, zero), zero))
  return state, stats


def read_turns(state: DecodeState, slots: jax.Array, width: int) -> tuple[jax.Array, jax.Array]:
  """The current turn's generated tokens and log-probs of the chosen slots, for the host.

  slots: [R] int32. Returns tokens [R, width] int32 and log_probs [R, width] float32, starting at each
  slot's `turn_start`; entries past the slot's length are padding.
  """
  index = jnp.minimum(state.turn_start[slots][:, None] + jnp.arange(width)[None, :],
                      state.context_window - 1)
  return (jnp.take_along_axis(state.tokens[slots], index, axis=1),
          jnp.take_along_axis(state.log_probs[slots], index, axis=1))


class DeviceProgram:
  """The jitted prefill / decode / read programs for one model graph and sampling setting.

  Holds no state of its own beyond the compiled functions; `num_compiled()` reports how many
  programs exist, which the engine logs to show shapes stay fixed.
  """

  def __init__(self, graphdef: nnx.GraphDef, sampling: SamplingConfig, vocab_limit: int | None = None,
               state_shardings: DecodeState | None = None, prefill_query_chunk: int = 0):
    """`state_shardings` (see `decode_state_shardings`) pins the donated state's layout on a mesh;
    inputs are placed by the caller (`jax.device_put`) and XLA propagates the rest.
    `prefill_query_chunk` > 0: prefills attend in blocks of that many queries (see `prefill`)."""
    self.graphdef = graphdef
    self.sampling = sampling
    pinned = {} if state_shardings is None else {"out_shardings": state_shardings}
    stats_pinned = {} if state_shardings is None else {
        "out_shardings": (state_shardings, NamedSharding(state_shardings.rng.mesh, PartitionSpec()))}
    self.prefill = jax.jit(functools.partial(prefill, graphdef, query_chunk_size=prefill_query_chunk),
                           donate_argnums=(1,), **pinned)
    self.decode = jax.jit(functools.partial(decode, graphdef, sampling=sampling,
                                            vocab_limit=vocab_limit), donate_argnums=(1,),
                          **stats_pinned)
    self.read_turns = jax.jit(read_turns, static_argnums=(2,))
    self.prefix_table = jax.jit(functools.partial(prefix_table, graphdef, query_chunk_size=prefill_query_chunk))
    self.install_prefix = jax.jit(install_prefix, donate_argnums=(0,), **pinned)
    # Not donated: the output's buffers have another shape, so they could not reuse the input's.
    self.resize = jax.jit(resize_own_cache, static_argnums=(1,), **pinned)

  @classmethod
  @functools.lru_cache(maxsize=16)
  def cached(cls, graphdef: nnx.GraphDef, sampling: SamplingConfig, vocab_limit: int | None = None,
             state_shardings: DecodeState | None = None, prefill_query_chunk: int = 0) -> "DeviceProgram":
    """One program per (graph, sampling, vocab limit, layout, prefill chunk): engines for one model share
    compiles."""
    return cls(graphdef, sampling, vocab_limit, state_shardings, prefill_query_chunk)

  def num_compiled(self) -> dict[str, int]:
    return {name: getattr(self, name)._cache_size()
            for name in ("prefill", "decode", "read_turns", "prefix_table", "install_prefix", "resize")}
