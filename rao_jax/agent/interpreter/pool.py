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
import mmap
import os
import selectors
import subprocess
import sys
import tempfile
import time
import weakref
from typing import Any, Mapping, Sequence

from rao_jax.agent.interpreter import protocol
from rao_jax.envs.base import JSONLike, PromptParts

STATUSES = ("output", "error", "finished", "suspended", "crashed")


@dataclasses.dataclass(frozen=True)
class InterpreterConfig:
  """Settings of an `InterpreterPool`.

  Attributes:
    num_workers: worker processes (trees are spread over them by load).
    cell_time_limit_s: CPU seconds per cell activation (a run, or a resume after delegation).
    memory_limit_mb: address-space limit of each worker process (shared by the nodes it hosts).
    max_output_chars: printed text kept per cell (the rest is cut with a note); also the largest
      finish value, as JSON text.
    max_depth: depth of the deepest node that may launch children is `max_depth - 1` (root = 0); a
      launch from a node at `max_depth` returns a refusal string and spawns nothing.
    delegation: False for the linear baseline: no `launch_subagent` in the namespace.
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
  max_depth: int = 6
  delegation: bool = True
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
    if self.max_depth < 0:
      raise ValueError(f"max_depth must be >= 0, got {self.max_depth}")


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
    "output": the cell ended; `text` is what it printed (and its trailing expression's repr).
    "error": the cell raised, broke a sandbox rule, ran out of time, or left a launch un-awaited;
      `text` is the printed output followed by the error. The node continues.
    "finished": `finish(value)` ran; `finish_value` and the environment's `success` are set.
    "suspended": the cell awaits children; `spawns` lists the launches started in this activation
      (possibly none, when it still awaits children reported earlier). Resume it with their results.
      The final, non-suspended result's `text` holds everything the cell printed.
    "crashed": the node's interpreter state is gone (its worker died, or it used too much memory).
  """
  node_id: int
  status: str
  text: str
  finish_value: JSONLike = None
  success: float = 0.0
  spawns: tuple[Spawn, ...] = ()


class _MalformedReply(Exception):
  """A worker's reply does not have the expected structure."""


@dataclasses.dataclass
class _Node:
  worker: int
  generation: int
  key: int
  state: str  # "idle" | "suspended" | "finished" | "crashed"
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

  def create_roots(self, roots: Sequence[tuple[int, str, dict, dict]]) -> list[PromptParts | str]:
    """Builds roots `(node_id, env_name, env_config, task)`; returns prompts or error strings."""
    self._check_open()
    results: list[PromptParts | str | None] = [None] * len(roots)
    batches: dict[int, list[tuple[int, list]]] = {}
    seen: set[int] = set()
    for position, (node_id, env_name, env_config, task) in enumerate(roots):
      if type(node_id) is not int:
        raise TypeError(f"node ids must be int, got {type(node_id).__name__}")
      if node_id in self._nodes or node_id in seen:
        results[position] = f"Error: node id {node_id} is already in use"
        continue
      seen.add(node_id)
      worker = min(range(self.config.num_workers), key=lambda w: self._trees_per_worker[w])
      self._trees_per_worker[worker] += 1
      batches.setdefault(worker, []).append((position, [node_id, env_name, env_config, task]))
    replies = self._exchange(
        {w: {"op": "create", "items": [item[1:] for _, item in batch]}
         for w, batch in batches.items()},
        self.config.create_timeout_s)
    for worker, batch in batches.items():
      reply = replies[worker]
      for index, (position, item) in enumerate(batch):
        node_id = item[0]
        self._next_id = max(self._next_id, node_id + 1)
        if isinstance(reply, str):
          self._trees_per_worker[worker] -= 1
          results[position] = f"Error: {reply}"
          continue
        try:
          key, prompt = self._parse_created(reply[index])
        except _MalformedReply as error:
          self._trees_per_worker[worker] -= 1
          results[position] = str(error)
          continue
        self._nodes[node_id] = _Node(worker, self._generations[worker], key, "idle", is_root=True)
        results[position] = prompt
    return results  # type: ignore[return-value]

  @staticmethod
  def _parse_created(created: Any) -> tuple[int, PromptParts]:
    """A worker's answer for one root: (its key, its prompt), or _MalformedReply with the error."""
    if not isinstance(created, dict):
      raise _MalformedReply("Error: malformed interpreter reply")
    if "error" in created:
      raise _MalformedReply(str(created["error"]))
    key, prompt = created.get("key"), created.get("prompt")
    if type(key) is not int or not isinstance(prompt, list) or len(prompt) != 4 or any(
        type(p) is not str for p in prompt):
      raise _MalformedReply("Error: malformed interpreter reply")
    return key, PromptParts(*prompt)

  def run_cells(self, cells: Sequence[tuple[int, str]]) -> list[CellResult]:
    """Runs one cell `(node_id, code)` per idle node, in parallel over workers; input order."""
    self._check_open()
    self._check_unique([node_id for node_id, _ in cells])
    for node_id, code in cells:
      node = self._node(node_id)
      if node.state == "suspended":
        raise ValueError(f"node {node_id} is suspended on launches; resume it instead")
      if type(code) is not str:
        raise TypeError(f"code for node {node_id} must be a str")
    return self._activate("run", [(node_id, code) for node_id, code in cells])

  def resume(self, deliveries: Sequence[tuple[int, Mapping[int, JSONLike]]]) -> list[CellResult]:
    """Delivers `{child_id: finish value or error string}` to suspended nodes; input order.

    Deliveries may be partial (a subset of the awaited children); the node then stays suspended
    until its cell can go on.
    """
    self._check_open()
    self._check_unique([node_id for node_id, _ in deliveries])
    for node_id, results in deliveries:
      node = self._node(node_id)
      if node.state == "crashed" or not self._alive(node):
        continue
      if node.state != "suspended":
        raise ValueError(f"node {node_id} is not suspended")
      unexpected = set(results) - node.awaiting
      if unexpected:
        raise ValueError(f"node {node_id} does not await children {sorted(unexpected)}")
    items = []
    for node_id, results in deliveries:
      node = self._nodes[node_id]
      live = node.state == "suspended" and self._alive(node)
      keys = [[self._nodes[child].key, value] for child, value in results.items()] if live else []
      items.append((node_id, keys))
    return self._activate("resume", items, deliveries=dict(deliveries))

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
      self._exchange({w: {"op": "release", "keys": keys} for w, keys in batches.items()},
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
    config = dataclasses.asdict(self.config)
    config["env_modules"] = list(self.config.env_modules)
    config["preload_environments"] = list(self.config.preload_environments)
    worker = self._workers[index]
    protocol.write_frame(worker.to_child, {"config": config, "sys_path": _absolute_sys_path(),
                                           "scratch_dir": self._scratch.name})
    reply = protocol.read_frame(worker.from_child)
    if not isinstance(reply, dict) or not reply.get("ready"):
      error = reply.get("error") if isinstance(reply, dict) else "no reply"
      worker.kill()
      raise RuntimeError(f"interpreter worker failed to start: {error}")
    worker.sandbox = {str(k): str(v) for k, v in reply["sandbox"].items()}

  def _restart(self, index: int) -> None:
    self._workers[index].kill()
    self._generations[index] += 1
    self._trees_per_worker[index] = 0
    self._workers[index] = _WorkerProcess(self.config, self._scratch.name)
    self._initialize(index)

  def _exchange(self, requests: dict[int, dict], item_timeout_s: float) -> dict[int, list | str]:
    """Sends one request per worker; returns each worker's reply items, or why it failed.

    Every request is encoded before any is sent, so a value that is not JSON raises here with no
    worker touched. A worker that sends nothing while completing no item for `item_timeout_s` is
    killed; failed workers are restarted. If the wait is interrupted (KeyboardInterrupt), workers
    that have not answered are restarted, so no stale reply is left in a pipe.
    """
    frames = {index: protocol.encode(request) for index, request in requests.items()}
    selector = selectors.DefaultSelector()
    readers: dict[int, protocol.FrameReader] = {}
    progress: dict[int, tuple[int, float]] = {}
    replies: dict[int, list | str] = {}
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
          reply = self._read_reply(index, readers[index], len(requests[index].get("items", [])))
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
                  expected_items: int) -> list | str | None:
    """Reads what worker `index` has sent: its reply items, why it failed, or None (incomplete)."""
    worker = self._workers[index]
    try:
      data = os.read(worker.from_child, 1 << 20)
      if not data:
        return f"the interpreter worker crashed (exit code {worker.process.poll()})"
      message = reader.feed(data)
      if message is protocol.FrameReader.INCOMPLETE:
        return None
      items = message.get("items") if isinstance(message, dict) else None
      if not isinstance(items, list) or len(items) != expected_items:
        raise protocol.ProtocolError("reply without the requested items")
      return items
    except (OSError, protocol.ProtocolError) as error:
      return f"the interpreter worker sent a malformed reply ({error})"

  def _activate(self, op: str, items: list[tuple[int, Any]],
                deliveries: dict[int, Mapping[int, JSONLike]] | None = None) -> list[CellResult]:
    results: list[CellResult | None] = [None] * len(items)
    batches: dict[int, list[tuple[int, int, Any]]] = {}
    for position, (node_id, payload) in enumerate(items):
      node = self._nodes[node_id]
      if node.state == "crashed" or not self._alive(node):
        node.state = "crashed"
        results[position] = CellResult(node_id, "crashed", "Error: this node's interpreter crashed "
                                       "earlier; its state is lost")
      elif node.state == "finished":
        results[position] = CellResult(node_id, "error", "Error: this node has already finished")
      else:
        batches.setdefault(node.worker, []).append((position, node_id, [node.key, payload]))
    replies = self._exchange({w: {"op": op, "items": [b[2] for b in batch]}
                              for w, batch in batches.items()},
                             self.config.cell_time_limit_s + self.config.watchdog_grace_s)
    for worker, batch in batches.items():
      reply = replies[worker]
      for index, (position, node_id, _) in enumerate(batch):
        if isinstance(reply, str):
          self._nodes[node_id].state = "crashed"
          results[position] = CellResult(node_id, "crashed",
                                         f"Error: {reply}; this node's state is lost")
          continue
        try:
          results[position] = self._record(node_id, reply[index],
                                           (deliveries or {}).get(node_id, {}))
        except (_MalformedReply, KeyError, TypeError, ValueError, IndexError) as error:
          self._nodes[node_id].state = "crashed"
          results[position] = CellResult(node_id, "crashed",
                                         f"Error: malformed interpreter reply ({error})")
    return results  # type: ignore[return-value]

  def _record(self, node_id: int, reply: dict, delivered: Mapping[int, JSONLike]) -> CellResult:
    """Validates one worker result, registers spawned children and updates the node's state."""
    node = self._nodes[node_id]
    status, text = reply["status"], reply["text"]
    if status not in STATUSES or type(text) is not str:
      raise _MalformedReply(f"status {status!r}")
    spawns = []
    for child_key, depth, prompt in reply.get("spawns", []):
      if type(child_key) is not int or type(depth) is not int or len(prompt) != 4 or any(
          type(p) is not str for p in prompt):
        raise _MalformedReply("bad spawn")
      child_id = self._next_id
      self._next_id += 1
      self._nodes[child_id] = _Node(node.worker, node.generation, child_key, "idle")
      spawns.append(Spawn(child_id, node_id, depth, PromptParts(*prompt)))
    success = float(reply.get("success", 0.0))
    node.awaiting -= set(delivered)
    if status == "suspended":
      node.state = "suspended"
      node.awaiting |= {s.child_id for s in spawns}
    else:
      node.awaiting.clear()
      node.state = {"finished": "finished", "crashed": "crashed"}.get(status, "idle")
    return CellResult(node_id, status, text, reply.get("finish_value"), success, tuple(spawns))
