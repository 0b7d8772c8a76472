"""The host half of the rollout engine: rounds of prefill, decode and cells that grow recursive trees.

The trees and the S decoding slots are split into H contiguous host shards (`RolloutConfig.host_shards`;
one per process by default), each run by a `scheduler.ShardScheduler` in its own process with its own
interpreter pool. Each round:
  1. every shard gives its frontier nodes (those with tokens to consume and a turn to generate) slots of
     its own range and plans their prefill rows (a waiting parent is evicted when slots run short; its
     cache is rebuilt from its kept tokens when it resumes);
  2. the plans of all shards, gathered in shard order, become this round's prefill calls, which every
     process makes alike (the device programs are global);
  3. one `decode` call generates for every busy slot until enough of them stopped (continuous batching);
  4. each shard reads its finished turns, runs their cells in its pool (one batched call) and routes
     the results: an observation puts the node back on the frontier; spawned children join the frontier
     while the parent waits; a finish resolves the parent's await, and once all of a parent's awaited
     children are done its cell resumes (which may spawn again or finish).
Trees end when their root ends. The result is a `Trees` record of all shards (see `trees.py`), the same
on every process. A run with H shards gives the same trees in one process as in H processes.
"""
from __future__ import annotations

import bisect
import dataclasses
import math
import time
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import Mesh

from rao_jax import distributed, sharding
from rao_jax.agent import episode, turn_format
from rao_jax.agent.chat import ChatLayout
from rao_jax.agent.interpreter import InterpreterPool
from rao_jax.model.kv_cache import KVCache, PrefixTable
from rao_jax.rollout.config import RolloutConfig
from rao_jax.rollout.decode_state import DecodeState, decode_state_shardings
from rao_jax.rollout.device import DeviceProgram
from rao_jax.rollout.sampling import SamplingConfig
from rao_jax.rollout.scheduler import DecodeRound, PrefillRow, RoundPlan, ShardScheduler, TurnForcer
from rao_jax.rollout.trees import Trees

__all__ = ["RolloutEngine", "RolloutResult", "RolloutTimings", "TurnForcer"]


@dataclasses.dataclass
class RolloutTimings:
  """Wall-clock seconds by activity, and device work counters, for one `run`.

  The seconds are this process's (its interpreter time covers its own shards); the counters are the
  run's, the same on every process.
  """

  decode_s: float = 0.0
  prefill_s: float = 0.0
  interpreter_s: float = 0.0
  host_s: float = 0.0
  total_s: float = 0.0
  rounds: int = 0
  decode_steps: int = 0
  useful_token_steps: int = 0
  slot_steps: int = 0
  evictions: int = 0
  prefix_installs: int = 0        # new or rebuilt slots started from a shared prompt prefix
  cache_resizes: int = 0          # own caches moved to another window bucket (time counted in prefill_s)
  prefill_tokens: int = 0         # chunk tokens prefilled
  prefill_padded: int = 0         # rows x chunk positions the prefill calls ran (padding included)

  @property
  def slot_utilisation(self) -> float:
    """Useful token-steps / slot-steps: the share of decoded rows that produced a real token."""
    return self.useful_token_steps / self.slot_steps if self.slot_steps else 0.0


@dataclasses.dataclass(frozen=True)
class RolloutResult:
  """Trees, timings, the device programs compiled during this run (0 once shapes are warm), and the
  shared prompt prefixes the run's slots read (token ids; None if off)."""

  trees: Trees
  timings: RolloutTimings
  compiled_programs: dict[str, int]
  shared_prompts: tuple[tuple[int, ...], ...] | None = None


def prefix_table_layout(prompts: Sequence[Sequence[int]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Where each `PrefixTable` position comes from: (source prompt, position in it, owner), [P] int32 each.

  The cached positions of every prompt (all but its last token) are stored once: first the C positions
  all prompts have in common (owner -1), then each prompt's tail (owner n). E.g. prompts of 649 and 448
  tokens that agree on their first 247 make a table of 247 + 401 + 200 = 848 positions, against the
  1,095 of two separate rows.
  """
  cached = [len(prompt) - 1 for prompt in prompts]
  common = min(cached)
  for other in prompts[1:]:
    common = next((i for i in range(common) if other[i] != prompts[0][i]), common)
  rows, positions, owner = [0] * common, list(range(common)), [-1] * common
  for index, length in enumerate(cached):
    rows += [index] * (length - common)
    positions += range(common, length)
    owner += [index] * (length - common)
  as_array = lambda values: np.asarray(values, np.int32)
  return as_array(rows), as_array(positions), as_array(owner)


def _bucket(size: int, buckets: Sequence[int]) -> int:
  """Smallest bucket ≥ size (the largest bucket if none is)."""
  index = bisect.bisect_left(buckets, size)
  return buckets[min(index, len(buckets) - 1)]


def _gathered(local: Sequence[Any]) -> list[Any]:
  """The items of every process's `local` list, in process order (so in shard order)."""
  return [item for part in distributed.allgather_objects(list(local)) for item in part]


class RolloutEngine:
  """Runs batches of recursive trees to completion with one model, tokenizer and interpreter pool.

  Args:
    model: the policy (an NNX module with the `Transformer` call signature).
    layout: chat layout (and through it the tokenizer) that turns prompts and observations into tokens.
    pool: this process's `InterpreterPool`, which runs the cells of its shards (each run tells it
      `config`'s max_depth and delegation when it builds the roots).
    config: limits and batching knobs.
    mesh: optional device mesh: slots and caches are split over its data axes, parameters and KV
      heads follow the logical rules of `rao_jax.sharding`. Required with several processes.
  """

  def __init__(self, model: nnx.Module, layout: ChatLayout, pool: InterpreterPool, config: RolloutConfig,
               mesh: Mesh | None = None):
    if mesh is None and jax.process_count() > 1:
      raise ValueError("a multi-process rollout needs a device mesh over every process's devices")
    self.config = config
    self.layout = layout
    self.tokenizer = layout.tokenizer
    self.pool = pool
    self.mesh = mesh
    self.model_config = model.config
    self.graphdef, params = nnx.split(model)
    self.set_params(params)
    self._sampling = config.sampling
    self.program = self._program(None)
    stop = self.tokenizer.encode(turn_format.STOP_SEQUENCE)
    self.stop_sequences = jnp.asarray([stop], jnp.int32)  # [1, K]
    self._shards: list[ShardScheduler] = []
    self.timings = RolloutTimings()
    self.shared_prompts: tuple[tuple[int, ...], ...] | None = None  # the last run's (`_shared_prompts`)
    self.prefix_tokens: tuple[np.ndarray, np.ndarray] | None = None  # their tokens [N, W] and lengths [N]

  def set_params(self, params: nnx.State) -> None:
    """Uses new policy parameters (same graph) from the next `run` on, cast to the compute dtype.

    Every layer casts its weights to `model_config.dtype` before use, so sampling from the cast copy gives
    the same numbers as the trainer's float32 master weights while reading half the bytes per decode step.
    """
    compute_dtype = self.model_config.compute_dtype
    cast = lambda p: p.astype(compute_dtype) if jnp.issubdtype(p.dtype, jnp.floating) else p
    params = jax.tree.map(cast, params)
    if self.mesh is not None:
      params = distributed.put(params, sharding.tree_shardings(params, self.mesh))
    self.params = params

  def _program(self, state: DecodeState | None) -> DeviceProgram:
    shardings = None if self.mesh is None or state is None else decode_state_shardings(state, self.mesh)
    return DeviceProgram.cached(self.graphdef, self._sampling, self.tokenizer.vocab_size, shardings,
                                self.config.prefill_attention_chunk_size)

  def initial_state(self, rng: jax.Array, prompts: tuple[tuple[int, ...], ...] | None) -> DecodeState:
    """The state a run starts from with these shared prompts (e.g. `shared_prompts` of the last run):
    for benchmarks that compile or probe the device programs at the engine's real shapes."""
    return self._compute_prefixes(self._initial_state(rng, prompts), prompts)

  def _initial_state(self, rng: jax.Array, prompts: tuple[tuple[int, ...], ...] | None) -> DecodeState:
    """Empty slots; with shared prompts, an all-zero prefix table of their shape (`_compute_prefixes`
    fills it) and own caches shorter by the shortest prompt's cached positions."""
    prefixes, shared_positions = None, 0
    if prompts:
      prefixes = PrefixTable.init(self.model_config, len(prefix_table_layout(prompts)[0]))
      shared_positions = min(map(len, prompts)) - 1
    state = DecodeState.init(self.model_config, self.config.num_slots, self.config.context_window,
                             self.config.completion_limit, rng, prefixes=prefixes,
                             shared_positions=shared_positions)
    self.program = self._program(state)
    if self.mesh is not None:
      state = distributed.put(state, decode_state_shardings(state, self.mesh))
    return state

  def num_host_shards(self) -> int:
    """H: the configured number of host shards, or one per process."""
    return self.config.host_shards or jax.process_count()

  # ------------------------------------------------------------------ public entry point

  def run(self, env_name: str, env_config: Mapping[str, Any], tasks: Sequence[Mapping[str, Any]],
          samples_per_task: int, rng: jax.Array, *, forcer: TurnForcer | None = None,
          sampling: SamplingConfig | None = None) -> RolloutResult:
    """Grows `samples_per_task` trees for every task and returns them with timings.

    Tree t samples task t // samples_per_task (its group); root node ids are 0..B·G−1. Every process
    passes the same arguments and gets the same trees back; its own shards' trees are the ones whose
    cells it ran. `sampling` overrides `config.sampling` for this run (greedy evaluation samples from
    the same parameters).
    """
    if samples_per_task <= 0:
      raise ValueError(f"samples_per_task={samples_per_task} must be positive")
    num_shards = self.num_host_shards()
    if num_shards > self.config.num_slots:
      raise ValueError(f"{num_shards} host shards need at least as many slots, have "
                       f"{self.config.num_slots}")
    self._sampling = sampling or self.config.sampling
    self.timings = RolloutTimings()
    start = time.perf_counter()
    tree_bounds = distributed.shard_bounds(len(tasks) * samples_per_task, num_shards)
    slot_bounds = distributed.shard_bounds(self.config.num_slots, num_shards)
    self._shards = [ShardScheduler(self.config, self.layout, self.pool, tree_bounds[k], slot_bounds[k],
                                   forcer) for k in distributed.local_shards(num_shards)]
    for shard in self._shards:
      shard.start_roots(env_name, dict(env_config), tasks, samples_per_task)
    self.shared_prompts = self._shared_prompts()
    state = self._initial_state(rng, self.shared_prompts)
    compiled_before = self.program.num_compiled()
    state = self._compute_prefixes(state, self.shared_prompts)
    self._global_step = 0
    while any(_gathered([bool(shard.live_trees) for shard in self._shards])):
      self.timings.rounds += 1
      plans = _gathered([shard.plan_round(self.shared_prompts) for shard in self._shards])
      state = self._fit_cache(state, max(plan.own_positions for plan in plans))
      state = self._prefill(state, plans)
      for shard in self._shards:
        shard.prefilled()
      if any(plan.generating for plan in plans):
        state = self._decode_and_route(state, sum(plan.generating for plan in plans))
      elif not any(plan.ready for plan in plans) and any(plan.live for plan in plans):
        raise RuntimeError("rollout stalled: no node can generate, and trees are still live")
    trees = Trees.concatenate(_gathered([shard.collect_trees() for shard in self._shards]))
    self.timings.interpreter_s = sum(shard.interpreter_s for shard in self._shards)
    self.timings.total_s = time.perf_counter() - start
    self.timings.host_s = max(0.0, self.timings.total_s - self.timings.decode_s
                              - self.timings.prefill_s - self.timings.interpreter_s)
    compiled = {name: count - compiled_before[name] for name, count in self.program.num_compiled().items()}
    return RolloutResult(trees=trees, timings=self.timings, compiled_programs=compiled,
                         shared_prompts=self.shared_prompts)

  def num_busy_slots(self) -> int:
    """Slots held by this process's nodes (0 after every `run`: slots never leak)."""
    return sum(shard.busy_slots() for shard in self._shards)

  # ------------------------------------------------------------------ shared prefix and prefill

  def _shared_prompts(self) -> tuple[tuple[int, ...], ...] | None:
    """The prompt prefixes nodes share, one per prompt variant (nodes that may delegate, nodes at the
    depth cap), as token ids (None if off).

    Found from the first shard's first root as the common token prefix of two prompts that differ
    only in their goal (the goal comes last in the first user turn), less a few tokens so a real goal
    cannot merge with its boundary; each node still checks that its prompt starts with one of them.
    """
    if not self.config.share_prompt_prefix:
      return None
    episode_format = self.config.episode
    depths = sorted({0, episode_format.max_depth} if episode_format.delegation else {0})
    candidates = _gathered([self._prompt_prefixes(shard.root_parts, depths) for shard in self._shards])
    return next((c for c in candidates if c), None)

  def _prompt_prefixes(self, parts, depths: Sequence[int]) -> tuple[tuple[int, ...], ...] | None:
    if parts is None:  # a shard without trees
      return None
    prompts = []
    for depth in depths:
      a, b = (self.layout.prompt_ids(*episode.prompt_texts(dataclasses.replace(parts, goal=goal), depth,
                                                           self.config.episode))
              for goal in ("A", "B"))
      common = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
      length = common - 4
      if length >= 2 and tuple(a[:length]) not in prompts:
        prompts.append(tuple(a[:length]))
    return tuple(prompts) or None

  def _compute_prefixes(self, state: DecodeState, prompts: tuple[tuple[int, ...], ...] | None) -> DecodeState:
    """Fills the state's prefix table with the shared prompts' keys and values (one prefill)."""
    if not prompts:
      self.prefix_tokens = None
      return state
    tokens = np.zeros((len(prompts), max(map(len, prompts))), np.int32)
    for row, prompt in enumerate(prompts):
      tokens[row, :len(prompt)] = prompt
    lengths = np.asarray([len(prompt) for prompt in prompts], np.int32)
    self.prefix_tokens = (tokens, lengths)
    empty = KVCache.init(self.model_config, len(prompts), tokens.shape[1])
    prefixes = self.program.prefix_table(self.params, tokens, lengths, *prefix_table_layout(prompts), empty)
    if self.mesh is not None:
      prefixes = distributed.put(prefixes, decode_state_shardings(state, self.mesh).prefixes)
    return state.replace(prefixes=prefixes)

  def cache_window(self, own_positions: int, own_window: int) -> int:
    """The own-cache bucket for slots needing `own_positions` positions: the smallest configured
    bucket that holds them, else the whole own window."""
    return next((b for b in self.config.cache_window_buckets if b >= own_positions and b < own_window),
                own_window)

  def _fit_cache(self, state: DecodeState, own_positions: int) -> DecodeState:
    """Resizes the slots' own caches to the bucket covering `own_positions` (`RoundPlan.own_positions`)."""
    window = self.cache_window(own_positions, state.own_window)
    if window == state.cache.max_len:
      return state
    started = time.perf_counter()
    state = self.program.resize(state, window)
    jax.block_until_ready(state.lengths)
    self.timings.prefill_s += time.perf_counter() - started
    self.timings.cache_resizes += 1
    return state

  def _prefill(self, state: DecodeState, plans: Sequence[RoundPlan]) -> DecodeState:
    """Installs the shared prefix and prefills every shard's rows (the same calls on every process)."""
    self.timings.evictions += sum(plan.evictions for plan in plans)
    rows = [row for plan in plans for row in plan.rows]
    installs = [install for plan in plans for install in plan.installs]
    if not rows:
      return state
    started = time.perf_counter()
    if installs:
      slots = np.full((self.config.num_slots,), self.config.num_slots, np.int32)
      prefix_ids = np.zeros((self.config.num_slots,), np.int32)
      slots[:len(installs)], prefix_ids[:len(installs)] = zip(*installs)
      state = self.program.install_prefix(state, slots, prefix_ids, *self.prefix_tokens)
      self.timings.prefix_installs += len(installs)
    state = self._prefill_rows(state, rows)
    jax.block_until_ready(state.lengths)
    self.timings.prefill_s += time.perf_counter() - started
    return state

  def _prefill_rows(self, state: DecodeState, rows: list[PrefillRow]) -> DecodeState:
    """Prefills every row's chunk, in passes of at most the largest chunk bucket per row.

    Within a pass, rows go in one call per chunk bucket (each slot appears once per pass, so the order
    of the calls does not matter): a long chunk no longer pads every short one to its width (an evicted
    parent's rebuild alongside observations padded the round's prefill 4x before).
    """
    cfg = self.config
    max_chunk = cfg.prefill_chunk_buckets[-1]
    pieces = [[row.chunk[i:i + max_chunk] for i in range(0, len(row.chunk), max_chunk)] or [()]
              for row in rows]
    max_rows = cfg.prefill_row_buckets[-1]
    for piece_index in range(max(len(p) for p in pieces)):
      batch = [dataclasses.replace(row, chunk=p[piece_index], reset=row.reset and piece_index == 0)
               for row, p in zip(rows, pieces) if piece_index < len(p)]
      by_width: dict[int, list[PrefillRow]] = {}
      for row in batch:
        by_width.setdefault(_bucket(len(row.chunk), cfg.prefill_chunk_buckets), []).append(row)
      for width in sorted(by_width):
        same_width = by_width[width]
        for begin in range(0, len(same_width), max_rows):
          state = self._prefill_call(state, same_width[begin:begin + max_rows])
    return state

  def _prefill_call(self, state: DecodeState, batch: list[PrefillRow]) -> DecodeState:
    cfg = self.config
    num_rows = _bucket(len(batch), cfg.prefill_row_buckets)
    width = _bucket(max(len(row.chunk) for row in batch), cfg.prefill_chunk_buckets)
    slots = np.full((num_rows,), cfg.num_slots, np.int32)
    chunks = np.zeros((num_rows, width), np.int32)
    lengths = np.zeros((num_rows,), np.int32)
    reset = np.zeros((num_rows,), bool)
    limits = np.zeros((num_rows,), np.int32)
    forced = np.zeros((num_rows, cfg.completion_limit), np.int32)
    forced_lengths = np.zeros((num_rows,), np.int32)
    self.timings.prefill_tokens += sum(len(row.chunk) for row in batch)
    self.timings.prefill_padded += num_rows * width
    for index, row in enumerate(batch):
      slots[index] = row.slot
      chunks[index, :len(row.chunk)] = row.chunk
      lengths[index] = len(row.chunk)
      reset[index] = row.reset
      limits[index] = cfg.completion_limit
      forced[index, :len(row.forced)] = row.forced
      forced_lengths[index] = len(row.forced)
    return self.program.prefill(self.params, state, slots, chunks, lengths, reset, limits, forced,
                                forced_lengths)

  # ------------------------------------------------------------------ decode and routing

  def _decode_and_route(self, state: DecodeState, num_generating: int) -> DecodeState:
    """One decode call; then every shard reads its finished turns and runs their cells."""
    cfg = self.config
    min_stopped = max(1, math.ceil(cfg.refill_fraction * num_generating))
    started = time.perf_counter()
    state, stats = self.program.decode(self.params, state, self.stop_sequences,
                                       np.int32(cfg.decode_steps_per_round), np.int32(min_stopped))
    steps, useful = (int(x) for x in distributed.fetch((stats.steps, stats.useful_tokens)))
    self.timings.decode_s += time.perf_counter() - started
    self.timings.decode_steps += steps
    self.timings.useful_token_steps += useful
    self.timings.slot_steps += steps * cfg.num_slots
    decode = DecodeRound(self.timings.rounds, self._global_step, self._global_step + steps)
    self._global_step += steps

    still, reasons, lengths, turn_start = distributed.fetch(
        (state.generating, state.stop_reason, state.lengths, state.turn_start))
    local = [shard.finished_slots(still, decode) for shard in self._shards]
    finished = _gathered(local)  # every shard's finished slots, in shard order
    if not any(finished):
      return state
    # Always S rows (one compiled program; at most every slot finishes in one round).
    slots = np.zeros((cfg.num_slots,), np.int32)
    flat = [slot for part in finished for slot in part]
    slots[:len(flat)] = flat
    tokens, log_probs = distributed.fetch(self.program.read_turns(state, slots, cfg.completion_limit))
    row_of = {slot: row for row, slot in enumerate(flat)}
    for shard, shard_finished in zip(self._shards, local):
      turns = {slot: (tokens[row_of[slot]], log_probs[row_of[slot]]) for slot in shard_finished}
      shard.route_finished_turns(turns, reasons, lengths, turn_start)
    return state
