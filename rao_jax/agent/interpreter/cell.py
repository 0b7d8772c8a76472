"""One node's interpreter state: its namespace, its cells, and the scheduler behind `await`.

A cell is compiled with top-level `await` allowed. If it awaits, its coroutine becomes the root task
of a tiny cooperative scheduler: `asyncio.gather` turns each argument into a task, `await
launch_subagent(...)` blocks a task on a child, `asyncio.sleep` yields once. Tasks are driven until
every one is blocked on a launch; the launches started in that activation are the cell's spawns, all
reported together before any resolves. `resume` delivers child results (a finish value or an error
string, never an exception) and drives the tasks again. A cell ends when its root task ends, when
`finish(...)` runs in any task, or on an error or the time limit.
"""
from __future__ import annotations

import collections
import dataclasses
import inspect
from typing import Any, Callable, Protocol, Sequence

from rao_jax.agent import delegation as delegation_rule
from rao_jax.agent.interpreter import awaitables
from rao_jax.agent.interpreter import restrictions
from rao_jax.agent.interpreter import sandbox_builtins
from rao_jax.agent.interpreter import values
from rao_jax.agent.interpreter.messages import CellStatus
from rao_jax.agent.interpreter.time_limit import CellTimeout
from rao_jax.envs.base import JSONLike

MAX_TRACEBACK_LINES = 5
MAX_LAUNCHES_PER_CELL = 1000  # launch_subagent calls one cell may make (awaited or not).
# Tasks (gathered awaitables) one cell may start: the scheduler runs sandbox code, which the time
# limit does not interrupt, so its work per cell is bounded here instead.
MAX_TASKS_PER_CELL = 10_000
RANDOM_SEED = 0  # Every node's `random` starts from this seed (reproducible rollouts).
MAX_CALL_CHARS = 8_000_000  # Largest tool or launch_subagent arguments, as JSON text.


class NodeFinished(BaseException):
  """Unwinds a cell after `finish(value)` (not catchable as `Exception`)."""


@dataclasses.dataclass
class Outcome:
  """What one activation of a cell (a run or a resume) produced; see `pool.CellResult`."""
  status: CellStatus  # never CRASHED: that is the pool's verdict on a node
  text: str
  finish_value: JSONLike = None
  spawns: list[int] = dataclasses.field(default_factory=list)  # ids of the children launched


class OutputBuffer:
  """Printed text of one cell, keeping the first `max_chars` characters."""

  def __init__(self, max_chars: int):
    self._max_chars = max_chars
    self._parts: list[str] = []
    self._kept = 0
    self._dropped = 0

  def write(self, text: str) -> None:
    room = self._max_chars - self._kept
    if room > 0:
      self._parts.append(text[:room])
      self._kept += min(room, len(text))
    self._dropped += max(0, len(text) - max(room, 0))

  def text(self, error: str = "") -> str:
    body = "".join(self._parts)
    if self._dropped:
      body += f"\n... [output truncated: {self._dropped} more characters]"
    if error:
      error = error if len(error) <= self._max_chars else (
          error[:self._max_chars] + f"\n... [error truncated: {len(error) - self._max_chars} more "
          "characters]")
      body = f"{body}\n{error}" if body and not body.endswith("\n") else body + error
    return values.clean_text(body)


def _user_text(function: Callable[[], str], fallback: str) -> str:
  """`function()` (which may run cell code such as a hostile `__str__`), or `fallback`."""
  try:
    text = function()
    return str.__str__(text) if isinstance(text, str) else fallback
  except BaseException:  # Cell code may raise anything, the time limit included.
    return fallback


def describe_exception(error: BaseException, source: str) -> str:
  """`Traceback` lines from the cell only (no host paths), then `Type: message`."""
  lines = source.splitlines()
  entries = []
  traceback = error.__traceback__
  while traceback is not None:
    code = traceback.tb_frame.f_code
    if code.co_filename == restrictions.CELL_FILENAME:
      line_number = traceback.tb_lineno
      text = lines[line_number - 1].strip() if 0 < line_number <= len(lines) else ""
      where = "<cell>" if code.co_name == "<module>" else code.co_name
      entries.append(f"  line {line_number}, in {where}: {text}")
    traceback = traceback.tb_next
  name = _user_text(lambda: type(error).__name__, "Exception")
  message = _user_text(lambda: str(error), "<exception message unavailable>")
  summary = f"{name}: {message}" if message else name
  if isinstance(error, BaseExceptionGroup):
    # One line per sub-exception (the first few; read through the C descriptor, so a group subclass
    # runs no code here); each message is cell code, under the time limit like the summary.
    members = BaseExceptionGroup.exceptions.__get__(error)
    for index, member in enumerate(members[:MAX_TRACEBACK_LINES]):
      member_name = _user_text(lambda member=member: type(member).__name__, "Exception")
      member_message = _user_text(lambda member=member: str(member),
                                  "<exception message unavailable>")
      summary += f"\n  [{index + 1}] {member_name}: {member_message}" if member_message else (
          f"\n  [{index + 1}] {member_name}")
    if len(members) > MAX_TRACEBACK_LINES:
      summary += f"\n  ... and {len(members) - MAX_TRACEBACK_LINES} more"
  if not entries:
    return summary
  return "\n".join(["Traceback (most recent call last):", *entries[-MAX_TRACEBACK_LINES:], summary])


class NodeHost(Protocol):
  """What a node's cells reach outside the sandbox: the environment's tools and delegation.

  In a node process this is `node_process.RemoteHost`, which sends each call to the trusted pool as
  a message and blocks for the answer; tests may use an in-process host over a real environment.
  Arguments arrive as JSON-like data; neither method raises.
  """

  def call_tool(self, name: str, args: list, kwargs: dict) -> JSONLike:
    """Tool `name`'s result (plain data, or an error string)."""
    ...

  def launch(self, args: list, kwargs: dict) -> int | str:
    """The new child's key (what `resume` deliveries name it by), or the error string the launch
    resolves to at once."""
    ...


def _call_arguments(what: str, args: tuple, kwargs: dict) -> tuple[list, dict]:
  """`(args, kwargs)` as JSON-like data for the host (TypeError naming `what` otherwise)."""
  try:
    args, kwargs = values.json_data([list(args), kwargs], MAX_CALL_CHARS)
  except values.NotPlainData as error:
    raise TypeError(f"{what}: arguments must be plain data (JSON-like): {error}") from None
  return args, kwargs


class Tool(sandbox_builtins.Sealed):
  """An environment tool as cell code sees it: plain data in, plain data out, never raises."""
  __slots__ = ("_host", "_name")

  def __init__(self, name: str, host: NodeHost):
    object.__setattr__(self, "_name", name)
    object.__setattr__(self, "_host", host)

  def __call__(self, *args, **kwargs):
    name = object.__getattribute__(self, "_name")
    args, kwargs = _call_arguments(f"{name}()", args, kwargs)
    return object.__getattribute__(self, "_host").call_tool(name, args, kwargs)

  def __repr__(self):
    return f"<tool {object.__getattribute__(self, '_name')}>"


class _Task:
  """A coroutine driven by the node's scheduler."""

  def __init__(self, coroutine: Any, on_done: Callable[["_Task"], None] | None = None):
    self.coroutine = coroutine
    self.on_done = on_done
    self.send_value: Any = None
    self.throw_error: BaseException | None = None
    self.done = False
    self.result: Any = None
    self.error: BaseException | None = None


class _Finish(sandbox_builtins.Sealed):
  """`finish(value)`: ends the node with a JSON-like result."""
  __slots__ = ("_node",)

  def __init__(self, node: "NodeRuntime"):
    object.__setattr__(self, "_node", node)

  def __call__(self, value: JSONLike = None):
    node = object.__getattribute__(self, "_node")
    try:
      node.finish_value = values.json_like(value, node.max_output_chars)
    except values.NotPlainData as error:
      raise TypeError(f"finish(): the value must be JSON-like: {error}") from None
    node.finished = True
    raise NodeFinished()

  def __repr__(self):
    return "<function finish>"


class _Launch(sandbox_builtins.Sealed):
  """`launch_subagent(...)`: returns an awaitable handle (see awaitables.LaunchHandle)."""
  __slots__ = ("_node",)

  def __init__(self, node: "NodeRuntime"):
    object.__setattr__(self, "_node", node)

  def __call__(self, *args, **kwargs):
    node = object.__getattribute__(self, "_node")
    try:
      arguments = values.plain_copy((args, kwargs))
    except values.NotPlainData as error:
      raise TypeError(f"launch_subagent(): {error}") from None
    if len(node.cell_handles) >= MAX_LAUNCHES_PER_CELL:
      raise RuntimeError(f"a cell may call launch_subagent at most {MAX_LAUNCHES_PER_CELL} times")
    handle = awaitables.LaunchHandle(arguments)
    node.cell_handles.append(handle)
    return handle

  def __repr__(self):
    return "<async function launch_subagent>"


class NodeRuntime:
  """The interpreter state of one node: its namespace, cells and scheduler, and nothing else.

  The environment stays with `host` (in the trusted pool): `variables` are copied into the namespace
  as plain data, and each name in `tool_names` becomes a `Tool` stub calling `host.call_tool`.
  """

  def __init__(self, depth: int, host: NodeHost, *, variables: dict[str, JSONLike],
               tool_names: Sequence[str], delegation: bool, max_depth: int,
               max_output_chars: int, time_limit_s: float):
    self.depth = depth
    self.host = host
    self.delegation = delegation
    self.max_depth = max_depth
    self.max_output_chars = max_output_chars
    self.time_limit_s = time_limit_s
    self._variables = variables
    self._tool_names = tuple(tool_names)
    self.finished = False
    self.finish_value: JSONLike = None
    self.cell_handles: list[awaitables.LaunchHandle] = []
    self._output = OutputBuffer(max_output_chars)
    self._source = ""
    self._ready: collections.deque[_Task] = collections.deque()
    self._tasks: list[_Task] = []
    self._root: _Task | None = None
    self._waiting: dict[int, awaitables.LaunchHandle] = {}  # child id -> its started launch
    self._new_spawns: list[int] = []
    self._random: sandbox_builtins.ModuleProxy | None = None
    self.namespace = self._build_namespace()

  # -- namespace ------------------------------------------------------------------------------

  def _build_namespace(self) -> dict[str, Any]:
    builtins = sandbox_builtins.make_builtins(self._print, self._show,
                                              sandbox_builtins.make_importer(self._node_module))
    namespace: dict[str, Any] = {"__builtins__": builtins, "__name__": sandbox_builtins.CELL_MODULE}
    for name, value in values.plain_copy(self._variables).items():
      namespace[name] = value
    for name in self._tool_names:
      namespace[name] = Tool(name, self.host)
    namespace["finish"] = _Finish(self)
    namespace["asyncio"] = awaitables.ASYNCIO
    if self.delegation:
      namespace["launch_subagent"] = _Launch(self)
    return namespace

  def _node_module(self, name: str) -> Any:
    if name == "asyncio":
      return awaitables.ASYNCIO
    if name == "random":
      if self._random is None:
        self._random = sandbox_builtins.random_module(RANDOM_SEED)
      return self._random
    return None

  # Interruptible by the CPU timer (its time follows the cell's arguments); nothing is written until
  # the whole text is built, so an interruption leaves the buffer as it was.
  @sandbox_builtins.library_code
  def _print(self, *args, sep: str | None = " ", end: str | None = "\n", file=None,
             flush: bool = False) -> None:
    del flush
    if file is not None:
      raise PermissionError("print(file=...) is not available in the sandbox")
    sep = " " if sep is None else sep
    end = "\n" if end is None else end
    if type(sep) is not str or type(end) is not str:
      raise TypeError("sep and end must be str")
    self._output.write(sep.join(str(a) for a in args) + end)

  def _show(self, value: Any) -> None:
    if value is not None:
      self._output.write(repr(value) + "\n")

  # -- cells ----------------------------------------------------------------------------------

  def run_cell(self, code: str) -> Outcome:
    """Runs one cell to its end, its finish, an error, or a suspension on launches."""
    if self._root is not None:
      raise RuntimeError("the node is suspended; resume it instead")
    self._output = OutputBuffer(self.max_output_chars)
    self._source = code
    self.cell_handles = []
    self._new_spawns = []
    try:
      compiled = restrictions.compile_cell(code)
    except restrictions.CellRejected as error:
      return Outcome(CellStatus.ERROR, self._output.text(f"SandboxError: {error}"))
    except SyntaxError as error:
      return Outcome(CellStatus.ERROR, self._output.text(
          f"{type(error).__name__}: {error.msg} (line {error.lineno})"))
    except (ValueError, MemoryError) as error:
      return Outcome(CellStatus.ERROR, self._output.text(f"{type(error).__name__}: {error}"))
    try:
      if compiled.co_flags & inspect.CO_COROUTINE:
        self._root = self._start_task(eval(compiled, self.namespace))  # noqa: S307 - checked code.
        return self._advance()
      exec(compiled, self.namespace)  # noqa: S102 - checked code in a restricted namespace.
    except NodeFinished:
      return self._finished()
    except CellTimeout:
      return self.timeout_outcome()
    except Exception as error:
      return Outcome(CellStatus.ERROR, self._output.text(describe_exception(error, self._source)))
    except BaseExceptionGroup as group:  # see `_step`: a sandbox signal inside still ends the cell
      signal = sandbox_builtins.exception_in_group(group, (NodeFinished, CellTimeout))
      if isinstance(signal, NodeFinished):
        return self._finished()
      if signal is not None:
        return self.timeout_outcome()
      return Outcome(CellStatus.ERROR, self._output.text(
          "RuntimeError: the cell raised a BaseExceptionGroup"))
    return self._ended()

  def resume(self, deliveries: dict[int, JSONLike]) -> Outcome:
    """Delivers children's results to the awaiting tasks and drives the cell on."""
    if self._root is None:
      raise RuntimeError("the node is not suspended")
    self._new_spawns = []
    for child_key, value in deliveries.items():
      handle = self._waiting.pop(child_key)
      self._resolve(handle, value)
    return self._advance()

  def close(self) -> None:
    """Closes a suspended cell's coroutines (`finally` blocks run under the caller's limit)."""
    self._abandon_tasks()

  # -- scheduler ------------------------------------------------------------------------------

  def _start_task(self, coroutine: Any, on_done: Callable[[_Task], None] | None = None) -> _Task:
    task = _Task(coroutine, on_done)
    self._tasks.append(task)
    self._ready.append(task)
    return task

  def _advance(self) -> Outcome:
    try:
      while self._ready:
        self._step(self._ready.popleft())
    except NodeFinished:
      self._abandon_tasks()
      return self._finished()
    except CellTimeout:
      self._abandon_tasks()
      return self.timeout_outcome()
    root = self._root
    if root.done:
      self._abandon_tasks()
      if root.error is not None:
        return Outcome(CellStatus.ERROR, self._output.text(describe_exception(root.error, self._source)))
      return self._ended()
    if not self._waiting:
      self._abandon_tasks()
      return Outcome(CellStatus.ERROR, self._output.text(
          "RuntimeError: the cell awaits something that can never complete"))
    return Outcome(CellStatus.SUSPENDED, self._output.text(), spawns=list(self._new_spawns))

  def _step(self, task: _Task) -> None:
    try:
      if task.throw_error is not None:
        error, task.throw_error = task.throw_error, None
        yielded = task.coroutine.throw(error)
      else:
        value, task.send_value = task.send_value, None
        yielded = task.coroutine.send(value)
    except StopIteration as stop:
      self._complete(task, stop.value, None)
      return
    except Exception as error:  # Cell errors end the task; BaseExceptions end the cell.
      self._complete(task, None, error)
      return
    except BaseExceptionGroup as group:
      # Only `except*` wraps a BaseException in a group, and cells may not use it; should one come
      # anyway, a sandbox signal inside still ends the cell, and anything else is a cell error.
      signal = sandbox_builtins.exception_in_group(group, (NodeFinished, CellTimeout))
      if signal is not None:
        raise signal from None
      self._complete(task, None, RuntimeError("the cell raised a BaseExceptionGroup"))
      return
    if isinstance(yielded, awaitables.LaunchHandle):
      self._await_launch(task, yielded)
    elif isinstance(yielded, awaitables.Gather):
      self._await_gather(task, yielded)
    elif isinstance(yielded, awaitables.Sleep):
      self._ready.append(task)
    else:
      task.throw_error = RuntimeError(
          f"cannot await {type(yielded).__name__} objects in the sandbox; await "
          "launch_subagent(...), asyncio.gather(...) or your own async functions")
      self._ready.append(task)

  def _complete(self, task: _Task, result: Any, error: BaseException | None) -> None:
    task.done, task.result, task.error = True, result, error
    if task.on_done is not None:
      task.on_done(task)

  def _await_launch(self, task: _Task, handle: awaitables.LaunchHandle) -> None:
    if handle._state == "created":
      self._start_launch(handle)
    if handle._state == "done":
      task.send_value = handle._value
      self._ready.append(task)
    else:
      handle._waiters.append(task)

  def _start_launch(self, handle: awaitables.LaunchHandle) -> None:
    object.__setattr__(handle, "_state", "started")
    if not delegation_rule.may_delegate(self.delegation, self.max_depth, self.depth):
      self._resolve(handle, delegation_rule.refusal(self.depth))
      return
    try:
      # Converted again here: a handle built by hand (`type(handle)(...)`) skipped `launch_subagent`.
      args, kwargs = handle._arguments
      args, kwargs = _call_arguments("launch_subagent()", tuple(args), dict(kwargs))
    except (TypeError, ValueError) as error:
      self._resolve(handle, f"Error: launch_subagent failed: {error}")
      return
    child = self.host.launch(args, kwargs)
    if isinstance(child, str):
      self._resolve(handle, values.clean_text(child))
      return
    self._waiting[child] = handle
    self._new_spawns.append(child)

  def _resolve(self, handle: awaitables.LaunchHandle, value: JSONLike) -> None:
    object.__setattr__(handle, "_state", "done")
    object.__setattr__(handle, "_value", value)
    for waiter in handle._waiters:
      waiter.send_value = value
      self._ready.append(waiter)
    handle._waiters.clear()

  def _await_gather(self, task: _Task, gather: awaitables.Gather) -> None:
    members = gather._awaitables
    if not members:
      task.send_value = []
      self._ready.append(task)
      return
    if len(self._tasks) + len(members) > MAX_TASKS_PER_CELL:
      task.throw_error = RuntimeError(
          f"a cell may run at most {MAX_TASKS_PER_CELL} awaitables through asyncio.gather")
      self._ready.append(task)
      return
    results: list[Any] = [None] * len(members)
    remaining = [len(members)]
    settled = [False]

    def on_done(index: int, child: _Task) -> None:
      if settled[0]:
        return
      if child.error is not None and not gather._return_exceptions:
        settled[0] = True
        task.throw_error = child.error
        self._ready.append(task)
        return
      results[index] = child.error if child.error is not None else child.result
      remaining[0] -= 1
      if remaining[0] == 0:
        settled[0] = True
        task.send_value = results
        self._ready.append(task)

    for index, awaitable in enumerate(members):
      coroutine = awaitable if inspect.iscoroutine(awaitable) else awaitables.await_one(awaitable)
      self._start_task(coroutine, lambda child, index=index: on_done(index, child))

  def _abandon_tasks(self) -> None:
    for task in self._tasks:
      if not task.done:
        try:
          task.coroutine.close()
        except BaseException:  # Cell `finally` blocks may raise anything, the time limit included.
          pass
    self._tasks.clear()
    self._ready.clear()
    self._waiting.clear()
    self._root = None

  # -- endings --------------------------------------------------------------------------------

  def _finished(self) -> Outcome:
    self._root = None
    if not self.finished:  # NodeFinished raised by a hand-built `finish` of another object.
      return Outcome(CellStatus.ERROR, self._output.text("RuntimeError: finish() did not complete"))
    return Outcome(CellStatus.FINISHED, self._output.text(), finish_value=self.finish_value)

  def timeout_outcome(self) -> Outcome:
    self._root = None
    return Outcome(CellStatus.ERROR, self._output.text(
        f"TimeoutError: the cell exceeded its CPU time limit of {self.time_limit_s:g} s"))

  def _ended(self) -> Outcome:
    if self.finished:
      return self._finished()
    never_awaited = [h for h in self.cell_handles if h._state == "created"]
    if never_awaited:
      return Outcome(CellStatus.ERROR, self._output.text(
          f"RuntimeError: {len(never_awaited)} launch_subagent(...) call(s) were never awaited, so "
          "no subagent ran; write `result = await launch_subagent(...)` or `results = await "
          "asyncio.gather(launch_subagent(...), ...)`"))
    return Outcome(CellStatus.OUTPUT, self._output.text())
