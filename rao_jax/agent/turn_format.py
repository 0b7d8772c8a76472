"""The text format of an agent's turns (RAO method spec, section 2).

An assistant turn is a short thought followed by one Python cell; generation stops at the end of
the cell. What the cell printed comes back as the next user turn:

    <thought>I need 2 planks first.</thought>
    <python>print(craft({"log": 1}, ("plank", 2)))</python>      <- assistant (model-generated)
    [Cell 1 Output]
    Crafted 2 plank.                                              <- user (environment)

Every module that writes or reads turns (expert solvers, parser, chat layouts) uses these
definitions, so the format lives in exactly one place.
"""
from __future__ import annotations

THOUGHT_OPEN = "<thought>"
THOUGHT_CLOSE = "</thought>"
CODE_OPEN = "<python>"
CODE_CLOSE = "</python>"
# Generation of an assistant turn stops once this string has been produced.
STOP_SEQUENCE = CODE_CLOSE


def render_assistant_turn(thought: str, code: str) -> str:
  """The text of one assistant turn: `<thought>..</thought>` then `<python>..</python>`; a blank
  thought leaves the thought block out (compact turns)."""
  head = f"{THOUGHT_OPEN}{thought.strip()}{THOUGHT_CLOSE}\n" if thought.strip() else ""
  return f"{head}{CODE_OPEN}\n{code.strip()}\n{CODE_CLOSE}"


def observation_header(cell_index: int) -> str:
  """Header of the observation of cell `cell_index` (1-based, counted per node)."""
  return f"[Cell {cell_index} Output]"


def render_observation(cell_index: int, text: str) -> str:
  """The user turn after cell `cell_index`: the header, then what the cell printed or its error.

  Trailing whitespace is dropped, so output that ends with a newline (any `print`) and output that
  does not render the same.
  """
  body = text.rstrip() or "(no output)"
  return f"{observation_header(cell_index)}\n{body}"
