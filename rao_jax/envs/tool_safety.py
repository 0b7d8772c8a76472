"""Tools called by hostile code: safe descriptions of arguments, and wrappers that never raise.

Every environment's tools and `fork` are called with whatever model-written code passes. `show` describes
such a value for an error message without calling any of its methods; `safe_tool` binds a call to the
tool's signature and turns every failure (a bad signature, a `ToolError`, an unforeseen exception) into an
"Error: ..." string, which is what the cell sees.
"""
from __future__ import annotations

import functools
import inspect
from typing import Any, Callable

ERROR_PREFIX = "Error: "
MAX_SHOWN_CHARS = 60


class ToolError(Exception):
  """A misuse of a tool; its message becomes the tool's "Error: ..." result."""


def show(value: object) -> str:
  """A short, safe description of a hostile value: never calls one of its methods."""
  kind = type(value)
  if value is None or kind is bool or kind is float:
    return repr(value)
  if kind is int:
    return repr(value) if abs(value) < 10**18 else "a very large int"
  if kind is str:
    text = repr(value)
    return text if len(text) <= MAX_SHOWN_CHARS else text[:MAX_SHOWN_CHARS] + "...'"
  return f"a {kind.__name__[:MAX_SHOWN_CHARS]}"


def safe_tool(fn: Callable[..., Any], shown_name: str | None = None) -> Callable[..., Any]:
  """`fn` (a method or a function of the parent node; its first parameter is not shown) as a tool whose
  every failure is an error string."""
  signature = inspect.signature(fn)
  name = shown_name or fn.__name__
  public = list(signature.parameters.values())[1:]  # Without `self` (or the parent node).
  shown = f"{name}{signature.replace(parameters=public, return_annotation=inspect.Signature.empty)}"

  @functools.wraps(fn)
  def wrapper(*args, **kwargs):
    try:
      try:
        signature.bind(*args, **kwargs)
      except TypeError as e:
        return f"{ERROR_PREFIX}bad arguments to {shown}: {e}"
      return fn(*args, **kwargs)
    except ToolError as e:
      return f"{ERROR_PREFIX}{e}"
    except Exception as e:  # A bug or an unforeseen hostile input: still never raise into the cell.
      return f"{ERROR_PREFIX}{name} failed ({type(e).__name__})"

  return wrapper
