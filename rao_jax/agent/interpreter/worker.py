"""A warm worker process hosting the namespaces and environments of whole execution trees.

Started by the pool as `python -m rao_jax.agent.interpreter.worker IN_FD OUT_FD PROGRESS_FD`. It
reads one `InitRequest` frame (settings, the parent's `sys.path`, modules to import), imports what it
needs, closes the sandbox (`os_limits.harden`), then serves one request frame per batch
(`messages.CreateRequest`, `RunRequest`, `ResumeRequest`, `ReleaseRequest`), answering each with a
`messages.Reply`. After every item it bumps a counter in shared memory, which the pool's watchdog
reads to tell a slow batch from a hung worker.
"""
from __future__ import annotations

import gc
import importlib
import mmap
import os
import struct
import sys
import traceback
import warnings
from collections.abc import Callable

from rao_jax.agent.interpreter import cell
from rao_jax.agent.interpreter import messages
from rao_jax.agent.interpreter import os_limits
from rao_jax.agent.interpreter import protocol
from rao_jax.agent.interpreter import time_limit
from rao_jax.agent.interpreter import values
from rao_jax.agent.interpreter.messages import CellReply, CellStatus, RootReply, TreeLimits
from rao_jax.envs import registry
from rao_jax.envs.base import PromptParts

# A node whose cell leaves the worker above this share of its address-space limit loses its state.
MEMORY_HIGH_WATER = 0.8
_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


class _AddressSpace:
  """Reads the process's virtual size from an already open /proc/self/statm (one syscall)."""

  def __init__(self):
    self._fd = os.open("/proc/self/statm", os.O_RDONLY)

  def bytes(self) -> int:
    return int(os.pread(self._fd, 64, 0).split()[0]) * _PAGE_SIZE


class Worker:
  """Serves the pool's requests for the nodes this process hosts."""

  def __init__(self, settings: messages.WorkerSettings, progress: mmap.mmap | None):
    self._settings = settings
    self._progress = progress
    self._completed = 0
    self._nodes: dict[int, cell.NodeRuntime] = {}
    self._lost: dict[int, str] = {}  # key -> why the node's state was dropped
    self._next_key = 0
    self._timer = time_limit.CpuTimeLimit()
    self._memory_limit = settings.memory_limit_mb << 20
    self._address_space = _AddressSpace()

  # -- bookkeeping ----------------------------------------------------------------------------

  def _tick(self) -> None:
    self._completed += 1
    if self._progress is not None:
      struct.pack_into("<Q", self._progress, 0, self._completed)

  def _new_node(self, env, depth: int, limits: TreeLimits) -> int:
    """Hosts a node of a tree built under `limits`; its children inherit them."""
    key = self._next_key
    self._next_key += 1
    self._nodes[key] = cell.NodeRuntime(
        key, depth, env, delegation=limits.delegation, max_depth=limits.max_depth,
        max_output_chars=self._settings.max_output_chars,
        time_limit_s=self._settings.cell_time_limit_s,
        make_child=lambda child_env, child_depth: self._new_node(child_env, child_depth, limits))
    return key

  # -- requests -------------------------------------------------------------------------------

  def handle(self, request: messages.Request) -> messages.Reply:
    if isinstance(request, messages.CreateRequest):
      items = [self._create(root, request.limits) for root in request.roots]
    elif isinstance(request, messages.RunRequest):
      items = [self._activate(item.key, lambda node, code=item.code: node.run_cell(code))
               for item in request.cells]
    elif isinstance(request, messages.ResumeRequest):
      items = [self._activate(item.key, lambda node, d=item.deliveries: node.resume(dict(d)))
               for item in request.items]
    else:
      for key in request.keys:
        self._release(key)
      items = []
    try:
      # Cyclic garbage of cells is collected here, its finalizers under a time limit: the young
      # generations after every batch, everything after a release.
      with self._timer.limit(self._settings.cell_time_limit_s):
        gc.collect(2 if isinstance(request, messages.ReleaseRequest) else 1)
    except time_limit.CellTimeout:
      pass
    return messages.Reply(tuple(items))

  def _create(self, root: messages.RootSpec, limits: TreeLimits) -> RootReply:
    try:
      env = registry.make_root_environment(root.env_name, root.env_config, root.task)
      prompt = env.prompt_parts(limits.may_delegate(0))
      prompt = PromptParts(*(values.clean_text(str(x)) for x in
                             (prompt.rules, prompt.delegation_rules, prompt.goal, prompt.tool_docs)))
      return RootReply(self._new_node(env, 0, limits), prompt)
    except Exception as error:  # A bad task or environment costs this root only.
      return RootReply(error=f"Error: could not create the environment: {type(error).__name__}: {error}")
    finally:
      self._tick()

  def _activate(self, key: int, step: Callable[[cell.NodeRuntime], cell.Outcome]) -> CellReply:
    try:
      node = self._nodes.get(key)
      if node is None:
        why = self._lost.get(key, "unknown node")
        return CellReply(CellStatus.CRASHED, f"Error: this node's interpreter is gone: {why}")
      if node.finished:
        return CellReply(CellStatus.ERROR, "Error: this node has already finished")
      try:
        with self._timer.limit(self._settings.cell_time_limit_s):
          outcome = step(node)
      except time_limit.CellTimeout:
        outcome = node.timeout_outcome()
      if self._timer.expired and outcome.status is CellStatus.OUTPUT:
        # The budget ran out where the cell swallowed the interruption (a finalizer, say).
        outcome = node.timeout_outcome()
      if outcome.status is CellStatus.FINISHED:
        reply = CellReply(outcome.status, outcome.text, outcome.finish_value,
                          self._judge(node, outcome.finish_value))
      else:
        reply = CellReply(outcome.status, outcome.text, spawns=tuple(outcome.spawns))
      if self._address_space.bytes() > MEMORY_HIGH_WATER * self._memory_limit:
        for spawn in outcome.spawns:
          self._drop(spawn.key, "its parent used too much memory")
        self._drop(key, "it used too much memory")
        reply = CellReply(CellStatus.CRASHED, "Error: the node used too much memory; its "
                          "interpreter state was reset and the node cannot continue")
      return reply
    except (RuntimeError, KeyError) as error:
      return CellReply(CellStatus.ERROR, f"Error: {type(error).__name__}: {error}")
    finally:
      self._tick()

  def _judge(self, node: cell.NodeRuntime, finish_value) -> float:
    try:
      success = float(node.env.judge(finish_value))
    except Exception:  # judge must not raise; a broken judge scores 0.
      return 0.0
    return min(1.0, max(0.0, success)) if success == success else 0.0

  def _drop(self, key: int, why: str) -> None:
    node = self._nodes.pop(key, None)
    self._lost[key] = why
    if node is not None:
      self._clear(node)
      del node
      try:
        with self._timer.limit(self._settings.cell_time_limit_s):
          gc.collect()
      except time_limit.CellTimeout:
        pass

  def _clear(self, node: cell.NodeRuntime) -> None:
    """Closes a node's coroutines and drops its namespace; cell `finally` code runs time-limited."""
    try:
      with self._timer.limit(self._settings.cell_time_limit_s):
        node.close()
        node.namespace.clear()
    except time_limit.CellTimeout:
      pass

  def _release(self, key: int) -> None:
    node = self._nodes.pop(key, None)
    self._lost.pop(key, None)
    if node is not None:
      self._clear(node)
    self._tick()


def _setup(init: messages.InitRequest) -> None:
  sys.path[:] = init.sys_path
  for module in init.settings.env_modules:
    importlib.import_module(module)
  for name in init.settings.preload_environments:
    try:
      registry.get_factory(name)
    except Exception:  # Reported by `create_roots` for the roots that need it.
      pass
  sys.set_int_max_str_digits(4300)
  sys.unraisablehook = lambda unraisable: None
  warnings.simplefilter("ignore")
  gc.disable()  # Collected explicitly, under a time limit, after every batch.
  os.chdir(init.scratch_dir)


def main(argv: list[str]) -> int:
  in_fd, out_fd, progress_fd = (int(a) for a in argv[1:4])
  frame = protocol.read_frame(in_fd)
  if frame is None:
    return 0
  progress = mmap.mmap(progress_fd, 8) if progress_fd >= 0 else None
  try:
    init = messages.InitRequest.from_wire(frame)
    _setup(init)
    worker = Worker(init.settings, progress)
    sandbox = os_limits.harden(init.settings.memory_limit_mb)
  except Exception:  # Report why the worker cannot start instead of dying silently.
    protocol.write_frame(out_fd, messages.InitReply(error=traceback.format_exc(limit=3)).to_wire())
    return 1
  protocol.write_frame(out_fd, messages.InitReply(sandbox=sandbox).to_wire())
  while True:
    frame = protocol.read_frame(in_fd)
    if frame is None:  # The pool closed the pipe.
      return 0
    protocol.write_frame(out_fd, worker.handle(messages.request_from_wire(frame)).to_wire())


if __name__ == "__main__":
  sys.exit(main(sys.argv))
