"""The host half of the rollout engine: a scheduler that grows recursive trees over decoding slots.

Each round:
  1. frontier nodes (those with tokens to consume and a turn to generate) get slots and their pending
     tokens are prefilled (a waiting parent is evicted when slots run short; its cache is rebuilt from
     its kept tokens when it resumes);
  2. one `decode` call generates for every busy slot until enough of them stopped (continuous batching);
  3. every finished turn is parsed and its cell runs in the interpreter pool (one batched call);
  4. results are routed: an observation puts the node back on the frontier; spawned children join the
     frontier while the parent waits; a finish resolves the parent's await, and once all of a parent's
     awaited children are done its cell resumes (which may spawn again or finish).
Trees end when their root ends. The result is a `Trees` record (see `trees.py`).
"""
from __future__ import annotations

import bisect
import dataclasses
import enum
import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import Mesh

from rao_jax import sharding
from rao_jax.agent import episode, turn_format
from rao_jax.agent.chat import ChatLayout, Conversation
from rao_jax.agent.interpreter import CellResult, CellStatus, InterpreterPool
from rao_jax.agent.parsing import parse_completion
from rao_jax.model.kv_cache import KVCache
from rao_jax.rollout.config import RolloutConfig
from rao_jax.rollout.decode_state import DecodeState, StopReason, decode_state_shardings
from rao_jax.rollout.device import DeviceProgram
from rao_jax.rollout.sampling import SamplingConfig
from rao_jax.rollout.trees import EndReason, Trees, concatenate_sequences

# (group, node path from the root as child indices in launch order, turn index) -> the tokens to
# force for that turn, or None to sample. Scripted policies replay known transcripts with it.
TurnForcer = Callable[[int, tuple[int, ...], int], "Sequence[int] | None"]


class _State(enum.Enum):
  READY = "ready"            # has pending tokens; needs a prefill (and a slot) before generating
  GENERATING = "generating"  # its slot is producing a turn
  WAITING = "waiting"        # suspended on children
  DONE = "done"


@dataclasses.dataclass(eq=False)
class _Node:
  """Host-side record of one node while its tree is in flight."""

  node_id: int
  tree: int
  group: int
  parent: int | None
  depth: int
  path: tuple[int, ...]
  launch_cell: int
  goal: str
  conversation: Conversation
  pending: list[int]
  state: _State = _State.READY
  rebuild: bool = True                  # no valid cache anywhere: prefill the whole conversation
  slot: int | None = None
  steps: int = 0
  children: list[int] = dataclasses.field(default_factory=list)
  awaiting: set[int] = dataclasses.field(default_factory=set)
  child_results: dict[int, Any] = dataclasses.field(default_factory=dict)
  last_completion: list[int] = dataclasses.field(default_factory=list)
  success: float = 0.0
  end_reason: EndReason | None = None
  finish_value: Any = None
  tokens_generated: int = 0
  first_round: int = -1
  last_round: int = -1
  first_step: int = -1
  last_step: int = -1
  ready_order: int = 0                  # FIFO position on the frontier
  turns: list[dict[str, Any]] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class RolloutTimings:
  """Wall-clock seconds by activity, and device work counters, for one `run`."""

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
  prefix_installs: int = 0        # new or rebuilt slots started from the shared prompt prefix

  @property
  def slot_utilisation(self) -> float:
    """Useful token-steps / slot-steps: the share of decoded rows that produced a real token."""
    return self.useful_token_steps / self.slot_steps if self.slot_steps else 0.0


@dataclasses.dataclass(frozen=True)
class RolloutResult:
  """Trees, timings, and the device programs compiled during this run (0 once shapes are warm)."""

  trees: Trees
  timings: RolloutTimings
  compiled_programs: dict[str, int]


def _bucket(size: int, buckets: Sequence[int]) -> int:
  """Smallest bucket ≥ size (the largest bucket if none is)."""
  index = bisect.bisect_left(buckets, size)
  return buckets[min(index, len(buckets) - 1)]


class RolloutEngine:
  """Runs batches of recursive trees to completion with one model, tokenizer and interpreter pool.

  Args:
    model: the policy (an NNX module with the `Transformer` call signature).
    layout: chat layout (and through it the tokenizer) that turns prompts and observations into tokens.
    pool: the `InterpreterPool` that runs the cells (each run tells it `config`'s max_depth and
      delegation when it builds the roots).
    config: limits and batching knobs.
    mesh: optional device mesh: slots and caches are split over its data axes, parameters and KV
      heads follow the logical rules of `rao_jax.sharding`.
  """

  def __init__(self, model: nnx.Module, layout: ChatLayout, pool: InterpreterPool, config: RolloutConfig,
               mesh: Mesh | None = None):
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
    self._reset_run(forcer=None)

  def set_params(self, params: nnx.State) -> None:
    """Uses new policy parameters (same graph) from the next `run` on, cast to the compute dtype.

    Every layer casts its weights to `model_config.dtype` before use, so sampling from the cast copy gives
    the same numbers as the trainer's float32 master weights while reading half the bytes per decode step.
    """
    compute_dtype = self.model_config.compute_dtype
    cast = lambda p: p.astype(compute_dtype) if jnp.issubdtype(p.dtype, jnp.floating) else p
    params = jax.tree.map(cast, params)
    if self.mesh is not None:
      params = jax.device_put(params, sharding.tree_shardings(params, self.mesh))
    self.params = params

  def _program(self, state: DecodeState | None) -> DeviceProgram:
    shardings = None if self.mesh is None or state is None else decode_state_shardings(state, self.mesh)
    return DeviceProgram.cached(self.graphdef, self._sampling, self.tokenizer.vocab_size, shardings,
                                self.config.prefill_attention_chunk_size)

  def _initial_state(self, rng: jax.Array) -> DecodeState:
    state = DecodeState.init(self.model_config, self.config.num_slots, self.config.context_window,
                             self.config.completion_limit, rng)
    self.program = self._program(state)
    if self.mesh is not None:
      state = jax.device_put(state, decode_state_shardings(state, self.mesh))
    return state

  # ------------------------------------------------------------------ public entry point

  def run(self, env_name: str, env_config: Mapping[str, Any], tasks: Sequence[Mapping[str, Any]],
          samples_per_task: int, rng: jax.Array, *, forcer: TurnForcer | None = None,
          sampling: SamplingConfig | None = None) -> RolloutResult:
    """Grows `samples_per_task` trees for every task and returns them with timings.

    Tree t samples task t // samples_per_task (its group); root node ids are 0..B·G−1. `sampling`
    overrides `config.sampling` for this run (greedy evaluation samples from the same parameters).
    """
    if samples_per_task <= 0:
      raise ValueError(f"samples_per_task={samples_per_task} must be positive")
    self._sampling = sampling or self.config.sampling
    self._reset_run(forcer)
    start = time.perf_counter()
    self._start_roots(env_name, dict(env_config), tasks, samples_per_task)
    state = self._initial_state(rng)
    compiled_before = self.program.num_compiled()
    self._prefix = self._shared_prefix(self._root_parts)
    while self._live_trees:
      self.timings.rounds += 1
      self._end_timed_out_trees()
      state = self._assign_and_prefill(state)
      states = {n.state for n in self._nodes.values()}
      if _State.GENERATING in states:
        state = self._decode_and_route(state)
      elif _State.READY not in states and self._live_trees:
        raise RuntimeError(f"rollout stalled: no node can generate; live trees {sorted(self._live_trees)}")
    self.timings.total_s = time.perf_counter() - start
    self.timings.host_s = max(0.0, self.timings.total_s - self.timings.decode_s
                              - self.timings.prefill_s - self.timings.interpreter_s)
    trees = self._collect_trees()
    self.pool.release(list(self._nodes))
    compiled = {name: count - compiled_before[name] for name, count in self.program.num_compiled().items()}
    return RolloutResult(trees=trees, timings=self.timings, compiled_programs=compiled)

  def num_busy_slots(self) -> int:
    """Slots held by nodes (0 after every `run`: slots never leak)."""
    return sum(owner is not None for owner in self._slot_owner)

  # ------------------------------------------------------------------ run setup

  def _reset_run(self, forcer: TurnForcer | None) -> None:
    self._nodes: dict[int, _Node] = {}
    self._slot_owner: list[int | None] = [None] * self.config.num_slots
    self._live_trees: set[int] = set()
    self._tree_nodes: dict[int, list[int]] = {}
    self._tree_started: dict[int, float] = {}
    self._tree_steps: dict[int, int] = {}
    self._forcer = forcer
    self._ready_order = 0
    self._global_step = 0
    self._to_resume: list[_Node] = []
    self._prefix: tuple[list[int], jax.Array, KVCache] | None = None
    self.timings = RolloutTimings()

  def _start_roots(self, env_name: str, env_config: dict, tasks: Sequence[Mapping[str, Any]],
                   samples_per_task: int) -> None:
    roots = []
    for group, task in enumerate(tasks):
      for sample in range(samples_per_task):
        tree = group * samples_per_task + sample
        roots.append((tree, env_name, env_config, dict(task)))
    started = time.perf_counter()
    parts_list = self.pool.create_roots(roots, max_depth=self.config.max_depth,
                                        delegation=self.config.delegation)
    self.timings.interpreter_s += time.perf_counter() - started
    for (tree, *_), parts in zip(roots, parts_list):
      if isinstance(parts, str):
        raise ValueError(f"could not build the environment of tree {tree}: {parts}")
      self._root_parts = parts
      self._new_node(tree, tree, tree // samples_per_task, None, 0, (), -1, parts)
      self._live_trees.add(tree)
      self._tree_started[tree] = time.perf_counter()
      self._tree_steps[tree] = 0

  def _new_node(self, node_id: int, tree: int, group: int, parent: int | None, depth: int,
                path: tuple[int, ...], launch_cell: int, parts) -> None:
    conversation = episode.start(self.layout, parts, depth, self.config.episode)
    node = _Node(node_id=node_id, tree=tree, group=group, parent=parent, depth=depth, path=path,
                 launch_cell=launch_cell, goal=parts.goal, conversation=conversation,
                 pending=list(conversation.ids))
    self._nodes[node_id] = node
    self._tree_nodes.setdefault(tree, []).append(node_id)
    self._mark_ready(node)

  def _shared_prefix(self, parts) -> tuple[list[int], jax.Array, KVCache] | None:
    """The prompt tokens every node that may delegate shares, with their KV cache (None if off).

    Found as the common token prefix of two prompts that differ only in their goal (the goal comes
    last in the first user turn), less a few tokens so a real goal cannot merge with its boundary;
    each node still checks that its prompt starts with it.
    """
    if not self.config.share_prompt_prefix:
      return None
    # The root's prompt (depth 0) with two goals: every node that may delegate shares its prefix.
    a, b = (self.layout.prompt_ids(*episode.prompt_texts(dataclasses.replace(parts, goal=goal), 0,
                                                         self.config.episode))
            for goal in ("A", "B"))
    common = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
    length = common - 4
    if length < 2:
      return None
    prefix = a[:length]
    empty = KVCache.init(self.model_config, 1, length)
    cache = self.program.prefix_cache(self.params, jnp.asarray([prefix], jnp.int32), empty)
    return prefix, jnp.asarray(prefix, jnp.int32), cache

  def _mark_ready(self, node: _Node) -> None:
    node.state = _State.READY
    self._ready_order += 1
    node.ready_order = self._ready_order

  # ------------------------------------------------------------------ slots and prefill

  def _assign_and_prefill(self, state: DecodeState) -> DecodeState:
    ready = sorted((n for n in self._nodes.values() if n.state is _State.READY),
                   key=lambda n: (n.ready_order, n.node_id))
    rows, installs = [], []
    for node in ready:
      if len(node.conversation) + self.config.completion_limit > self.config.context_window:
        # The model never sees the pending tokens: keep the sequence to what it was fed.
        node.conversation.truncate(len(node.conversation) - len(node.pending))
        self._end(node, EndReason.CONTEXT_OVERFLOW)
        continue
      if node.slot is None and not self._take_slot(node):
        continue  # stays on the frontier until a slot frees up
      if not node.rebuild:
        rows.append((node, node.pending, False))
      elif (self._prefix and len(node.conversation) > len(self._prefix[0])
            and node.conversation.ids[:len(self._prefix[0])] == self._prefix[0]):
        installs.append(node.slot)  # start from the shared prefix; prefill only the rest
        rows.append((node, node.conversation.ids[len(self._prefix[0]):], False))
      else:
        rows.append((node, list(node.conversation.ids), True))
    self._route([])  # parents of nodes that overflowed may resume
    if not rows:
      return state
    started = time.perf_counter()
    if installs:
      slots = np.full((self.config.num_slots,), self.config.num_slots, np.int32)
      slots[:len(installs)] = installs
      _, prefix, cache = self._prefix
      state = self.program.install_prefix(state, slots, prefix, cache)
      self.timings.prefix_installs += len(installs)
    state = self._prefill_rows(state, rows)
    jax.block_until_ready(state.lengths)
    self.timings.prefill_s += time.perf_counter() - started
    for node, _, _ in rows:
      node.pending = []
      node.rebuild = False
      node.state = _State.GENERATING
    return state

  def _take_slot(self, node: _Node) -> bool:
    """Gives `node` a free slot, evicting the longest-waiting parent if none is free."""
    free = [s for s, owner in enumerate(self._slot_owner) if owner is None]
    if not free:
      waiting = [self._nodes[o] for o in self._slot_owner
                 if o is not None and self._nodes[o].state is _State.WAITING]
      if not waiting:
        return False
      victim = min(waiting, key=lambda n: (n.ready_order, n.node_id))
      free = [victim.slot]
      self._slot_owner[victim.slot] = None
      victim.slot = None
      victim.rebuild = True  # tokens are kept on the host; the cache is recomputed on resume
      self.timings.evictions += 1
    node.slot = free[0]
    self._slot_owner[node.slot] = node.node_id
    return True

  def _forced_turn(self, node: _Node) -> list[int]:
    if self._forcer is None:
      return []
    forced = self._forcer(node.group, node.path, node.steps)
    return [] if forced is None else list(forced)[: self.config.completion_limit]

  def _prefill_rows(self, state: DecodeState, rows: list[tuple[_Node, list[int], bool]]) -> DecodeState:
    """Prefills every row's chunk, in passes of at most the largest chunk bucket per row."""
    cfg = self.config
    max_chunk = cfg.prefill_chunk_buckets[-1]
    pieces = [[chunk[i:i + max_chunk] for i in range(0, len(chunk), max_chunk)] or [[]]
              for _, chunk, _ in rows]
    for piece_index in range(max(len(p) for p in pieces)):
      batch = [(node, p[piece_index], reset and piece_index == 0)
               for (node, _, reset), p in zip(rows, pieces) if piece_index < len(p)]
      max_rows = cfg.prefill_row_buckets[-1]
      for begin in range(0, len(batch), max_rows):
        state = self._prefill_call(state, batch[begin:begin + max_rows])
    return state

  def _prefill_call(self, state: DecodeState, batch: list[tuple[_Node, list[int], bool]]) -> DecodeState:
    cfg = self.config
    num_rows = _bucket(len(batch), cfg.prefill_row_buckets)
    width = _bucket(max(len(chunk) for _, chunk, _ in batch), cfg.prefill_chunk_buckets)
    slots = np.full((num_rows,), cfg.num_slots, np.int32)
    chunks = np.zeros((num_rows, width), np.int32)
    lengths = np.zeros((num_rows,), np.int32)
    reset = np.zeros((num_rows,), bool)
    limits = np.zeros((num_rows,), np.int32)
    forced = np.zeros((num_rows, cfg.completion_limit), np.int32)
    forced_lengths = np.zeros((num_rows,), np.int32)
    for row, (node, chunk, reset_row) in enumerate(batch):
      slots[row] = node.slot
      chunks[row, :len(chunk)] = chunk
      lengths[row] = len(chunk)
      reset[row] = reset_row
      limits[row] = cfg.completion_limit
      turn = self._forced_turn(node)
      forced[row, :len(turn)] = turn
      forced_lengths[row] = len(turn)
    return self.program.prefill(self.params, state, slots, chunks, lengths, reset, limits, forced,
                                forced_lengths)

  # ------------------------------------------------------------------ decode and routing

  def _decode_and_route(self, state: DecodeState) -> DecodeState:
    cfg = self.config
    generating = [n for n in self._nodes.values() if n.state is _State.GENERATING]
    min_stopped = max(1, math.ceil(cfg.refill_fraction * len(generating)))
    started = time.perf_counter()
    state, stats = self.program.decode(self.params, state, self.stop_sequences,
                                       np.int32(cfg.decode_steps_per_round), np.int32(min_stopped))
    steps, useful = (int(x) for x in jax.device_get((stats.steps, stats.useful_tokens)))
    self.timings.decode_s += time.perf_counter() - started
    self.timings.decode_steps += steps
    self.timings.useful_token_steps += useful
    self.timings.slot_steps += steps * cfg.num_slots
    step_before, self._global_step = self._global_step, self._global_step + steps

    still, reasons, lengths, turn_start = (np.asarray(x) for x in jax.device_get(
        (state.generating, state.stop_reason, state.lengths, state.turn_start)))
    finished = []
    for node in generating:
      if node.first_round < 0:
        node.first_round, node.first_step = self.timings.rounds, step_before
      node.last_round, node.last_step = self.timings.rounds, self._global_step
      if not still[node.slot]:
        finished.append(node)
    if finished:
      self._route_finished_turns(state, finished, reasons, lengths, turn_start)
    return state

  def _route_finished_turns(self, state: DecodeState, finished: list[_Node], reasons: np.ndarray,
                            lengths: np.ndarray, turn_start: np.ndarray) -> None:
    width = self.config.completion_limit
    # Always S rows (one compiled program; at most every slot finishes in one round).
    slots = np.zeros((self.config.num_slots,), np.int32)
    slots[:len(finished)] = [n.slot for n in finished]
    tokens, log_probs = (np.asarray(x) for x in jax.device_get(
        self.program.read_turns(state, slots, width)))
    cells = []
    for row, node in enumerate(finished):
      if node.state is _State.DONE:
        continue  # its tree ran out of budget while this round's turns were routed
      count = int(lengths[node.slot] - turn_start[node.slot])
      completion = tokens[row, :count].tolist()
      node.last_completion = completion
      node.conversation.append_model(completion, log_probs[row, :count].tolist())
      node.tokens_generated += count
      node.steps += 1
      self._tree_steps[node.tree] += 1
      text = self.tokenizer.decode(completion)
      node.turns.append({"completion": text})
      if reasons[node.slot] == StopReason.CONTEXT_FULL:
        self._end(node, EndReason.CONTEXT_OVERFLOW)
        continue
      parsed = parse_completion(text)
      if parsed.code is None:
        self._observe(node, parsed.error, status="format_error")
      else:
        cells.append((node.node_id, parsed.code))
    results = []
    if cells:
      started = time.perf_counter()
      results = self.pool.run_cells(cells)
      self.timings.interpreter_s += time.perf_counter() - started
    self._route(results)

  def _route(self, results: Sequence[CellResult]) -> None:
    """Applies cell results, then resumes parents whose children are all done, until none is left."""
    while True:
      for result in results:
        node = self._nodes[result.node_id]
        if node.state is not _State.DONE:  # else its tree ended (timeout, budget) while the cell ran
          self._apply_result(node, result)
      deliveries = [p for p in self._to_resume if p.state is _State.WAITING]
      self._to_resume = []
      if not deliveries:
        return
      started = time.perf_counter()
      results = self.pool.resume([(p.node_id, dict(p.child_results)) for p in deliveries])
      self.timings.interpreter_s += time.perf_counter() - started
      for parent in deliveries:
        parent.child_results.clear()

  def _apply_result(self, node: _Node, result: CellResult) -> None:
    """Applies one cell result (of a new or a resumed cell) to its node."""
    if result.status in (CellStatus.OUTPUT, CellStatus.ERROR):
      self._observe(node, result.text, status=result.status.value)
    elif result.status is CellStatus.FINISHED:
      node.turns[-1].update(status=result.status.value, observation=result.text)
      self._end(node, EndReason.FINISHED, success=result.success, value=result.finish_value)
    elif result.status is CellStatus.SUSPENDED:
      node.turns[-1].setdefault("launched", []).extend(s.child_id for s in result.spawns)
      node.state = _State.WAITING
      for spawn in result.spawns:
        child_path = node.path + (len(node.children),)
        node.children.append(spawn.child_id)
        node.awaiting.add(spawn.child_id)
        self._new_node(spawn.child_id, node.tree, node.group, node.node_id, spawn.depth, child_path,
                       node.steps, spawn.prompt)
    else:  # CRASHED: the node's process died, hung past its deadline, or broke the protocol.
      node.turns[-1].update(status=result.status.value, observation=result.text)
      self._end(node, EndReason.CRASHED)

  def _observe(self, node: _Node, text: str, *, status: str) -> None:
    """Shows a cell's output (or error) to the node and puts it back on the frontier."""
    observation = episode.observation_text(node.steps, text)
    node.turns[-1].update(status=status, observation=observation)
    budget = self.config.tree_step_budget
    if budget and self._tree_steps[node.tree] >= budget:
      self._end_tree(node.tree, EndReason.TREE_BUDGET)
      return
    if node.steps >= self.config.max_steps_per_node:
      self._end(node, EndReason.STEP_LIMIT)
      return
    continuation = self.layout.continuation_ids(observation, node.last_completion)
    node.conversation.append_env(continuation)
    node.pending = continuation
    self._mark_ready(node)

  def _end(self, node: _Node, reason: EndReason, *, success: float = 0.0, value: Any = None) -> None:
    """Ends a node; its parent is queued for resumption once all its awaited children are done."""
    node.state = _State.DONE
    node.end_reason = reason
    node.success = float(success) if reason is EndReason.FINISHED else 0.0
    node.finish_value = value
    if node.slot is not None:
      self._slot_owner[node.slot] = None
      node.slot = None
    if node.parent is None:
      self._live_trees.discard(node.tree)
      return
    parent = self._nodes[node.parent]
    if parent.state is not _State.WAITING or node.node_id not in parent.awaiting:
      return
    parent.awaiting.discard(node.node_id)
    parent.child_results[node.node_id] = (
        value if reason is EndReason.FINISHED
        else f"Error: the sub-agent failed ({reason.name.lower().replace('_', ' ')}).")
    if not parent.awaiting:
      self._to_resume.append(parent)

  def _end_tree(self, tree: int, reason: EndReason) -> None:
    """Ends every unfinished node of a tree, deepest first, without resuming anyone."""
    for node_id in sorted(self._tree_nodes[tree], key=lambda i: -self._nodes[i].depth):
      node = self._nodes[node_id]
      if node.state is not _State.DONE:
        node.awaiting.clear()
        node.state = _State.DONE
        node.end_reason = reason
        node.success = 0.0
        if node.slot is not None:
          self._slot_owner[node.slot] = None
          node.slot = None
    self._live_trees.discard(tree)

  def _end_timed_out_trees(self) -> None:
    limit = self.config.tree_timeout_s
    if not limit:
      return
    now = time.perf_counter()
    for tree in list(self._live_trees):
      if now - self._tree_started[tree] > limit:
        self._end_tree(tree, EndReason.TIMEOUT)

  # ------------------------------------------------------------------ output

  def _collect_trees(self) -> Trees:
    order = sorted(self._nodes, key=lambda i: (self._nodes[i].tree, i))
    row_of = {node_id: row for row, node_id in enumerate(order)}
    nodes = [self._nodes[i] for i in order]

    def column(getter, dtype):
      return np.asarray([getter(n) for n in nodes], dtype)

    sequences = [(n.conversation.token_ids(), n.conversation.loss_mask(),
                  np.nan_to_num(n.conversation.sampler_logprobs())) for n in nodes]
    offsets, tokens, mask, log_probs = concatenate_sequences(sequences)
    records = tuple({
        "goal": n.goal, "turns": n.turns, "finish_value": n.finish_value,
        "children": [row_of[c] for c in n.children],
    } for n in nodes)
    return Trees(
        tree=column(lambda n: n.tree, np.int32),
        group=column(lambda n: n.group, np.int32),
        parent=column(lambda n: -1 if n.parent is None else row_of[n.parent], np.int32),
        depth=column(lambda n: n.depth, np.int32),
        success=column(lambda n: n.success, np.float32),
        num_children=column(lambda n: len(n.children), np.int32),
        launch_cell=column(lambda n: n.launch_cell, np.int32),
        end_reason=column(lambda n: n.end_reason, np.int32),
        steps=column(lambda n: n.steps, np.int32),
        tokens_generated=column(lambda n: n.tokens_generated, np.int32),
        first_round=column(lambda n: n.first_round, np.int32),
        last_round=column(lambda n: n.last_round, np.int32),
        first_step=column(lambda n: n.first_step, np.int64),
        last_step=column(lambda n: n.last_step, np.int64),
        token_offsets=offsets, tokens=tokens, loss_mask=mask, sampler_log_probs=log_probs,
        records=records,
    )
