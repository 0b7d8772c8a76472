"""The interpreter pool: the rollout engine's interface to sandboxed code execution.

Nodes live in warm worker processes; a whole tree (a root and every descendant) is pinned to the
worker that created its root, so its environment's shared state (TextCraft's inventory) is an
ordinary object shared by reference. Each call sends at most one request per worker, the workers run
their items in parallel, and results come back in input order. Calls are not thread-safe.

A worker that dies, or makes no progress for `cell_time_limit_s + watchdog_grace_s` (a cell stuck in
C code), is killed and restarted: the nodes it hosted get `crashed` results, and every later call on
them does too. Other workers' nodes carry on.
"""
from __future__ import annotations

import dataclasses
import enum
import mmap
import os
import selectors
import subprocess
import sys
import tempfile
import time
import weakref
from typing import Any, Mapping, Sequence

from rao_jax.agent.interpreter import messages
from rao_jax.agent.interpreter import protocol
from rao_jax.agent.interpreter.messages import CellReply, CellStatus, TreeLimits
from rao_jax.envs.base import JSONLike, PromptParts


@dataclasses.dataclass(frozen=True)
class InterpreterConfig:
  """Settings of an `InterpreterPool`.

  Attributes:
    num_workers: worker processes (trees are spread over them by load).
    cell_time_limit_s: CPU seconds per cell activation (a run, or a resume after delegation).
    memory_limit_mb: address-space limit of each worker process (shared by the nodes it hosts).
    max_output_chars: printed text kept per cell (the rest is cut with a note); also the largest
      finish value, as JSON text.
    env_modules: modules every worker imports at start (before the sandbox closes), e.g. to
      `registry.register` environments defined outside `rao_jax.envs`.
    preload_environments: registered environments whose modules every worker imports at start. A
      worker drops its privileges, after which it may be unable to read Python's own files (when
      Python is installed under a private home directory), so environments must be loaded first.
    watchdog_grace_s: wall-clock slack on top of the cell limit before a silent worker is killed.
    create_timeout_s: wall-clock seconds one root environment may take to build.
  """

  num_workers: int = 2
  cell_time_limit_s: float = 3.0
  memory_limit_mb: int = 1024
  max_output_chars: int = 4096
  env_modules: tuple[str, ...] = ()
  preload_environments: tuple[str, ...] = ("textcraft_synth",)
  watchdog_grace_s: float = 5.0
  create_timeout_s: float = 120.0

  def __post_init__(self):
    if self.num_workers < 1:
      raise ValueError(f"num_workers must be >= 1, got {self.num_workers}")
    if not self.cell_time_limit_s > 0:
      raise ValueError(f"cell_time_limit_s must be > 0, got {self.cell_time_limit_s}")
    if self.memory_limit_mb < 128:
      raise ValueError(f"memory_limit_mb must be >= 128, got {self.memory_limit_mb}")
    if self.max_output_chars < 64:
      raise ValueError(f"max_output_chars must be >= 64, got {self.max_output_chars}")

  def worker_settings(self) -> messages.WorkerSettings:
    """What every worker process is told at start."""
    return messages.WorkerSettings(
        cell_time_limit_s=self.cell_time_limit_s, memory_limit_mb=self.memory_limit_mb,
        max_output_chars=self.max_output_chars, env_modules=tuple(self.env_modules),
        preload_environments=tuple(self.preload_environments))


@dataclasses.dataclass(frozen=True)
class Spawn:
  """A child node started by `launch_subagent`; run its cells with its `child_id`."""
  child_id: int
  parent_id: int
  depth: int
  # The child environment's `prompt_parts(delegation)`, with delegation off at `max_depth` (where a
  # launch would be refused).
  prompt: PromptParts


@dataclasses.dataclass(frozen=True)
class CellResult:
  """What one cell activation of node `node_id` produced.

  status:
    OUTPUT: the cell ended; `text` is what it printed (and its trailing expression's repr).
    ERROR: the cell raised, broke a sandbox rule, ran out of time, or left a launch un-awaited;
      `text` is the printed output followed by the error. The node continues.
    FINISHED: `finish(value)` ran; `finish_value` and the environment's `success` are set.
    SUSPENDED: the cell awaits children; `spawns` lists the launches started in this activation
      (possibly none, when it still awaits children reported earlier). Resume it with their results.
      The final, non-suspended result's `text` holds everything the cell printed.
    CRASHED: the node's interpreter state is gone (its worker died or sent a malformed reply, or
      the node used too much memory).
  """
  node_id: int
  status: CellStatus
  text: str
  finish_value: JSONLike = None
  success: float = 0.0
  spawns: tuple[Spawn, ...] = ()


class _NodeState(enum.Enum):
  """Where a node stands between calls, as the pool last heard from its worker."""

  IDLE = "idle"            # may run a cell
  SUSPENDED = "suspended"  # awaits children; may only be resumed
  FINISHED = "finished"
  CRASHED = "crashed"      # its interpreter state is lost


_STATE_AFTER = {CellStatus.SUSPENDED: _NodeState.SUSPENDED, CellStatus.FINISHED: _NodeState.FINISHED,
                CellStatus.CRASHED: _NodeState.CRASHED}


@dataclasses.dataclass
class _Node:
  worker: int
  generation: int
  key: int
  state: _NodeState
  is_root: bool = False
  awaiting: set[int] = dataclasses.field(default_factory=set)


class _WorkerProcess:
  """One worker process, its pipes and its progress counter."""

  def __init__(self, config: InterpreterConfig, scratch_dir: str):
    parent_to_child_read, self.to_child = os.pipe()
    self.from_child, child_to_parent_write = os.pipe()
    progress_fd = os.memfd_create("rao-interpreter-progress")
    os.ftruncate(progress_fd, 8)
    self.progress = mmap.mmap(progress_fd, 8)
    self.process = subprocess.Popen(
        [sys.executable, "-m", "rao_jax.agent.interpreter.worker", str(parent_to_child_read),
         str(child_to_parent_write), str(progress_fd)],
        pass_fds=(parent_to_child_read, child_to_parent_write, progress_fd),
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, cwd=scratch_dir,
        # A minimal environment: no trainer secrets, reproducible str hashing (set order).
        env={"PATH": os.defpath, "LANG": "C.UTF-8",
             "PYTHONPATH": os.pathsep.join(_absolute_sys_path()), "PYTHONHASHSEED": "0",
             "PYTHONDONTWRITEBYTECODE": "1", "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"},
        start_new_session=True)
    for fd in (parent_to_child_read, child_to_parent_write, progress_fd):
      os.close(fd)
    self.sandbox: dict[str, str] = {}

  def completed(self) -> int:
    return int.from_bytes(self.progress[:8], "little")

  def kill(self) -> None:
    if self.process.poll() is None:
      self.process.kill()
    self.process.wait()
    for fd in (self.to_child, self.from_child):
      try:
        os.close(fd)
      except OSError:
        pass
    self.progress.close()

  def stop(self, timeout_s: float = 2.0) -> None:
    try:
      os.close(self.to_child)  # EOF: the worker exits its loop.
    except OSError:
      pass
    try:
      self.process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
      pass
    self.kill()


def _absolute_sys_path() -> list[str]:
  """This process's import path, made absolute (workers run in a scratch directory)."""
  return [os.path.abspath(entry) for entry in sys.path]


def _stop_all(workers: list[_WorkerProcess]) -> None:
  for worker in workers:
    worker.stop()


class InterpreterPool:
  """Runs cells of many nodes in sandboxed worker processes (see module docstring)."""

  def __init__(self, config: InterpreterConfig):
    self.config = config
    self._scratch = tempfile.TemporaryDirectory(prefix="rao-interpreter-")
    os.chmod(self._scratch.name, 0o755)
    self._workers: list[_WorkerProcess] = [None] * config.num_workers  # type: ignore[list-item]
    self._generations = [0] * config.num_workers
    self._trees_per_worker = [0] * config.num_workers
    self._nodes: dict[int, _Node] = {}
    self._next_id = 0
    self._closed = False
    for index in range(config.num_workers):
      self._workers[index] = _WorkerProcess(config, self._scratch.name)
    self._finalizer = weakref.finalize(self, _stop_all, self._workers)
    for index in range(config.num_workers):
      self._initialize(index)

  # -- public API -----------------------------------------------------------------------------

  @property
  def sandbox_report(self) -> dict[str, str]:
    """Which OS-level layers took effect in the workers (see `os_limits.harden`)."""
    return dict(self._workers[0].sandbox)

  def create_roots(self, roots: Sequence[tuple[int, str, dict, dict]], *, max_depth: int,
                   delegation: bool) -> list[PromptParts | str]:
    """Builds roots `(node_id, env_name, env_config, task)`; returns prompts or error strings.

    Every node of these trees (the roots and their descendants) works under `max_depth` and
    `delegation` (see `messages.TreeLimits`); the rollout engine passes its own limits here.
    """
    self._check_open()
    limits = TreeLimits(max_depth, delegation)
    for node_id, env_name, env_config, task in roots:
      if type(node_id) is not int:
        raise TypeError(f"node ids must be int, got {type(node_id).__name__}")
      if type(env_name) is not str or not isinstance(env_config, dict) or not isinstance(task, dict):
        raise TypeError(f"root {node_id}: env_name must be a str, env_config and task dicts")
    results: list[PromptParts | str | None] = [None] * len(roots)
    batches: dict[int, list[tuple[int, int, messages.RootSpec]]] = {}
    seen: set[int] = set()
    for position, (node_id, env_name, env_config, task) in enumerate(roots):
      if node_id in self._nodes or node_id in seen:
        results[position] = f"Error: node id {node_id} is already in use"
        continue
      seen.add(node_id)
      worker = min(range(self.config.num_workers), key=lambda w: self._trees_per_worker[w])
      self._trees_per_worker[worker] += 1
      batches.setdefault(worker, []).append(
          (position, node_id, messages.RootSpec(env_name, env_config, task)))
    replies = self._exchange(
        {w: messages.CreateRequest(tuple(spec for _, _, spec in batch), limits)
         for w, batch in batches.items()},
        self.config.create_timeout_s)
    for worker, batch in batches.items():
      reply = replies[worker]
      for index, (position, node_id, _) in enumerate(batch):
        self._next_id = max(self._next_id, node_id + 1)
        created = (messages.RootReply(error=f"Error: {reply}") if isinstance(reply, str)
                   else reply.items[index])
        if created.error is not None:
          self._trees_per_worker[worker] -= 1
          results[position] = created.error
          continue
        self._nodes[node_id] = _Node(worker, self._generations[worker], created.key, _NodeState.IDLE,
                                     is_root=True)
        results[position] = created.prompt
    return results  # type: ignore[return-value]

  def run_cells(self, cells: Sequence[tuple[int, str]]) -> list[CellResult]:
    """Runs one cell `(node_id, code)` per idle node, in parallel over workers; input order."""
    self._check_open()
    self._check_unique([node_id for node_id, _ in cells])
    for node_id, code in cells:
      node = self._node(node_id)
      if node.state is _NodeState.SUSPENDED:
        raise ValueError(f"node {node_id} is suspended on launches; resume it instead")
      if type(code) is not str:
        raise TypeError(f"code for node {node_id} must be a str")
    return self._activate(messages.RunRequest, messages.RunItem, list(cells))

  def resume(self, deliveries: Sequence[tuple[int, Mapping[int, JSONLike]]]) -> list[CellResult]:
    """Delivers `{child_id: finish value or error string}` to suspended nodes; input order.

    Deliveries may be partial (a subset of the awaited children); the node then stays suspended
    until its cell can go on.
    """
    self._check_open()
    self._check_unique([node_id for node_id, _ in deliveries])
    for node_id, results in deliveries:
      node = self._node(node_id)
      if node.state is _NodeState.CRASHED or not self._alive(node):
        continue
      if node.state is not _NodeState.SUSPENDED:
        raise ValueError(f"node {node_id} is not suspended")
      unexpected = set(results) - node.awaiting
      if unexpected:
        raise ValueError(f"node {node_id} does not await children {sorted(unexpected)}")
    items = []
    for node_id, results in deliveries:
      node = self._nodes[node_id]
      live = node.state is _NodeState.SUSPENDED and self._alive(node)
      keyed = tuple((self._nodes[child].key, value) for child, value in results.items()) if live else ()
      items.append((node_id, keyed))
    return self._activate(messages.ResumeRequest, messages.ResumeItem, items,
                          deliveries=dict(deliveries))

  def release(self, node_ids: Sequence[int]) -> None:
    """Drops the namespaces and environments of these nodes (release every node of a tree)."""
    self._check_open()
    batches: dict[int, list[int]] = {}
    for node_id in node_ids:
      node = self._nodes.pop(node_id, None)
      if node is None:
        continue
      if self._alive(node):
        batches.setdefault(node.worker, []).append(node.key)
        if node.is_root:
          self._trees_per_worker[node.worker] -= 1
    if batches:
      self._exchange({w: messages.ReleaseRequest(tuple(keys)) for w, keys in batches.items()},
                     self.config.cell_time_limit_s + self.config.watchdog_grace_s)

  def close(self) -> None:
    """Stops every worker; the pool cannot be used afterwards."""
    if not self._closed:
      self._closed = True
      self._finalizer()
      self._scratch.cleanup()

  def __enter__(self) -> "InterpreterPool":
    return self

  def __exit__(self, *exc_info) -> None:
    self.close()

  # -- internals ------------------------------------------------------------------------------

  def _check_open(self) -> None:
    if self._closed:
      raise RuntimeError("the interpreter pool is closed")

  @staticmethod
  def _check_unique(node_ids: list[int]) -> None:
    if len(set(node_ids)) != len(node_ids):
      raise ValueError("a node may appear at most once per call")

  def _node(self, node_id: int) -> _Node:
    node = self._nodes.get(node_id)
    if node is None:
      raise ValueError(f"unknown node id {node_id}")
    return node

  def _alive(self, node: _Node) -> bool:
    return node.generation == self._generations[node.worker]

  def _initialize(self, index: int) -> None:
    worker = self._workers[index]
    init = messages.InitRequest(self.config.worker_settings(), tuple(_absolute_sys_path()),
                                self._scratch.name)
    protocol.write_frame(worker.to_child, init.to_wire())
    try:
      reply = messages.InitReply.from_wire(protocol.read_frame(worker.from_child))
    except messages.WireError as error:  # None (no reply at all) included
      reply = messages.InitReply(error=f"malformed start-up reply ({error})")
    if reply.error is not None:
      worker.kill()
      raise RuntimeError(f"interpreter worker failed to start: {reply.error}")
    worker.sandbox = dict(reply.sandbox)

  def _restart(self, index: int) -> None:
    self._workers[index].kill()
    self._generations[index] += 1
    self._trees_per_worker[index] = 0
    self._workers[index] = _WorkerProcess(self.config, self._scratch.name)
    self._initialize(index)

  def _exchange(self, requests: dict[int, messages.Request],
                item_timeout_s: float) -> dict[int, messages.Reply | str]:
    """Sends one request per worker; returns each worker's decoded reply, or why it failed.

    Every request is encoded before any is sent, so a value that is not JSON raises here with no
    worker touched. A worker that sends nothing while completing no item for `item_timeout_s` is
    killed; failed workers (a malformed reply frame included) are restarted. If the wait is
    interrupted (KeyboardInterrupt), workers that have not answered are restarted, so no stale
    reply is left in a pipe.
    """
    frames = {index: protocol.encode(request.to_wire()) for index, request in requests.items()}
    selector = selectors.DefaultSelector()
    readers: dict[int, protocol.FrameReader] = {}
    progress: dict[int, tuple[int, float]] = {}
    replies: dict[int, messages.Reply | str] = {}
    try:
      for index, frame in frames.items():
        worker = self._workers[index]
        try:
          protocol.write_bytes(worker.to_child, frame)
        except OSError as error:
          replies[index] = f"the interpreter worker crashed ({error})"
          continue
        selector.register(worker.from_child, selectors.EVENT_READ, index)
        readers[index] = protocol.FrameReader()
        progress[index] = (worker.completed(), time.monotonic())
      while readers:
        for key, _ in selector.select(timeout=0.05):
          index = key.data
          reply = self._read_reply(index, readers[index], requests[index])
          if reply is not None:
            selector.unregister(key.fd)
            del readers[index]
            replies[index] = reply
        now = time.monotonic()
        for index in list(readers):
          completed = self._workers[index].completed()
          last_completed, since = progress[index]
          if completed != last_completed:
            progress[index] = (completed, now)
          elif now - since > item_timeout_s:
            selector.unregister(self._workers[index].from_child)
            del readers[index]
            replies[index] = (f"the interpreter worker was killed after {item_timeout_s:g} s "
                              "without progress (a cell or environment call hung)")
    except BaseException:
      for index in readers:
        self._restart(index)
      raise
    finally:
      selector.close()
    for index, reply in replies.items():
      if isinstance(reply, str):
        self._restart(index)
    return replies

  def _read_reply(self, index: int, reader: protocol.FrameReader,
                  request: messages.Request) -> messages.Reply | str | None:
    """Reads what worker `index` has sent: its reply, why it failed, or None (incomplete)."""
    worker = self._workers[index]
    try:
      data = os.read(worker.from_child, 1 << 20)
      if not data:
        return f"the interpreter worker crashed (exit code {worker.process.poll()})"
      message = reader.feed(data)
      if message is protocol.FrameReader.INCOMPLETE:
        return None
      return messages.Reply.from_wire(message, request)
    except (OSError, protocol.ProtocolError, messages.WireError) as error:
      return f"the interpreter worker sent a malformed reply ({error})"

  def _activate(self, request_type: type[messages.RunRequest] | type[messages.ResumeRequest],
                item_type: type[messages.RunItem] | type[messages.ResumeItem],
                items: list[tuple[int, Any]],
                deliveries: dict[int, Mapping[int, JSONLike]] | None = None) -> list[CellResult]:
    """Sends `item_type(node key, payload)` for each `(node_id, payload)` that can still run."""
    results: list[CellResult | None] = [None] * len(items)
    batches: dict[int, list[tuple[int, int, Any]]] = {}
    for position, (node_id, payload) in enumerate(items):
      node = self._nodes[node_id]
      if node.state is _NodeState.CRASHED or not self._alive(node):
        node.state = _NodeState.CRASHED
        results[position] = CellResult(node_id, CellStatus.CRASHED, "Error: this node's interpreter "
                                       "crashed earlier; its state is lost")
      elif node.state is _NodeState.FINISHED:
        results[position] = CellResult(node_id, CellStatus.ERROR,
                                       "Error: this node has already finished")
      else:
        batches.setdefault(node.worker, []).append((position, node_id, item_type(node.key, payload)))
    replies = self._exchange({w: request_type(tuple(item for _, _, item in batch))
                              for w, batch in batches.items()},
                             self.config.cell_time_limit_s + self.config.watchdog_grace_s)
    for worker, batch in batches.items():
      reply = replies[worker]
      for index, (position, node_id, _) in enumerate(batch):
        cell_reply = (CellReply(CellStatus.CRASHED, f"Error: {reply}; this node's state is lost")
                      if isinstance(reply, str) else reply.items[index])
        results[position] = self._record(node_id, cell_reply, (deliveries or {}).get(node_id, {}))
    return results  # type: ignore[return-value]

  def _record(self, node_id: int, reply: CellReply, delivered: Mapping[int, JSONLike]) -> CellResult:
    """Registers the children a worker spawned and updates the node's state from its reply."""
    node = self._nodes[node_id]
    spawns = []
    for spawned in reply.spawns:
      child_id = self._next_id
      self._next_id += 1
      self._nodes[child_id] = _Node(node.worker, node.generation, spawned.key, _NodeState.IDLE)
      spawns.append(Spawn(child_id, node_id, spawned.depth, spawned.prompt))
    node.awaiting -= set(delivered)
    if reply.status is CellStatus.SUSPENDED:
      node.awaiting |= {s.child_id for s in spawns}
    else:
      node.awaiting.clear()
    node.state = _STATE_AFTER.get(reply.status, _NodeState.IDLE)
    return CellResult(node_id, reply.status, reply.text, reply.finish_value, reply.success,
                      tuple(spawns))
