"""One host shard of the rollout engine: its trees, its slots, and the nodes growing there.

The engine (`engine.py`) splits a run's trees and the S decoding slots into H contiguous host shards
(one per process in a multi-host run; `RolloutConfig.host_shards` sets H). A `ShardScheduler` owns one
shard: it builds its roots in its process's interpreter pool, gives its frontier nodes slots from its
own slot range (evicting its own waiting parents when they run short), plans their prefill rows,
reads the turns they finish, runs their cells and routes the results. Nodes never cross shards, so
a tree's whole history happens in one process. The device programs stay global: the engine merges the
shards' plans, in shard order, into the prefill and decode calls that every process makes alike.
"""
from __future__ import annotations

import dataclasses
import enum
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from rao_jax.agent import episode
from rao_jax.agent.chat import ChatLayout, Conversation
from rao_jax.agent.interpreter import CellResult, CellStatus, InterpreterPool
from rao_jax.agent.parsing import parse_completion
from rao_jax.rollout.config import RolloutConfig
from rao_jax.rollout.decode_state import StopReason
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


@dataclasses.dataclass(frozen=True)
class PrefillRow:
  """One slot's prefill in a round: plain data, so that plans can travel between processes.

  chunk: the tokens to append; reset: empty the slot first; forced: the next turn's forced tokens
  (empty: sample freely).
  """

  slot: int
  chunk: tuple[int, ...]
  reset: bool
  forced: tuple[int, ...]


@dataclasses.dataclass(frozen=True)
class RoundPlan:
  """What one shard asks of this round's device calls, and how its frontier stands afterwards.

  installs: (slot, prefix index) of slots that start from a shared prompt prefix (before their rows are
  prefilled).
  generating / ready: nodes of the shard generating, and still waiting for a slot, once the rows are
  prefilled; live: whether the shard still has unfinished trees (the engine decodes if any shard has
  a generating node, and stops with an error if live trees remain but no shard can make progress).
  own_positions: the most own-cache positions any of the shard's slots can need until the next round
  (its node's tokens past the shared prefix plus a whole turn): the engine's cache bucket covers it.
  """

  rows: tuple[PrefillRow, ...]
  installs: tuple[tuple[int, int], ...]
  evictions: int
  generating: int
  ready: int
  live: bool
  own_positions: int = 0


@dataclasses.dataclass(frozen=True)
class DecodeRound:
  """The global counters of the decode call that a shard's finished turns came from."""

  round: int
  step_before: int
  step_after: int


class ShardScheduler:
  """The host state of one shard during one `RolloutEngine.run` (see the module docstring).

  Args:
    config: the engine's settings.
    layout: chat layout (and tokenizer).
    pool: this process's interpreter pool.
    trees: the global indices [start, end) of this shard's trees.
    slots: the global indices [start, end) of this shard's decoding slots.
    forcer: optional scripted turns.
  """

  def __init__(self, config: RolloutConfig, layout: ChatLayout, pool: InterpreterPool,
               trees: tuple[int, int], slots: tuple[int, int], forcer: TurnForcer | None):
    self.config = config
    self.layout = layout
    self.tokenizer = layout.tokenizer
    self.pool = pool
    self.tree_range = trees
    self.slot_range = slots
    self._forcer = forcer
    self._nodes: dict[int, _Node] = {}
    self._slot_owner: dict[int, int | None] = {s: None for s in range(*slots)}
    self.live_trees: set[int] = set()
    self._tree_nodes: dict[int, list[int]] = {}
    self._tree_started: dict[int, float] = {}
    self._tree_steps: dict[int, int] = {}
    self._ready_order = 0
    self._to_resume: list[_Node] = []
    self._prefilled: list[_Node] = []
    self.interpreter_s = 0.0
    self.root_parts = None  # the prompt parts of this shard's first root (for the shared prefix)
    self._prefix_of: dict[int, int | None] = {}  # node id -> the shared prompt its prompt starts with

  # ------------------------------------------------------------------ roots

  def start_roots(self, env_name: str, env_config: dict, tasks: Sequence[Mapping[str, Any]],
                  samples_per_task: int) -> None:
    """Builds this shard's roots: tree t samples task t // samples_per_task; its root's id is t."""
    roots = [(tree, env_name, env_config, dict(tasks[tree // samples_per_task]))
             for tree in range(*self.tree_range)]
    started = time.perf_counter()
    parts_list = self.pool.create_roots(roots, max_depth=self.config.max_depth,
                                        delegation=self.config.delegation)
    self.interpreter_s += time.perf_counter() - started
    for (tree, *_), parts in zip(roots, parts_list):
      if isinstance(parts, str):
        raise ValueError(f"could not build the environment of tree {tree}: {parts}")
      if self.root_parts is None:
        self.root_parts = parts
      self._new_node(tree, tree, tree // samples_per_task, None, 0, (), -1, parts)
      self.live_trees.add(tree)
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

  def _mark_ready(self, node: _Node) -> None:
    node.state = _State.READY
    self._ready_order += 1
    node.ready_order = self._ready_order

  # ------------------------------------------------------------------ slots and prefill

  def plan_round(self, prefixes: Sequence[Sequence[int]] | None) -> RoundPlan:
    """Ends timed-out trees, gives frontier nodes slots and returns their prefill rows.

    `prefixes` are the shared prompt prefixes (None if off): a node whose prompt starts with one and
    that needs its whole conversation prefilled starts from that prefix's keys and values instead. Slots'
    own caches are shorter by the shortest prefix's cached positions, so a node that starts with none
    has that much less context window (`DecodeState.capacity`). Call `prefilled()` once the engine has
    run the rows.
    """
    self._end_timed_out_trees()
    ready = sorted((n for n in self._nodes.values() if n.state is _State.READY),
                   key=lambda n: (n.ready_order, n.node_id))
    unshared_window = self.config.context_window - (min(map(len, prefixes)) - 1 if prefixes else 0)
    rows, installs, evictions = [], [], 0
    for node in ready:
      prefix_id = self._prefix_id(node, prefixes)
      window = self.config.context_window if prefix_id is not None else unshared_window
      if len(node.conversation) + self.config.completion_limit > window:
        # The model never sees the pending tokens: keep the sequence to what it was fed.
        node.conversation.truncate(len(node.conversation) - len(node.pending))
        self._end(node, EndReason.CONTEXT_OVERFLOW)
        continue
      if node.slot is None:
        taken = self._take_slot(node)
        if taken is None:
          continue  # stays on the frontier until a slot frees up
        evictions += taken
      if not node.rebuild:
        chunk, reset = node.pending, False
      elif prefix_id is not None:
        installs.append((node.slot, prefix_id))  # start from the shared prefix; prefill only the rest
        chunk, reset = node.conversation.ids[len(prefixes[prefix_id]):], False
      else:
        chunk, reset = list(node.conversation.ids), True
      rows.append((node, PrefillRow(node.slot, tuple(chunk), reset, tuple(self._forced_turn(node)))))
    self._route([])  # parents of nodes that overflowed may resume (their trees may end)
    rows = [(node, row) for node, row in rows if node.state is _State.READY]
    installs = [install for install in installs if any(row.slot == install[0] for _, row in rows)]
    self._prefilled = [node for node, _ in rows]
    states = [n.state for n in self._nodes.values()]
    return RoundPlan(rows=tuple(row for _, row in rows), installs=tuple(installs),
                     evictions=evictions, generating=states.count(_State.GENERATING) + len(rows),
                     ready=states.count(_State.READY) - len(rows), live=bool(self.live_trees),
                     own_positions=self._own_positions(prefixes))

  def _prefix_id(self, node: _Node, prefixes: Sequence[Sequence[int]] | None) -> int | None:
    """The shared prompt `node` continues (`_matching_prefix`), found once per node: its prompt never
    changes, nor do a run's prefixes."""
    if node.node_id not in self._prefix_of:
      self._prefix_of[node.node_id] = _matching_prefix(node.conversation.ids, prefixes)
    return self._prefix_of[node.node_id]

  def _own_positions(self, prefixes: Sequence[Sequence[int]] | None) -> int:
    """Upper bound on the own-cache positions of every slot this shard holds until the next round: the
    node's tokens (pending ones included) less those read from its shared prefix, plus a whole turn (a
    turn never exceeds `completion_limit` tokens, however many decode calls it spans)."""
    bound = 0
    for node in self._nodes.values():
      if node.slot is None:
        continue
      prefix_id = self._prefix_id(node, prefixes)
      shared = 0 if prefix_id is None else len(prefixes[prefix_id]) - 1
      bound = max(bound, len(node.conversation) - shared + self.config.completion_limit)
    return bound

  def prefilled(self) -> None:
    """The planned rows are in the cache: their nodes generate from now on."""
    for node in self._prefilled:
      node.pending = []
      node.rebuild = False
      node.state = _State.GENERATING
    self._prefilled = []

  def _take_slot(self, node: _Node) -> int | None:
    """Gives `node` a free slot of the shard, evicting the longest-waiting parent if none is free.

    Returns the evictions made (0 or 1), or None if no slot could be had.
    """
    free = [s for s, owner in self._slot_owner.items() if owner is None]
    evicted = 0
    if not free:
      waiting = [self._nodes[o] for o in self._slot_owner.values()
                 if o is not None and self._nodes[o].state is _State.WAITING]
      if not waiting:
        return None
      victim = min(waiting, key=lambda n: (n.ready_order, n.node_id))
      free = [victim.slot]
      self._slot_owner[victim.slot] = None
      victim.slot = None
      victim.rebuild = True  # tokens are kept on the host; the cache is recomputed on resume
      evicted = 1
    node.slot = free[0]
    self._slot_owner[node.slot] = node.node_id
    return evicted

  def _forced_turn(self, node: _Node) -> list[int]:
    if self._forcer is None:
      return []
    forced = self._forcer(node.group, node.path, node.steps)
    return [] if forced is None else list(forced)[: self.config.completion_limit]

  def busy_slots(self) -> int:
    return sum(owner is not None for owner in self._slot_owner.values())

  # ------------------------------------------------------------------ decode results and routing

  def finished_slots(self, still_generating: np.ndarray, decode: DecodeRound) -> list[int]:
    """Records the decode round on every generating node; the slots whose turn has just ended."""
    finished = []
    for node in self._nodes.values():
      if node.state is not _State.GENERATING:
        continue
      if node.first_round < 0:
        node.first_round, node.first_step = decode.round, decode.step_before
      node.last_round, node.last_step = decode.round, decode.step_after
      if not still_generating[node.slot]:
        finished.append(node.slot)
    return finished

  def route_finished_turns(self, turns: Mapping[int, tuple[np.ndarray, np.ndarray]],
                           reasons: np.ndarray, lengths: np.ndarray, turn_start: np.ndarray) -> None:
    """Appends each finished turn ({slot: (tokens, log_probs) rows}) to its node and runs the cells."""
    owner = {node.slot: node for node in self._nodes.values()
             if node.state is _State.GENERATING and node.slot in turns}
    cells = []
    for slot in turns:  # in the order the shard reported them
      node = owner.get(slot)
      if node is None or node.state is _State.DONE:
        continue  # its tree ran out of budget while this round's turns were routed
      tokens, log_probs = turns[slot]
      count = int(lengths[slot] - turn_start[slot])
      completion = tokens[:count].tolist()
      node.last_completion = completion
      node.conversation.append_model(completion, log_probs[:count].tolist())
      node.tokens_generated += count
      node.steps += 1
      self._tree_steps[node.tree] += 1
      text = self.tokenizer.decode(completion)
      node.turns.append({"completion": text})
      if reasons[slot] == StopReason.CONTEXT_FULL:
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
      self.interpreter_s += time.perf_counter() - started
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
      self.interpreter_s += time.perf_counter() - started
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
      self.live_trees.discard(node.tree)
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
    self.live_trees.discard(tree)

  def _end_timed_out_trees(self) -> None:
    limit = self.config.tree_timeout_s
    if not limit:
      return
    now = time.perf_counter()
    for tree in list(self.live_trees):
      if now - self._tree_started[tree] > limit:
        self._end_tree(tree, EndReason.TIMEOUT)

  # ------------------------------------------------------------------ output

  def collect_trees(self) -> Trees:
    """This shard's trees (rows sorted by tree, then node id), then its nodes' processes released."""
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
    trees = Trees(
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
    self.pool.release(list(self._nodes))
    return trees


def _matching_prefix(ids: Sequence[int], prefixes: Sequence[Sequence[int]] | None) -> int | None:
  """Index of the longest of `prefixes` that `ids` starts with and runs past (None if none does)."""
  best = None
  for index, prefix in enumerate(prefixes or ()):
    if len(ids) > len(prefix) and list(ids[:len(prefix)]) == list(prefix):
      if best is None or len(prefix) > len(prefixes[best]):
        best = index
  return best
