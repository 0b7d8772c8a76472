"""Reading a model completion as one agent turn: its thought and its code cell.

The parser is tolerant and total: any string parses, and a completion without a runnable cell yields
an `error` text that the caller shows as the observation (it costs the node a step), never an exception.

Rules, in order:
- The cell is the text after the first `<python>` up to the first `</python>` after it, or up to the
  end of the completion when `</python>` is missing (the completion hit its token limit; `truncated`).
  Tags inside a cell are not special: `<python>a<python>b</python>` is the cell `a<python>b`, and the
  interpreter reports it as a syntax error like any other bad code.
- Only the first cell runs. Generation stops at `</python>`, so a second cell can only appear in text
  that did not come from the sampler (or in a few characters of the token that closed the first cell);
  it is ignored without an error and counted in `num_cells` for format statistics.
- The thought is the text inside the first `<thought>...</thought>` before the cell (an unclosed
  `<thought>` runs up to `<python>`); no thought is fine (`None`). Other text outside tags is ignored.
- Cell code loses its surrounding blank lines and common indentation, so `<python>\n    x = 1\n</python>`
  runs as `x = 1`.
"""
from __future__ import annotations

import dataclasses
import textwrap

from rao_jax.agent import turn_format

NO_CELL_ERROR = (
    f"Error: no code cell found. End every turn with one cell: "
    f"{turn_format.CODE_OPEN}...{turn_format.CODE_CLOSE}")
EMPTY_CELL_ERROR = (
    f"Error: the code cell is empty. Write code between {turn_format.CODE_OPEN} and "
    f"{turn_format.CODE_CLOSE}.")


@dataclasses.dataclass(frozen=True)
class ParsedTurn:
  """One parsed completion.

  Attributes:
    thought: the reasoning text (stripped), or None if the turn has no thought block.
    code: the cell to run, or None when there is nothing to run (then `error` is set).
    error: the observation to show instead of running a cell, or None.
    truncated: the cell has no closing `</python>` (the completion hit its token limit).
    num_cells: number of `<python>` openings seen (format statistics; only the first cell runs).
  """

  thought: str | None
  code: str | None
  error: str | None
  truncated: bool = False
  num_cells: int = 0


def _clean_code(code: str) -> str:
  lines = code.split("\n")
  while lines and not lines[0].strip():
    lines.pop(0)
  while lines and not lines[-1].strip():
    lines.pop()
  return textwrap.dedent("\n".join(lines)).rstrip()


def _thought(head: str) -> str | None:
  """The first thought block in `head` (the text before the cell)."""
  start = head.find(turn_format.THOUGHT_OPEN)
  if start < 0:
    return None
  start += len(turn_format.THOUGHT_OPEN)
  end = head.find(turn_format.THOUGHT_CLOSE, start)
  return (head[start:] if end < 0 else head[start:end]).strip()


def parse_completion(text: str) -> ParsedTurn:
  """Splits a completion into thought and cell; see the module docstring for the rules."""
  cell_start = text.find(turn_format.CODE_OPEN)
  if cell_start < 0:
    return ParsedTurn(thought=_thought(text), code=None, error=NO_CELL_ERROR)
  thought = _thought(text[:cell_start])
  body_start = cell_start + len(turn_format.CODE_OPEN)
  body_end = text.find(turn_format.CODE_CLOSE, body_start)
  truncated = body_end < 0
  code = _clean_code(text[body_start:] if truncated else text[body_start:body_end])
  rest = "" if truncated else text[body_end + len(turn_format.CODE_CLOSE):]
  num_cells = 1 + rest.count(turn_format.CODE_OPEN)
  if not code:
    return ParsedTurn(thought=thought, code=None, error=EMPTY_CELL_ERROR, truncated=truncated,
                      num_cells=num_cells)
  return ParsedTurn(thought=thought, code=code, error=None, truncated=truncated, num_cells=num_cells)
