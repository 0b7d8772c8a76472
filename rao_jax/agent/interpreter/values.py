"""Copying values across the sandbox boundary as plain data.

Whatever crosses between cell code and trusted code (tool arguments and results, `launch_subagent`
arguments, finish values, environment variables) is rebuilt from exact builtin types, so no
cell-defined class (with its hostile `__eq__`, `__hash__` or `__str__`) reaches an environment, and
no environment object (with its internal state) reaches a cell.
"""
from __future__ import annotations

import json
import math
from typing import Any

from rao_jax.envs.base import JSONLike

MAX_DEPTH = 64
MAX_ITEMS = 200_000
_SCALARS = (type(None), bool, int, float, str)


class NotPlainData(TypeError):
  """A value is not made of plain builtin data."""


def plain_copy(value: Any) -> Any:
  """A deep copy of `value` made of exact None/bool/int/float/str/bytes/list/tuple/dict/set."""
  budget = [MAX_ITEMS]

  def copy(item: Any, depth: int) -> Any:
    budget[0] -= 1
    if budget[0] < 0:
      raise NotPlainData(f"value has more than {MAX_ITEMS} parts")
    if depth > MAX_DEPTH:
      raise NotPlainData(f"value is nested deeper than {MAX_DEPTH}")
    kind = type(item)
    if kind in _SCALARS or kind is bytes:
      return item
    if kind is list:
      return [copy(x, depth + 1) for x in item]
    if kind is tuple:
      return tuple(copy(x, depth + 1) for x in item)
    if kind is dict:
      return {copy(k, depth + 1): copy(v, depth + 1) for k, v in item.items()}
    if kind in (set, frozenset):
      return kind(copy(x, depth + 1) for x in item)
    raise NotPlainData("expected plain data (str, int, float, bool, None, list, tuple, dict, "
                       f"set), got {kind.__name__}")

  return copy(value, 0)


def json_data(value: Any, max_chars: int) -> JSONLike:
  """`value` as JSON-like data (tuples become lists; str keys only; finite floats), or NotPlainData.

  The length of its JSON text is estimated from below while converting (strings count their
  characters), so a value far above `max_chars` is refused before anything spends time encoding it
  in code the CPU timer does not interrupt. The exact length is `json_like`'s to check.
  """
  budget = [MAX_ITEMS]
  chars = [0]  # A lower bound on the JSON text's length so far.

  def convert(item: Any, depth: int) -> JSONLike:
    budget[0] -= 1
    if budget[0] < 0 or depth > MAX_DEPTH:
      raise NotPlainData("value is too large or too deeply nested")
    kind = type(item)
    if kind in _SCALARS:
      chars[0] += len(item) + 2 if kind is str else 1
      if chars[0] > max_chars:
        raise NotPlainData(f"value is too large (more than {max_chars} characters as JSON)")
      if kind is float and not math.isfinite(item):
        raise NotPlainData(f"Out of range float values are not JSON compliant: {item!r}")
      return item
    if kind in (list, tuple):
      return [convert(x, depth + 1) for x in item]
    if kind is dict:
      if any(type(k) is not str for k in item):
        raise NotPlainData("dict keys must be str")
      return {k: convert(v, depth + 1) for k, v in item.items()}
    raise NotPlainData(f"expected JSON-like data (str, int, float, bool, None, list, dict), got "
                       f"{kind.__name__}")

  return convert(value, 0)


def json_like(value: Any, max_chars: int) -> JSONLike:
  """`json_data(value)`, whose JSON text is also checked to be at most `max_chars` long."""
  result = json_data(value, max_chars)
  try:
    text = json.dumps(result, allow_nan=False)
  except ValueError as error:
    raise NotPlainData(str(error)) from None
  if len(text) > max_chars:
    raise NotPlainData(f"value is too large ({len(text)} > {max_chars} characters as JSON)")
  return result


def clean_text(text: str) -> str:
  """`text` with lone surrogates escaped, so it encodes as UTF-8."""
  return text.encode("utf-8", "backslashreplace").decode("utf-8")
