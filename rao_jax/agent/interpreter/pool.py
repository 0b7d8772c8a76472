"""The interpreter pool: the rollout engine's interface to sandboxed code execution.

Trust boundary. Every node runs in its own process, forked by a fork server with the sandbox
preloaded (`forkserver.py`), hardened by the OS (`os_limits`) and holding that node's interpreter
state and nothing else (`node_process.py`). Environments live here, in the pool's process: one
`host.EnvironmentHost` per node, holding its environment, tools and judge. A cell's tool calls and
launches reach them as messages carrying plain data; the node's reply names only how its cell ended.
So the pool, not the node, decides which children exist and what success a finish value earns, and
even a complete escape from the language layer can affect only its own node's observations.

Faults. A node whose process dies, breaks the protocol, or does not answer within
`cell_time_limit_s + deadline_grace_s` wall seconds is killed from here (SIGKILL through a pidfd)
and ends `crashed`; every later call on it is `crashed` too, and every other node carries on. A fork
server that dies is restarted. Calls are not thread-safe.
"""
from __future__ import annotations

import collections
import dataclasses
import enum
import json
import math
import os
import select
import signal
import socket
import subprocess
import sys
import tempfile
import time
import weakref
from typing import Mapping, Sequence

from rao_jax.agent.interpreter import messages
from rao_jax.agent.interpreter import protocol
from rao_jax.agent.interpreter import values
from rao_jax.agent.interpreter.host import EnvironmentHost
from rao_jax.agent.interpreter.messages import CellStatus, TreeLimits
from rao_jax.envs.base import JSONLike, PromptParts

_SPAWN = b"spawn"
FORKSERVER_MODULE = "rao_jax.agent.interpreter.forkserver"


@dataclasses.dataclass(frozen=True)
class InterpreterConfig:
  """Settings of an `InterpreterPool`.

  Attributes:
    cell_time_limit_s: CPU seconds per cell activation (a run, or a resume after delegation); an
      honest slow cell gets a `TimeoutError` observation and its node goes on.
    memory_limit_mb: address-space limit of each node's process.
    max_output_chars: printed text kept per cell (the rest is cut with a note); also the largest
      finish value, as JSON text.
    deadline_grace_s: wall-clock slack on top of `cell_time_limit_s`; a node that has not answered by
      then (a cell stuck in C code, a hung process) is killed from outside and ends `crashed`.
    node_cpu_limit_s: CPU seconds one node's process may use in its whole life (RLIMIT_CPU; the
      kernel kills it past that).
    max_message_bytes: largest message a node may send (a tool call's arguments, a reply).
    spawn_timeout_s: wall-clock seconds the fork server may take to start a node.
    max_running_cells: node processes running a cell at once (0: eight per CPU core this process
      may use, the best setting measured on a 2-core VM: while some nodes wait for their tool calls'
      answers, others compute; docs/sandbox.md has the table).
    spare_processes: node processes kept started ahead of need (about 4 MB each), forked in the
      background so that a new node's start does not wait for a fork.
  """

  cell_time_limit_s: float = 3.0
  memory_limit_mb: int = 512
  max_output_chars: int = 4096
  deadline_grace_s: float = 5.0
  node_cpu_limit_s: int = 600
  max_message_bytes: int = 16 << 20
  spawn_timeout_s: float = 30.0
  max_running_cells: int = 0
  spare_processes: int = 16

  def __post_init__(self):
    if not self.cell_time_limit_s > 0:
      raise ValueError(f"cell_time_limit_s must be > 0, got {self.cell_time_limit_s}")
    if self.memory_limit_mb < 128:
      raise ValueError(f"memory_limit_mb must be >= 128, got {self.memory_limit_mb}")
    if self.max_output_chars < 64:
      raise ValueError(f"max_output_chars must be >= 64, got {self.max_output_chars}")
    if not self.deadline_grace_s > 0:
      raise ValueError(f"deadline_grace_s must be > 0, got {self.deadline_grace_s}")
    if type(self.node_cpu_limit_s) is not int or self.node_cpu_limit_s < self.cell_time_limit_s:
      raise ValueError(f"node_cpu_limit_s must be an int >= cell_time_limit_s, got "
                       f"{self.node_cpu_limit_s}")
    if self.max_message_bytes < 1 << 16:
      raise ValueError(f"max_message_bytes must be >= 65536, got {self.max_message_bytes}")
    if not self.spawn_timeout_s > 0:
      raise ValueError(f"spawn_timeout_s must be > 0, got {self.spawn_timeout_s}")
    if type(self.spare_processes) is not int or self.spare_processes < 0:
      raise ValueError(f"spare_processes must be an int >= 0, got {self.spare_processes!r}")
    if type(self.max_running_cells) is not int or self.max_running_cells < 0:
      raise ValueError(f"max_running_cells must be an int >= 0, got {self.max_running_cells!r}")


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
    FINISHED: `finish(value)` ran; `finish_value` and the environment's `success` are set (the
      pool's environment judges the value; NaN if the judge's score is not finite).
    SUSPENDED: the cell awaits children; `spawns` lists the launches started in this activation
      (possibly none, when it still awaits children reported earlier). Resume it with their results.
      The final, non-suspended result's `text` holds everything the cell printed.
    CRASHED: the node's interpreter state is gone (its process died, hung past the deadline, or
      broke the protocol).
  """
  node_id: int
  status: CellStatus
  text: str
  finish_value: JSONLike = None
  success: float = 0.0
  spawns: tuple[Spawn, ...] = ()


class _NodeState(enum.Enum):
  """Where a node stands between calls."""

  IDLE = "idle"            # may run a cell
  SUSPENDED = "suspended"  # awaits children; may only be resumed
  FINISHED = "finished"
  CRASHED = "crashed"      # its interpreter state is lost


class _NodeFailure(Exception):
  """A node process died, hung, or broke the protocol; the message says which."""


class _NodeProcess:
  """The pool's end of one node process: a non-blocking socket, buffers, and a way to kill it."""

  def __init__(self, connection: socket.socket, pid: int, pidfd: int | None,
               max_message_bytes: int):
    connection.setblocking(False)
    self.connection = connection
    self.pid = pid
    self._pidfd = pidfd
    self._reader = protocol.FrameReader(max_message_bytes)
    self.inbox: collections.deque = collections.deque()
    self.outbox = bytearray()

  def send(self, frame: bytes) -> None:
    self.outbox += frame

  def flush(self) -> None:
    """Writes what the socket takes now; _NodeFailure if the process is gone."""
    try:
      while self.outbox:
        sent = self.connection.send(self.outbox)
        del self.outbox[:sent]
    except BlockingIOError:
      pass
    except OSError as error:
      raise _NodeFailure(f"its process is gone ({error})") from None

  def receive(self, buffer: memoryview) -> None:
    """Reads what has arrived into `inbox` (decoded, unvalidated messages).

    `buffer` is the pool's scratch space, reused for every read (a fresh large buffer per read
    would cost an mmap, an mremap and an munmap each time).
    """
    try:
      size = self.connection.recv_into(buffer)
    except BlockingIOError:
      return
    except OSError as error:
      raise _NodeFailure(f"its process is gone ({error})") from None
    if not size:
      raise _NodeFailure("its process died")
    try:
      self.inbox.extend(self._reader.feed(buffer[:size]))
    except protocol.ProtocolError as error:
      raise _NodeFailure(f"it sent a malformed message ({error})") from None

  def kill(self) -> None:
    try:
      if self._pidfd is not None:
        signal.pidfd_send_signal(self._pidfd, signal.SIGKILL)
      else:
        os.kill(self.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError, OSError):
      pass  # Already gone.
    if self._pidfd is not None:
      os.close(self._pidfd)
      self._pidfd = None
    self.connection.close()


def _minimal_environment() -> dict[str, str]:
  """Environment variables of the fork server: no trainer secrets, reproducible str hashing."""
  return {"PATH": os.defpath, "LANG": "C.UTF-8",
          "PYTHONPATH": os.pathsep.join(os.path.abspath(entry) for entry in sys.path),
          "PYTHONHASHSEED": "0", "PYTHONDONTWRITEBYTECODE": "1", "OMP_NUM_THREADS": "1",
          "OPENBLAS_NUM_THREADS": "1"}


class _ForkServer:
  """The fork server process, its control socket, and a reserve of started node processes."""

  def __init__(self, config: InterpreterConfig, scratch_dir: str, module: str):
    self._config = config
    self._spares: collections.deque[_NodeProcess] = collections.deque()  # started, not yet used
    self._outstanding = 0  # spawns asked for and not yet received
    self._control, remote = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    settings = {"memory_limit_mb": config.memory_limit_mb, "cpu_limit_s": config.node_cpu_limit_s,
                "scratch_dir": scratch_dir}
    self.process = subprocess.Popen(
        [sys.executable, "-m", module, str(remote.fileno()),
         json.dumps(settings)],
        pass_fds=(remote.fileno(),), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        cwd=scratch_dir, env=_minimal_environment(), start_new_session=True)
    remote.close()
    self._control.settimeout(config.spawn_timeout_s)
    try:
      ready = self._control.recv(16)
    except OSError as error:
      ready = f"{error}".encode()
    if ready != b"ready":
      self.stop()
      raise RuntimeError(f"the interpreter's fork server failed to start (exit code "
                         f"{self.process.poll()}; see its traceback above)")

  def _request(self, count: int) -> None:
    for _ in range(count):
      self._control.send(_SPAWN)
    self._outstanding += count

  def _collect(self, block: bool) -> None:
    """Moves started processes into the reserve: those already announced, or (`block`) at least one."""
    while self._outstanding:
      if not block and not select.select([self._control], [], [], 0)[0]:
        return
      message, fds, _, _ = socket.recv_fds(self._control, 256, 2)
      if not message or not fds:
        raise OSError("the fork server closed its control socket")
      self._outstanding -= 1
      self._spares.append(_NodeProcess(socket.socket(fileno=fds[0]), json.loads(message)["pid"],
                                       fds[1] if len(fds) > 1 else None,
                                       self._config.max_message_bytes))
      block = False

  def spawn(self, count: int) -> list[_NodeProcess]:
    """`count` started node processes, then asks for the reserve to be refilled in the background.

    The reserve (`spare_processes`) is forked while the trainer does other work (decoding), so a
    node's start costs the rollout nothing but taking a process. OSError: a dead or silent server.
    """
    try:
      if self.process.poll() is not None:  # dead: found now, not only once the reserve runs out
        raise OSError("the fork server exited")
      self._collect(block=False)
      self._request(max(0, count - len(self._spares) - self._outstanding))
      while len(self._spares) < count:
        self._collect(block=True)
      processes = [self._spares.popleft() for _ in range(count)]
      self._request(max(0, self._config.spare_processes - len(self._spares) - self._outstanding))
    except (OSError, ValueError, KeyError):
      raise OSError("the interpreter's fork server failed") from None
    return processes

  def stop(self) -> None:
    while self._spares:
      self._spares.popleft().kill()
    self._control.close()
    try:
      self.process.wait(timeout=2.0)
    except subprocess.TimeoutExpired:
      self.process.kill()
      self.process.wait()


@dataclasses.dataclass
class _Node:
  """The pool's record of a node. Children are known to the node process by a key of its own
  (`launch_keys`), so that node ids can be allocated in input order whatever order nodes answer in."""
  host: EnvironmentHost
  tree: int  # its root's id: the nodes of one tree share the environment's state
  state: _NodeState = _NodeState.IDLE
  process: _NodeProcess | None = None
  awaiting: set[int] = dataclasses.field(default_factory=set)
  launch_keys: dict[int, int] = dataclasses.field(default_factory=dict)  # child id -> key in the node
  launches: int = 0  # keys handed out so far


@dataclasses.dataclass
class _Activation:
  """One node's cell activation, queued or in flight."""
  position: int
  node_id: int
  request: bytes  # the encoded RunCell or ResumeCell
  delivered: frozenset[int]
  deadline: float = math.inf
  starting: bool = False  # NodeStart sent, NodeReady not yet received
  # (key in the node, host) of each child launched in this activation, in launch order
  children: list[tuple[int, EnvironmentHost]] = dataclasses.field(default_factory=list)
  suspended_text: str | None = None  # set when it ended suspended; spawns are registered afterwards


def _close_everything(nodes: dict[int, _Node], servers: list[_ForkServer]) -> None:
  for node in nodes.values():
    if node.process is not None:
      node.process.kill()
      node.process = None
  for server in servers:
    server.stop()


class InterpreterPool:
  """Runs cells of many nodes, each in its own sandboxed process (see module docstring).

  `forkserver_module` is a test seam: tests pass a module that grants cells the real builtins, to
  check that a complete escape from the language layer still cannot reach scores, limits or other
  nodes (tests/agent/escaped_forkserver.py).
  """

  def __init__(self, config: InterpreterConfig, *, forkserver_module: str = FORKSERVER_MODULE):
    self.config = config
    self._forkserver_module = forkserver_module
    self._max_running = config.max_running_cells or 8 * len(os.sched_getaffinity(0))
    self._scratch = tempfile.TemporaryDirectory(prefix="rao-interpreter-")
    os.chmod(self._scratch.name, 0o755)
    self._nodes: dict[int, _Node] = {}
    self._read_buffer = memoryview(bytearray(1 << 16))
    self._next_id = 0
    self._closed = False
    self._servers = [_ForkServer(config, self._scratch.name, forkserver_module)]
    self._finalizer = weakref.finalize(self, _close_everything, self._nodes, self._servers)
    self._sandbox = self._probe()

  # -- public API -----------------------------------------------------------------------------

  @property
  def sandbox_report(self) -> dict[str, str]:
    """Which OS-level layers took effect in node processes (see `os_limits.Hardening.apply`)."""
    return dict(self._sandbox)

  def create_roots(self, roots: Sequence[tuple[int, str, dict, dict]], *, max_depth: int,
                   delegation: bool) -> list[PromptParts | str]:
    """Builds roots `(node_id, env_name, env_config, task)`; returns prompts or error strings.

    Every node of these trees (the roots and their descendants) works under `max_depth` and
    `delegation` (see `messages.TreeLimits`); the rollout engine passes its own limits here. A
    root's process starts with its first cell.
    """
    self._check_open()
    limits = TreeLimits(max_depth, delegation)
    for node_id, env_name, env_config, task in roots:
      if type(node_id) is not int:
        raise TypeError(f"node ids must be int, got {type(node_id).__name__}")
      if type(env_name) is not str or not isinstance(env_config, dict) or not isinstance(task, dict):
        raise TypeError(f"root {node_id}: env_name must be a str, env_config and task dicts")
    results: list[PromptParts | str] = []
    for node_id, env_name, env_config, task in roots:
      if node_id in self._nodes:
        results.append(f"Error: node id {node_id} is already in use")
        continue
      self._next_id = max(self._next_id, node_id + 1)
      host = EnvironmentHost.root(env_name, env_config, task, limits)
      if isinstance(host, str):
        results.append(host)
        continue
      self._nodes[node_id] = _Node(host, tree=node_id)
      results.append(host.prompt)
    return results

  def run_cells(self, cells: Sequence[tuple[int, str]]) -> list[CellResult]:
    """Runs one cell `(node_id, code)` per idle node, all nodes in parallel; input order."""
    self._check_open()
    self._check_unique([node_id for node_id, _ in cells])
    for node_id, code in cells:
      node = self._node(node_id)
      if node.state is _NodeState.SUSPENDED:
        raise ValueError(f"node {node_id} is suspended on launches; resume it instead")
      if type(code) is not str:
        raise TypeError(f"code for node {node_id} must be a str")
    return self._activate([(node_id, messages.RunCell(code), frozenset()) for node_id, code in cells])

  def resume(self, deliveries: Sequence[tuple[int, Mapping[int, JSONLike]]]) -> list[CellResult]:
    """Delivers `{child_id: finish value or error string}` to suspended nodes; input order.

    Deliveries may be partial (a subset of the awaited children); the node then stays suspended
    until its cell can go on.
    """
    self._check_open()
    self._check_unique([node_id for node_id, _ in deliveries])
    for node_id, results in deliveries:
      node = self._node(node_id)
      if node.state is _NodeState.CRASHED:
        continue
      if node.state is not _NodeState.SUSPENDED:
        raise ValueError(f"node {node_id} is not suspended")
      unexpected = set(results) - node.awaiting
      if unexpected:
        raise ValueError(f"node {node_id} does not await children {sorted(unexpected)}")
    items = []
    for node_id, results in deliveries:
      keys = self._nodes[node_id].launch_keys
      items.append((node_id, messages.ResumeCell(tuple((keys.get(child, -1), value)
                                                       for child, value in results.items())),
                    frozenset(results)))
    return self._activate(items)

  def release(self, node_ids: Sequence[int]) -> None:
    """Ends these nodes' processes and drops their environments (release every node of a tree)."""
    self._check_open()
    for node_id in node_ids:
      node = self._nodes.pop(node_id, None)
      if node is not None and node.process is not None:
        node.process.kill()

  def close(self) -> None:
    """Ends every node process and the fork server; the pool cannot be used afterwards."""
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

  def _spawn(self, count: int) -> list[_NodeProcess]:
    """`count` fresh node processes, restarting a failed fork server once."""
    try:
      return self._servers[0].spawn(count)
    except OSError:
      self._servers[0].stop()
      self._servers[0] = _ForkServer(self.config, self._scratch.name, self._forkserver_module)
      return self._servers[0].spawn(count)

  def _start_message(self, host: EnvironmentHost) -> messages.NodeStart:
    return messages.NodeStart(
        host.depth, host.limits, self.config.cell_time_limit_s, self.config.max_output_chars,
        host.variables(), host.tool_names())

  def _probe(self) -> dict[str, str]:
    """Starts one node process with an empty namespace and returns the layers it reports."""
    [process] = self._spawn(1)
    try:
      start = messages.NodeStart(0, TreeLimits(0, False), self.config.cell_time_limit_s,
                                 self.config.max_output_chars, {}, ())
      process.connection.setblocking(True)
      process.connection.settimeout(self.config.spawn_timeout_s)
      process.connection.sendall(protocol.encode(start.to_wire()))
      reader, replies = protocol.FrameReader(self.config.max_message_bytes), []
      while not replies:
        data = process.connection.recv(1 << 16)
        if not data:
          raise OSError("it exited at once")
        replies = reader.feed(data)
      ready = messages.node_message_from_wire(replies[0])
      if not isinstance(ready, messages.NodeReady):
        raise messages.WireError(f"expected a ready message, got {type(ready).__name__}")
      return dict(ready.sandbox)
    except (OSError, protocol.ProtocolError, messages.WireError) as error:
      raise RuntimeError(f"an interpreter node process failed to start: {error}") from None
    finally:
      process.kill()

  def _activate(self, items: list[tuple[int, messages.RunCell | messages.ResumeCell, frozenset[int]]]
                ) -> list[CellResult]:
    """Runs one activation per `(node_id, request, delivered child ids)`, all nodes at once."""
    results: list[CellResult | None] = [None] * len(items)
    # Encoded before anything is sent: a value that is not JSON raises here, with no node touched.
    frames = {}
    for position, (node_id, request, _) in enumerate(items):
      state = self._nodes[node_id].state
      if state is _NodeState.CRASHED:
        results[position] = CellResult(node_id, CellStatus.CRASHED, "Error: this node's interpreter "
                                       "crashed earlier; its state is lost")
      elif state is _NodeState.FINISHED:
        results[position] = CellResult(node_id, CellStatus.ERROR,
                                       "Error: this node has already finished")
      else:
        frames[position] = protocol.encode(request.to_wire())
    activations = [_Activation(position, items[position][0], frames[position], items[position][2])
                   for position in frames]
    self._start_processes(activations, results)
    self._drive([a for a in activations if results[a.position] is None], results)
    for activation in activations:  # in input order, so child ids do not depend on timing
      if activation.suspended_text is not None:
        results[activation.position] = self._register_children(activation)
    return results  # type: ignore[return-value]

  def _start_processes(self, activations: list[_Activation],
                       results: list[CellResult | None]) -> None:
    """Forks a process for every node that has none yet and queues its `NodeStart`."""
    new = [a for a in activations if self._nodes[a.node_id].process is None]
    if not new:
      return
    try:
      processes = self._spawn(len(new))
    except (OSError, RuntimeError) as error:
      for activation in new:
        results[activation.position] = self._crash(activation, f"its process could not start ({error})")
      return
    for activation, process in zip(new, processes):
      node = self._nodes[activation.node_id]
      node.process = process
      activation.starting = True
      try:
        process.send(protocol.encode(self._start_message(node.host).to_wire()))
      except (TypeError, ValueError, values.NotPlainData) as error:  # An environment bug.
        results[activation.position] = self._crash(
            activation, f"its environment's namespace variables are not plain data ({error})")

  def _drive(self, queued: list[_Activation], results: list[CellResult | None]) -> None:
    """Runs the activations, at most `max_running_cells` at a time, serving their calls.

    The nodes of one tree run one at a time, in input order: they share the environment's state
    (TextCraft's inventory), so the order of their tool calls must not depend on timing, or rollouts
    would not replay. Different trees run in parallel. An activation's deadline starts when its
    request is sent, so a node queued behind others is never charged for their time; the bound also
    keeps this process, which answers every tool call, from competing for the CPU with every node of
    a large batch at once.

    Requests and answers are written at once (a node's socket takes them whole unless it is very
    large); a connection is watched for writability only while a write is pending.
    """
    waiting: dict[int, collections.deque] = {}  # tree -> its queued activations, in input order
    for activation in queued:
      waiting.setdefault(self._nodes[activation.node_id].tree, collections.deque()).append(activation)
    startable = collections.deque(waiting)  # trees with no running activation, in input order
    running: dict[int, tuple[_Activation, _NodeProcess]] = {}  # by file descriptor
    limit_s = self.config.cell_time_limit_s + self.config.deadline_grace_s
    poller = select.epoll()

    def send_pending(fd: int, process: _NodeProcess, watched_output: bool) -> None:
      process.flush()
      if watched_output != bool(process.outbox):
        poller.modify(fd, select.EPOLLIN | (select.EPOLLOUT if process.outbox else 0))

    def start(activation: _Activation) -> None:
      process = self._nodes[activation.node_id].process
      fd = process.connection.fileno()
      activation.deadline = time.monotonic() + limit_s
      running[fd] = (activation, process)
      poller.register(fd, select.EPOLLIN)
      process.send(activation.request)
      try:
        send_pending(fd, process, False)
      except _NodeFailure as failure:
        finish(fd, str(failure))

    def finish(fd: int, outcome: messages.CellReply | str) -> None:
      """Records the node's reply, or crashes it for the reason given; starts its tree's next."""
      activation, _ = running.pop(fd)
      poller.unregister(fd)
      tree = self._nodes[activation.node_id].tree
      if tree in waiting:
        startable.append(tree)
      results[activation.position] = (self._crash(activation, outcome) if isinstance(outcome, str)
                                      else self._record(activation, outcome))

    try:
      while waiting or running:
        while startable and len(running) < self._max_running:
          tree = startable.popleft()
          activation = waiting[tree].popleft()
          if not waiting[tree]:
            del waiting[tree]
          start(activation)
        if not running:
          continue
        timeout = max(0.0, min(min(a.deadline for a, _ in running.values()) - time.monotonic(), 0.5))
        for fd, events in poller.poll(timeout):
          if fd not in running:
            continue  # Ended earlier in this round.
          activation, process = running[fd]
          try:
            watched_output = bool(process.outbox)
            if events & (select.EPOLLIN | select.EPOLLHUP | select.EPOLLERR):
              process.receive(self._read_buffer)
            reply = self._serve_inbox(activation, process)
            send_pending(fd, process, watched_output)
          except _NodeFailure as failure:
            finish(fd, str(failure))
            continue
          if reply is not None:
            finish(fd, reply)
        now = time.monotonic()
        for fd in [fd for fd, (a, _) in running.items() if now > a.deadline]:
          finish(fd, f"it did not answer within {self.config.cell_time_limit_s:g} s + "
                 f"{self.config.deadline_grace_s:g} s and was killed (a cell stuck in C code, or a "
                 "hung process)")
    except BaseException:
      # Interrupted (KeyboardInterrupt): nodes still running have unknown state; end them.
      for fd in list(running):
        finish(fd, "the call was interrupted")
      raise
    finally:
      poller.close()

  def _serve_inbox(self, activation: _Activation,
                   process: _NodeProcess) -> messages.CellReply | None:
    """Answers the node's queued calls; its reply once it has sent one. _NodeFailure if it lies."""
    node = self._nodes[activation.node_id]
    while process.inbox:
      try:
        message = messages.node_message_from_wire(process.inbox.popleft())
      except (messages.WireError, RecursionError) as error:
        raise _NodeFailure(f"it sent a malformed message ({error})") from None
      if isinstance(message, messages.NodeReady):
        if not activation.starting:
          raise _NodeFailure("it sent an unexpected ready message")
        activation.starting = False
        continue
      if activation.starting:
        raise _NodeFailure(f"it sent {type(message).__name__} before it was ready")
      if isinstance(message, messages.CellReply):
        return message
      if isinstance(message, messages.ToolCall):
        value_json = node.host.call_tool_json(message.name, list(message.args), dict(message.kwargs))
        process.send(protocol.encode_text(messages.ToolResult.wire_from_json(value_json)))
      elif isinstance(message, messages.LaunchCall):
        process.send(protocol.encode(self._launch(activation, node, message).to_wire()))
      else:
        raise _NodeFailure(f"it sent an unexpected {type(message).__name__}")
    return None

  def _launch(self, activation: _Activation, node: _Node,
              call: messages.LaunchCall) -> messages.LaunchResult:
    """Forks the child's environment here; returns the child's key in the node, or the refusal."""
    child = node.host.launch(list(call.args), dict(call.kwargs))
    if isinstance(child, str):
      return messages.LaunchResult(error=child)
    key = node.launches
    node.launches += 1
    activation.children.append((key, child))
    return messages.LaunchResult(child=key)

  def _register_children(self, activation: _Activation) -> CellResult:
    """Gives the children of a suspended activation their node ids; its result with their spawns."""
    node_id = activation.node_id
    node = self._nodes[node_id]
    spawns = []
    for key, host in activation.children:
      child_id = self._next_id
      self._next_id += 1
      self._nodes[child_id] = _Node(host, tree=node.tree)
      node.launch_keys[child_id] = key
      node.awaiting.add(child_id)
      spawns.append(Spawn(child_id, node_id, host.depth, host.prompt))
    return CellResult(node_id, CellStatus.SUSPENDED, activation.suspended_text, spawns=tuple(spawns))

  def _crash(self, activation: _Activation, reason: str) -> CellResult:
    node = self._nodes[activation.node_id]
    if node.process is not None:
      node.process.kill()
      node.process = None
    node.state = _NodeState.CRASHED
    node.awaiting.clear()
    return CellResult(activation.node_id, CellStatus.CRASHED,
                      f"Error: this node's interpreter crashed: {reason}; its state is lost")

  def _record(self, activation: _Activation, reply: messages.CellReply) -> CellResult | None:
    """Checks the node's reply against what the pool saw, and updates the node's state.

    None for a suspended node: its children get ids after every node of the call has answered.
    Children launched in an activation that did not end suspended never reach the engine.
    """
    node_id = activation.node_id
    node = self._nodes[node_id]
    node.awaiting -= activation.delivered
    text = values.clean_text(reply.text[:4 * self.config.max_output_chars + 1000])
    if reply.status is CellStatus.SUSPENDED:
      if not node.awaiting and not activation.children:
        return self._crash(activation, "it claimed to wait, with no child to wait for")
      node.state = _NodeState.SUSPENDED
      activation.suspended_text = text
      return None
    node.awaiting.clear()
    if reply.status is CellStatus.FINISHED:
      try:
        value = values.json_like(reply.finish_value, self.config.max_output_chars)
      except values.NotPlainData as error:
        return self._crash(activation, f"it finished with a value that is not allowed ({error})")
      node.state = _NodeState.FINISHED
      return CellResult(node_id, reply.status, text, value, node.host.judge(value))
    node.state = _NodeState.IDLE
    return CellResult(node_id, reply.status, text)
