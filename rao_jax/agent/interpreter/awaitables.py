"""The awaitables a cell can use: `launch_subagent(...)` handles and a minimal `asyncio`.

They do nothing by themselves: awaiting one yields it to the node's scheduler (`cell.NodeRuntime`),
which starts launches, drives gathered tasks and resumes the awaiting coroutine with the result.
The `asyncio` here exposes only `gather` and `sleep` (the real module would hand cells an event
loop, threads and sockets).
"""
from __future__ import annotations

import inspect
from typing import Any

from rao_jax.agent.interpreter import sandbox_builtins

MAX_GATHERED = 10_000  # Awaitables one gather may take (the scheduler's task limit per cell too).


class LaunchHandle(sandbox_builtins.Sealed):
  """The awaitable returned by `launch_subagent(...)`; the child starts when it is first awaited.

  `_state` goes "created" -> "started" (child spawned, or refused) -> "done" (`_value` holds the
  child's finish value or an error string). The fields are underscored so that cells cannot read
  them; the node's scheduler does.
  """
  __slots__ = ("_arguments", "_state", "_value", "_waiters")

  def __init__(self, arguments: tuple[tuple, dict]):
    for name, value in (("_arguments", arguments), ("_state", "created"), ("_value", None),
                        ("_waiters", [])):
      object.__setattr__(self, name, value)

  def __await__(self):
    if self._state == "done":
      return self._value
    return (yield self)

  def __repr__(self):
    return f"<launch_subagent call ({self._state})>"


class Gather(sandbox_builtins.Sealed):
  """The awaitable returned by `asyncio.gather(...)`."""
  __slots__ = ("_awaitables", "_return_exceptions")

  def __init__(self, awaitables: tuple, return_exceptions: bool):
    object.__setattr__(self, "_awaitables", awaitables)
    object.__setattr__(self, "_return_exceptions", return_exceptions)

  def __await__(self):
    return (yield self)


class Sleep(sandbox_builtins.Sealed):
  """The awaitable returned by `asyncio.sleep(...)`: one turn for the other tasks."""
  __slots__ = ("_result",)

  def __init__(self, result: Any):
    object.__setattr__(self, "_result", result)

  def __await__(self):
    yield self
    return self._result


def _gather(*awaitables, return_exceptions: bool = False) -> Gather:
  """`asyncio.gather`: awaits every argument concurrently; results in argument order."""
  if len(awaitables) > MAX_GATHERED:  # Before the loop below, which the CPU timer cannot stop.
    raise RuntimeError(f"asyncio.gather takes at most {MAX_GATHERED} awaitables in the sandbox")
  for awaitable in awaitables:
    if not inspect.isawaitable(awaitable):
      raise TypeError(f"gather() arguments must be awaitables, got {type(awaitable).__name__}")
  return Gather(awaitables, bool(return_exceptions))


def _sleep(delay: float = 0, result: Any = None) -> Sleep:
  """`asyncio.sleep`: yields to the other tasks once; the sandbox has no clock to wait on."""
  del delay
  return Sleep(result)


ASYNCIO = sandbox_builtins.ModuleProxy("asyncio", {
    "gather": _gather,
    "sleep": _sleep,
    "run": sandbox_builtins.Unavailable("asyncio.run", "use `await` at the top level of the cell"),
    "create_task": sandbox_builtins.Unavailable("asyncio.create_task", "use asyncio.gather"),
})


async def await_one(awaitable: Any) -> Any:
  return await awaitable
