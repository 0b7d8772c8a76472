"""A small in-process cell runner for *trusted* code: the expert solvers' own generated cells.

It gives a cell the semantics the sandboxed interpreter gives model-written code (RAO method spec,
section 2), without the isolation: top-level `await` (so `await asyncio.gather(launch_subagent(..),
..)` runs on the real event loop), a namespace that persists across cells, `print` captured per node,
and the value of a trailing bare expression printed like a REPL. Never run untrusted code with it.
"""
from __future__ import annotations

import ast
import asyncio
import inspect
import io
from typing import Any

_FLAGS = ast.PyCF_ALLOW_TOP_LEVEL_AWAIT


class TrustedCellRunner:
  """Runs the cells of one node in one namespace; `run` returns what a cell printed."""

  def __init__(self, namespace: dict[str, Any]):
    self.namespace = dict(namespace)
    self.namespace.setdefault("asyncio", asyncio)
    self.namespace["print"] = self._print
    self._output = io.StringIO()

  def _print(self, *values: Any, sep: str | None = " ", end: str | None = "\n", **_: Any) -> None:
    # Per-node output (not sys.stdout): sibling nodes' cells interleave on one event loop.
    print(*values, sep=sep, end=end, file=self._output)

  async def run(self, code: str) -> str:
    """Executes `code`; returns its printed output, then `TypeName: message` if it raised."""
    self._output = io.StringIO()
    try:
      module = ast.parse(code, mode="exec")
      trailing = module.body.pop() if module.body and isinstance(module.body[-1], ast.Expr) else None
      await self._execute(compile(module, "<cell>", "exec", flags=_FLAGS))
      if trailing is not None:
        expression = ast.Expression(body=trailing.value)
        value = await self._execute(compile(expression, "<cell>", "eval", flags=_FLAGS))
        if value is not None:
          self._print(repr(value))
    except Exception as e:  # The cell's error is its observation, as in the sandboxed interpreter.
      self._print(f"{type(e).__name__}: {e}")
    return self._output.getvalue().rstrip("\n")

  async def _execute(self, code: Any) -> Any:
    result = eval(code, self.namespace)  # pylint: disable=eval-used  (trusted, generated code)
    return await result if inspect.iscoroutine(result) else result
